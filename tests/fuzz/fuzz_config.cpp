// libFuzzer target: the configuration parser (parse_config, apply_setting in
// userspace/agent/config.h).
//
// Input: text. It is used twice:
//   - as a whole, as a TOML file: parse_config(text, "fuzz.toml");
//   - split at its first '=' into KEY and VALUE (blanks around each trimmed;
//     no '=': all of it is KEY, VALUE is empty), as `peerlb set KEY VALUE`
//     would pass them: apply_setting(base, KEY, VALUE), and also
//     apply_setting(base, S, VALUE) with S the runtime setting numbered by the
//     first byte, so every setting's value parsing gets the fuzzer's values.
//     `base` is the parsed file when it is valid, else a fixed valid file.
// A line such as `balance.pick = "least"` is both a TOML file and a setting.
//
// Properties (a violation aborts, libFuzzer keeps the input):
//   - no crash, no sanitizer report; the only exception is peerlb::Error
//     (any other escaping exception is a finding: libFuzzer reports it)
//   - apply_setting succeeds only for a key of runtime_settings(), and the
//     Config it returns differs from `base` in that key's field only
//     (README: "A bad value is refused and nothing changes"; identity,
//     addresses, the key, forward and the load source need a restart)
//   - a valid file's node can announce itself: the heartbeat it sends while
//     holding its own service addresses (services and claims = node.services,
//     every other field at its largest) encodes without an error.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "userspace/agent/config.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/dataplane/error.h"

namespace peerlb::fuzz {
namespace {

const char kBaseText[] = R"([node]
id = "s1"
interface = "eth0"
address = "10.0.0.11"
services = ["10.0.0.111"]
[cluster]
group = "239.7.7.7:7946"
key_file = "/etc/peerlb/cluster.key"
[load]
source = "file"
file = "/run/peerlb/load"
[metrics]
listen = "127.0.0.1:9477"
[[service]]
port = 80
)";

// --- comparing Configs field by field -------------------------------------

std::string show(const std::string& s) { return "\"" + s + "\""; }
std::string show(const IpAddress& ip) { return format_ip(ip); }
std::string show(const Endpoint& e) { return format_ip(e.address) + " port " + std::to_string(e.port); }
std::string show(const ServiceConfig& s)
{
    return std::to_string(s.port) + (s.mode == ServiceMode::http ? "/http" : "/l4");
}
std::string show(bool b) { return b ? "true" : "false"; }
std::string show(double d) { return std::to_string(d); }
std::string show(uint32_t v) { return std::to_string(v); }
std::string show(uint16_t v) { return std::to_string(v); }
std::string show(LoadSource s) { return std::to_string(static_cast<int>(s)); }
template <class T>
std::string show(const std::optional<T>& o)
{
    return o ? show(*o) : "none";
}
template <class T>
std::string show(const std::vector<T>& v)
{
    std::string out = "[";
    for (const T& x : v)
        out += (out.size() > 1 ? ", " : "") + show(x);
    return out + "]";
}

bool same(const Endpoint& a, const Endpoint& b) { return a.address == b.address && a.port == b.port; }
bool same(const ServiceConfig& a, const ServiceConfig& b) { return a.port == b.port && a.mode == b.mode; }
template <class T>
bool same(const T& a, const T& b)
{
    return a == b;
}
template <class T>
bool same(const std::optional<T>& a, const std::optional<T>& b)
{
    return a.has_value() == b.has_value() && (!a || same(*a, *b));
}
template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b)
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); i++)
        if (!same(a[i], b[i]))
            return false;
    return true;
}

struct Field {
    std::string_view setting; // the runtime setting that changes it, or empty
    std::string_view name;
    std::function<bool(const Config&, const Config&)> same;
    std::function<std::string(const Config&)> show;
};

#define FIELD(setting, member)                                                                     \
    Field                                                                                          \
    {                                                                                              \
        setting, #member, [](const Config& a, const Config& b) { return same(a.member, b.member); }, \
            [](const Config& c) { return show(c.member); }                                         \
    }

