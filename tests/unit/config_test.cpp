// The configuration file (userspace/agent/config.h, DESIGN.md section 6):
// what a valid file yields, and that every kind of mistake is refused with
// "FILE:LINE: KEY: ...".
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "userspace/agent/config.h"
#include "userspace/dataplane/error.h"

namespace {

using peerlb::Config;
using peerlb::parse_config;
using testing::HasSubstr;
using testing::StartsWith;

// The smallest valid file. [cluster] comes last so that tests can append
// cluster keys (line 11 on) as well as whole tables.
const std::string kMinimal = R"([node]
id = "s1"
interface = "eth0"
address = "10.0.0.11"
services = ["10.0.0.111"]
[[service]]
port = 80
[cluster]
group = "239.7.7.7:7946"
key_file = "/etc/peerlb/cluster.key"
)";

// kMinimal with line `n` (1-based) replaced; "" blanks it, keeping the
// other lines' numbers.
std::string with_line(int n, const std::string& replacement)
{
    std::istringstream in(kMinimal);
    std::string out, line;
    for (int i = 1; std::getline(in, line); i++)
        out += (i == n ? replacement : line) + "\n";
    return out;
}

// The message parse_config refuses `text` with, or "no error".
std::string error_of(const std::string& text)
{
    try {
        parse_config(text, "t.toml");
    } catch (const peerlb::Error& e) {
        return e.what();
    }
    return "no error";
}

std::string ip(const peerlb::IpAddress& a)
{
    return peerlb::format_ip(a.addr, a.family);
}

// A file of its own under the test temp directory.
std::string write_file(const std::string& name, const std::string& content)
{
    const std::string path =
        testing::TempDir() + "peerlb_config_test_" + std::to_string(getpid()) + "_" + name;
    std::ofstream(path, std::ios::binary) << content;
    chmod(path.c_str(), 0644); // whatever the umask: load_config refuses group/other-writable
    return path;
}

// A key file as it must be: readable by its owner only.
std::string write_key_file(const std::string& name, const std::string& content)
{
    const std::string path = write_file(name, content);
    chmod(path.c_str(), 0600);
    return path;
}

// ---------------------------------------------------------------------------
// Valid files

TEST(ConfigValid, MinimalFileParses)
{
    EXPECT_EQ(error_of(kMinimal), "no error");
}

TEST(ConfigValid, DesignSampleParses)
{
    // DESIGN.md section 6 (its [[uri_rule]] needs an "http" service: ConfigHttp).
    const std::string text = R"(
[node]
id = "s1"                      # unique in the cluster
interface = "eth0"
address = "10.0.0.11"          # node address
services = ["10.0.0.111"]      # service addresses this node owns
weight = 1.0                   # relative capacity
standby = false

[cluster]
group = "239.7.7.7:7946"       # or peers = ["10.0.0.12", ...]
key_file = "/etc/peerlb/cluster.key"
interval_ms = 500
dead_after = 3

[balance]
accept_below = 50
min_difference = 20
pick = "weighted"              # or "least"
forward = "l2"                 # or "ipip"
high_water = 100
overflow = "keep"              # or "refuse"

[load]
source = "inflight"            # connections | cpu | cgroup | file | exec
capacity = 1000                # open connections = 100 %
# file = "/run/peerlb/load"

[[service]]
port = 80
mode = "l4"                    # or "http"
)";
    const Config c = parse_config(text, "sample.toml");
    EXPECT_EQ(c.path, "sample.toml");
    EXPECT_EQ(c.node_id, "s1");
    EXPECT_EQ(c.interface, "eth0");
    EXPECT_EQ(ip(c.node_address), "10.0.0.11");
    ASSERT_EQ(c.owned_services.size(), 1u);
    EXPECT_EQ(ip(c.owned_services[0]), "10.0.0.111");
    ASSERT_TRUE(c.group.has_value());
    EXPECT_EQ(ip(c.group->address), "239.7.7.7");
    EXPECT_EQ(c.group->port, 7946);
    EXPECT_TRUE(c.peers.empty());
    EXPECT_EQ(c.key_file, "/etc/peerlb/cluster.key");
    EXPECT_EQ(c.interval_ms, 500u);
    EXPECT_EQ(c.dead_after, 3u);
    EXPECT_EQ(c.accept_below, 50u);
    EXPECT_EQ(c.min_difference, 20u);
    EXPECT_FALSE(c.pick_least);
    EXPECT_FALSE(c.forward_ipip);
    EXPECT_EQ(c.high_water, 100u);
    EXPECT_FALSE(c.overflow_refuse);
    EXPECT_DOUBLE_EQ(c.weight, 1.0);
    EXPECT_FALSE(c.standby);
    EXPECT_EQ(c.source, peerlb::LoadSource::inflight);
    EXPECT_EQ(c.capacity, 1000u);
    ASSERT_EQ(c.services.size(), 1u);
    EXPECT_EQ(c.services[0].port, 80);
    EXPECT_EQ(c.services[0].mode, peerlb::ServiceMode::l4);
    EXPECT_EQ(c.health_port, 80);
}

TEST(ConfigValid, DefaultsWhenOptionalTablesAbsent)
{
    const Config c = parse_config(kMinimal, "t.toml");
    const Config d; // the defaults config.h promises
    EXPECT_EQ(c.interval_ms, 500u);
    EXPECT_EQ(c.dead_after, 3u);
    EXPECT_EQ(c.load_step, d.load_step);
    EXPECT_EQ(c.replay_window_ms, d.replay_window_ms);
    EXPECT_EQ(c.accept_below, 50u);
    EXPECT_EQ(c.min_difference, 20u);
    EXPECT_FALSE(c.pick_least);
    EXPECT_FALSE(c.forward_ipip);
    EXPECT_DOUBLE_EQ(c.conn_cost, d.conn_cost);
    EXPECT_EQ(c.failsafe_after_ms, d.failsafe_after_ms);
    EXPECT_EQ(c.syn_cookies, uint32_t(LB_SYN_COOKIES_AUTO));
    EXPECT_EQ(c.syn_cookie_rate, 1000u);
    EXPECT_EQ(c.choices, 2u); // power of two choices
    EXPECT_EQ(c.source, peerlb::LoadSource::inflight);
    EXPECT_EQ(c.capacity, 1000u);
    EXPECT_EQ(c.update_ms, d.update_ms);
    EXPECT_EQ(c.smoothing_ms, 0u);
    EXPECT_TRUE(c.health_enabled);
    EXPECT_EQ(c.health_port, 80); // the first service port
    EXPECT_EQ(c.health_http_path, "");
    EXPECT_EQ(c.health_interval_ms, d.health_interval_ms);
    EXPECT_EQ(c.health_timeout_ms, d.health_timeout_ms);
    EXPECT_EQ(c.health_fail_after, d.health_fail_after);
    EXPECT_FALSE(c.metrics_listen.has_value());
    EXPECT_EQ(c.log_level, "info");
}

TEST(ConfigValid, NodeWeightAndStandby)
{
    std::string text = kMinimal;
    text.replace(text.find("services = "), 0, "weight = 2.5\nstandby = true\n");
    const Config c = parse_config(text, "t.toml");
    EXPECT_DOUBLE_EQ(c.weight, 2.5);
    EXPECT_TRUE(c.standby);
    EXPECT_EQ(c.weight_hundredths(), 250);
}

