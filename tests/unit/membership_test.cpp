// The peer table on a fake clock: alive / suspect / dead by the period each
// peer announces, and the events it reports.
#include "userspace/agent/membership.h"

#include <gtest/gtest.h>

#include <string>

namespace peerlb {
namespace {

constexpr uint64_t kMs = 1'000'000; // ns

struct FakeClock {
    uint64_t now = 5'000 * kMs; // not zero: a zero time hides mistakes
    uint64_t advance_ms(uint64_t ms) { return now += ms * kMs; }
    uint64_t advance_ns(uint64_t ns) { return now += ns; }
};

Heartbeat beat(const std::string& id, uint32_t interval_ms = 500, AnnouncedState state = AnnouncedState::alive)
{
    static uint64_t sequence = 0;
    Heartbeat hb;
    hb.node_id = id;
    hb.incarnation = 1;
    hb.sequence = ++sequence;
    hb.sent_unix_ms = 1'700'000'000'000ULL;
    hb.interval_ms = interval_ms;
    hb.node_address = parse_ip("10.0.0.2");
    hb.mac = {2, 0, 0, 0, 0, 2};
    hb.load_bp = 100;
    hb.state = state;
    return hb;
}

void expect_event(const std::optional<PeerEvent>& e, const std::string& id, std::optional<PeerState> from,
                  PeerState to)
{
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->node_id, id);
    EXPECT_EQ(e->from, from);
    EXPECT_EQ(e->to, to);
}

void expect_one_event(const std::vector<PeerEvent>& events, const std::string& id, PeerState from, PeerState to)
{
    ASSERT_EQ(events.size(), 1u);
    expect_event(events[0], id, from, to);
}

TEST(MembershipTest, NewPeerIsAnAliveEvent)
{
    FakeClock clock;
    Membership m("self", 3);
    expect_event(m.on_heartbeat(beat("b"), clock.now), "b", std::nullopt, PeerState::alive);
    const Peer* p = m.find("b");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->state, PeerState::alive);
    EXPECT_EQ(p->last_heard_ns, clock.now);
    EXPECT_EQ(p->state_since_ns, clock.now);
    EXPECT_EQ(p->heartbeats, 1u);
    EXPECT_TRUE(p->routable());
    EXPECT_EQ(m.find("nobody"), nullptr);
}

TEST(MembershipTest, FurtherHeartbeatsUpdateWithoutEvent)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("b"), t0);
    Heartbeat hb = beat("b");
    hb.load_bp = 9000;
    clock.advance_ms(500);
    EXPECT_FALSE(m.on_heartbeat(hb, clock.now).has_value());
    const Peer* p = m.find("b");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->last, hb);
    EXPECT_EQ(p->last_heard_ns, clock.now);
    EXPECT_EQ(p->state_since_ns, t0); // no change of state
    EXPECT_EQ(p->heartbeats, 2u);
}

