// The peer table (see membership.h). No clock of its own: every call gets
// the receiver's monotonic time in nanoseconds.
#include "membership.h"

#include <algorithm>
#include <string_view>
#include <utility>

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

// The silences (time since the last heartbeat) that mark a peer, by the
// period it announced: no longer alive past alive_ns; named as silent from
// named_ns; dead from dead_ns if the peers confirm it, from unconfirmed_ns
// whatever they say.
struct SilenceLimits {
    uint64_t alive_ns;
    uint64_t named_ns;
    uint64_t dead_ns;
    uint64_t unconfirmed_ns;
};

SilenceLimits silence_limits(const Peer& p, uint32_t dead_after)
{
    // Decoded heartbeats never carry interval 0; a hand-made one counts as 1 ms.
    const uint64_t period_ns = mul_sat(p.last.interval_ms ? p.last.interval_ms : 1, kNsPerMs);
    // Named from kSilentAfterPeriods on, but half a period before dead_after
    // at the latest (dead_after 2: 1.5 periods), so that the voters' next
    // heartbeats name it before the observers reach dead_after.
    // 1.5 periods, exact: a period is a whole number of milliseconds.
    const uint64_t named_ns = std::min(mul_sat(period_ns, kSilentAfterPeriods),
                                       mul_sat(period_ns, mul_sat(dead_after, 2) - 1) / 2);
    return {mul_sat(period_ns, 3) / 2, named_ns, mul_sat(period_ns, dead_after),
            mul_sat(period_ns, mul_sat(dead_after, kUnconfirmedDeadFactor))};
}

uint64_t silence_of(const Peer& p, uint64_t now_ns) { return now_ns > p.last_heard_ns ? now_ns - p.last_heard_ns : 0; }

} // namespace

// Who confirms the deaths waiting for it at now_ns (the peers silent for
// dead_after periods, not yet dead): the voters (peers alive at now_ns
// that list silent peers) and how many of them name each. Few wait at a
// time: a list, no map. The names point into the table: valid until it
// changes.
struct Membership::Votes {
    uint32_t voters = 0;
    std::vector<std::pair<std::string_view, uint32_t>> waiting; // id, voters naming it

    // At least half of the voters name id (all of them when there are 1 or
    // 2); with no voter, this node decides alone.
    bool confirm(const std::string& id) const
    {
        if (voters == 0)
            return true;
        const uint32_t need = voters <= 2 ? voters : (voters + 1) / 2;
        for (const auto& [waiting_id, named] : waiting)
            if (waiting_id == id)
                return named >= need;
        return false;
    }
};

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

Membership::Silence Membership::silence(const Peer& p, uint64_t now_ns) const
{
    if (p.last.state == AnnouncedState::leaving)
        return Silence::dead;
    const SilenceLimits limits = silence_limits(p, dead_after_);
    const uint64_t age = silence_of(p, now_ns);
    if (age <= limits.alive_ns)
        return Silence::alive;
    if (age < limits.dead_ns)
        return Silence::suspect;
    if (age < limits.unconfirmed_ns)
        return Silence::dead_if_confirmed;
    return Silence::dead;
}

Membership::Votes Membership::count_votes(uint64_t now_ns) const
{
    Votes votes;
    for (const auto& [id, p] : peers_)
        if (p.state != PeerState::dead && silence(p, now_ns) == Silence::dead_if_confirmed)
            votes.waiting.emplace_back(id, 0);
    for (const auto& [id, p] : peers_) {
        if (!p.last.lists_silent || silence(p, now_ns) != Silence::alive)
            continue;
        votes.voters++;
        for (const std::string& named : p.last.silent) // each id once (decode_heartbeat)
            for (auto& [waiting_id, count] : votes.waiting)
                if (waiting_id == named)
                    count++;
    }
    return votes;
}