TEST(ConfigInvalid, CapacityKeysOutOfRange)
{
    std::string bad_weight = kMinimal;
    bad_weight.replace(bad_weight.find("services = "), 0, "weight = 0\n");
    EXPECT_THAT(error_of(bad_weight), HasSubstr("node.weight"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\nhigh_water = 0\n"), HasSubstr("balance.high_water"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\nhigh_water = 101\n"), HasSubstr("balance.high_water"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\noverflow = \"queue\"\n"), HasSubstr("balance.overflow"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\nchoices = 9\n"), HasSubstr("balance.choices"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\nchoices = -1\n"), HasSubstr("balance.choices"));
    EXPECT_THAT(error_of(kMinimal + "[balance]\nchoices = \"two\"\n"), HasSubstr("balance.choices"));
    EXPECT_THAT(error_of(kMinimal + "[load]\nsource = \"inflight\"\ncapacity = 0\n"),
                HasSubstr("load.capacity"));
}

TEST(ConfigValid, EveryKeySet)
{
    const Config c = parse_config(kMinimal + R"(interval_ms = 200
dead_after = 5
load_step = 7
replay_window_ms = 3000
[balance]
accept_below = 40
min_difference = 10
pick = "least"
forward = "ipip"
conn_cost = 1
failsafe_after_ms = 2500
syn_cookies = "always"
syn_cookie_rate = 250
high_water = 90
overflow = "refuse"
choices = 0
[load]
source = "exec"
capacity = 5
command = "echo 42"
update_ms = 100
smoothing_ms = 250
[health]
enabled = false
port = 8080
http_path = "/healthz"
interval_ms = 300
timeout_ms = 100
fail_after = 4
[metrics]
listen = "127.0.0.1:9100"
[log]
level = "debug"
[[service]]
port = 443
)",
                                  "t.toml");
    EXPECT_EQ(c.interval_ms, 200u);
    EXPECT_EQ(c.high_water, 90u);
    EXPECT_TRUE(c.overflow_refuse);
    EXPECT_EQ(c.choices, 0u);
    EXPECT_EQ(c.dead_after, 5u);
    EXPECT_EQ(c.load_step, 7u);
    EXPECT_EQ(c.replay_window_ms, 3000u);
    EXPECT_EQ(c.accept_below, 40u);
    EXPECT_EQ(c.min_difference, 10u);
    EXPECT_TRUE(c.pick_least);
    EXPECT_TRUE(c.forward_ipip);
    EXPECT_DOUBLE_EQ(c.conn_cost, 1.0); // an integer is fine for a float key
    EXPECT_EQ(c.failsafe_after_ms, 2500u);
    EXPECT_EQ(c.syn_cookies, uint32_t(LB_SYN_COOKIES_ALWAYS));
    EXPECT_EQ(c.syn_cookie_rate, 250u);
    EXPECT_EQ(c.source, peerlb::LoadSource::exec);
    EXPECT_EQ(c.capacity, 5u);
    EXPECT_EQ(c.load_command, "echo 42");
    EXPECT_EQ(c.update_ms, 100u);
    EXPECT_EQ(c.smoothing_ms, 250u);
    EXPECT_FALSE(c.health_enabled);
    EXPECT_EQ(c.health_port, 8080);
    EXPECT_EQ(c.health_http_path, "/healthz");
    EXPECT_EQ(c.health_interval_ms, 300u);
    EXPECT_EQ(c.health_timeout_ms, 100u);
    EXPECT_EQ(c.health_fail_after, 4u);
    ASSERT_TRUE(c.metrics_listen.has_value());
    EXPECT_EQ(ip(c.metrics_listen->address), "127.0.0.1");
    EXPECT_EQ(c.metrics_listen->port, 9100);
    EXPECT_EQ(c.log_level, "debug");
    ASSERT_EQ(c.services.size(), 2u);
    EXPECT_EQ(c.services[1].port, 443);
}

TEST(ConfigValid, FloatConnCost)
{
    const Config c = parse_config(kMinimal + "[balance]\nconn_cost = 0.25\n", "t.toml");
    EXPECT_DOUBLE_EQ(c.conn_cost, 0.25);
}

TEST(ConfigValid, NodeMayOwnNoServiceAddress)
{
    const Config c = parse_config(with_line(5, "services = []"), "t.toml");
    EXPECT_TRUE(c.owned_services.empty());
}

TEST(ConfigValid, PeersWithPortsAndIpv4)
{
    const Config c = parse_config(
        with_line(9, R"(peers = ["10.0.0.12", "10.0.0.13:8000", "10.0.0.12:7000"])"), "t.toml");
    EXPECT_FALSE(c.group.has_value());
    ASSERT_EQ(c.peers.size(), 3u);
    EXPECT_EQ(ip(c.peers[0].address), "10.0.0.12");
    EXPECT_EQ(c.peers[0].port, peerlb::kHeartbeatPort);
    EXPECT_EQ(ip(c.peers[1].address), "10.0.0.13");
    EXPECT_EQ(c.peers[1].port, 8000);
    // Same address, other port: another node on the same machine.
    EXPECT_EQ(ip(c.peers[2].address), "10.0.0.12");
    EXPECT_EQ(c.peers[2].port, 7000);
}

TEST(ConfigValid, PeersIpv6)
{
    const Config c = parse_config(R"([node]
id = "s1"
interface = "eth0"
address = "fd00::11"
services = ["fd00::111", "10.0.0.111"]
[[service]]
port = 80
[cluster]
peers = ["fd00::12", "[fd00::13]", "[fd00::14]:8000"]
key_file = "/k"
[metrics]
listen = "[::1]:9100"
)",
                                  "t.toml");
    EXPECT_EQ(ip(c.node_address), "fd00::11");
    ASSERT_EQ(c.owned_services.size(), 2u);
    EXPECT_EQ(ip(c.owned_services[0]), "fd00::111");
    EXPECT_EQ(ip(c.owned_services[1]), "10.0.0.111");
    ASSERT_EQ(c.peers.size(), 3u);
    EXPECT_EQ(ip(c.peers[0].address), "fd00::12");
    EXPECT_EQ(c.peers[0].port, peerlb::kHeartbeatPort);
    EXPECT_EQ(ip(c.peers[1].address), "fd00::13");
    EXPECT_EQ(c.peers[1].port, peerlb::kHeartbeatPort);
    EXPECT_EQ(ip(c.peers[2].address), "fd00::14");
    EXPECT_EQ(c.peers[2].port, 8000);
    ASSERT_TRUE(c.metrics_listen.has_value());
    EXPECT_EQ(ip(c.metrics_listen->address), "::1");
    EXPECT_EQ(c.metrics_listen->port, 9100);
}

TEST(ConfigValid, Ipv6Group)
{
    const Config c = parse_config(R"([node]
id = "s1"
interface = "eth0"
address = "fd00::11"
services = []
[[service]]
port = 80
[cluster]
group = "[ff02::7]:7946"
key_file = "/k"
)",
                                  "t.toml");
    ASSERT_TRUE(c.group.has_value());
    EXPECT_EQ(ip(c.group->address), "ff02::7");
    EXPECT_EQ(c.group->port, 7946);
}

TEST(ConfigValid, LongestNodeId)
{
    const std::string id(32, 'a');
    EXPECT_EQ(parse_config(with_line(2, "id = \"" + id + "\""), "t.toml").node_id, id);
    EXPECT_EQ(parse_config(with_line(2, R"(id = "Node_1.a-b")"), "t.toml").node_id, "Node_1.a-b");
}