// Dead peers without addresses leave the table after a while (it stays
// bounded whatever ids were sent); dead peers with addresses stay (their
// addresses' holders are computed from them); a forgotten peer that comes
// back is new.
TEST(MembershipTest, LongDeadPeersWithoutAddressesAreForgotten)
{
    FakeClock clock;
    Membership m("self", 3);
    Heartbeat owner = beat("owner");
    owner.services = {parse_ip("10.0.0.100")};
    m.on_heartbeat(beat("b"), clock.now);
    m.on_heartbeat(owner, clock.now);
    clock.advance_ms(1500);
    EXPECT_EQ(m.tick(clock.now).size(), 2u); // both dead
    EXPECT_TRUE(m.forget_dead(clock.now, 60'000 * kMs).empty()); // not yet
    clock.advance_ms(60'000);
    EXPECT_EQ(m.forget_dead(clock.now, 60'000 * kMs), std::vector<std::string>{"b"});
    EXPECT_EQ(m.find("b"), nullptr);
    ASSERT_NE(m.find("owner"), nullptr);
    expect_event(m.on_heartbeat(beat("b"), clock.now), "b", std::nullopt, PeerState::alive);
}

TEST(MembershipTest, AliveUpToOneAndAHalfPeriodsThenSuspect)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b", 500), clock.now);
    clock.advance_ms(750); // exactly 1.5 periods
    EXPECT_TRUE(m.tick(clock.now).empty());
    EXPECT_EQ(m.find("b")->state, PeerState::alive);
    clock.advance_ns(1); // just after
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
    EXPECT_EQ(m.find("b")->state, PeerState::suspect);
    EXPECT_EQ(m.find("b")->state_since_ns, clock.now);
}

TEST(MembershipTest, DeadAtDeadAfterPeriods)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("b", 500), t0);
    clock.advance_ms(1000);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
    clock.now = t0 + 1500 * kMs - 1; // just before 3 periods
    EXPECT_TRUE(m.tick(clock.now).empty());
    clock.now = t0 + 1500 * kMs; // 3 periods
    expect_one_event(m.tick(clock.now), "b", PeerState::suspect, PeerState::dead);
    EXPECT_EQ(m.find("b")->state, PeerState::dead);
    clock.advance_ms(60'000);
    EXPECT_TRUE(m.tick(clock.now).empty()); // stays dead, silently
}

TEST(MembershipTest, StraightFromAliveToDeadWhenTicksAreRare)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b", 500), clock.now);
    clock.advance_ms(10'000);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::dead);
}

TEST(MembershipTest, HeartbeatBringsBackSuspectAndDead)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b"), clock.now);
    clock.advance_ms(800);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
    expect_event(m.on_heartbeat(beat("b"), clock.now), "b", PeerState::suspect, PeerState::alive);

    clock.advance_ms(5000);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::dead);
    clock.advance_ms(1);
    expect_event(m.on_heartbeat(beat("b"), clock.now), "b", PeerState::dead, PeerState::alive);
    EXPECT_EQ(m.find("b")->state_since_ns, clock.now);
    EXPECT_EQ(m.find("b")->heartbeats, 3u);
    EXPECT_TRUE(m.tick(clock.now).empty());
}

TEST(MembershipTest, AnnouncedIntervalSetsTheTimings)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("fast", 100), clock.now);
    m.on_heartbeat(beat("slow", 500), clock.now);

    clock.advance_ms(151); // past 1.5 x 100, well within 1.5 x 500
    expect_one_event(m.tick(clock.now), "fast", PeerState::alive, PeerState::suspect);
    clock.advance_ms(149); // 300 ms: 3 x 100
    expect_one_event(m.tick(clock.now), "fast", PeerState::suspect, PeerState::dead);
    clock.advance_ms(450); // 750 ms: 1.5 x 500, still alive
    EXPECT_TRUE(m.tick(clock.now).empty());
    clock.advance_ms(1);
    expect_one_event(m.tick(clock.now), "slow", PeerState::alive, PeerState::suspect);
    clock.advance_ms(749); // 1500 ms
    expect_one_event(m.tick(clock.now), "slow", PeerState::suspect, PeerState::dead);
}

TEST(MembershipTest, IntervalChangeTakesTheNewestAnnouncement)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b", 500), clock.now);
    clock.advance_ms(100);
    m.on_heartbeat(beat("b", 100), clock.now); // the peer now beats every 100 ms
    clock.advance_ms(200);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
}

TEST(MembershipTest, LeavingIsDeadAtOnce)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b"), clock.now);
    clock.advance_ms(10);
    expect_event(m.on_heartbeat(beat("b", 500, AnnouncedState::leaving), clock.now), "b", PeerState::alive,
                 PeerState::dead);
    EXPECT_EQ(m.find("b")->state, PeerState::dead);
    EXPECT_TRUE(m.tick(clock.now).empty()); // and tick agrees
    // A peer first heard while leaving is new and dead.
    expect_event(m.on_heartbeat(beat("c", 500, AnnouncedState::leaving), clock.now), "c", std::nullopt,
                 PeerState::dead);
    // Back as alive after leaving: a new agent on that node.
    clock.advance_ms(10);
    expect_event(m.on_heartbeat(beat("b"), clock.now), "b", PeerState::dead, PeerState::alive);
}

