// The agent's configuration file (TOML, DESIGN.md section 6): parsed and
// validated as a whole. Any error refuses the whole file with a message
// "FILE:LINE: KEY: what is wrong".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../dataplane/net.h"
#include "../../maps/config.h"
#include "../../maps/shared.h"

namespace peerlb {

enum class LoadSource { inflight, connections, cpu, cgroup, file, exec };
enum class ServiceMode { l4, http };
enum class SharedDelivery { ecmp, flood };

// An address and UDP port heartbeats go to or come from.
struct Endpoint {
    IpAddress address;
    uint16_t port = 0;
};

struct ServiceConfig {
    uint16_t port = 0;
    ServiceMode mode = ServiceMode::l4;
};

// [[uri_rule]] (DESIGN.md section 4): requests of "http" services whose
// path matches go to `nodes` (still balanced among them, spilling over to
// every node when all of them are above accept_below).
struct UriRuleConfig {
    std::string pattern;            // prefix, or glob ('*') when `glob`
    bool glob = false;              // from `path`; `prefix` otherwise
    std::string host;               // lower case; empty: any Host
    uint16_t port = 0;              // one "http" service's port; 0: all of them
    std::vector<std::string> nodes; // node ids (any known or future node)
    bool stateful = false;          // an entry point: pins the client to its node
    std::string exit;               // stateful: the request ending the pin
    bool exit_glob = false;
    uint32_t timeout_s = 0;         // stateful: pin lifetime without exit
    uint32_t line = 0;              // where it is in the file (for messages)
};

struct Config {
    std::string path; // the file this came from

    // [node]
    std::string node_id;            // 1..32 of [A-Za-z0-9_.-]
    std::string interface;          // NIC the data plane attaches to
    IpAddress node_address;         // heartbeats, forwarding
    std::vector<IpAddress> owned_services; // service addresses this node owns
    std::string state_dir;          // the incarnation counter's directory (absolute);
                                    // default kDefaultStateRoot + node_id
    double weight = 1.0;            // relative capacity, announced (0.01..100)
    bool standby = false;           // a candidate only while every active node is at or above T1

    // [cluster]: exactly one of group / peers
    std::optional<Endpoint> group;  // multicast group:port
    std::vector<Endpoint> peers;    // unicast peers (port defaults to kHeartbeatPort)
    std::string key_file;
    uint32_t interval_ms = 500;     // heartbeat period, 10..60000
    uint32_t dead_after = 3;        // missed periods before a peer is dead, 2..100
    uint32_t load_step = 10;        // % points of load change that trigger an extra heartbeat, 1..100
    uint32_t replay_window_ms = 10000; // heartbeats older/newer than this (wall clock) are dropped
    bool takeover = true;           // take over dead peers' addresses; false: own ones only
    uint32_t hold_down_ms = 5000;   // a returning node gets its addresses back after this, 0..3600000
    uint32_t grace_ms = 2000;       // orphans to a moved address are dropped this long, 0..600000

    // [balance]
    uint32_t accept_below = 50;     // T1, % (0..100)
    uint32_t min_difference = 20;   // T2, % (0..100)
    bool pick_least = false;        // pick = "least" | "weighted"
    bool forward_ipip = false;      // forward = "ipip" | "l2"
    double conn_cost = 0.1;         // % of load one new connection is assumed to add (0..100)
    uint32_t failsafe_after_ms = 2000; // own load older than this: keep everything (>= 10)
    // l4 SYNs answered with cluster cookies: "auto" above syn_cookie_rate
    // SYNs per second and CPU, "always", "off" (enum lb_syn_cookies)
    uint32_t syn_cookies = LB_SYN_COOKIES_AUTO;
    uint32_t syn_cookie_rate = 1000; // 1..10 000 000
    uint32_t high_water = 100;      // %: a node at or above is never a candidate (1..100)
    bool overflow_refuse = false;   // overflow = "refuse": every node at high_water drops SYNs
    // Power of d choices: peers a new connection compares, drawn from the
    // candidate list (0..LB_MAX_CHOICES; 0 = every candidate)
    uint32_t choices = LB_CHOICES_DEFAULT;