// The incarnation counter's directory: one per node id by default, so that
// nodes sharing a machine (tests) never share one; the file may name another.
TEST(ConfigValid, StateDirDefaultsPerNodeIdAndMayBeSet)
{
    EXPECT_EQ(parse_config(kMinimal, "t.toml").state_dir, "/var/lib/peerlb/s1");
    EXPECT_EQ(parse_config(with_line(2, R"(id = "n-7")"), "t.toml").state_dir, "/var/lib/peerlb/n-7");
    EXPECT_EQ(parse_config(with_line(5, R"(services = ["10.0.0.111"]
state_dir = "/srv/peerlb state")"), "t.toml").state_dir,
              "/srv/peerlb state");
}

TEST(ConfigErrors, StateDirMustBeAnAbsolutePath)
{
    const auto with_state_dir = [](const std::string& value) {
        return with_line(5, "services = [\"10.0.0.111\"]\nstate_dir = " + value);
    };
    EXPECT_EQ(error_of(with_state_dir(R"("var/lib/peerlb")")),
              "t.toml:6: node.state_dir: \"var/lib/peerlb\" is not an absolute path");
    EXPECT_EQ(error_of(with_state_dir(R"("")")), "t.toml:6: node.state_dir: \"\" is not an absolute path");
    EXPECT_EQ(error_of(with_state_dir("7")), "t.toml:6: node.state_dir: expected a string, got an integer");
    EXPECT_EQ(error_of(with_state_dir(R"("/a\u0000b")")),
              "t.toml:6: node.state_dir: must not contain a NUL character");
}

// ---------------------------------------------------------------------------
// Refused files

TEST(ConfigErrors, TomlSyntax)
{
    EXPECT_THAT(error_of(with_line(3, "interface = eth0")), StartsWith("t.toml:3: parse error: "));
    EXPECT_THAT(error_of(kMinimal + "[balance\n"), StartsWith("t.toml:11: parse error: "));
    // A key given twice is the parser's business too.
    EXPECT_THAT(error_of(kMinimal + "key_file = \"/other\"\n"),
                StartsWith("t.toml:11: parse error: "));
}

TEST(ConfigErrors, UnknownTopLevel)
{
    EXPECT_THAT(error_of(kMinimal + "[balancing]\naccept_below = 50\n"),
                StartsWith("t.toml:11: balancing: unknown table"));
    EXPECT_THAT(error_of("verbose = true\n" + kMinimal),
                StartsWith("t.toml:1: verbose: unknown key"));
    EXPECT_THAT(error_of(kMinimal + "[[services]]\nport = 81\n"),
                StartsWith("t.toml:11: services: unknown table"));
}

TEST(ConfigErrors, UnknownKeyInTable)
{
    EXPECT_THAT(error_of(kMinimal + "[balance]\naccept_below = 50\naccept_above = 90\n"),
                StartsWith("t.toml:13: balance.accept_above: unknown key"));
    EXPECT_THAT(error_of(with_line(3, "iface = \"eth0\"")),
                StartsWith("t.toml:3: node.iface: unknown key"));
    EXPECT_THAT(error_of(kMinimal + "intervall_ms = 200\n"),
                StartsWith("t.toml:11: cluster.intervall_ms: unknown key"));
    // A sub-table is an unknown key of its parent.
    EXPECT_THAT(error_of(kMinimal + "[load.extra]\nx = 1\n"),
                StartsWith("t.toml:11: load.extra: unknown key"));
}

TEST(ConfigErrors, UnknownKeyInService)
{
    EXPECT_THAT(error_of(kMinimal + "[[service]]\nport = 81\nweight = 3\n"),
                StartsWith("t.toml:13: service[1].weight: unknown key"));
    EXPECT_THAT(error_of(with_line(7, "port = 80\nproto = \"tcp\"")),
                StartsWith("t.toml:8: service[0].proto: unknown key"));
}

TEST(ConfigErrors, WrongType)
{
    EXPECT_EQ(error_of(kMinimal + "[balance]\naccept_below = \"50\"\n"),
              "t.toml:12: balance.accept_below: expected an integer, got a string");
    EXPECT_EQ(error_of(kMinimal + "[balance]\naccept_below = 50.0\n"),
              "t.toml:12: balance.accept_below: expected an integer, got a float");
    EXPECT_EQ(error_of(kMinimal + "[balance]\nconn_cost = \"0.1\"\n"),
              "t.toml:12: balance.conn_cost: expected a number, got a string");
    EXPECT_THAT(error_of(with_line(3, "interface = 5")),
                StartsWith("t.toml:3: node.interface: expected a string"));
    EXPECT_THAT(error_of(with_line(5, "services = \"10.0.0.111\"")),
                StartsWith("t.toml:5: node.services: expected an array"));
    EXPECT_THAT(error_of(with_line(5, "services = [\"10.0.0.111\", 7]")),
                StartsWith("t.toml:5: node.services[1]: expected a string, got an integer"));
    EXPECT_THAT(error_of(kMinimal + "[health]\nenabled = \"yes\"\n"),
                StartsWith("t.toml:12: health.enabled: expected a boolean"));
    EXPECT_THAT(error_of(with_line(7, "port = \"80\"")),
                StartsWith("t.toml:7: service[0].port: expected an integer"));
    EXPECT_THAT(error_of("log = \"debug\"\n" + kMinimal),
                StartsWith("t.toml:1: log: expected a table"));
    EXPECT_THAT(error_of(with_line(6, "[service]")),
                StartsWith("t.toml:6: service: expected an array of tables"));
}

// Each bounded key just outside its range: appended to kMinimal, so cluster
// keys land on line 11 and a table's first key on line 12.
TEST(ConfigErrors, OutOfRange)
{
    struct Case {
        std::string append, prefix;
    };
    const std::vector<Case> cases = {
        {"interval_ms = 9\n", "t.toml:11: cluster.interval_ms: "},
        {"interval_ms = 60001\n", "t.toml:11: cluster.interval_ms: "},
        {"dead_after = 1\n", "t.toml:11: cluster.dead_after: "},
        {"dead_after = 101\n", "t.toml:11: cluster.dead_after: "},
        {"load_step = 0\n", "t.toml:11: cluster.load_step: "},
        {"load_step = 101\n", "t.toml:11: cluster.load_step: "},
        {"replay_window_ms = 99\n", "t.toml:11: cluster.replay_window_ms: "},
        {"replay_window_ms = 3600001\n", "t.toml:11: cluster.replay_window_ms: "},
        {"[balance]\naccept_below = -1\n", "t.toml:12: balance.accept_below: "},
        {"[balance]\naccept_below = 101\n", "t.toml:12: balance.accept_below: "},
        {"[balance]\nmin_difference = 101\n", "t.toml:12: balance.min_difference: "},
        {"[balance]\nconn_cost = 100.5\n", "t.toml:12: balance.conn_cost: "},
        {"[balance]\nconn_cost = -0.1\n", "t.toml:12: balance.conn_cost: "},
        {"[balance]\nconn_cost = nan\n", "t.toml:12: balance.conn_cost: "},
        {"[balance]\nfailsafe_after_ms = 9\n", "t.toml:12: balance.failsafe_after_ms: "},
        {"[balance]\nfailsafe_after_ms = 4294967296\n", "t.toml:12: balance.failsafe_after_ms: "},
        {"[balance]\nsyn_cookies = \"sometimes\"\n", "t.toml:12: balance.syn_cookies: "},
        {"[balance]\nsyn_cookies = true\n", "t.toml:12: balance.syn_cookies: "},
        {"[balance]\nsyn_cookie_rate = 0\n", "t.toml:12: balance.syn_cookie_rate: "},
        {"[balance]\nsyn_cookie_rate = 10000001\n", "t.toml:12: balance.syn_cookie_rate: "},
        {"[load]\ncapacity = 0\n", "t.toml:12: load.capacity: "},
        {"[load]\nupdate_ms = 0\n", "t.toml:12: load.update_ms: "},
        {"[load]\nupdate_ms = 1001\n", "t.toml:12: load.update_ms: "},
        {"[load]\nsmoothing_ms = -1\n", "t.toml:12: load.smoothing_ms: "},
        {"[health]\nport = 65536\n", "t.toml:12: health.port: "},
        {"[health]\nport = -1\n", "t.toml:12: health.port: "},
        {"[health]\ninterval_ms = 9\n", "t.toml:12: health.interval_ms: "},
        {"[health]\ntimeout_ms = 0\n", "t.toml:12: health.timeout_ms: "},
        {"[health]\nfail_after = 0\n", "t.toml:12: health.fail_after: "},
        {"[health]\nfail_after = 101\n", "t.toml:12: health.fail_after: "},
        {"[[service]]\nport = 0\n", "t.toml:12: service[1].port: "},
        {"[[service]]\nport = 65536\n", "t.toml:12: service[1].port: "},
    };
    for (const Case& c : cases)
        EXPECT_THAT(error_of(kMinimal + c.append), StartsWith(c.prefix)) << c.append;
    EXPECT_EQ(error_of(kMinimal + "[balance]\naccept_below = 101\n"),
              "t.toml:12: balance.accept_below: 101 is out of range 0..100");
}

TEST(ConfigErrors, BadAddress)
{
    EXPECT_EQ(error_of(with_line(4, R"(address = "10.0.0.256")")),
              "t.toml:4: node.address: '10.0.0.256' is not an IPv4 or IPv6 address");
    EXPECT_THAT(error_of(with_line(5, R"(services = ["10.0.0.111", "host"])")),
                StartsWith("t.toml:5: node.services[1]: "));
    EXPECT_THAT(error_of(with_line(5, R"(services = ["224.1.1.1"])")),
                StartsWith("t.toml:5: node.services[0]: 224.1.1.1 is not a unicast address"));
    EXPECT_THAT(error_of(with_line(4, R"(address = "0.0.0.0")")),
                StartsWith("t.toml:4: node.address: "));
    EXPECT_THAT(error_of(kMinimal + "[metrics]\nlisten = \"127.0.0.1\"\n"),
                StartsWith("t.toml:12: metrics.listen: '127.0.0.1' has no port"));
    EXPECT_THAT(error_of(kMinimal + "[metrics]\nlisten = \"127.0.0.1:http\"\n"),
                StartsWith("t.toml:12: metrics.listen: "));
    EXPECT_THAT(error_of(kMinimal + "[metrics]\nlisten = \"[127.0.0.1]:80\"\n"),
                StartsWith("t.toml:12: metrics.listen: "));
}

TEST(ConfigErrors, DuplicateServiceAddress)
{
    EXPECT_EQ(
        error_of(with_line(5, "services = [\n\"10.0.0.111\",\n\"10.0.0.112\",\n\"10.0.0.111\"]")),
        "t.toml:8: node.services[2]: 10.0.0.111 is listed twice (also services[0])");
    // Spelled differently, same address.
    EXPECT_THAT(error_of(with_line(5, R"(services = ["fd00::1", "fd00:0::0001"])")),
                StartsWith("t.toml:5: node.services[1]: "));
}

TEST(ConfigErrors, NodeAddressAmongServices)
{
    EXPECT_THAT(error_of(with_line(5, R"(services = ["10.0.0.111", "10.0.0.11"])")),
                StartsWith("t.toml:5: node.services[1]: 10.0.0.11 is node.address"));
}

TEST(ConfigErrors, DuplicateServicePort)
{
    EXPECT_EQ(error_of(kMinimal + "[[service]]\nport = 443\n[[service]]\nport = 80\n"),
              "t.toml:14: service[2].port: port 80 is already service[0]");
}

TEST(ConfigErrors, DuplicatePeer)
{
    // No port means kHeartbeatPort, so these two are the same peer.
    EXPECT_EQ(
        error_of(with_line(9, "peers = [\n\"10.0.0.12\",\n\"10.0.0.13\",\n\"10.0.0.12:7946\",\n]")),
        "t.toml:12: cluster.peers[2]: '10.0.0.12:7946' is listed twice (also peers[0])");
    // Spelled differently, same address and port.
    EXPECT_EQ(error_of(R"([node]
id = "s1"
interface = "eth0"
address = "fd00::11"
services = []
[[service]]
port = 80
[cluster]
peers = ["[fd00::1]:7946", "fd00:0::0001"]
key_file = "/k"
)"),
              "t.toml:9: cluster.peers[1]: 'fd00:0::0001' is listed twice (also peers[0])");
}

TEST(ConfigErrors, MissingRequiredKey)
{
    // The line of the key's table.
    EXPECT_EQ(error_of(with_line(2, "")), "t.toml:1: node.id: is required");
    EXPECT_EQ(error_of(with_line(3, "")), "t.toml:1: node.interface: is required");
    EXPECT_EQ(error_of(with_line(4, "")), "t.toml:1: node.address: is required");
    EXPECT_THAT(error_of(with_line(5, "")), StartsWith("t.toml:1: node.services: is required"));
    EXPECT_EQ(error_of(with_line(10, "")), "t.toml:8: cluster.key_file: is required");
    EXPECT_EQ(error_of(with_line(7, "mode = \"l4\"")), "t.toml:6: service[0].port: is required");
    // No table at all: line 1.
    EXPECT_EQ(
        error_of(
            "[cluster]\ngroup = \"239.7.7.7:7946\"\nkey_file = \"/k\"\n[[service]]\nport = 80\n"),
        "t.toml:1: node.id: is required");
    std::string no_service = with_line(6, "");
    no_service = no_service.replace(no_service.find("port = 80"), 9, "");
    EXPECT_EQ(error_of(no_service), "t.toml:1: service: at least one [[service]] is required");
    // Present but empty counts as missing for strings.
    EXPECT_EQ(error_of(with_line(10, "key_file = \"\"")),
              "t.toml:10: cluster.key_file: must not be empty");
}

TEST(ConfigErrors, GroupAndPeersBoth)
{
    EXPECT_THAT(error_of(kMinimal + "peers = [\"10.0.0.12\"]\n"),
                StartsWith("t.toml:11: cluster.peers: "));
}

TEST(ConfigErrors, GroupAndPeersNeither)
{
    EXPECT_THAT(error_of(with_line(9, "")),
                StartsWith("t.toml:8: cluster.group: is required (or cluster.peers)"));
    EXPECT_THAT(error_of(with_line(9, "peers = []")), StartsWith("t.toml:9: cluster.peers: "));
}

TEST(ConfigErrors, NonMulticastGroup)
{
    EXPECT_THAT(error_of(with_line(9, R"(group = "10.0.0.7:7946")")),
                StartsWith("t.toml:9: cluster.group: '10.0.0.7:7946' is not a multicast address"));
    EXPECT_THAT(error_of(with_line(9, R"(group = "[fd00::7]:7946")")),
                StartsWith("t.toml:9: cluster.group: "));
    EXPECT_THAT(error_of(with_line(9, R"(group = "239.7.7.7")")),
                StartsWith("t.toml:9: cluster.group: '239.7.7.7' has no port"));
}

TEST(ConfigErrors, AddressFamilyMismatch)
{
    EXPECT_THAT(error_of(with_line(9, R"(group = "[ff02::7]:7946")")),
                StartsWith("t.toml:9: cluster.group: an IPv6 address, but node.address is IPv4"));
    EXPECT_THAT(error_of(with_line(9, R"(peers = ["10.0.0.12", "fd00::12"])")),
                StartsWith("t.toml:9: cluster.peers[1]: "));
}

TEST(ConfigErrors, BadNodeId)
{
    EXPECT_THAT(error_of(with_line(2, R"(id = "s 1")")), StartsWith("t.toml:2: node.id: "));
    EXPECT_THAT(error_of(with_line(2, R"(id = "s1/2")")), StartsWith("t.toml:2: node.id: "));
    EXPECT_THAT(error_of(with_line(2, "id = \"" + std::string(33, 'a') + "\"")),
                StartsWith("t.toml:2: node.id: "));
    EXPECT_THAT(error_of(with_line(2, R"(id = "")")), StartsWith("t.toml:2: node.id: "));
}

TEST(ConfigErrors, BadInterfaceName)
{
    EXPECT_THAT(error_of(with_line(3, R"(interface = "a-very-long-name-x")")),
                StartsWith("t.toml:3: node.interface: "));
    EXPECT_THAT(error_of(with_line(3, R"(interface = "eth0/1")")),
                StartsWith("t.toml:3: node.interface: "));
}

TEST(ConfigErrors, BadEnumValue)
{
    EXPECT_EQ(error_of(kMinimal + "[balance]\npick = \"random\"\n"),
              "t.toml:12: balance.pick: \"random\" is not one of \"weighted\", \"least\"");
    EXPECT_THAT(error_of(kMinimal + "[balance]\nforward = \"gre\"\n"),
                StartsWith("t.toml:12: balance.forward: "));
    EXPECT_THAT(error_of(kMinimal + "[load]\nsource = \"disk\"\n"),
                StartsWith("t.toml:12: load.source: "));
    EXPECT_THAT(error_of(with_line(7, "port = 80\nmode = \"tcp\"")),
                StartsWith("t.toml:8: service[0].mode: "));
    EXPECT_THAT(error_of(kMinimal + "[log]\nlevel = \"verbose\"\n"),
                StartsWith("t.toml:12: log.level: "));
    // Case matters.
    EXPECT_THAT(error_of(kMinimal + "[balance]\npick = \"Least\"\n"),
                StartsWith("t.toml:12: balance.pick: "));
}

TEST(ConfigErrors, SourceWithoutItsKey)
{
    EXPECT_EQ(error_of(kMinimal + "[load]\nsource = \"file\"\n"),
              "t.toml:11: load.file: is required when load.source = \"file\"");
    EXPECT_THAT(error_of(kMinimal + "[load]\nsource = \"exec\"\n"),
                StartsWith("t.toml:11: load.command: "));
    EXPECT_THAT(error_of(kMinimal + "[load]\nsource = \"cgroup\"\n"),
                StartsWith("t.toml:11: load.cgroup: "));
    EXPECT_EQ(error_of(kMinimal + "[load]\nsource = \"file\"\nfile = \"/run/peerlb/load\"\n"),
              "no error");
}

TEST(ConfigErrors, BadHealthPath)
{
    EXPECT_THAT(error_of(kMinimal + "[health]\nhttp_path = \"health\"\n"),
                StartsWith("t.toml:12: health.http_path: "));
    EXPECT_THAT(error_of(kMinimal + "[health]\nhttp_path = \"/a b\"\n"),
                StartsWith("t.toml:12: health.http_path: "));
}

// kMinimal with its service in "http" mode.
std::string http_minimal(const std::string& extra = "")
{
    std::string text = kMinimal;
    text.replace(text.find("port = 80\n"), 10, "port = 80\nmode = \"http\"\n");
    return text + extra;
}

TEST(ConfigHttp, ModeRulesAndDefaults)
{
    const Config c = parse_config(http_minimal(R"([http]
cookie_epoch_s = 30
window_scale = 9
[[uri_rule]]
prefix = "/banking/"
nodes = ["s2"]
stateful = true
exit = "/banking/logout"
[[uri_rule]]
path = "/img/*.PNG"
host = "Shop.Example"
port = 80
nodes = ["s3", "s1"]
)"),
                                  "t.toml");
    ASSERT_EQ(c.services.size(), 1u);
    EXPECT_EQ(c.services[0].mode, peerlb::ServiceMode::http);
    EXPECT_TRUE(c.has_http_service());
    EXPECT_EQ(c.cookie_epoch_s, 30u);
    EXPECT_EQ(c.window_scale, 9u);
    ASSERT_EQ(c.uri_rules.size(), 2u);
    const auto& bank = c.uri_rules[0];
    EXPECT_EQ(bank.pattern, "/banking/");
    EXPECT_FALSE(bank.glob);
    EXPECT_TRUE(bank.stateful);
    EXPECT_EQ(bank.exit, "/banking/logout");
    EXPECT_EQ(bank.timeout_s, 600u); // [http].pin_timeout_s
    EXPECT_EQ(bank.nodes, std::vector<std::string>{"s2"});
    const auto& img = c.uri_rules[1];
    EXPECT_TRUE(img.glob);
    EXPECT_EQ(img.pattern, "/img/*.PNG"); // paths are case-sensitive
    EXPECT_EQ(img.host, "shop.example");  // host names are not
    EXPECT_EQ(img.port, 80);
    EXPECT_EQ(img.nodes, (std::vector<std::string>{"s3", "s1"}));

    const Config d = parse_config(http_minimal(), "t.toml");
    EXPECT_EQ(d.cookie_epoch_s, 64u);
    EXPECT_EQ(d.window_scale, 7u);
    EXPECT_TRUE(d.uri_rules.empty());
}

TEST(ConfigHttp, ServerSpeaksFirstPortsRefused)
{
    EXPECT_EQ(error_of(kMinimal + "[[service]]\nport = 22\nmode = \"http\"\n"),
              "t.toml:13: service[1].mode: port 22 is SSH, whose server speaks first; \"http\" "
              "waits for the client's first request (use \"l4\")");
    EXPECT_EQ(error_of(kMinimal + "[[service]]\nport = 25\nmode = \"l4\"\n"), "no error");
}

TEST(ConfigHttp, BadRules)
{
    const std::string rule = "[[uri_rule]]\n";
    struct Case {
        std::string text, expect;
    } cases[] = {
        {kMinimal + rule + "prefix = \"/a/\"\nnodes = [\"s2\"]\n",
         "t.toml:11: uri_rule: URI rules apply to services with mode = \"http\"; there is none"},
        {http_minimal(rule + "nodes = [\"s2\"]\n"),
         "t.toml:12: uri_rule[0].prefix: is required (or path, a glob with '*')"},
        {http_minimal(rule + "prefix = \"/a\"\npath = \"/b*\"\nnodes = [\"s2\"]\n"),
         "t.toml:14: uri_rule[0].path: give either prefix or path, not both"},
        {http_minimal(rule + "prefix = \"a/\"\nnodes = [\"s2\"]\n"),
         "t.toml:13: uri_rule[0].prefix: \"a/\" must start with '/' (or '*')"},
        {http_minimal(rule + "prefix = \"/a*\"\nnodes = [\"s2\"]\n"),
         "t.toml:13: uri_rule[0].prefix: a prefix has no '*' (use path = \"...*...\")"},
        {http_minimal(rule + "prefix = \"/a b\"\nnodes = [\"s2\"]\n"),
         "t.toml:13: uri_rule[0].prefix: \"/a b\": a path holds no spaces, control bytes, '?' or '#'"},
        {http_minimal(rule + "prefix = \"/" + std::string(64, 'x') + "\"\nnodes = [\"s2\"]\n"),
         "t.toml:13: uri_rule[0].prefix: must be 1..64 bytes"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = []\n"),
         "t.toml:12: uri_rule[0].nodes: must list at least one node id"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\", \"s2\"]\n"),
         "t.toml:14: uri_rule[0].nodes[1]: \"s2\" is listed twice"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s 2\"]\n"),
         "t.toml:14: uri_rule[0].nodes[0]: \"s 2\" is not a node id"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\"]\nstateful = true\n"),
         "t.toml:12: uri_rule[0].exit: is required when stateful = true (the request that ends the pin)"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\"]\nexit = \"/b\"\n"),
         "t.toml:15: uri_rule[0].exit: only a stateful rule has an exit"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\"]\nport = 81\n"),
         "t.toml:15: uri_rule[0].port: 81 is not the port of a service with mode = \"http\""},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\"]\nhost = \"a b\"\n"),
         "t.toml:15: uri_rule[0].host: \"a b\" is not a host name"},
        {http_minimal(rule + "prefix = \"/a\"\nnodes = [\"s2\"]\ncolour = 1\n"),
         "t.toml:15: uri_rule[0].colour: unknown key (expected one of: prefix, path, host, port, "
         "nodes, stateful, exit, timeout_s)"},
        {http_minimal("[http]\nwindow_scale = 15\n"),
         "t.toml:13: http.window_scale: 15 is out of range 0..14"},
        {http_minimal("[http]\ncookie_epoch_s = 1\n"),
         "t.toml:13: http.cookie_epoch_s: 1 is out of range 8..3600"},
        {"uri_rule = 1\n" + http_minimal(),
         "t.toml:1: uri_rule: expected an array of tables ([[uri_rule]]), got an integer"},
    };
    for (const auto& c : cases)
        EXPECT_EQ(error_of(c.text), c.expect) << c.text;

    std::string seventeen;
    for (int i = 0; i < 17; i++)
        seventeen += rule + "prefix = \"/a\"\nnodes = [\"s2\"]\n";
    EXPECT_THAT(error_of(http_minimal(seventeen)), HasSubstr("uri_rule: at most 16 rules"));
}

