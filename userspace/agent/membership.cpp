// The peer table (see membership.h). No clock of its own: every call gets
// the receiver's monotonic time in nanoseconds.
#include "membership.h"

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
    // Decoded heartbeats never carry interval 0; a hand-made one counts as 1 ms.
    const uint64_t period_ns = mul_sat(p.last.interval_ms ? p.last.interval_ms : 1, kNsPerMs);
    const uint64_t age = now_ns > p.last_heard_ns ? now_ns - p.last_heard_ns : 0;
    // age <= 1.5 periods, in integers: 2 * age <= 3 * period.
    if (mul_sat(age, 2) <= mul_sat(period_ns, 3))
        return PeerState::alive;
    if (age < mul_sat(period_ns, dead_after_))
        return PeerState::suspect;
    return PeerState::dead;
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
    if (before && *before == now_state)
        return std::nullopt;
    p.state = now_state;
    p.state_since_ns = now_ns;
    changes_++;
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
    for (auto& [id, p] : peers_) {
        const PeerState s = judge(p, now_ns);
        if (s == p.state)
            continue;
        events.push_back(PeerEvent{id, p.state, s});
        p.state = s;
        p.state_since_ns = now_ns;
    }
    changes_ += events.size();
    return events;
}

} // namespace peerlb
