// The peer table: who is in the cluster and in which state, from the
// heartbeats taken (already authenticated and replay-checked). Pure logic on
// an injected clock, so tests drive it with a fake one.
//
// States, judged by the time since a peer's last heartbeat against the
// period the peer announced (its interval_ms):
//   alive      heard within 1.5 periods
//   suspect    missed one period: no longer a candidate for new connections
//   dead       silent for dead_after periods and confirmed by the peers (see
//              below), or silent for kUnconfirmedDeadFactor x dead_after
//              periods whatever they say, or announced `leaving`
// A heartbeat brings a suspect or dead peer back to alive at once; a peer
// that announces `unroutable` is alive but never chosen.
//
// Deaths confirmed by peers. With N nodes there are N (N - 1) observers
// of a silence, and at N = 1000 with 1 % loss some observer misses two
// heartbeats of some live peer every few milliseconds: alone, it would
// declare it dead (tools/sim measures it). So every heartbeat names the
// peers its sender has not heard for kSilentAfterPeriods periods
// (Heartbeat::silent, silent_peers() here), and an observer declares X
// dead only when, besides its own silence of dead_after periods, at least
// half of its voters name X in their last heartbeat: the peers alive here
// (heard within 1.5 periods) that list silent peers (all of them when there
// are 1 or 2; with none, the observer decides alone, as two-node clusters
// and older agents do). Until then X stays suspect (never a candidate).
// A dead node is named by every peer one period before observers reach
// dead_after periods, so detection is not slower; a live node is named by
// only the few that lost its heartbeats; an observer waking from a stall
// hears fresh lists that name no one it missed. Without a quorum (an
// asymmetric partition: the others still hear X; so many deaths at once
// that the names, in turn, rarely reach half of the voters) X is dead
// after kUnconfirmedDeadFactor x dead_after periods. Partition halves still declare each other dead
// (each side's voters are its own half, and name the other).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "heartbeat.h"

namespace peerlb {

enum class PeerState { alive, suspect, dead };

// A peer is named in this node's heartbeats from this many of its periods
// of silence on (one before dead_after's default of 3: the names are out
// when the others reach dead_after), or from dead_after - 0.5 periods when
// that is earlier (dead_after 2).
inline constexpr uint32_t kSilentAfterPeriods = 2;
// Silent for this many times dead_after periods: dead without the peers'
// confirmation, and no longer named.
inline constexpr uint32_t kUnconfirmedDeadFactor = 4;
const char* peer_state_name(PeerState s);

struct Peer {
    Heartbeat last;              // the newest heartbeat taken
    PeerState state = PeerState::alive;
    uint64_t last_heard_ns = 0;  // monotonic clock of the receiver
    uint64_t state_since_ns = 0;
    uint64_t heartbeats = 0;     // taken from this peer
    bool routable() const { return last.state == AnnouncedState::alive; }
};

// What changed, for logs and for the data plane writer.
struct PeerEvent {
    std::string node_id;
    std::optional<PeerState> from; // nullopt: a new peer
    PeerState to;
};

class Membership {
public:
    Membership(std::string self_id, uint32_t dead_after) : self_id_(std::move(self_id)), dead_after_(dead_after) {}

    // Takes a heartbeat received at now_ns; returns an event when the peer is
    // new or changes state. Heartbeats carrying self_id are ignored.
    std::optional<PeerEvent> on_heartbeat(const Heartbeat& hb, uint64_t now_ns);

    // Moves peers to suspect / dead as time passes (dead: confirmed by the
    // peers' last heartbeats, see above); returns the changes.
    std::vector<PeerEvent> tick(uint64_t now_ns);

    // The peers to name in this node's heartbeats: silent for at least
    // kSilentAfterPeriods of their periods (dead_after 2: 1.5) and less
    // than kUnconfirmedDeadFactor x dead_after, not leaving; in id order.
    std::vector<std::string> silent_peers(uint64_t now_ns) const;

    // The earliest time at which tick() may change a state: until then a
    // tick changes nothing, so a caller may skip it (the simulator does;
    // UINT64_MAX: no peer can change by time alone). Taking a heartbeat or
    // changing dead_after may bring it forward (to now: a heartbeat that
    // names a peer waiting for the voters' word, or whose sender stops
    // voting).
    uint64_t next_tick_ns() const { return next_tick_ns_; }

    // Removes the peers dead for at least after_ns that announced no service
    // address and claim none (nodes gone for good, or ids a key holder
    // forged), so that the table stays bounded; returns their ids. Peers with
    // addresses stay: who holds their addresses is computed from them.
    std::vector<std::string> forget_dead(uint64_t now_ns, uint64_t after_ns);

    void set_dead_after(uint32_t periods)
    {
        dead_after_ = periods;
        next_tick_ns_ = 0;
    }
    uint32_t dead_after() const { return dead_after_; }

    const std::map<std::string, Peer>& peers() const { return peers_; }
    const Peer* find(const std::string& id) const;

    // Grows whenever a peer is added or forgotten, changes state, or
    // announces other services or claims than in its previous heartbeat;
    // never for what every heartbeat renews (load, sequence, timestamps).
    // Whoever saw the same count sees the same peers, states and addresses.
    uint64_t changes() const { return changes_; }
    // The same but for a peer going from alive to suspect or back: what the
    // address owners depend on (suspect counts as live). The agent computes
    // them again only when it grew: at N = 1000 with 1 % loss a peer is
    // suspected ~20 times a second, a computation takes milliseconds
    // (tools/sim).
    uint64_t live_changes() const { return live_changes_; }

private:
    // What p's silence says at now_ns; dead_if_confirmed: dead_after periods
    // reached, the peers' word still needed.
    enum class Silence { alive, suspect, dead_if_confirmed, dead };
    Silence silence(const Peer& p, uint64_t now_ns) const;
    // The voters at now_ns and how many of them name each id.
    struct Votes;
    Votes count_votes(uint64_t now_ns) const;
    // When time alone next moves p (in state p.state) to another state
    // (UINT64_MAX: never).
    uint64_t next_change_ns(const Peer& p, uint64_t now_ns) const;

    std::string self_id_;
    uint32_t dead_after_;
    std::map<std::string, Peer> peers_; // by node id: stable order for slots and output
    uint64_t changes_ = 0;
    uint64_t live_changes_ = 0;
    uint64_t next_tick_ns_ = UINT64_MAX;
};

} // namespace peerlb