// ---------------------------------------------------------------------------
// Files on disk

TEST(ConfigKey, ShortKeyRefused)
{
    const std::string path = write_key_file("short.key", "0123456789abcde\n"); // 15 bytes + newline
    try {
        peerlb::load_key(path);
        ADD_FAILURE() << "a 15-byte key was accepted";
    } catch (const peerlb::Error& e) {
        EXPECT_EQ(std::string(e.what()), "key file " + path + ": needs at least 16 bytes");
    }
    unlink(path.c_str());
}

TEST(ConfigKey, TrailingNewlineStripped)
{
    const std::string path = write_key_file("nl.key", "0123456789abcdef\n");
    EXPECT_EQ(peerlb::load_key(path),
              std::vector<uint8_t>({'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c',
                                    'd', 'e', 'f'}));
    write_key_file("nl.key", "0123456789abcdef\r\n");
    EXPECT_EQ(peerlb::load_key(path).size(), 16u);
    // Only one newline goes; binary bytes stay.
    std::string binary(16, '\0');
    for (size_t i = 0; i < binary.size(); i++)
        binary[i] = static_cast<char>(i * 17); // 0x00, 0x11, ... 0xff
    write_key_file("nl.key", binary + "\n\n");
    const auto key = peerlb::load_key(path);
    ASSERT_EQ(key.size(), 17u);
    EXPECT_EQ(key[0], 0x00);
    EXPECT_EQ(key[15], 0xff);
    EXPECT_EQ(key[16], '\n');
    unlink(path.c_str());
}

