// The candidate lists the agent keeps for the data plane (maps/candidates.h,
// userspace/dataplane/candidates.h): who is listed, the standby gate on
// reported loads, the URI rules' lists, and lists rewritten only when their
// content changes.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "userspace/dataplane/candidates.h"

using namespace peerlb;

namespace {

constexpr uint32_t kSelf = 0;
constexpr uint32_t kT1 = 5000;

// CandidateLists with the lists it wrote, as the data plane holds them.
struct Lists {
    std::map<uint32_t, lb_candidates> written;
    CandidateLists lists{[this](uint32_t list, const lb_candidates& c) { written[list] = c; }};

    Lists()
    {
        lists.set_self(kSelf);
        lists.set_accept_below(kT1);
    }
    std::vector<uint16_t> slots(uint32_t list) const
    {
        const lb_candidates& c = written.at(list);
        return std::vector<uint16_t>(c.slots, c.slots + c.count);
    }
};

CandidatePeer active(uint32_t load_bp) { return {true, false, load_bp}; }
CandidatePeer standby(uint32_t load_bp) { return {true, true, load_bp}; }
CandidatePeer unusable() { return {false, false, 0}; }

NodeSet set_of(std::initializer_list<uint32_t> slots)
{
    NodeSet s;
    for (uint32_t slot : slots)
        s.set(slot);
    return s;
}

} // namespace

TEST(CandidateLists, UsablePeersInSlotOrderNeverThisNode)
{
    Lists l;
    l.lists.set_peer(kSelf, active(0));
    l.lists.set_peer(7, active(1000));
    l.lists.set_peer(3, active(9000));
    l.lists.set_peer(5, unusable());
    l.lists.set_peer(1023, active(0));
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{3, 7, 1023}));
    // No rule: their lists are written, empty.
    for (uint32_t r = 0; r < LB_MAX_URI_RULES; r++)
        EXPECT_EQ(l.written.at(lb_rule_candidates(r)).count, 0u) << "rule " << r;
    // The written value is whole: nothing past count.
    const lb_candidates& any = l.written.at(LB_CANDIDATES_ANY);
    for (uint32_t i = any.count; i < LB_MAX_NODES; i++)
        ASSERT_EQ(any.slots[i], 0u) << i;
}

TEST(CandidateLists, StandbyPeersWaitUntilEveryActivePeerReportsT1)
{
    Lists l;
    l.lists.set_peer(1, active(4000));
    l.lists.set_peer(2, active(6000));
    l.lists.set_peer(3, standby(0));
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2}));
    l.lists.set_peer(1, active(kT1 - 1));
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2}));
    l.lists.set_peer(1, active(kT1)); // at T1: the gate opens
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2, 3}));
    // An unusable active peer under T1 holds nobody back.
    l.lists.set_peer(4, {false, false, 0});
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2, 3}));
    // A usable one does.
    l.lists.set_peer(4, active(100));
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2, 4}));
    // No usable active peer at all: the standby peers are in.
    for (uint32_t slot : {1u, 2u, 4u})
        l.lists.set_peer(slot, unusable());
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{3}));
    // A lower T1 moves the gate too.
    l.lists.set_peer(1, active(3000));
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1}));
    l.lists.set_accept_below(3000);
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 3}));
}

TEST(CandidateLists, RuleListsHoldTheirUsableMembersWithTheirOwnGate)
{
    Lists l;
    l.lists.set_peer(1, active(1000));
    l.lists.set_peer(2, active(6000));
    l.lists.set_peer(3, standby(0));
    l.lists.set_peer(4, unusable());
    // Rule 0: this node, 2, 3 (standby) and 4; rule 1: 1 and 3.
    l.lists.set_rules({set_of({kSelf, 2, 3, 4}), set_of({1, 3})});
    l.lists.flush();
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY), (std::vector<uint16_t>{1, 2}));
    // Rule 0's only usable active member is at T1: its standby is in.
    EXPECT_EQ(l.slots(lb_rule_candidates(0)), (std::vector<uint16_t>{2, 3}));
    EXPECT_EQ(l.slots(lb_rule_candidates(1)), (std::vector<uint16_t>{1}));
    EXPECT_EQ(l.written.at(lb_rule_candidates(2)).count, 0u);
    EXPECT_TRUE(l.lists.in_a_rule(1));
    EXPECT_TRUE(l.lists.in_a_rule(4));
    EXPECT_FALSE(l.lists.in_a_rule(5));
    // Rules change: rule 1 gone, its list emptied.
    l.lists.set_rules({set_of({kSelf, 2, 3, 4})});
    l.lists.flush();
    EXPECT_EQ(l.written.at(lb_rule_candidates(1)).count, 0u);
    EXPECT_FALSE(l.lists.in_a_rule(1));
    EXPECT_EQ(l.slots(lb_rule_candidates(0)), (std::vector<uint16_t>{2, 3}));
}

