// How soon after a heartbeat a load jump may send another one (DESIGN.md
// section 3: "a heartbeat is also sent at once when load jumps"). Every
// heartbeat costs every peer a datagram to take (~30 us of agent CPU), so
// extra heartbeats are spaced by the cluster's size: all peers' extra
// heartbeats together reach a node at most kExtraHeartbeatBudget times a
// second, as many as 1000 peers' regular ones at the default period. A
// small cluster keeps the tick's spacing (a jump is told within 10 ms); at
// 1000 nodes a node adds at most two a second to its regular two.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace peerlb {

inline constexpr uint64_t kExtraHeartbeatBudget = 2000; // a second, from all peers together

inline uint64_t extra_heartbeat_gap_ns(size_t peers, uint64_t tick_ns)
{
    return std::max<uint64_t>(tick_ns, uint64_t(peers) * 1'000'000'000ull / kExtraHeartbeatBudget);
}

} // namespace peerlb