// A key others can read makes them members of the cluster: refused.
TEST(ConfigKey, KeyReadableByOthersRefused)
{
    const std::string path = write_key_file("open.key", "0123456789abcdef\n");
    for (mode_t mode : {0644, 0640, 0604, 0660}) {
        chmod(path.c_str(), mode);
        try {
            peerlb::load_key(path);
            ADD_FAILURE() << "a key file of mode " << std::oct << mode << " was accepted";
        } catch (const peerlb::Error& e) {
            EXPECT_EQ(std::string(e.what()),
                      fmt::format("key file {}: mode {:04o} lets other users read or change it "
                                  "(chmod 600 {})",
                                  path, mode, path));
        }
    }
    chmod(path.c_str(), 0400);
    EXPECT_EQ(peerlb::load_key(path).size(), 16u);
    unlink(path.c_str());
}

// A configuration others can change could point the agent at their key or
// their addresses: refused. Others may read it.
TEST(ConfigLoad, ConfigWritableByOthersRefused)
{
    const std::string key = write_key_file("cfgmode.key", "0123456789abcdef0123\n");
    const std::string path =
        write_file("cfgmode.toml", with_line(10, "key_file = \"" + key + "\""));
    for (mode_t mode : {0666, 0664, 0646}) {
        chmod(path.c_str(), mode);
        try {
            peerlb::load_config(path);
            ADD_FAILURE() << "a config file of mode " << std::oct << mode << " was accepted";
        } catch (const peerlb::Error& e) {
            EXPECT_EQ(std::string(e.what()),
                      fmt::format("{}: mode {:04o} lets other users change it (chmod go-w {})",
                                  path, mode, path));
        }
    }
    chmod(path.c_str(), 0644);
    EXPECT_NO_THROW(peerlb::load_config(path));
    unlink(path.c_str());
    unlink(key.c_str());
}

