// The peer table (see membership.h). No clock of its own: every call gets
// the receiver's monotonic time in nanoseconds.
#include "membership.h"

#include <algorithm>

namespace peerlb {

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

// a * b, saturating at the largest uint64_t instead of wrapping.
uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return UINT64_MAX;
    return r;
}

uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

// The silences (time since the last heartbeat) at which a peer stops being
// alive (more than alive_ns) and is dead (dead_ns or more), by the period
// it announced.
struct SilenceLimits {
    uint64_t alive_ns;
    uint64_t dead_ns;
};

SilenceLimits silence_limits(const Peer& p, uint32_t dead_after)
{
    // Decoded heartbeats never carry interval 0; a hand-made one counts as 1 ms.
    const uint64_t period_ns = mul_sat(p.last.interval_ms ? p.last.interval_ms : 1, kNsPerMs);
    // 1.5 periods, exact: a period is a whole number of milliseconds.
    return {mul_sat(period_ns, 3) / 2, mul_sat(period_ns, dead_after)};
}

} // namespace

const char* peer_state_name(PeerState s)
{
    switch (s) {
    case PeerState::alive: return "alive";
    case PeerState::suspect: return "suspect";
    case PeerState::dead: return "dead";
    }
    return "unknown";
}

const Peer* Membership::find(const std::string& id) const
{
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : &it->second;
}

PeerState Membership::judge(const Peer& p, uint64_t now_ns) const
{
    if (p.last.state == AnnouncedState::leaving)
        return PeerState::dead;
    const SilenceLimits limits = silence_limits(p, dead_after_);
    const uint64_t age = now_ns > p.last_heard_ns ? now_ns - p.last_heard_ns : 0;
    if (age <= limits.alive_ns)
        return PeerState::alive;
    if (age < limits.dead_ns)
        return PeerState::suspect;
    return PeerState::dead;
}

uint64_t Membership::next_change_ns(const Peer& p) const
{
    const SilenceLimits limits = silence_limits(p, dead_after_);
    switch (p.state) {
    case PeerState::alive: return add_sat(p.last_heard_ns, add_sat(limits.alive_ns, 1));
    case PeerState::suspect: return add_sat(p.last_heard_ns, limits.dead_ns);
    case PeerState::dead: break; // only a heartbeat brings it back
    }
    return UINT64_MAX;
}

std::optional<PeerEvent> Membership::on_heartbeat(const Heartbeat& hb, uint64_t now_ns)
{
    if (hb.node_id == self_id_)
        return std::nullopt;

    auto [it, inserted] = peers_.try_emplace(hb.node_id);
    Peer& p = it->second;
    const std::optional<PeerState> before = inserted ? std::nullopt : std::optional<PeerState>(p.state);
    if (inserted || p.last.services != hb.services || p.last.claims != hb.claims)
        changes_++;
    p.last = hb;
    p.last_heard_ns = now_ns;
    p.heartbeats++;

    const PeerState now_state = judge(p, now_ns);
    const bool changed = !before || *before != now_state;
    if (changed) {
        p.state = now_state;
        p.state_since_ns = now_ns;
        changes_++;
    }
    next_tick_ns_ = std::min(next_tick_ns_, next_change_ns(p));
    if (!changed)
        return std::nullopt;
    return PeerEvent{hb.node_id, before, now_state};
}

std::vector<std::string> Membership::forget_dead(uint64_t now_ns, uint64_t after_ns)
{
    std::vector<std::string> gone;
    std::erase_if(peers_, [&](const auto& entry) {
        const Peer& p = entry.second;
        const bool forget = p.state == PeerState::dead && now_ns >= p.state_since_ns &&
                            now_ns - p.state_since_ns >= after_ns && p.last.services.empty() &&
                            p.last.claims.empty();
        if (forget)
            gone.push_back(entry.first);
        return forget;
    });
    changes_ += gone.size();
    return gone;
}

std::vector<PeerEvent> Membership::tick(uint64_t now_ns)
{
    std::vector<PeerEvent> events;
    next_tick_ns_ = UINT64_MAX;
    for (auto& [id, p] : peers_) {
        const PeerState s = judge(p, now_ns);
        if (s != p.state) {
            events.push_back(PeerEvent{id, p.state, s});
            p.state = s;
            p.state_since_ns = now_ns;
        }
        next_tick_ns_ = std::min(next_tick_ns_, next_change_ns(p));
    }
    changes_ += events.size();
    return events;
}

} // namespace peerlb
