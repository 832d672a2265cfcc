// What the agent keeps true in the data plane's maps: the settings, this
// node's load and state (every few ms), each peer's load, state and
// freshness (at each heartbeat and state change) with the candidate lists
// that follow from them, and the services.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../dataplane/candidates.h"
#include "../dataplane/maps.h"
#include "config.h"
#include "membership.h"

namespace peerlb {

// Which lb_nodes slot each node occupies. Slots are recovered from the
// pinned table by node address, so a restarted agent gives every node the
// slot it had and the flow entries that name slots stay valid.
//
// The table is bounded (LB_MAX_NODES) and lives on across restarts: a slot
// whose node died, or that no node is known to hold, is reused once no slot
// is free, so that dead peers, forged ids and address churn never exhaust it.
class SlotTable {
public:
    // occupied[i]: the address in slot i of the pinned table, if any. Those
    // count as held by no known node until mark_live().
    explicit SlotTable(std::vector<std::optional<IpAddress>> occupied);
    // The slot of `address`: the one it has, else the first free one, else
    // the one whose holder has been dead longest (its address in *evicted).
    // nullopt when every slot belongs to a live node. A new slot is live.
    std::optional<uint32_t> slot_for(const IpAddress& address, std::optional<IpAddress>* evicted = nullptr);
    std::optional<uint32_t> find(const IpAddress& address) const;
    uint32_t slots_in_use() const; // highest occupied slot + 1
    // The node at `address` is alive (or suspect): its slot is not reused.
    void mark_live(const IpAddress& address);
    // The node at `address` died, or moved to another address, at since_ns
    // (monotonic): its slot may be reused, the longest dead first.
    void mark_dead(const IpAddress& address, uint64_t since_ns);

private:
    struct Slot {
        IpAddress address;
        std::optional<uint64_t> dead_since_ns; // nullopt: live
    };
    std::vector<std::optional<Slot>> slots_;
};

// lb_config from the configuration; `base` keeps what the agent does not
// own (the MTU written at attach). `peer_interval_ms`: the longest period a
// peer announces, so that a slow peer is not stale between its heartbeats.
lb_config dataplane_config(const Config& cfg, const lb_config& base, uint32_t self_slot,
                           uint32_t node_slots, uint32_t peer_interval_ms = 0);

// The data plane state of a peer.
uint8_t dataplane_state(const Peer& p);

class NodeTable {
public:
    NodeTable(Maps& maps, const Config& cfg, const Mac& self_mac);

    uint32_t self_slot() const { return self_slot_; }
    // Writes lb_config from cfg (thresholds, pick, forward, staleness).
    void apply_config(const Config& cfg);
    // This node: measured load, healthy or not, fresh as of now_ns.
    void write_self(uint32_t load_bp, bool healthy, uint64_t now_ns);
    // A peer as the membership sees it; returns its slot, or nullopt when
    // every slot belongs to a live node (the peer is left out of the data
    // plane, logged and counted: slots_refused() counts such writes).
    std::optional<uint32_t> write_peer(const Peer& p);
    uint64_t slots_refused() const { return slots_refused_; }
    // A peer the membership forgot: its slot (dead already) stays reusable,
    // its id is dropped.
    void forget_peer(const std::string& node_id) { peer_addresses_.erase(node_id); }
    // (address, port) for every service port, so the data plane balances it.
    void add_service_address(const IpAddress& address);
    // Its (address, port) entries out of lb_services.
    void remove_service_address(const IpAddress& address);
    // A shared address (DESIGN.md section 5b): (address, port) for every
    // service port, mode l4, flag LB_SERVICE_SHARED (buckets decide).
    void add_shared_address(const IpAddress& address);
    // Removes the shared entries of lb_services whose address is not in
    // `keep` (left by an agent configured otherwise); returns those addresses.
    std::vector<IpAddress> remove_other_shared(const std::vector<IpAddress>& keep);
    // lb_uri_rules_v2 and lb_config.uri_rules from the config's rules, and
    // the rules' candidate lists; node ids resolve through `addresses`
    // (self included) to slots, ids without an address (not heard from
    // yet) are left out.
    void write_uri_rules(const std::vector<UriRuleConfig>& rules,
                         const std::map<std::string, IpAddress>& addresses);
    std::optional<uint32_t> slot_of(const IpAddress& node_address) const
    {
        return slots_.find(node_address);
    }
    // The peers a new connection may go to (maps/candidates.h), kept at
    // every peer write, rule change and T1 change.
    const CandidateLists& candidates() const { return candidates_; }

private:
    Maps& maps_;
    Config cfg_;
    IpAddress self_address_;
    Mac self_mac_;
    SlotTable slots_;
    uint32_t self_slot_;
    uint32_t peer_interval_ms_ = 0; // longest announced by a peer
    CandidateLists candidates_;
    std::map<std::string, IpAddress> peer_addresses_; // by node id: frees the slot of an old address
    std::atomic<uint64_t> slots_refused_{0}; // read by the metrics thread
    // This node's capacity fields, for write_self on the meter's thread.
    std::atomic<uint32_t> self_cost_bp_{1};
    std::atomic<uint16_t> self_weight_{LB_WEIGHT_ONE};
    std::atomic<bool> self_standby_{false};
    uint64_t refusal_logged_ns_ = 0;
};

} // namespace peerlb
