// Two nodes configured with one id (a copied configuration, a typo): at
// every receiver one of them is dropped as a replay of the other, or both
// overwrite one entry, and the cluster misbehaves without a word. So the
// evidence found in heartbeats is counted per id and logged, at most once
// a period per id; the agent carries on. Pure logic, for the unit tests.
#pragma once

#include <cstdint>
#include <optional>
#include <map>
#include <set>
#include <string>

#include "event_errors.h"
#include "heartbeat.h"

namespace peerlb {

struct NodeIdentity {
    std::string id;
    IpAddress address;
    uint64_t incarnation = 0;
};

// Why the authenticated heartbeat `hb` shows a second node using its id,
// or nullopt. `verdict`: what the own-id check or the replay guard said of
// it; `last`: the newest heartbeat taken from hb.node_id (nullptr: none).
// Evidence, against the identity known for the id (self's, or last's):
//   - another node address with the same or a lower incarnation: two nodes
//     interleave (a node that moved address restarted: a higher one);
//   - for self's id, any higher incarnation: self's only grows, and it is
//     running.
// Not evidence: self's own heartbeat looped back, a lower incarnation from
// the same address (a past life of the node), a stale datagram, and a
// lower incarnation sent outside the window (an old capture may predate a
// move of the node).
std::optional<std::string> duplicate_id_evidence(const Heartbeat& hb, DropReason verdict,
                                                 const Heartbeat* last, const NodeIdentity& self,
                                                 uint64_t now_unix_ms, uint64_t window_ms);

// Evidence counted per id. Ids past kMaxIds share the entry kOtherIds, so
// that a key holder forging ids cannot grow it without bound.
class DuplicateIds {
public:
    static constexpr size_t kMaxIds = 64;
    static constexpr const char* kOtherIds = "(other ids)";

    explicit DuplicateIds(uint64_t log_period_ns) : log_(log_period_ns) {}

    // Counts one piece of evidence against `id` at now_ns (monotonic). True
    // when it is to be logged: the first for its entry, or the first after
    // log_period; then *unlogged is how many came since the last one logged.
    bool record(const std::string& id, uint64_t now_ns, uint64_t* unlogged);
    uint64_t total() const { return total_; }
    std::map<std::string, uint64_t> counts() const { return log_.counts(); }

private:
    EventErrors log_;
    std::set<std::string> ids_;
    uint64_t total_ = 0;
};

} // namespace peerlb