TEST(MembershipTest, SelfIdIgnored)
{
    FakeClock clock;
    Membership m("self", 3);
    EXPECT_FALSE(m.on_heartbeat(beat("self"), clock.now).has_value());
    EXPECT_EQ(m.find("self"), nullptr);
    EXPECT_TRUE(m.peers().empty());
    clock.advance_ms(10'000);
    EXPECT_TRUE(m.tick(clock.now).empty());
}

TEST(MembershipTest, UnroutablePeerStaysAliveButNotRoutable)
{
    FakeClock clock;
    Membership m("self", 3);
    expect_event(m.on_heartbeat(beat("b", 500, AnnouncedState::unroutable), clock.now), "b", std::nullopt,
                 PeerState::alive);
    for (int i = 0; i < 10; i++) {
        clock.advance_ms(500);
        EXPECT_FALSE(m.on_heartbeat(beat("b", 500, AnnouncedState::unroutable), clock.now).has_value());
        EXPECT_TRUE(m.tick(clock.now).empty());
    }
    EXPECT_EQ(m.find("b")->state, PeerState::alive);
    EXPECT_FALSE(m.find("b")->routable());
    clock.advance_ms(500);
    EXPECT_FALSE(m.on_heartbeat(beat("b"), clock.now).has_value()); // routable again: no state change
    EXPECT_TRUE(m.find("b")->routable());
}

TEST(MembershipTest, SetDeadAfterChangesTheDeadline)
{
    FakeClock clock;
    Membership m("self", 3);
    EXPECT_EQ(m.dead_after(), 3u);
    m.set_dead_after(5);
    EXPECT_EQ(m.dead_after(), 5u);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("b", 100), t0);
    clock.now = t0 + 300 * kMs; // would be dead with 3
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
    clock.now = t0 + 500 * kMs - 1;
    EXPECT_TRUE(m.tick(clock.now).empty());
    clock.now = t0 + 500 * kMs;
    expect_one_event(m.tick(clock.now), "b", PeerState::suspect, PeerState::dead);

    // Lowering it applies to peers already known.
    m.on_heartbeat(beat("b", 100), clock.now);
    m.set_dead_after(2);
    clock.advance_ms(200);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::dead);
}

TEST(MembershipTest, TickReportsNothingWhenNothingChanges)
{
    FakeClock clock;
    Membership m("self", 3);
    EXPECT_TRUE(m.tick(clock.now).empty()); // empty table
    m.on_heartbeat(beat("b"), clock.now);
    m.on_heartbeat(beat("c"), clock.now);
    for (int i = 0; i < 20; i++) {
        clock.advance_ms(250);
        m.on_heartbeat(beat("b"), clock.now);
        m.on_heartbeat(beat("c"), clock.now);
        EXPECT_TRUE(m.tick(clock.now).empty());
        EXPECT_TRUE(m.tick(clock.now).empty());
    }
}

TEST(MembershipTest, TickReportsEveryChangeInIdOrder)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("c"), clock.now);
    m.on_heartbeat(beat("a"), clock.now);
    m.on_heartbeat(beat("b"), clock.now);
    clock.advance_ms(400);
    m.on_heartbeat(beat("b"), clock.now);
    clock.advance_ms(400); // a and c at 800 ms, b at 400 ms
    const auto events = m.tick(clock.now);
    ASSERT_EQ(events.size(), 2u);
    expect_event(events[0], "a", PeerState::alive, PeerState::suspect);
    expect_event(events[1], "c", PeerState::alive, PeerState::suspect);
    EXPECT_EQ(m.find("b")->state, PeerState::alive);
}

TEST(MembershipTest, ClockBeforeLastHeardCountsAsNow)
{
    // A tick with a time before the last heartbeat (callers racing) must not
    // wrap around into "silent for ages".
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("b"), clock.now);
    EXPECT_TRUE(m.tick(clock.now - 1 * kMs).empty());
    EXPECT_EQ(m.find("b")->state, PeerState::alive);
}

