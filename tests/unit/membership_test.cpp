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

// Random heartbeats and ticks: after a tick, next_tick_ns() is exact (a
// tick just before it changes nothing, one at it changes something); a
// heartbeat taken since never makes it later than a change.
TEST(MembershipTest, NoChangeBeforeNextTick)
{
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
    for (int step = 0; step < 5000; step++) {
        changes += int(m.tick(clock.now).size());
        const uint64_t due = m.next_tick_ns();
        if (due != UINT64_MAX) {
            ASSERT_GT(due, clock.now) << "step " << step;
            Membership before = m, at = m;
            EXPECT_TRUE(before.tick(due - 1).empty()) << "step " << step;
            EXPECT_FALSE(at.tick(due).empty()) << "step " << step;
        }
        clock.advance_ms(1 + next_random(120));
        if (next_random(3) == 0) {
            m.on_heartbeat(beat(ids[next_random(4)], intervals[next_random(3)]), clock.now);
            Membership exact = m;
            exact.tick(clock.now);
            EXPECT_LE(m.next_tick_ns(), std::max(exact.next_tick_ns(), clock.now)) << "step " << step;
        }
    }
    EXPECT_GT(changes, 100); // the walk did go through suspect and dead
}

TEST(MembershipTest, StateNames)
{
    EXPECT_STREQ(peer_state_name(PeerState::alive), "alive");
    EXPECT_STREQ(peer_state_name(PeerState::suspect), "suspect");
    EXPECT_STREQ(peer_state_name(PeerState::dead), "dead");
}

} // namespace
} // namespace peerlb
