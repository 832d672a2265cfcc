// Who holds each service address (DESIGN.md section 3, Takeover): pure logic
// on the membership's view, computed the same way by every live node.
//
// - A service address is held by its home node (the node that owns it by
//   configuration) while that node is not dead and either holds it (claims
//   list every address a node holds, its own included) or no live peer
//   claims it. A home that holds its address wins it against any claimant.
// - The addresses of a dead node go to live nodes: an existing unique claim
//   is kept (no reshuffling when nodes come and go); otherwise the node
//   owning the fewest addresses, then the lowest node id, takes it. Orphaned
//   addresses are handed out in address order, counting each assignment.
// - Conflicting claims (two nodes hold one address) are settled by the same
//   rule; the loser releases at once.
// - Give-back: a claim on an address whose home node is back is released
//   once the home node has been alive for the hold-down period (a node that
//   comes and goes does not pull its addresses back and forth). The home
//   node takes its address only when nobody claims it any more, so the
//   address moves with a release first: never two holders. This is the one
//   answer that depends on who asks (`self_id`): once the hold-down has
//   passed, the claimant's own view gives the address to the home node (it
//   releases); every other view, the home node's included, still names the
//   claimant as long as its claim is visible, and the home node once it is
//   gone. Within the hold-down the claimant keeps it in every view; a home
//   node that dies again makes it an orphan (a unique claim is kept).
// - Order of the computation (all counts are of this computation, and
//   independent of self_id): first the addresses of live home nodes (kept
//   home when unclaimed, else held by the claimant, the conflict winner if
//   several), then the orphans in IpAddressLess order. A conflict counts
//   the addresses assigned before the one in dispute. An address that is
//   two nodes' home belongs to the lower id; an address claimed (by any
//   node) but nobody's home is listed with home "" and treated as an orphan.
//   Claims of dead nodes are ignored (except for listing an address nobody
//   homes); a live node's claim on its own home means it holds it.
//   With no live node, every owner is "". Node ids are unique.
// - Capacity: no node is given more than `max_held` addresses (a heartbeat
//   lists at most kMaxClaims). A claimant or candidate at its limit is
//   passed over: a live home takes back its own address instead, and an
//   orphan that no live node has room for is held by nobody ("").
// - The coordinator is the lowest live id (reported; every node computes
//   the same result, so nobody waits for it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../dataplane/net.h"
#include "heartbeat.h"

namespace peerlb {

struct NodeOwnershipView {
    std::string id;
    bool live = true;                // not dead (suspect counts as live)
    uint64_t alive_since_ns = 0;     // when this view last saw it come (back) alive
    std::vector<IpAddress> home;     // owned by configuration
    std::vector<IpAddress> claims;   // held now beyond home (announced in heartbeats)
};

struct AddressOwner {
    std::string owner;               // node id; empty: nobody may hold it now
    std::string home;                // node id of the home node
    bool taken_over() const { return !owner.empty() && owner != home; }
};

// Ordering key for addresses (family, then bytes): the hand-out order.
struct IpAddressLess {
    bool operator()(const IpAddress& a, const IpAddress& b) const;
};

using OwnerMap = std::map<IpAddress, AddressOwner, IpAddressLess>;

// The owner of every service address known in `nodes` (self included), as
// seen by node `self_id` (matters only for give-back, see above). Same input,
// in any order, gives the same result; alive_since_ns and now_ns share a clock.
OwnerMap compute_owners(const std::vector<NodeOwnershipView>& nodes, const std::string& self_id,
                        uint64_t now_ns, uint64_t hold_down_ns, size_t max_held = kMaxClaims);

// The earliest time after now_ns at which compute_owners() may answer
// differently for the same `nodes`: the end of a live node's hold-down while
// another live node claims one of its home addresses (give-back). Time
// changes nothing else, so until then, and for ever when nullopt, the answer
// changes only when `nodes` (or self_id, hold_down_ns) do. The agent
// computes the owners again at that time or when its inputs change, not on
// every turn of its loop. Conservative: a time returned may change nothing.
std::optional<uint64_t> next_ownership_change(const std::vector<NodeOwnershipView>& nodes,
                                              uint64_t now_ns, uint64_t hold_down_ns);

// The lowest live id, or nullopt when no node is live.
std::optional<std::string> coordinator(const std::vector<NodeOwnershipView>& nodes);

} // namespace peerlb