// changes() grows with what the ownership computation reads of the peers
// (who, in which state, which services and claims) and with nothing that
// every heartbeat renews: the agent computes the owners again only then.
TEST(MembershipTest, ChangesCountWhatOwnershipReads)
{
    FakeClock clock;
    Membership m("self", 3);
    uint64_t seen = m.changes();
    auto changed = [&] {
        const bool grew = m.changes() != seen;
        seen = m.changes();
        return grew;
    };
    Heartbeat hb = beat("b", 100);
    hb.services = {parse_ip("10.0.0.100")};
    hb.claims = hb.services;
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "a new peer";

    // Every heartbeat renews these: no change.
    for (int i = 0; i < 5; i++) {
        clock.advance_ms(100);
        hb.sequence++;
        hb.sent_unix_ms += 100;
        hb.load_bp = uint16_t(1000 * i);
        hb.kept_per_s = uint32_t(i);
        hb.state = i % 2 ? AnnouncedState::unroutable : AnnouncedState::alive;
        m.on_heartbeat(hb, clock.now);
        EXPECT_TRUE(m.tick(clock.now).empty());
        EXPECT_FALSE(changed()) << "heartbeat " << i;
    }
    hb.state = AnnouncedState::alive;

    clock.advance_ms(100);
    hb.claims.push_back(parse_ip("10.0.0.101")); // took an address over
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "a new claim";
    clock.advance_ms(100);
    hb.claims = {parse_ip("10.0.0.101"), parse_ip("10.0.0.100")}; // the same set, in another order
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "claims listed otherwise: counted (cheap, and never missed)";
    clock.advance_ms(100);
    hb.services.push_back(parse_ip("fd00::100"));
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "a new service address";
    clock.advance_ms(100);
    m.on_heartbeat(hb, clock.now);
    EXPECT_FALSE(changed());

    clock.advance_ms(200);
    EXPECT_EQ(m.tick(clock.now).size(), 1u);
    EXPECT_TRUE(changed()) << "alive -> suspect";
    clock.advance_ms(200);
    EXPECT_EQ(m.tick(clock.now).size(), 1u);
    EXPECT_TRUE(changed()) << "suspect -> dead";
    EXPECT_TRUE(m.tick(clock.now).empty());
    EXPECT_FALSE(changed());
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "dead -> alive";

    // Leaving, then forgotten (no addresses any more).
    hb.state = AnnouncedState::leaving;
    hb.services.clear();
    hb.claims.clear();
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "leaving";
    EXPECT_TRUE(m.forget_dead(clock.now, 1000 * kMs).empty());
    EXPECT_FALSE(changed());
    clock.advance_ms(1000);
    EXPECT_EQ(m.forget_dead(clock.now, 1000 * kMs).size(), 1u);
    EXPECT_TRUE(changed()) << "forgotten";

    // Our own id, echoed back: nothing.
    m.on_heartbeat(beat("self"), clock.now);
    EXPECT_FALSE(changed());
}

// live_changes(): as changes(), but a suspicion and its end do not count
// (the owners treat suspect as live); a death, a return, a join, a
// forgotten peer and other addresses do.
TEST(MembershipTest, LiveChangesIgnoreSuspicion)
{
    FakeClock clock;
    Membership m("self", 3);
    uint64_t seen = m.live_changes();
    auto changed = [&] {
        const bool grew = m.live_changes() != seen;
        seen = m.live_changes();
        return grew;
    };
    Heartbeat hb = beat("b", 100);
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "a new peer";
    clock.advance_ms(200);
    expect_one_event(m.tick(clock.now), "b", PeerState::alive, PeerState::suspect);
    EXPECT_FALSE(changed()) << "alive -> suspect";
    expect_event(m.on_heartbeat(hb, clock.now), "b", PeerState::suspect, PeerState::alive);
    EXPECT_FALSE(changed()) << "suspect -> alive";
    hb.claims = {parse_ip("10.0.0.101")};
    clock.advance_ms(50);
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "a new claim";
    clock.advance_ms(200);
    m.tick(clock.now);
    EXPECT_FALSE(changed());
    clock.advance_ms(100);
    expect_one_event(m.tick(clock.now), "b", PeerState::suspect, PeerState::dead);
    EXPECT_TRUE(changed()) << "suspect -> dead";
    expect_event(m.on_heartbeat(hb, clock.now), "b", PeerState::dead, PeerState::alive);
    EXPECT_TRUE(changed()) << "dead -> alive";
    clock.advance_ms(400);
    m.tick(clock.now); // straight to dead
    EXPECT_TRUE(changed()) << "alive -> dead";
    hb.claims.clear();
    hb.state = AnnouncedState::leaving;
    m.on_heartbeat(hb, clock.now);
    EXPECT_TRUE(changed()) << "claims gone (still dead)";
    clock.advance_ms(1000);
    EXPECT_EQ(m.forget_dead(clock.now, 500 * kMs).size(), 1u);
    EXPECT_TRUE(changed()) << "forgotten";
}