TEST(ConfigKey, MissingFile)
{
    const std::string path = testing::TempDir() + "peerlb_config_test_no_such.key";
    EXPECT_THROW(
        {
            try {
                peerlb::load_key(path);
            } catch (const peerlb::Error& e) {
                EXPECT_THAT(e.what(), StartsWith("key file " + path + ": "));
                EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
                throw;
            }
        },
        peerlb::Error);
}

TEST(ConfigLoad, MissingFile)
{
    const std::string path = testing::TempDir() + "peerlb_config_test_no_such.toml";
    try {
        peerlb::load_config(path);
        ADD_FAILURE() << "a missing file was loaded";
    } catch (const peerlb::Error& e) {
        EXPECT_EQ(std::string(e.what()), "cannot read " + path + ": No such file or directory");
    }
}

TEST(ConfigLoad, ReadsFileAndKey)
{
    const std::string key = write_key_file("good.key", "0123456789abcdef0123\n");
    const std::string path = write_file("good.toml", with_line(10, "key_file = \"" + key + "\""));
    const Config c = peerlb::load_config(path);
    EXPECT_EQ(c.path, path);
    EXPECT_EQ(c.key_file, key);
    EXPECT_EQ(c.node_id, "s1");
    unlink(path.c_str());
    unlink(key.c_str());
}

TEST(ConfigLoad, ErrorsNameTheFile)
{
    const std::string path = write_file("bad.toml", kMinimal + "[balance]\naccept_below = 101\n");
    EXPECT_THROW(
        {
            try {
                peerlb::load_config(path);
            } catch (const peerlb::Error& e) {
                EXPECT_THAT(e.what(), StartsWith(path + ":12: balance.accept_below: "));
                throw;
            }
        },
        peerlb::Error);
    unlink(path.c_str());
}

