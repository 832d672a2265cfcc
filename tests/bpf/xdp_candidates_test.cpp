// The decision over the agent's candidate lists (maps/candidates.h), through
// the real program: every listed peer (choices = 0) among a thousand, power
// of two choices (never the busiest, every other reached, in the
// proportions the draw gives), slots the list does not name, listed slots
// that are dead or stale, a listed standby peer, and a URI rule's list.
#include <linux/bpf.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "http_fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

constexpr uint16_t kFirstPort = 20000;
constexpr uint32_t kBusy = 9000; // this node's load: it hands connections on
constexpr uint64_t kSecondNs = 1'000'000'000ull;
constexpr uint64_t kShortStaleNs = 10 * kSecondNs;

// Binomial counts within 6 standard deviations: a false failure is
// practically impossible, a wrong distribution is far outside.
::testing::AssertionResult within_binomial(int count, int trials, double p)
{
    const double mean = trials * p, tolerance = 6 * std::sqrt(trials * p * (1 - p));
    if (std::fabs(count - mean) <= tolerance)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << count << " of " << trials << ", expected " << mean << " +- " << tolerance;
}

class XdpCandidates : public HttpDataPlaneTest {
protected:
    // Sends `count` SYNs from distinct ports (IPv4, l2) and returns how
    // many the flow table gives each node (LB_NODE_LOCAL: kept).
    std::map<uint32_t, int> send_syns(int count, uint16_t first_port)
    {
        std::map<uint32_t, int> per_node;
        for (int i = 0; i < count; i++) {
            const uint16_t port = uint16_t(first_port + i);
            const RunResult r = run_xdp(client_syn(LB_FAMILY_IPV4, port));
            const std::optional<lb_flow> flow = maps().flow(client_key(LB_FAMILY_IPV4, port));
            if (!flow) {
                ADD_FAILURE() << "no flow for the SYN from port " << port;
                continue;
            }
            EXPECT_EQ(r.verdict, flow->node == LB_NODE_LOCAL ? XDP_PASS : XDP_TX) << port;
            per_node[flow->node]++;
        }
        return per_node;
    }

    void write_list(uint32_t list, const std::vector<uint16_t>& slots)
    {
        lb_candidates c{};
        c.count = uint32_t(slots.size());
        std::copy(slots.begin(), slots.end(), c.slots);
        maps().set_candidates(list, c);
    }

    void set_decision(uint32_t choices, uint32_t pick)
    {
        change_config([&](lb_config& c) {
            c.choices = choices;
            c.pick = pick;
        });
    }
};

const char* pick_name(uint32_t pick) { return pick == LB_PICK_LEAST ? "least" : "weighted"; }

TEST_F(XdpCandidates, EveryListedPeerComparedPicksTheLeastOfAThousand)
{
    // Loads 20.00 .. 69.99 %, slot 613 alone at 10 %.
    auto load_of = [](uint32_t slot) { return slot == 613 ? 1000u : 2000u + slot * 37 % 5000; };
    set_cluster_size(1001, load_of);
    set_load(kSelfSlot, kBusy);
    set_decision(0, LB_PICK_LEAST);
    ASSERT_EQ(maps().candidates(LB_CANDIDATES_ANY).count, 1000u);

    auto decided = [&](uint16_t port) {
        const RunResult r = run_xdp(client_syn(LB_FAMILY_IPV4, port));
        EXPECT_EQ(r.verdict, XDP_TX);
        const auto flow = maps().flow(client_key(LB_FAMILY_IPV4, port));
        return flow ? flow->node : LB_NODE_LOCAL;
    };
    EXPECT_EQ(decided(kFirstPort), 613u);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));

    // Out of the list, the least is the next one: the list decides who is
    // compared, whatever lb_nodes holds.
    std::vector<uint16_t> others;
    uint32_t next = 0;
    for (uint32_t slot = 1; slot <= 1000; slot++) {
        if (slot == 613)
            continue;
        others.push_back(uint16_t(slot));
        if (!next || load_of(slot) < load_of(next))
            next = slot;
    }
    write_list(LB_CANDIDATES_ANY, others);
    EXPECT_EQ(decided(kFirstPort + 1), next);
}

