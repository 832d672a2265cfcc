// Two nodes with one id (userspace/agent/duplicate_ids.h): what in a
// heartbeat is evidence of it and what is not (looped back, a restart, an
// old capture), and how the evidence is counted and rate-limited.
#include "userspace/agent/duplicate_ids.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "userspace/agent/membership.h"

namespace peerlb {
namespace {

using testing::HasSubstr;

constexpr uint64_t kNow = 1'700'000'000'000ULL; // unix ms
constexpr uint64_t kWindow = 10'000;
constexpr uint64_t kHour = 3'600'000;
constexpr uint64_t kSecond = 1'000'000'000ULL; // ns

const NodeIdentity kSelf{"s1", parse_ip("10.0.0.11"), 5};

Heartbeat from(const std::string& id, const std::string& address, uint64_t incarnation,
               uint64_t sent = kNow, uint64_t sequence = 1)
{
    Heartbeat hb;
    hb.node_id = id;
    hb.node_address = parse_ip(address);
    hb.incarnation = incarnation;
    hb.sequence = sequence;
    hb.sent_unix_ms = sent;
    hb.interval_ms = 100;
    return hb;
}

std::optional<std::string> evidence(const Heartbeat& hb, DropReason verdict, const Heartbeat* last = nullptr)
{
    return duplicate_id_evidence(hb, verdict, last, kSelf, kNow, kWindow);
}

TEST(DuplicateIdEvidence, ThisNodesIdFromAnotherAddressOrIncarnation)
{
    // Its own heartbeat, looped back by multicast: nothing.
    EXPECT_FALSE(evidence(from("s1", "10.0.0.11", 5), DropReason::own_id));

    const auto other_address = evidence(from("s1", "10.0.0.99", 5), DropReason::own_id);
    ASSERT_TRUE(other_address);
    EXPECT_THAT(*other_address, HasSubstr("this node's id s1 comes from 10.0.0.99 (incarnation 5)"));
    EXPECT_THAT(*other_address, HasSubstr("this node is 10.0.0.11 (incarnation 5)"));
    EXPECT_TRUE(evidence(from("s1", "10.0.0.99", 1), DropReason::own_id));
    EXPECT_TRUE(evidence(from("s1", "fd00::99", 5), DropReason::own_id));
    // Its incarnation only grows, and it runs: a higher one is another node,
    // at its address too (a second agent with another state directory).
    EXPECT_TRUE(evidence(from("s1", "10.0.0.11", 6), DropReason::own_id));
    EXPECT_TRUE(evidence(from("s1", "10.0.0.99", 9, kNow - kHour), DropReason::own_id));
}

TEST(DuplicateIdEvidence, ThisNodesPastIsNotEvidence)
{
    // A past life at its address (a delayed or replayed datagram).
    EXPECT_FALSE(evidence(from("s1", "10.0.0.11", 4), DropReason::own_id));
    EXPECT_FALSE(evidence(from("s1", "10.0.0.11", 1, kNow - kHour), DropReason::own_id));
    // From another address but sent outside the window: an old capture may
    // come from before the node's address changed.
    EXPECT_FALSE(evidence(from("s1", "10.0.0.99", 4, kNow - kWindow - 1), DropReason::own_id));
    EXPECT_FALSE(evidence(from("s1", "10.0.0.99", 4, kNow + kHour), DropReason::own_id));
    EXPECT_TRUE(evidence(from("s1", "10.0.0.99", 4, kNow - kWindow), DropReason::own_id));
}

TEST(DuplicateIdEvidence, PeerIdFromTwoAddressesWithInterleavingIncarnations)
{
    const Heartbeat last = from("s2", "10.0.0.12", 3);
    // Same incarnation from another address: two nodes, accepted in turn
    // or refused as a replay of each other.
    const auto same = evidence(from("s2", "10.0.0.13", 3), DropReason::replayed, &last);
    ASSERT_TRUE(same);
    EXPECT_THAT(*same, HasSubstr("id s2 come from 10.0.0.13 (incarnation 3) and from 10.0.0.12 "
                                 "(incarnation 3)"));
    EXPECT_TRUE(evidence(from("s2", "10.0.0.13", 3), DropReason::none, &last));
    // A lower incarnation from another address, fresh: the other node is
    // still running.
    EXPECT_TRUE(evidence(from("s2", "10.0.0.13", 2), DropReason::replayed, &last));
}

TEST(DuplicateIdEvidence, PeerRestartsAndOldCapturesAreNotEvidence)
{
    const Heartbeat last = from("s2", "10.0.0.12", 3);
    // A restart, on a new address or not.
    EXPECT_FALSE(evidence(from("s2", "10.0.0.13", 4), DropReason::none, &last));
    EXPECT_FALSE(evidence(from("s2", "10.0.0.12", 4), DropReason::none, &last));
    // The same node: its next heartbeat, a replay, a past life.
    EXPECT_FALSE(evidence(from("s2", "10.0.0.12", 3, kNow, 2), DropReason::none, &last));
    EXPECT_FALSE(evidence(from("s2", "10.0.0.12", 3), DropReason::replayed, &last));
    EXPECT_FALSE(evidence(from("s2", "10.0.0.12", 2), DropReason::replayed, &last));
    // A capture from before it moved, replayed long after.
    EXPECT_FALSE(evidence(from("s2", "10.0.0.13", 2, kNow - kHour), DropReason::replayed, &last));
    // Stale: never looked at. A peer not known yet: nothing to compare.
    EXPECT_FALSE(evidence(from("s2", "10.0.0.13", 3), DropReason::stale, &last));
    EXPECT_FALSE(evidence(from("s2", "10.0.0.13", 3), DropReason::none, nullptr));
}

// The agent's path for a heartbeat (DatagramRouter::route): the replay
// guard, the evidence against the last one taken, then the peer table.
struct Receiver {
    ReplayGuard guard{kWindow};
    Membership members{"s1", 3};
    uint64_t mono_ms = 5'000'000;
    int evidence = 0;