TEST(ConfigLoad, KeyFileProblemNamesTheKey)
{
    const std::string missing = testing::TempDir() + "peerlb_config_test_missing.key";
    const std::string path =
        write_file("nokey.toml", with_line(10, "key_file = \"" + missing + "\""));
    try {
        peerlb::load_config(path);
        ADD_FAILURE() << "a missing key file was accepted";
    } catch (const peerlb::Error& e) {
        EXPECT_EQ(std::string(e.what()), path + ":10: cluster.key_file: key file " + missing +
                                             ": No such file or directory");
    }

    const std::string short_key = write_key_file("short2.key", "too short");
    write_file("nokey.toml", with_line(10, "key_file = \"" + short_key + "\""));
    try {
        peerlb::load_config(path);
        ADD_FAILURE() << "a short key was accepted";
    } catch (const peerlb::Error& e) {
        EXPECT_THAT(e.what(), StartsWith(path + ":10: cluster.key_file: key file " + short_key +
                                         ": needs at least"));
    }
    unlink(path.c_str());
    unlink(short_key.c_str());
}

} // namespace

// `peerlb set KEY VALUE`: the file's names, types and ranges at run time.
namespace {

Config minimal() { return parse_config(kMinimal, "t.toml"); }

std::string set_error(const std::string& key, const std::string& value)
{
    try {
        peerlb::apply_setting(minimal(), key, value);
    } catch (const peerlb::Error& e) {
        return e.what();
    }
    return "no error";
}

} // namespace

// The fail-safe must outlast two readings of the load source, whichever way
// the two meet: in the file (named by line and key) or by `set`.
TEST(ConfigCross, FailsafeMustOutlastTwoLoadReadings)
{
    // connections: read every 100 ms at the fastest.
    EXPECT_EQ(error_of(std::string(kMinimal) + "[balance]\nfailsafe_after_ms = 150\n"),
              "t.toml:12: balance.failsafe_after_ms: 150 ms is under two readings of the load "
              "source (100 ms apart): the node would fall into the fail-safe between readings");
    EXPECT_EQ(error_of(std::string(kMinimal) + "[balance]\nfailsafe_after_ms = 200\n"), "no error");
    EXPECT_EQ(set_error("balance.failsafe_after_ms", "150"),
              "balance.failsafe_after_ms: 150 ms is under two readings of the load source (100 ms "
              "apart): the node would fall into the fail-safe between readings");
    // A longer period meets the default fail-safe (2000 ms) the other way.
    EXPECT_EQ(set_error("load.update_ms", "1000"), "no error");
    const Config slow = peerlb::apply_setting(minimal(), "balance.failsafe_after_ms", "300");
    try {
        peerlb::apply_setting(slow, "load.update_ms", "200");
        ADD_FAILURE() << "a load period of 200 ms with a 300 ms fail-safe was accepted";
    } catch (const peerlb::Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "balance.failsafe_after_ms: 300 ms is under two readings of the load source "
                  "(200 ms apart): the node would fall into the fail-safe between readings");
    }
}

TEST(ConfigSet, ChangesOnlyTheKeyGiven)
{
    const Config before = minimal();
    Config after = peerlb::apply_setting(before, "balance.accept_below", "40");
    EXPECT_EQ(after.accept_below, 40u);
    after.accept_below = before.accept_below;
    EXPECT_EQ(after.min_difference, before.min_difference);
    EXPECT_EQ(after.interval_ms, before.interval_ms);
    EXPECT_EQ(after.node_id, before.node_id);
}

TEST(ConfigSet, EveryKindOfValue)
{
    const Config c = minimal();
    EXPECT_TRUE(peerlb::apply_setting(c, "balance.pick", "least").pick_least);
    EXPECT_TRUE(peerlb::apply_setting(c, "balance.pick", "\"least\"").pick_least);
    EXPECT_DOUBLE_EQ(peerlb::apply_setting(c, "balance.conn_cost", "0.5").conn_cost, 0.5);
    EXPECT_EQ(peerlb::apply_setting(c, "cluster.interval_ms", "200").interval_ms, 200u);
    EXPECT_EQ(peerlb::apply_setting(c, "cluster.dead_after", "5").dead_after, 5u);
    EXPECT_FALSE(peerlb::apply_setting(c, "health.enabled", "false").health_enabled);
    EXPECT_EQ(peerlb::apply_setting(c, "load.smoothing_ms", "250").smoothing_ms, 250u);
    EXPECT_EQ(peerlb::apply_setting(c, "log.level", "debug").log_level, "debug");
    EXPECT_EQ(peerlb::apply_setting(c, "balance.syn_cookies", "off").syn_cookies,
              uint32_t(LB_SYN_COOKIES_OFF));
    EXPECT_EQ(peerlb::apply_setting(c, "balance.syn_cookie_rate", "5000").syn_cookie_rate, 5000u);
    EXPECT_EQ(peerlb::apply_setting(c, "balance.choices", "0").choices, 0u);
    EXPECT_EQ(peerlb::apply_setting(c, "balance.choices", "8").choices, 8u);
}

TEST(ConfigSet, HealthTimingKeepsTheHealthPort)
{
    Config c = minimal();
    c.health_port = 8080;
    EXPECT_EQ(peerlb::apply_setting(c, "health.interval_ms", "300").health_port, 8080);
}

TEST(ConfigSet, RefusesWithTheFilesMessages)
{
    EXPECT_EQ(set_error("balance.accept_below", "150"),
              "balance.accept_below: 150 is out of range 0..100");
    EXPECT_EQ(set_error("cluster.interval_ms", "5"), "cluster.interval_ms: 5 is out of range 10..60000");
    EXPECT_EQ(set_error("balance.pick", "random"),
              "balance.pick: \"random\" is not one of \"weighted\", \"least\"");
    EXPECT_EQ(set_error("balance.accept_below", "\"forty\""),
              "balance.accept_below: expected an integer, got a string");
    EXPECT_THAT(set_error("balance.accept_below", "4 0; x"), HasSubstr("is not a value"));
    EXPECT_EQ(set_error("balance.choices", "9"), "balance.choices: 9 is out of range 0..8");
}

TEST(ConfigSet, OnlyRuntimeKeys)
{
    EXPECT_THAT(set_error("node.id", "s9"), StartsWith("node.id: not a setting that changes at run time"));
    EXPECT_THAT(set_error("balance.forward", "ipip"), HasSubstr("not a setting"));
    EXPECT_THAT(set_error("nonsense", "1"), HasSubstr("not a setting"));
    EXPECT_THAT(set_error("balance.accept_below.x", "1"), HasSubstr("not a setting"));
    for (const auto& key : peerlb::runtime_settings())
        EXPECT_NE(key.find('.'), std::string::npos) << key;
}

// The example the README points to is a valid file with the defaults it claims.
TEST(ConfigValid, ShippedExampleParses)
{
    std::ifstream f(std::string(PEERLB_SOURCE_DIR) + "/tools/peerlb.example.toml");
    ASSERT_TRUE(f) << "tools/peerlb.example.toml";
    std::stringstream text;
    text << f.rdbuf();
    Config c = parse_config(text.str(), "peerlb.example.toml");
    Config defaults;
    EXPECT_EQ(c.node_id, "s1");
    EXPECT_EQ(c.interval_ms, defaults.interval_ms);
    EXPECT_EQ(c.dead_after, defaults.dead_after);
    EXPECT_EQ(c.accept_below, defaults.accept_below);
    EXPECT_EQ(c.min_difference, defaults.min_difference);
    EXPECT_EQ(c.pick_least, defaults.pick_least);
    EXPECT_EQ(c.choices, defaults.choices);
    EXPECT_DOUBLE_EQ(c.conn_cost, defaults.conn_cost);
    EXPECT_EQ(c.failsafe_after_ms, defaults.failsafe_after_ms);
    EXPECT_EQ(c.capacity, defaults.capacity);
    EXPECT_EQ(c.update_ms, defaults.update_ms);
    EXPECT_EQ(c.health_timeout_ms, defaults.health_timeout_ms);
    EXPECT_EQ(c.replay_window_ms, defaults.replay_window_ms);
    EXPECT_EQ(c.hold_down_ms, defaults.hold_down_ms);
    EXPECT_EQ(c.takeover, defaults.takeover);
    EXPECT_EQ(c.grace_ms, defaults.grace_ms);
    EXPECT_EQ(c.health_port, 80);
    EXPECT_EQ(c.state_dir, "/var/lib/peerlb/s1");
}