// Every field of Config (config.h); keep in step with it.
const std::vector<Field>& fields()
{
    static const std::vector<Field> all = {
        FIELD("", path),
        FIELD("", node_id),
        FIELD("", interface),
        FIELD("", node_address),
        FIELD("", owned_services),
        FIELD("", group),
        FIELD("", peers),
        FIELD("", key_file),
        FIELD("cluster.interval_ms", interval_ms),
        FIELD("cluster.dead_after", dead_after),
        FIELD("cluster.load_step", load_step),
        FIELD("cluster.replay_window_ms", replay_window_ms),
        FIELD("", takeover),
        FIELD("cluster.hold_down_ms", hold_down_ms),
        FIELD("cluster.grace_ms", grace_ms),
        FIELD("balance.accept_below", accept_below),
        FIELD("balance.min_difference", min_difference),
        FIELD("balance.pick", pick_least),
        FIELD("", forward_ipip),
        FIELD("balance.conn_cost", conn_cost),
        FIELD("balance.failsafe_after_ms", failsafe_after_ms),
        FIELD("balance.choices", choices),
        FIELD("", source),
        FIELD("load.capacity", capacity),
        FIELD("", load_file),
        FIELD("", load_command),
        FIELD("", cgroup),
        FIELD("load.update_ms", update_ms),
        FIELD("load.smoothing_ms", smoothing_ms),
        FIELD("health.enabled", health_enabled),
        FIELD("", health_port),
        FIELD("", health_http_path),
        FIELD("health.interval_ms", health_interval_ms),
        FIELD("health.timeout_ms", health_timeout_ms),
        FIELD("health.fail_after", health_fail_after),
        FIELD("", metrics_listen),
        FIELD("log.level", log_level),
        FIELD("", services),
    };
    return all;
}

// --- the properties ----------------------------------------------------------

void check_setting(const Config& base, const std::string& key, const std::string& value)
{
    Config next;
    try {
        next = apply_setting(base, key, value);
    } catch (const Error&) {
        return; // refused: base is const, nothing changed
    }
    const std::string call = "apply_setting(\"" + key + "\", \"" + value + "\") [hex key " +
                             hex({reinterpret_cast<const uint8_t*>(key.data()), key.size()}) + ", value " +
                             hex({reinterpret_cast<const uint8_t*>(value.data()), value.size()}) + "]";
    bool known = false;
    for (const std::string& s : runtime_settings())
        known = known || s == key;
    FUZZ_CHECK(known, call + " accepted a key that is not a runtime setting");
    for (const Field& f : fields()) {
        if (f.setting == key)
            continue;
        FUZZ_CHECK(f.same(base, next), call + " also changed " + std::string(f.name) + ": " + f.show(base) +
                                           " -> " + f.show(next));
    }
}

void check_announceable(const Config& cfg, const std::string& text)
{
    Heartbeat hb;
    hb.node_id = cfg.node_id;
    hb.incarnation = hb.sequence = hb.sent_unix_ms = UINT64_MAX;
    hb.interval_ms = cfg.interval_ms;
    hb.node_address = cfg.node_address;
    hb.services = cfg.owned_services;
    hb.claims = cfg.owned_services;
    hb.load_bp = 10000;
    hb.kept_per_s = hb.forwarded_per_s = UINT32_MAX;
    try {
        encode_heartbeat(hb, kKey);
    } catch (const Error& e) {
        fail("a valid config's node cannot encode its heartbeat",
             std::string(e.what()) + "\nnode.services: " + std::to_string(cfg.owned_services.size()) +
                 " addresses\nconfig:\n" + text);
    }
}

std::string trim(std::string_view s)
{
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!s.empty() && blank(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && blank(s.back()))
        s.remove_suffix(1);
    return std::string(s);
}

const Config& fixed_base()
{
    static const Config cfg = parse_config(kBaseText, "base.toml");
    return cfg;
}

void check(const uint8_t* data, size_t size)
{
    const std::string text(reinterpret_cast<const char*>(data), size);

    std::optional<Config> parsed;
    try {
        parsed = parse_config(text, "fuzz.toml");
    } catch (const Error&) {
    }
    if (parsed)
        check_announceable(*parsed, text);

    const Config& base = parsed ? *parsed : fixed_base();
    const size_t eq = text.find('=');
    const std::string key = trim(std::string_view(text).substr(0, eq));
    const std::string value = eq == std::string::npos ? "" : trim(std::string_view(text).substr(eq + 1));
    check_setting(base, key, value);
    const auto& settings = runtime_settings();
    if (size > 0)
        check_setting(base, settings[data[0] % settings.size()], value);
}

} // namespace
} // namespace peerlb::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    peerlb::fuzz::check(data, size);
    return 0;
}