// next_tick_ns(): the first instant a tick changes something. A tick just
// before it changes nothing; at it, the peer it names changes.
TEST(MembershipTest, NextTickIsTheFirstChange)
{
    FakeClock clock;
    Membership m("self", 3);
    EXPECT_EQ(m.next_tick_ns(), UINT64_MAX); // nobody to judge
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("b", 500), t0);
    m.on_heartbeat(beat("c", 100), t0 + 100 * kMs);
    // c: alive up to 150 ms after its heartbeat; b: up to 750 ms.
    EXPECT_EQ(m.next_tick_ns(), t0 + 250 * kMs + 1);
    EXPECT_TRUE(m.tick(t0 + 250 * kMs).empty());
    EXPECT_EQ(m.next_tick_ns(), t0 + 250 * kMs + 1);
    expect_one_event(m.tick(m.next_tick_ns()), "c", PeerState::alive, PeerState::suspect);
    EXPECT_EQ(m.next_tick_ns(), t0 + 400 * kMs); // c dead at 3 x 100 ms
    expect_one_event(m.tick(m.next_tick_ns()), "c", PeerState::suspect, PeerState::dead);
    EXPECT_EQ(m.next_tick_ns(), t0 + 750 * kMs + 1); // b; c changes only with a heartbeat
    // A heartbeat can bring it forward: c back, with its own deadline.
    m.on_heartbeat(beat("c", 100), t0 + 500 * kMs);
    EXPECT_EQ(m.next_tick_ns(), t0 + 650 * kMs + 1);
    // Changing dead_after: due at once.
    m.set_dead_after(4);
    EXPECT_EQ(m.next_tick_ns(), 0u);
}

// Random heartbeats and ticks: after a tick, no tick before next_tick_ns()
// changes anything, and after a heartbeat, a tick that would change
// something is due. Without voters it is exact: a tick at it changes something.
// With voters, a peer that reaches dead_after periods may stay suspect
// (nobody confirms it), so it is only a bound.
TEST(MembershipTest, NoChangeBeforeNextTick)
{
    for (const bool with_voters : {false, true}) {
        FakeClock clock;
        Membership m("self", 3);
        uint64_t seed = 12345;
        auto next_random = [&seed](uint64_t n) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            return (seed >> 33) % n;
        };
        const std::string ids[] = {"a", "b", "c", "d"};
        const uint32_t intervals[] = {100, 200, 500};
        int changes = 0;
        for (int step = 0; step < 20000; step++) {
            changes += int(m.tick(clock.now).size());
            const uint64_t due = m.next_tick_ns();
            if (due != UINT64_MAX) {
                ASSERT_GT(due, clock.now) << "step " << step;
                Membership before = m, at = m;
                EXPECT_TRUE(before.tick(due - 1).empty()) << "step " << step << " voters " << with_voters;
                if (!with_voters) {
                    EXPECT_FALSE(at.tick(due).empty()) << "step " << step;
                }
            }
            clock.advance_ms(1 + next_random(120));
            if (next_random(3) == 0) {
                // Voters name others: deaths wait for their word, and their
                // heartbeats bring ticks forward.
                Heartbeat hb = beat(ids[next_random(4)], intervals[next_random(3)]);
                hb.lists_silent = with_voters && next_random(2) == 0;
                if (next_random(20) == 0)
                    hb.state = AnnouncedState::leaving;
                if (hb.lists_silent && next_random(2) == 0)
                    hb.silent = {ids[next_random(4)]};
                m.on_heartbeat(hb, clock.now);
                // Whatever a tick now would change, it is due.
                Membership probe = m;
                if (!probe.tick(clock.now).empty()) {
                    EXPECT_LE(m.next_tick_ns(), clock.now) << "step " << step;
                }
            }
        }
        EXPECT_GT(changes, 1000); // the walk did go through suspect and dead
    }
}