    // [load]
    LoadSource source = LoadSource::inflight;
    uint32_t capacity = 1000;       // connections = 100 % (sources inflight, connections), >= 1
    std::string load_file;          // source file: a number 0..100
    std::string load_command;       // source exec: run by /bin/sh, prints 0..100
    std::string cgroup;             // source cgroup: cgroup v2 directory
    uint32_t update_ms = 10;        // how often the local load is measured and written, 1..1000
    uint32_t smoothing_ms = 0;      // EWMA time constant; 0 = none

    // [health] (a TCP connect to node_address:port, or an HTTP GET of http_path)
    bool health_enabled = true;
    uint16_t health_port = 0;       // 0: the first [[service]] port
    std::string health_http_path;   // empty: TCP connect only
    uint32_t health_interval_ms = 1000;
    uint32_t health_timeout_ms = 500;
    uint32_t health_fail_after = 2; // consecutive failures before unroutable

    // [metrics]
    std::optional<Endpoint> metrics_listen; // Prometheus text on http://ADDR:PORT/metrics

    // [log]
    std::string log_level = "info"; // trace|debug|info|warn|error

    // [[service]]: at least one, ports unique
    std::vector<ServiceConfig> services;

    // [http] (services with mode = "http")
    uint32_t cookie_epoch_s = 64;   // cookie key rotation; a cookie lives 1..2 epochs
    uint32_t window_scale = 7;      // the window scale every node announces, 0..14
    uint32_t pin_timeout_s = 600;   // default lifetime of a stateful rule's pin

    // [[uri_rule]], tried in order
    std::vector<UriRuleConfig> uri_rules;

    // [shared] (DESIGN.md section 5b): addresses every node serves, the
    // client address space cut into buckets. Empty: none.
    std::vector<IpAddress> shared_addresses;
    SharedDelivery shared_delivery = SharedDelivery::ecmp;
    uint32_t shared_buckets = 4096;  // 1..LB_MAX_BUCKETS
    bool shared_hash_port = false;   // hash = "address+port" | "address"
    uint32_t daisy_chain_s = 240;    // previous owners get a moved bucket's packets this long
    bool announce_bird = true;       // announce = "bird" | "none"
    std::string bird_socket = "/run/bird/bird.ctl"; // BIRD's control socket
    std::string bird_protocol = "peerlb";           // the BIRD protocol the agent enables/disables

    bool has_http_service() const;
    bool has_shared() const { return !shared_addresses.empty(); }
    // The load one connection adds to this node, in basis points (at least
    // 1): 100 % / capacity when the load counts connections, else
    // balance.conn_cost. Announced to peers and used for its own decisions.
    uint32_t conn_cost_bp() const;
    // weight in hundredths (1.0 = 100), as heartbeats and lb_node carry it.
    uint16_t weight_hundredths() const;
};

inline constexpr uint16_t kHeartbeatPort = 7946;
// [shared] addresses: each is an lb_services entry per [[service]] port.
inline constexpr size_t kMaxSharedAddresses = 16;
inline constexpr const char* kDefaultStateRoot = "/var/lib/peerlb/";

// Reads and validates `path`; throws Error naming file, line and key.
Config load_config(const std::string& path);

// Same, from text (tests); `path` only names the source in messages.
Config parse_config(const std::string& text, const std::string& path);

// The heartbeat key: the key file's bytes (a trailing newline dropped);
// throws Error unless it holds at least 16 bytes.
std::vector<uint8_t> load_key(const std::string& key_file);

} // namespace peerlb

namespace peerlb {

// A run-time change (`peerlb set KEY VALUE`): the file's key names, types and
// ranges. Returns the changed copy; throws Error naming the key. Only the
// keys of runtime_settings() may change without a restart.
Config apply_setting(const Config& cfg, const std::string& key, const std::string& value);
const std::vector<std::string>& runtime_settings();

} // namespace peerlb