    void receive(const Heartbeat& hb)
    {
        mono_ms += 50;
        const DropReason verdict = guard.check(hb, mono_ms, hb.sent_unix_ms);
        const Peer* p = members.find(hb.node_id);
        if (duplicate_id_evidence(hb, verdict, p ? &p->last : nullptr, kSelf, hb.sent_unix_ms, kWindow))
            evidence++;
        if (verdict == DropReason::none)
            members.on_heartbeat(hb, mono_ms * 1'000'000);
    }
};

TEST(DuplicateIdEvidence, TwoRunningNodesWithOneIdAreSeenWhateverTheirIncarnations)
{
    // Both fresh (incarnation 1 each, persisted counters), one started
    // earlier; one a restart ahead of the other; the same, the other way.
    struct Case {
        uint64_t a_incarnation, b_incarnation, a_first_sequence;
    };
    for (const Case& c : {Case{1, 1, 100}, Case{1, 2, 1}, Case{2, 1, 1}}) {
        SCOPED_TRACE(testing::Message() << c.a_incarnation << " " << c.b_incarnation);
        Receiver r;
        for (uint64_t i = 0; i < 10; i++) {
            r.receive(from("s2", "10.0.0.12", c.a_incarnation, kNow + i * 100, c.a_first_sequence + i));
            r.receive(from("s2", "10.0.0.13", c.b_incarnation, kNow + i * 100 + 1, 1 + i));
        }
        EXPECT_GE(r.evidence, 9);
    }
}

TEST(DuplicateIdEvidence, ARestartOnANewAddressIsNoEvidence)
{
    Receiver r;
    for (uint64_t i = 0; i < 10; i++)
        r.receive(from("s2", "10.0.0.12", 1, kNow + i * 100, 1 + i));
    for (uint64_t i = 0; i < 10; i++)
        r.receive(from("s2", "10.0.0.13", 2, kNow + 2000 + i * 100, 1 + i));
    EXPECT_EQ(r.evidence, 0);
    EXPECT_EQ(r.members.find("s2")->last.node_address, parse_ip("10.0.0.13"));
}

TEST(DuplicateIds, CountedPerIdAndLoggedOncePerPeriodPerId)
{
    DuplicateIds d(10 * kSecond);
    uint64_t unlogged = 99;
    EXPECT_TRUE(d.record("s1", 5 * kSecond, &unlogged));
    EXPECT_EQ(unlogged, 0u);
    EXPECT_FALSE(d.record("s1", 6 * kSecond, &unlogged));
    EXPECT_FALSE(d.record("s1", 14 * kSecond, &unlogged));
    EXPECT_TRUE(d.record("s2", 14 * kSecond, &unlogged)); // another id: its own period
    EXPECT_TRUE(d.record("s1", 15 * kSecond, &unlogged));
    EXPECT_EQ(unlogged, 2u);
    EXPECT_EQ(d.total(), 5u);
    EXPECT_EQ(d.counts(), (std::map<std::string, uint64_t>{{"s1", 4}, {"s2", 1}}));
}

TEST(DuplicateIds, IdsPastTheLimitShareOneEntry)
{
    DuplicateIds d(10 * kSecond);
    uint64_t unlogged = 0;
    for (size_t i = 0; i < DuplicateIds::kMaxIds + 50; i++)
        d.record("id" + std::to_string(i), kSecond, &unlogged);
    const auto counts = d.counts();
    EXPECT_EQ(counts.size(), DuplicateIds::kMaxIds + 1);
    EXPECT_EQ(counts.at(DuplicateIds::kOtherIds), 50u);
    EXPECT_EQ(d.total(), DuplicateIds::kMaxIds + 50);
    d.record("id0", kSecond, &unlogged); // a tracked id keeps its entry
    EXPECT_EQ(d.counts().at("id0"), 2u);
}

} // namespace
} // namespace peerlb