// --- deaths confirmed by peers ------------------------------------------------

// A heartbeat of a peer that lists its silent peers, naming `silent`.
Heartbeat voter(const std::string& id, std::vector<std::string> silent = {})
{
    Heartbeat hb = beat(id);
    hb.lists_silent = true;
    hb.silent = std::move(silent);
    return hb;
}

// Every voter in `voters` beats at `now`, those in `naming` naming "x".
void votes(Membership& m, const std::vector<std::string>& voters, const std::vector<std::string>& naming,
           uint64_t now)
{
    for (const auto& v : voters) {
        const bool names = std::find(naming.begin(), naming.end(), v) != naming.end();
        m.on_heartbeat(voter(v, names ? std::vector<std::string>{"x"} : std::vector<std::string>{}), now);
    }
}

// x silent for dead_after periods is dead only when at least half of the
// voters name it: 4 voters, 2 needed.
TEST(MembershipConfirm, HalfOfTheVotersConfirmADeath)
{
    FakeClock clock;
    Membership m("self", 3);
    const std::vector<std::string> four = {"v1", "v2", "v3", "v4"};
    m.on_heartbeat(beat("x"), clock.now);
    votes(m, four, {}, clock.now);
    clock.advance_ms(1500); // x silent for 3 periods
    votes(m, four, {"v1"}, clock.now);
    expect_one_event(m.tick(clock.now), "x", PeerState::alive, PeerState::suspect);
    clock.advance_ms(100);
    votes(m, four, {"v3"}, clock.now);
    EXPECT_TRUE(m.tick(clock.now).empty()) << "1 of 4";
    EXPECT_EQ(m.find("x")->state, PeerState::suspect);
    clock.advance_ms(100);
    votes(m, four, {"v2", "v4"}, clock.now);
    expect_one_event(m.tick(clock.now), "x", PeerState::suspect, PeerState::dead);
    // Declared: voters that stop naming it do not bring it back; a heartbeat does.
    clock.advance_ms(100);
    votes(m, four, {}, clock.now);
    EXPECT_TRUE(m.tick(clock.now).empty());
    EXPECT_EQ(m.find("x")->state, PeerState::dead);
    expect_event(m.on_heartbeat(beat("x"), clock.now), "x", PeerState::dead, PeerState::alive);
}

// Five voters: three needed (half, rounded up).
TEST(MembershipConfirm, HalfRoundsUp)
{
    FakeClock clock;
    Membership m("self", 3);
    const std::vector<std::string> five = {"v1", "v2", "v3", "v4", "v5"};
    m.on_heartbeat(beat("x"), clock.now);
    clock.advance_ms(1500);
    votes(m, five, {"v1", "v2"}, clock.now);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::suspect) << "2 of 5";
    votes(m, five, {"v1", "v2", "v5"}, clock.now);
    expect_one_event(m.tick(clock.now), "x", PeerState::suspect, PeerState::dead);
}

// With one or two voters, all of them must name it.
TEST(MembershipConfirm, OneOrTwoVotersMustAllAgree)
{
    for (const size_t n : {1, 2}) {
        FakeClock clock;
        Membership m("self", 3);
        std::vector<std::string> voters = {"v1", "v2"};
        voters.resize(n);
        m.on_heartbeat(beat("x"), clock.now);
        clock.advance_ms(1500);
        votes(m, voters, {"v1"}, clock.now);
        m.tick(clock.now);
        EXPECT_EQ(m.find("x")->state, n == 1 ? PeerState::dead : PeerState::suspect) << n << " voters";
        votes(m, voters, voters, clock.now);
        m.tick(clock.now);
        EXPECT_EQ(m.find("x")->state, PeerState::dead) << n << " voters";
    }
}

