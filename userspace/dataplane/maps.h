// Typed access to the data plane's pinned maps (maps/*.h), for the CLI, the
// tools and the tests. One instance holds one interface's map fds.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fd.h"
#include "net.h"

extern "C" {
#include "../../maps/candidates.h"
#include "../../maps/config.h"
#include "../../maps/cookie.h"
#include "../../maps/flow.h"
#include "../../maps/grace.h"
#include "../../maps/load.h"
#include "../../maps/node.h"
#include "../../maps/pin.h"
#include "../../maps/service.h"
#include "../../maps/shared.h"
#include "../../maps/stats.h"
#include "../../maps/uri.h"
}

namespace peerlb {

// Layouts are part of the pinned-map contract: a change needs a new map name.
static_assert(sizeof(lb_config) == 112);
static_assert(sizeof(lb_node) == 48 && offsetof(lb_node, updated_ns) == 32);
static_assert(sizeof(lb_flow_key) == 40 && offsetof(lb_flow_key, family) == 36);
static_assert(sizeof(lb_flow) == 16 && offsetof(lb_flow, rule) == 5);
static_assert(sizeof(lb_service_key) == 20 && sizeof(lb_service) == 12);
static_assert(sizeof(lb_bucket) == 16);
static_assert(LB_MAX_NODES <= LB_HOP_SLOT_MASK + 1, "a hop mark holds a slot in LB_HOP_SLOT_BITS");
static_assert(sizeof(lb_node_addr_key) == 20);
static_assert(sizeof(lb_node_mac_key) == 8);
static_assert(sizeof(lb_grace_key) == 20 && sizeof(lb_grace) == 16);
static_assert(sizeof(lb_cookie_key) == 40);
static_assert(sizeof(lb_pin_key) == 20 && sizeof(lb_pin) == 16 && sizeof(lb_pin_event) == 36);
static_assert(sizeof(lb_uri_rule) == 336 && offsetof(lb_uri_rule, nodes) == 208);
static_assert(sizeof(lb_candidates) == 4 + 2 * LB_MAX_NODES);
static_assert(offsetof(lb_config, choices) == 68);

// Defaults of DESIGN section 2 (T1 50 %, T2 20 %, weighted, l2, 2 choices).
lb_config default_config();

struct FlowEntry {
    lb_flow_key key;
    lb_flow value;
    bool established = true; // false: half-open (lb_flows_new)
};

// "passed", "kept", "forwarded", "sent", "dropped" or "other".
const char* counter_kind_name(lb_counter_kind kind);

struct CounterTotal {
    std::string name;
    lb_counter_kind kind = LB_KIND_OTHER;
    uint64_t packets = 0;
    uint64_t bytes = 0;
};

// Map fds of one data plane, by map name.
struct MapFds {
    Fd config, nodes, node_addrs, node_macs, services, flows, flows_new, grace, stats, node_stats,
        cookie_keys, uri_rules, rule_stats, pins, pin_events, inflight, handed, buckets,
        candidates;
};

class Maps {
public:
    explicit Maps(MapFds fds) : fds_(std::move(fds)) {}
    // Opens the maps pinned in `pin_dir` (<pin-root>/<ifname>).
    static Maps open_pinned(const std::string& pin_dir);

    lb_config config() const;
    void set_config(const lb_config& cfg);

    lb_node node(uint32_t slot) const;
    // Writes a node slot and keeps the address/MAC lookup maps in step.
    void set_node(uint32_t slot, const lb_node& node);
    void clear_node(uint32_t slot);
    // Writes lb_nodes only: for frequent load updates of a slot whose
    // address and MAC stay the same.
    void set_node_entry(uint32_t slot, const lb_node& node);

    void add_service(const lb_service_key& key, const lb_service& svc);
    void remove_service(const lb_service_key& key); // absent: nothing to do
    std::vector<std::pair<lb_service_key, lb_service>> services() const;

    // Both tables: established first, then half-open.
    std::vector<FlowEntry> flows() const;
    std::optional<lb_flow> flow(const lb_flow_key& key) const;
    // An established entry (a connection a peer announced it serves).
    void add_flow(const lb_flow_key& key, const lb_flow& flow);

    // Orphans to `address` are dropped until until_ns (lb_grace), or sent to
    // the node in slot `previous` (LB_NODE_LOCAL: none); until_ns 0 removes.
    void set_grace(const IpAddress& address, uint64_t until_ns, uint32_t previous = LB_NODE_LOCAL);

    // Cluster SYN cookie key of one slot (epoch % LB_COOKIE_SLOTS).
    lb_cookie_key cookie_key(uint32_t slot) const;
    void set_cookie_key(uint32_t slot, const lb_cookie_key& key);

    // URI rule `index` (< LB_MAX_URI_RULES); lb_config.uri_rules says how
    // many are in use.
    lb_uri_rule uri_rule(uint32_t index) const;
    void set_uri_rule(uint32_t index, const lb_uri_rule& rule);

    // Candidate list `list` (< LB_CANDIDATE_LISTS, maps/candidates.h).
    lb_candidates candidates(uint32_t list) const;
    void set_candidates(uint32_t list, const lb_candidates& value);

    // Stateful rules' pins (lb_pins): set or end one; all of them.
    void set_pin(const lb_pin_key& key, const lb_pin& pin);
    void delete_pin(const lb_pin_key& key);
    std::vector<std::pair<lb_pin_key, lb_pin>> pins() const;

    // Hit counters of every rule slot (LB_MAX_URI_RULES), summed over CPUs.
    std::vector<lb_rule_counters> rule_counters() const;

    // Per-CPU counters summed over all possible CPUs, in enum order.
    std::vector<CounterTotal> counters() const;
    std::vector<lb_node_counters> node_counters() const;
    // Connections established on the services as the tracepoint counted
    // them (lb_inflight), and the correction the agent adds to them.
    int64_t inflight_counted() const;
    int64_t inflight_correction() const;
    uint64_t inflight_changes() const; // +1 at every change the tracepoint counted
    void set_inflight_correction(int64_t connections);
    // lb_handed[slot].open: the connections this node decided for the slot
    // and has not seen closed (a wrapping counter).
    uint32_t handed_open(uint32_t slot) const;

    // The bucket table of shared addresses (lb_buckets), by bucket index
    // (< LB_MAX_BUCKETS). set_buckets writes entries 0 .. size-1.
    lb_bucket bucket(uint32_t index) const;
    void set_bucket(uint32_t index, const lb_bucket& bucket);
    void set_buckets(const std::vector<lb_bucket>& table);

    const MapFds& fds() const { return fds_; }

private:
    MapFds fds_;
};

} // namespace peerlb