uint64_t Membership::next_change_ns(const Peer& p, uint64_t now_ns) const
{
    const SilenceLimits limits = silence_limits(p, dead_after_);
    switch (p.state) {
    case PeerState::alive: return add_sat(p.last_heard_ns, add_sat(limits.alive_ns, 1));
    case PeerState::suspect: {
        // Past dead_after periods, the voters' word can come at any turn:
        // a heartbeat that names it brings the tick forward (on_heartbeat);
        // time alone, at the unconfirmed limit.
        const uint64_t dead_at = add_sat(p.last_heard_ns, limits.dead_ns);
        return dead_at > now_ns ? dead_at : add_sat(p.last_heard_ns, limits.unconfirmed_ns);
    }
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
    const bool was_voter = !inserted && p.last.lists_silent && silence(p, now_ns) == Silence::alive;
    if (inserted || p.last.services != hb.services || p.last.claims != hb.claims) {
        changes_++;
        live_changes_++;
    }
    p.last = hb;
    p.last_heard_ns = now_ns;
    p.heartbeats++;

    // Just heard: alive, or dead when it announces it is leaving.
    const PeerState now_state = silence(p, now_ns) == Silence::alive ? PeerState::alive : PeerState::dead;
    const bool changed = !before || *before != now_state;
    if (changed) {
        p.state = now_state;
        p.state_since_ns = now_ns;
        changes_++;
        if (!before || (*before == PeerState::dead) != (now_state == PeerState::dead))
            live_changes_++;
    }
    next_tick_ns_ = std::min(next_tick_ns_, next_change_ns(p, now_ns));
    // The next tick may confirm a death that waits for the voters' word
    // when this heartbeat names it, or when its sender no longer votes
    // (leaving, or no longer listing): one voter fewer lowers the quorum.
    const bool votes_now = p.last.lists_silent && silence(p, now_ns) == Silence::alive;
    if (was_voter && !votes_now)
        next_tick_ns_ = std::min(next_tick_ns_, now_ns);
    if (votes_now)
        for (const std::string& id : hb.silent) {
            auto named = peers_.find(id);
            if (named != peers_.end() && named->second.state == PeerState::suspect &&
                silence(named->second, now_ns) == Silence::dead_if_confirmed) {
                next_tick_ns_ = std::min(next_tick_ns_, now_ns);
                break;
            }
        }
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
    live_changes_ += gone.size();
    return gone;
}

std::vector<PeerEvent> Membership::tick(uint64_t now_ns)
{
    std::vector<PeerEvent> events;
    std::optional<Votes> votes; // counted once, when a peer needs them
    next_tick_ns_ = UINT64_MAX;
    for (auto& [id, p] : peers_) {
        PeerState s = PeerState::dead;
        switch (silence(p, now_ns)) {
        case Silence::alive: s = PeerState::alive; break;
        case Silence::suspect: s = PeerState::suspect; break;
        case Silence::dead: s = PeerState::dead; break;
        case Silence::dead_if_confirmed:
            if (p.state == PeerState::dead)
                break; // declared: the voters changing their minds does not undo it
            if (!votes)
                votes = count_votes(now_ns);
            s = votes->confirm(id) ? PeerState::dead : PeerState::suspect;
            break;
        }
        if (s != p.state) {
            events.push_back(PeerEvent{id, p.state, s});
            live_changes_ += (p.state == PeerState::dead) != (s == PeerState::dead);
            p.state = s;
            p.state_since_ns = now_ns;
        }
        next_tick_ns_ = std::min(next_tick_ns_, next_change_ns(p, now_ns));
    }
    changes_ += events.size();
    return events;
}

std::vector<std::string> Membership::silent_peers(uint64_t now_ns) const
{
    std::vector<std::string> ids;
    for (const auto& [id, p] : peers_) {
        if (p.last.state == AnnouncedState::leaving)
            continue; // it said so itself: nobody needs this node's word
        const SilenceLimits limits = silence_limits(p, dead_after_);
        const uint64_t age = silence_of(p, now_ns);
        if (age >= limits.named_ns && age < limits.unconfirmed_ns)
            ids.push_back(id);
    }
    return ids;
}

} // namespace peerlb