// The agent's per-heartbeat work: a report that changes no list writes
// nothing and works nothing out again; a change rewrites just the lists
// it changes.
TEST(CandidateLists, RewritesOnlyTheListsWhoseContentChanges)
{
    Lists l;
    for (uint32_t slot = 1; slot <= 1000; slot++)
        l.lists.set_peer(slot, active(slot % 2 ? 7000 : 2000));
    l.lists.set_rules({set_of({10, 11, 12})});
    l.lists.flush();
    EXPECT_EQ(l.lists.writes(), uint64_t(LB_CANDIDATE_LISTS)); // the first flush: all
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY).size(), 1000u);
    const uint64_t writes = l.lists.writes(), rebuilds = l.lists.rebuilds();

    // 10 000 heartbeats of moving loads (some across T1: no standby peer).
    std::mt19937 rng(17);
    for (int i = 0; i < 10000; i++) {
        const uint32_t slot = 1 + rng() % 1000;
        l.lists.set_peer(slot, active(rng() % 10000));
        l.lists.flush();
    }
    EXPECT_EQ(l.lists.writes(), writes);
    EXPECT_EQ(l.lists.rebuilds(), rebuilds);

    // A rule member dies: its rule's list and list 0, nothing else.
    l.lists.set_peer(11, unusable());
    l.lists.flush();
    EXPECT_EQ(l.lists.writes(), writes + 2);
    EXPECT_EQ(l.slots(lb_rule_candidates(0)), (std::vector<uint16_t>{10, 12}));
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY).size(), 999u);
    // The same report again: nothing.
    l.lists.set_peer(11, unusable());
    l.lists.flush();
    EXPECT_EQ(l.lists.writes(), writes + 2);

    // A standby peer: loads that keep the gate where it is change nothing;
    // the last active peer under T1 reaching it opens the gate: one write.
    for (uint32_t slot = 1; slot <= 1000; slot++)
        l.lists.set_peer(slot, active(slot == 500 ? 1000 : 8000));
    l.lists.set_peer(1001, standby(0));
    l.lists.flush();
    const uint64_t before = l.lists.writes();
    l.lists.set_peer(1001, standby(3000));
    l.lists.set_peer(7, active(9000));
    l.lists.flush();
    EXPECT_EQ(l.lists.writes(), before);
    l.lists.set_peer(500, active(kT1));
    l.lists.flush();
    EXPECT_EQ(l.lists.writes(), before + 1);
    EXPECT_EQ(l.slots(LB_CANDIDATES_ANY).back(), 1001u);
}

// Whatever the order of changes, every list is what its definition says,
// worked out from scratch.
TEST(CandidateLists, MatchesTheDefinitionAfterAnySequenceOfChanges)
{
    constexpr uint32_t kSlots = 40;
    Lists l;
    std::vector<CandidatePeer> peers(kSlots);
    std::vector<NodeSet> rules;
    uint32_t t1 = kT1;
    std::mt19937 rng(42);
    auto expected = [&](uint32_t list) {
        auto member = [&](uint32_t slot) {
            return slot != kSelf && (list == LB_CANDIDATES_ANY ||
                                     (list - 1 < rules.size() && rules[list - 1][slot]));
        };
        bool gate = true;
        for (uint32_t s = 0; s < kSlots; s++)
            if (member(s) && peers[s].usable && !peers[s].standby && peers[s].load_bp < t1)
                gate = false;
        std::vector<uint16_t> out;
        for (uint32_t s = 0; s < kSlots; s++)
            if (member(s) && peers[s].usable && (!peers[s].standby || gate))
                out.push_back(uint16_t(s));
        return out;
    };
    for (int step = 0; step < 5000; step++) {
        const uint32_t what = rng() % 20;
        if (what == 0) {
            rules.assign(rng() % 4, NodeSet{});
            for (NodeSet& r : rules)
                for (uint32_t s = 0; s < kSlots; s++)
                    r[s] = rng() % 3 == 0;
            l.lists.set_rules(rules);
        } else if (what == 1) {
            t1 = rng() % 10000;
            l.lists.set_accept_below(t1);
        } else {
            const uint32_t slot = rng() % kSlots;
            peers[slot] = {rng() % 4 != 0, rng() % 3 == 0, uint32_t(rng() % 10000)};
            l.lists.set_peer(slot, peers[slot]);
        }
        if (rng() % 3 == 0)
            continue; // several changes, one flush
        l.lists.flush();
        for (uint32_t list = 0; list < LB_CANDIDATE_LISTS; list++)
            ASSERT_EQ(l.slots(list), expected(list)) << "list " << list << ", step " << step;
    }
}