// Peers that do not list silent peers (older agents) have no vote: with no
// voter at all, this node decides alone, at dead_after periods as before.
TEST(MembershipConfirm, WithoutVotersTheObserverDecidesAlone)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("x"), t0);
    for (int i = 0; i < 3; i++) {
        m.on_heartbeat(beat("old-1"), clock.now);
        m.on_heartbeat(beat("old-2"), clock.now);
        clock.advance_ms(500);
    }
    EXPECT_EQ(clock.now, t0 + 1500 * kMs);
    m.on_heartbeat(beat("old-1"), clock.now);
    m.on_heartbeat(beat("old-2"), clock.now);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::dead);
}

// Only voters alive here count: two that named x but are silent themselves
// (suspect) have no say, so the two alive ones must both name it.
TEST(MembershipConfirm, OnlyAliveVotersCount)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("x"), clock.now);
    votes(m, {"v3", "v4"}, {"v3", "v4"}, clock.now + 700 * kMs);
    clock.advance_ms(1500);
    votes(m, {"v1", "v2"}, {"v1"}, clock.now); // v3, v4 last heard 800 ms ago
    m.tick(clock.now);
    EXPECT_EQ(m.find("v3")->state, PeerState::suspect);
    EXPECT_EQ(m.find("x")->state, PeerState::suspect) << "1 of the 2 alive voters";
    votes(m, {"v2"}, {"v2"}, clock.now);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::dead);
}

// The voters' word does not shorten this node's own wait: x heard 1 s ago
// is not dead whatever they say.
TEST(MembershipConfirm, OwnSilenceComesFirst)
{
    FakeClock clock;
    Membership m("self", 3);
    m.on_heartbeat(beat("x"), clock.now);
    clock.advance_ms(1000);
    votes(m, {"v1", "v2", "v3"}, {"v1", "v2", "v3"}, clock.now);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::suspect);
    clock.advance_ms(499);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::suspect);
    clock.advance_ms(1);
    expect_one_event(m.tick(clock.now), "x", PeerState::suspect, PeerState::dead);
}

// Without a quorum (the others still hear x: an asymmetric partition), x is
// dead after kUnconfirmedDeadFactor x dead_after periods.
TEST(MembershipConfirm, UnconfirmedDeadAtTheLongerSilence)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("x"), t0);
    const uint64_t limit = t0 + kUnconfirmedDeadFactor * 3 * 500 * kMs;
    while (clock.now + 100 * kMs < limit) {
        clock.advance_ms(100);
        votes(m, {"v1", "v2"}, {}, clock.now);
        m.tick(clock.now);
        ASSERT_NE(m.find("x")->state, PeerState::dead) << (clock.now - t0) / kMs << " ms";
    }
    EXPECT_EQ(m.next_tick_ns(), limit);
    clock.now = limit - 1;
    votes(m, {"v1", "v2"}, {}, clock.now);
    EXPECT_TRUE(m.tick(clock.now).empty());
    clock.now = limit;
    expect_one_event(m.tick(clock.now), "x", PeerState::suspect, PeerState::dead);
}

// A peer waiting for the voters' word: no tick is due until the unconfirmed
// limit, unless a heartbeat names it; then at once.
TEST(MembershipConfirm, ANamingHeartbeatMakesTheTickDue)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("x"), t0);
    clock.advance_ms(1500);
    votes(m, {"v1", "v2"}, {}, clock.now);
    m.tick(clock.now);
    EXPECT_EQ(m.find("x")->state, PeerState::suspect);
    EXPECT_GT(m.next_tick_ns(), clock.now + 250 * kMs); // v1, v2 alive until then
    clock.advance_ms(10);
    m.on_heartbeat(voter("v1", {"other"}), clock.now);
    EXPECT_GT(m.next_tick_ns(), clock.now) << "names someone else";
    m.on_heartbeat(voter("v2", {"x"}), clock.now);
    EXPECT_LE(m.next_tick_ns(), clock.now) << "names x";
    EXPECT_TRUE(m.tick(clock.now).empty()) << "1 of 2";
    EXPECT_GT(m.next_tick_ns(), clock.now);
    clock.advance_ms(10);
    m.on_heartbeat(voter("v1", {"x"}), clock.now);
    EXPECT_LE(m.next_tick_ns(), clock.now);
    expect_one_event(m.tick(clock.now), "x", PeerState::suspect, PeerState::dead);
}