// Found by the config fuzzer: a value that smuggles in a second key.
TEST(ConfigSet, ValueCannotSetASecondKey)
{
    EXPECT_THAT(set_error("balance.pick", "\"least\"\nforward = \"ipip\""),
                HasSubstr("is not a single value"));
    EXPECT_THAT(set_error("balance.accept_below", "40\nmin_difference = 0"),
                HasSubstr("is not a single value"));
    EXPECT_EQ(peerlb::apply_setting(minimal(), "balance.accept_below", "40").min_difference, 20u);
}

// A node owns at most kMaxOwnedServices addresses: the most a heartbeat
// carries. 32 IPv6 ones with the longest id still make a valid file.
TEST(ConfigInvalid, MoreServiceAddressesThanAHeartbeatCarries)
{
    auto services_line = [](size_t n, const char* prefix) {
        std::string line = "services = [";
        for (size_t i = 0; i < n; i++)
            line += fmt::format("{}\"{}{:x}\"", i ? ", " : "", prefix, i + 1);
        return line + "]";
    };
    EXPECT_THAT(error_of(with_line(5, services_line(32, "10.0.9."))),
                HasSubstr("t.toml:5: node.services: 32 service addresses; a node owns at most 31"));

    std::string longest = with_line(5, services_line(31, "fd00:9::"));
    longest.replace(longest.find("id = \"s1\""), 9, "id = \"" + std::string(32, 'n') + "\"");
    const Config c = parse_config(longest, "t.toml");
    EXPECT_EQ(c.node_id.size(), 32u);
    EXPECT_EQ(c.owned_services.size(), 31u);
}

// ---------------------------------------------------------------------------
// [shared] (DESIGN.md section 5b)

TEST(ConfigShared, AbsentMeansNoSharedAddress)
{
    const Config c = parse_config(kMinimal, "t.toml");
    EXPECT_FALSE(c.has_shared());
    EXPECT_EQ(c.shared_buckets, 4096u);
}

TEST(ConfigShared, DesignSampleTable)
{
    // DESIGN.md section 6's [shared] beside its [balance] forward = "l2":
    // shared hops carry their own outer header, so l2 is accepted.
    const Config c = parse_config(kMinimal + R"([balance]
forward = "l2"
[shared]                       # addresses every node serves (section 5b)
addresses = ["10.0.0.100"]
delivery = "ecmp"              # or "flood"
buckets = 4096
hash = "address"               # or "address+port"
daisy_chain_s = 240
announce = "bird"              # or "none" (routes set up by hand)
)",
                                  "t.toml");
    ASSERT_EQ(c.shared_addresses.size(), 1u);
    EXPECT_EQ(ip(c.shared_addresses[0]), "10.0.0.100");
    EXPECT_EQ(c.shared_delivery, peerlb::SharedDelivery::ecmp);
    EXPECT_EQ(c.shared_buckets, 4096u);
    EXPECT_FALSE(c.shared_hash_port);
    EXPECT_EQ(c.daisy_chain_s, 240u);
    EXPECT_TRUE(c.announce_bird);
    EXPECT_EQ(c.bird_socket, "/run/bird/bird.ctl");
    EXPECT_EQ(c.bird_protocol, "peerlb");
}

TEST(ConfigShared, EveryKeySet)
{
    const Config c = parse_config(kMinimal + R"([shared]
addresses = ["10.0.0.100", "fd00::100"]
delivery = "flood"
buckets = 65536
hash = "address+port"
daisy_chain_s = 0
announce = "none"
bird_socket = "/run/peerlb/s1/bird.ctl"
bird_protocol = "shared_v4"
)",
                                  "t.toml");
    ASSERT_EQ(c.shared_addresses.size(), 2u);
    EXPECT_EQ(ip(c.shared_addresses[1]), "fd00::100");
    EXPECT_EQ(c.shared_delivery, peerlb::SharedDelivery::flood);
    EXPECT_EQ(c.shared_buckets, 65536u);
    EXPECT_TRUE(c.shared_hash_port);
    EXPECT_EQ(c.daisy_chain_s, 0u);
    EXPECT_FALSE(c.announce_bird);
    EXPECT_EQ(c.bird_socket, "/run/peerlb/s1/bird.ctl");
    EXPECT_EQ(c.bird_protocol, "shared_v4");
}

TEST(ConfigShared, BadValuesNameTheirKey)
{
    const std::string head = kMinimal + "[shared]\n";
    EXPECT_THAT(error_of(head), HasSubstr("t.toml:11: shared.addresses: is required"));
    EXPECT_THAT(error_of(head + "addresses = []\n"), HasSubstr("shared.addresses: must list"));
    EXPECT_THAT(error_of(head + "addresses = [\"10.0.0.11\"]\n"),
                HasSubstr("shared.addresses[0]: 10.0.0.11 is node.address"));
    EXPECT_THAT(error_of(head + "addresses = [\"10.0.0.111\"]\n"),
                HasSubstr("shared.addresses[0]: 10.0.0.111 is also in node.services"));
    EXPECT_THAT(error_of(head + "addresses = [\"10.0.0.1\", \"10.0.0.1\"]\n"),
                HasSubstr("shared.addresses[1]: 10.0.0.1 is listed twice"));
    EXPECT_THAT(error_of(head + "addresses = [\"239.1.1.1\"]\n"),
                HasSubstr("shared.addresses[0]: 239.1.1.1 is not a unicast address"));
    const std::string ok = head + "addresses = [\"10.0.0.100\"]\n";
    EXPECT_EQ(error_of(ok), "no error");
    EXPECT_THAT(error_of(ok + "buckets = 0\n"), HasSubstr("shared.buckets: 0 is out of range"));
    EXPECT_THAT(error_of(ok + "buckets = 65537\n"), HasSubstr("shared.buckets"));
    EXPECT_THAT(error_of(ok + "delivery = \"anycast\"\n"), HasSubstr("shared.delivery"));
    EXPECT_THAT(error_of(ok + "hash = \"port\"\n"), HasSubstr("shared.hash"));
    EXPECT_THAT(error_of(ok + "daisy_chain_s = -1\n"), HasSubstr("shared.daisy_chain_s"));
    EXPECT_THAT(error_of(ok + "announce = \"ospf\"\n"), HasSubstr("shared.announce"));
    EXPECT_THAT(error_of(ok + "bird_socket = \"bird.ctl\"\n"),
                HasSubstr("shared.bird_socket: \"bird.ctl\" is not an absolute path"));
    EXPECT_THAT(error_of(ok + "bird_protocol = \"1x\"\n"), HasSubstr("shared.bird_protocol"));
    EXPECT_THAT(error_of(ok + "bird_protocol = \"a-b\"\n"), HasSubstr("shared.bird_protocol"));
    EXPECT_THAT(error_of(ok + "buckets_per_node = 3\n"), HasSubstr("shared.buckets_per_node: unknown key"));
}
