// The data plane's candidate lists (maps/candidates.h) as the agent keeps
// them: the peers a new connection may go to, list 0 for any connection,
// list 1 + r for URI rule r's members. Told what is known of each slot
// (at every heartbeat), it works out in constant time whether a list's
// content changes, and rewrites only the lists that do: a heartbeat that
// changes no list costs no write.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <functional>
#include <vector>

#include "maps.h"

namespace peerlb {

// Node slots, e.g. a URI rule's members.
using NodeSet = std::bitset<LB_MAX_NODES>;

// What the lists need to know of a peer.
struct CandidatePeer {
    bool usable = false;  // alive and routable (lb_node state LB_NODE_ALIVE)
    bool standby = false; // LB_NODE_STANDBY
    uint32_t load_bp = 0; // its last reported load
};

// A list holds its members (every peer for list 0, a rule's for the
// others) that are usable, standby ones only while the list's gate is
// open: every usable active member reported a load at or above T1 (DESIGN
// section 2's standby rule, on reported loads; the data plane takes every
// listed peer as a candidate). Slots in ascending order; never this node.
class CandidateLists {
public:
    // Writes list `list` whole into the data plane.
    using Write = std::function<void(uint32_t list, const lb_candidates&)>;
    explicit CandidateLists(Write write);

    void set_self(uint32_t slot);
    void set_accept_below(uint32_t t1_bp);
    void set_peer(uint32_t slot, const CandidatePeer& peer);
    // Rule r's member slots at members[r] (this node's may be among them);
    // the lists of rules past the end are empty.
    void set_rules(const std::vector<NodeSet>& members);
    // Writes every list whose content changed since it was last written;
    // the first flush writes them all (a restarted agent's lists replace
    // the pinned ones).
    void flush();

    // Slot `slot` is one of a URI rule's nodes (set_rules).
    bool in_a_rule(uint32_t slot) const;
    // The slots of list `list` as last written.
    const std::vector<uint16_t>& written(uint32_t list) const { return lists_.at(list).content; }
    uint64_t writes() const { return writes_; }
    // Lists whose content was worked out again (O(slots) each): only after
    // a change that may alter them, never for a load that moves within
    // the same side of T1.
    uint64_t rebuilds() const { return rebuilds_; }

private:
    struct List {
        uint32_t active_below = 0; // usable active members under T1
        uint32_t standby = 0;      // usable standby members
        bool dirty = true;         // its content may have changed
        bool written = false;
        std::vector<uint16_t> content; // as last written
    };
    bool member(uint32_t list, uint32_t slot) const;
    bool listed(uint32_t list, uint32_t slot) const;
    // Adds (sign 1) or takes away (-1) the slot's share of a list's counts.
    void count(uint32_t list, uint32_t slot, int sign);
    void recount(uint32_t list);

    Write write_;
    uint32_t self_ = LB_NODE_LOCAL;
    uint32_t t1_bp_ = 0;
    std::vector<CandidatePeer> peers_;
    std::vector<NodeSet> rules_;
    std::array<List, LB_CANDIDATE_LISTS> lists_{};
    uint64_t writes_ = 0;
    uint64_t rebuilds_ = 0;
};

// Rewrites the candidate lists from what the maps hold (lb_nodes[0 ..
// node_slots), the URI rules in use, T1, the self slot) as the agent
// would, writing only the lists that differ: for what fills the maps
// without an agent (peerlb-mapctl, the BPF tests, the per-packet bench).
void sync_candidates(Maps& maps);

} // namespace peerlb