// A node that wakes from a stall takes the heartbeats queued meanwhile
// (fresh lists that name none of its peers) and then judges: the peers it
// missed are suspect, not dead; they are back with their next heartbeat.
TEST(MembershipConfirm, AStalledObserverDeclaresNobodyDead)
{
    FakeClock clock;
    Membership m("self", 3);
    const std::vector<std::string> heard = {"a", "b", "c"};
    votes(m, heard, {}, clock.now);
    m.on_heartbeat(voter("d"), clock.now);
    m.on_heartbeat(voter("e"), clock.now);
    clock.advance_ms(2000); // stalled: nothing taken, no tick
    for (const auto& id : heard) // what its socket kept: the others name the stalled node
        m.on_heartbeat(voter(id, {"self"}), clock.now);
    const auto events = m.tick(clock.now);
    EXPECT_EQ(events.size(), 2u);
    EXPECT_EQ(m.find("d")->state, PeerState::suspect);
    EXPECT_EQ(m.find("e")->state, PeerState::suspect);
    clock.advance_ms(300);
    m.on_heartbeat(voter("d"), clock.now);
    m.on_heartbeat(voter("e"), clock.now);
    EXPECT_EQ(m.find("d")->state, PeerState::alive);
}

// What this node names: peers silent for 2 of their periods, until the
// unconfirmed limit; not a peer that announced its leaving; in id order.
TEST(MembershipConfirm, SilentPeersNamed)
{
    FakeClock clock;
    Membership m("self", 3);
    const uint64_t t0 = clock.now;
    m.on_heartbeat(beat("z", 500), t0);
    m.on_heartbeat(beat("y", 100), t0);
    m.on_heartbeat(beat("gone", 500, AnnouncedState::leaving), t0);
    EXPECT_TRUE(m.silent_peers(t0 + 199 * kMs).empty());
    EXPECT_EQ(m.silent_peers(t0 + 200 * kMs), std::vector<std::string>{"y"});
    EXPECT_EQ(m.silent_peers(t0 + 999 * kMs), std::vector<std::string>{"y"});
    EXPECT_EQ(m.silent_peers(t0 + 1000 * kMs), (std::vector<std::string>{"y", "z"}));
    const uint64_t y_limit = t0 + kUnconfirmedDeadFactor * 3 * 100 * kMs;
    EXPECT_EQ(m.silent_peers(y_limit - 1), (std::vector<std::string>{"y", "z"}));
    EXPECT_EQ(m.silent_peers(y_limit), std::vector<std::string>{"z"});
    EXPECT_TRUE(m.silent_peers(t0 + kUnconfirmedDeadFactor * 3 * 500 * kMs).empty());
    m.on_heartbeat(beat("z", 500), t0 + 1050 * kMs);
    EXPECT_EQ(m.silent_peers(t0 + 1100 * kMs), std::vector<std::string>{"y"});

    // dead_after 2: named from 1.5 periods, before the others reach 2.
    Membership two("self", 2);
    two.on_heartbeat(beat("z", 500), t0);
    EXPECT_TRUE(two.silent_peers(t0 + 750 * kMs - 1).empty());
    EXPECT_EQ(two.silent_peers(t0 + 750 * kMs), std::vector<std::string>{"z"});
}

TEST(MembershipTest, StateNames)
{
    EXPECT_STREQ(peer_state_name(PeerState::alive), "alive");
    EXPECT_STREQ(peer_state_name(PeerState::suspect), "suspect");
    EXPECT_STREQ(peer_state_name(PeerState::dead), "dead");
}

} // namespace
} // namespace peerlb