TEST_F(XdpCandidates, ASlotOutOfTheListIsNeverChosen)
{
    // Slot 1 idle, the others busier; the list leaves slot 1 out.
    set_cluster_size(8, [](uint32_t slot) { return slot == 1 ? 0u : 1000u * slot; });
    set_load(kSelfSlot, kBusy);
    write_list(LB_CANDIDATES_ANY, {2, 3, 4, 5, 6, 7});
    uint16_t port = kFirstPort;
    for (uint32_t choices : {0u, 2u, 8u}) {
        for (uint32_t pick : {LB_PICK_LEAST, LB_PICK_WEIGHTED}) {
            SCOPED_TRACE(fmt::format("choices {}, pick {}", choices, pick_name(pick)));
            set_decision(choices, pick);
            write_list(LB_CANDIDATES_ANY, {2, 3, 4, 5, 6, 7}); // change_config synced it
            const auto per_node = send_syns(200, port);
            port += 200;
            EXPECT_EQ(per_node.count(1), 0u);
            EXPECT_EQ(per_node.count(LB_NODE_LOCAL), 0u);
        }
    }
}

TEST_F(XdpCandidates, AListedPeerThatIsDeadOrStaleIsNeverChosen)
{
    change_config([](lb_config& c) { c.peer_stale_ns = c.self_stale_ns = kShortStaleNs; });
    const uint64_t now = monotonic_ns();
    ASSERT_GT(now, kShortStaleNs + kSecondNs) << "uptime too short for a stale timestamp";
    // Slot 1 at 60 % is the only usable peer; 2..6 idle but unusable.
    set_cluster_size(7, [](uint32_t slot) { return slot == 1 ? 6000u : 0u; });
    set_load(kSelfSlot, kBusy);
    set_state(2, LB_NODE_DEAD);
    set_state(3, LB_NODE_SUSPECT);
    set_state(4, LB_NODE_UNROUTABLE);
    set_state(5, LB_NODE_EMPTY);
    set_load_at(6, 0, now - kShortStaleNs - kSecondNs);
    uint16_t port = kFirstPort;
    for (uint32_t choices : {0u, 2u, 8u}) {
        for (uint32_t pick : {LB_PICK_LEAST, LB_PICK_WEIGHTED}) {
            SCOPED_TRACE(fmt::format("choices {}, pick {}", choices, pick_name(pick)));
            set_decision(choices, pick);
            // A list that lags every one of those changes.
            write_list(LB_CANDIDATES_ANY, {1, 2, 3, 4, 5, 6});
            auto per_node = send_syns(300, port);
            port += 300;
            const int kept = per_node[LB_NODE_LOCAL];
            per_node.erase(LB_NODE_LOCAL);
            EXPECT_EQ(per_node, (std::map<uint32_t, int>{{1, 300 - kept}}));
            // Two of six drawn: slot 1, or no usable peer (kept).
            if (choices == 2)
                EXPECT_GT(kept, 0);
            else
                EXPECT_EQ(kept, 0);
        }
    }
}

TEST_F(XdpCandidates, TwoChoicesLeastNeverTakesTheBusiestAndReachesEveryOther)
{
    // Eight peers, slot s at 5 s %: with pick = least among two drawn, the
    // s-th least loaded wins when drawn with one of the 8 - s busier
    // peers: p(s) = (8 - s) / C(8, 2).
    constexpr uint32_t kPeers = 8;
    set_cluster_size(kPeers + 1, [](uint32_t slot) { return 500 * slot; });
    set_load(kSelfSlot, kBusy);
    set_decision(2, LB_PICK_LEAST);
    const int syns = 4000;
    auto per_node = send_syns(syns, kFirstPort);
    EXPECT_EQ(per_node.count(kPeers), 0u) << "the busiest peer";
    EXPECT_EQ(per_node.count(LB_NODE_LOCAL), 0u);
    const double pairs = kPeers * (kPeers - 1) / 2.0;
    for (uint32_t slot = 1; slot < kPeers; slot++) {
        EXPECT_GT(per_node[slot], 0) << "slot " << slot;
        EXPECT_TRUE(within_binomial(per_node[slot], syns, (kPeers - slot) / pairs)) << "slot " << slot;
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", syns}}));
}

TEST_F(XdpCandidates, TwoChoicesWeightedDrawsByCapacityWithinEachPair)
{
    // Four peers: a pair {s, t} is drawn with probability 1 / C(4, 2), then
    // s wins it in proportion to its spare capacity (+1, decision.h).
    const uint32_t loads[] = {0, 1000, 3000, 5000, 7000};
    set_cluster_size(5, [&](uint32_t slot) { return loads[slot]; });
    set_load(kSelfSlot, kBusy);
    set_decision(2, LB_PICK_WEIGHTED);
    const int syns = 3000;
    auto per_node = send_syns(syns, kFirstPort);
    EXPECT_EQ(per_node.count(LB_NODE_LOCAL), 0u);
    auto spare = [&](uint32_t slot) { return double(LB_LOAD_FULL - loads[slot] + 1); };
    for (uint32_t s = 1; s <= 4; s++) {
        double p = 0;
        for (uint32_t t = 1; t <= 4; t++)
            if (t != s)
                p += spare(s) / (spare(s) + spare(t)) / 6;
        EXPECT_TRUE(within_binomial(per_node[s], syns, p)) << "slot " << s;
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_weighted", syns}}));
}

TEST_F(XdpCandidates, TheStandbyGateIsTheAgents)
{
    // Slots 1 and 2 active under T1, slot 3 a standby peer, idle.
    set_load(kSelfSlot, kBusy);
    set_load(1, 2000);
    set_load(2, 3000);
    set_load(3, 0);
    lb_node standby = maps().node(3);
    standby.flags = LB_NODE_STANDBY;
    maps().set_node_entry(3, standby);
    set_decision(0, LB_PICK_LEAST); // and the lists, as the agent keeps them
    EXPECT_EQ(maps().candidates(LB_CANDIDATES_ANY).count, 2u) << "the agent's lists: it waits";
    auto per_node = send_syns(50, kFirstPort);
    EXPECT_EQ(per_node, (std::map<uint32_t, int>{{1, 50}}));
    // Listed (the agent saw every active peer at T1), it is a candidate
    // like any other: the least loaded here.
    write_list(LB_CANDIDATES_ANY, {1, 2, 3});
    per_node = send_syns(50, kFirstPort + 50);
    EXPECT_EQ(per_node, (std::map<uint32_t, int>{{3, 50}}));
}

// A URI rule's decision draws from the rule's list and takes only slots
// the rule names, even from a list that says otherwise.
TEST_F(XdpCandidates, ARulesListAndNodesAreHonoured)
{
    use_http(LB_FORWARD_L2);
    // Slots 1 and 6, 7 idle, not the rule's; its members 2..5 from 30 %.
    set_cluster_size(8, [](uint32_t slot) { return slot >= 2 && slot <= 5 ? 2000u + 500 * slot : 0u; });
    set_load(kSelfSlot, kBusy);
    lb_uri_rule rule{};
    constexpr std::string_view prefix = "/index";
    std::memcpy(rule.pattern, prefix.data(), prefix.size());
    rule.pattern_len = uint16_t(prefix.size());
    for (uint32_t slot : {2u, 3u, 4u, 5u})
        lb_node_set_add(rule.nodes, slot);
    maps().set_uri_rule(0, rule);
    change_config([](lb_config& c) {
        c.uri_rules = 1;
        c.choices = 2;
        c.pick = LB_PICK_LEAST;
    });
    EXPECT_EQ(maps().candidates(lb_rule_candidates(0)).count, 4u);
    // Slot 1 in the rule's list (a list the agent has not rewritten yet).
    write_list(lb_rule_candidates(0), {1, 2, 3, 4, 5});

    std::map<uint32_t, int> per_node;
    const int requests = 300;
    for (int i = 0; i < requests; i++) {
        const uint16_t port = uint16_t(kFirstPort + i);
        const uint32_t cookie = handshake(port, 1000u * port);
        const Bytes first = segment(port, 1000u * port, cookie);
        const RunResult r = run_xdp(first);
        const auto flow = maps().flow(client_key(family(), port));
        ASSERT_TRUE(flow) << "port " << port;
        EXPECT_EQ(r.verdict, flow->node == LB_NODE_LOCAL ? XDP_PASS : XDP_TX);
        EXPECT_EQ(flow->rule, 1u);
        per_node[flow->node]++;
    }
    // Drawn with slot 1, a member goes alone; with another member, the
    // less loaded goes: never a slot out of the rule.
    for (const auto& [node, n] : per_node)
        EXPECT_TRUE(node >= 2 && node <= 5) << "slot " << node << ": " << n;
    for (uint32_t slot = 2; slot <= 5; slot++)
        EXPECT_GT(per_node[slot], 0) << "slot " << slot;
    EXPECT_EQ(maps().rule_counters()[0].hits, uint64_t(requests));
    EXPECT_EQ(maps().rule_counters()[0].spilled, 0u);
}

} // namespace
} // namespace peerlb::test
