// The SYN decision through the real program: T1/T2 boundaries, least vs
// weighted spread over many SYNs on stale (but fresh enough) loads, the
// per-connection estimate, unusable peers, fail-safe, retransmitted SYNs.
#include <linux/bpf.h>

#include <cmath>

#include "fixture.h"

extern "C" {
#include "bpf/decision.h"
}

namespace peerlb::test {
namespace {

constexpr uint16_t kFirstPort = 10000;
constexpr uint64_t kSecondNs = 1'000'000'000ull;
// Long enough for a few hundred SYNs on a slow machine to see fresh loads.
constexpr uint64_t kShortStaleNs = 10 * kSecondNs;

class XdpDecision : public DataPlaneTest {
protected:
    // Sends `count` SYNs from distinct source ports (IPv4, l2 mode) and
    // returns how many the flow table gives each node (LB_NODE_LOCAL: kept).
    // Every verdict must match the recorded decision.
    std::map<uint32_t, int> send_syns(int count, uint16_t first_port = kFirstPort)
    {
        std::map<uint32_t, int> per_node;
        for (int i = 0; i < count; i++) {
            const uint16_t port = uint16_t(first_port + i);
            RunResult r = run_xdp(client_syn(LB_FAMILY_IPV4, port));
            std::optional<lb_flow> flow = maps().flow(client_key(LB_FAMILY_IPV4, port));
            if (!flow) {
                ADD_FAILURE() << "no flow recorded for SYN from port " << port;
                continue;
            }
            EXPECT_EQ(r.verdict, flow->node == LB_NODE_LOCAL ? XDP_PASS : XDP_TX)
                << "SYN from port " << port;
            per_node[flow->node]++;
        }
        return per_node;
    }

    // One SYN's decision: where it went and which counter says why.
    void expect_syn(uint16_t port, uint32_t node, const char* counter)
    {
        RunResult r = run_xdp(client_syn(LB_FAMILY_IPV4, port));
        EXPECT_EQ(r.verdict, node == LB_NODE_LOCAL ? XDP_PASS : XDP_TX);
        std::optional<lb_flow> flow = maps().flow(client_key(LB_FAMILY_IPV4, port));
        ASSERT_TRUE(flow);
        EXPECT_EQ(flow->node, node);
        EXPECT_EQ(counter_deltas(), (Counts{{counter, 1}}));
    }

    void set_loads(std::initializer_list<uint32_t> loads)
    {
        uint32_t slot = 0;
        for (uint32_t load : loads)
            set_load(slot++, load);
    }
};

TEST_F(XdpDecision, KeepsJustBelowT1)
{
    set_loads({4999, 0, 0, 0});
    expect_syn(kFirstPort, LB_NODE_LOCAL, "syn_local_below_t1");
    change_config([](lb_config& c) { c.pick = LB_PICK_WEIGHTED; });
    set_load(kSelfSlot, 4999); // resets the pending count of the first SYN
    expect_syn(kFirstPort + 1, LB_NODE_LOCAL, "syn_local_below_t1");
}

TEST_F(XdpDecision, ForwardsAtT1ToAPeerT2Lower)
{
    set_loads({5000, 3000, 5000, 9000});
    expect_syn(kFirstPort, 1, "syn_forward_least");
}

TEST_F(XdpDecision, PeerExactlyT2LowerIsACandidate)
{
    for (uint32_t pick : {LB_PICK_LEAST, LB_PICK_WEIGHTED}) {
        SCOPED_TRACE(pick == LB_PICK_LEAST ? "least" : "weighted");
        change_config([&](lb_config& c) { c.pick = pick; });
        const uint16_t port = uint16_t(kFirstPort + 10 * pick);
        set_loads({5000, 3000, 5000, 5000});
        expect_syn(port, 1, pick == LB_PICK_LEAST ? "syn_forward_least" : "syn_forward_weighted");
        // 0.01 % less difference: nobody is low enough.
        set_loads({5000, 3001, 5000, 5000});
        expect_syn(port + 1, LB_NODE_LOCAL, "syn_local_no_lower_peer");
    }
}

TEST_F(XdpDecision, PendingConnectionsCountTowardsOwnLoad)
{
    // 49.9 % plus one kept connection at 0.1 % each reaches T1.
    set_conn_cost(10);
    set_loads({4990, 1000, 2000, 4000});
    expect_syn(kFirstPort, LB_NODE_LOCAL, "syn_local_below_t1");
    EXPECT_EQ(handed_since(kSelfSlot), 1);
    expect_syn(kFirstPort + 1, 1, "syn_forward_least");
    EXPECT_EQ(handed_since(1), 1);
    // A load update resets the estimate.
    set_load(kSelfSlot, 4990);
    expect_syn(kFirstPort + 2, LB_NODE_LOCAL, "syn_local_below_t1");
}

TEST_F(XdpDecision, LeastWithoutConnectionCostSendsEverySynToOnePeer)
{
    // Loads written once, never again during the burst: the herding case.
    set_loads({9000, 1000, 2000, 4000});
    const int syns = 3000;
    std::map<uint32_t, int> per_node = send_syns(syns);
    EXPECT_EQ(per_node, (std::map<uint32_t, int>{{1, syns}}));
    EXPECT_EQ(conns_forwarded(1), uint64_t(syns));
    EXPECT_EQ(handed_since(1), syns);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", syns}}));
}

TEST_F(XdpDecision, WeightedSpreadsInProportionToSpareCapacity)
{
    change_config([](lb_config& c) { c.pick = LB_PICK_WEIGHTED; });
    set_loads({9000, 1000, 2000, 4000}); // spare 9000 : 8000 : 6000
    const int syns = 3000;
    std::map<uint32_t, int> per_node = send_syns(syns);
    EXPECT_EQ(per_node.count(LB_NODE_LOCAL), 0u);
    EXPECT_EQ(per_node.count(kSelfSlot), 0u);
    const double weights[] = {0, 9001, 8001, 6001};
    const double total = weights[1] + weights[2] + weights[3];
    for (uint32_t slot = 1; slot <= 3; slot++) {
        // Binomial counts: 6 standard deviations (about 160 of 3000) make a
        // false failure practically impossible, while a uniform or
        // least-loaded pick (1000 or 3000 for slot 1) is far outside.
        const double p = weights[slot] / total;
        const double tolerance = 6 * std::sqrt(syns * p * (1 - p));
        EXPECT_NEAR(per_node[slot], syns * p, tolerance) << "slot " << slot;
        EXPECT_EQ(conns_forwarded(slot), uint64_t(per_node[slot])) << "slot " << slot;
    }
    EXPECT_GT(per_node[1], per_node[2]);
    EXPECT_GT(per_node[2], per_node[3]);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_weighted", syns}}));
}

TEST_F(XdpDecision, LeastWithConnectionCostSpreadsAcrossPeers)
{
    const uint32_t cost = 10;
    set_conn_cost(cost);
    const uint32_t loads[kNodeSlots] = {9000, 1000, 2000, 4000};
    set_loads({loads[0], loads[1], loads[2], loads[3]});
    const int syns = 3000;
    std::map<uint32_t, int> per_node = send_syns(syns);

    // Every peer gets some, none gets them all.
    for (uint32_t slot = 1; slot <= 3; slot++) {
        EXPECT_GT(per_node[slot], 0) << "slot " << slot;
        EXPECT_LT(per_node[slot], syns) << "slot " << slot;
    }
    // The same burst through bpf/decision.h with the program's accounting
    // (each SYN charges its node, this one included) gives the very same
    // split: the pending estimate works in the program as designed.
    lb_config cfg = config();
    int32_t pending[kNodeSlots] = {};
    std::map<uint32_t, int> model;
    for (int i = 0; i < syns; i++) {
        lb_peer_view peers[kNodeSlots] = {};
        for (uint32_t slot = 0; slot < kNodeSlots; slot++) {
            peers[slot].load_bp = slot == kSelfSlot
                                      ? LB_LOAD_UNUSABLE
                                      : lb_effective_load(loads[slot], pending[slot], cost);
            peers[slot].weight = LB_WEIGHT_ONE;
        }
        lb_decision d = lb_decide(&cfg, lb_effective_load(loads[0], pending[0], cost), peers,
                                  kNodeSlots, 0);
        model[d.node]++;
        pending[d.node == LB_NODE_LOCAL ? kSelfSlot : d.node]++;
    }
    EXPECT_EQ(per_node, model);
    for (uint32_t slot = 0; slot < kNodeSlots; slot++)
        EXPECT_EQ(handed_since(slot), pending[slot]) << "slot " << slot;
    // Water-filling: the peers end within one connection's cost of each other.
    uint32_t low = UINT32_MAX, high = 0;
    for (uint32_t slot = 1; slot <= 3; slot++) {
        const uint32_t bp = lb_effective_load(loads[slot], pending[slot], cost);
        low = std::min(low, bp);
        high = std::max(high, bp);
    }
    EXPECT_LE(high - low, cost);
}

TEST_F(XdpDecision, UnusablePeersAreNeverChosen)
{
    // Slot 1 is the only usable candidate and the most loaded of them all.
    const uint32_t slots = 8;
    change_config([&](lb_config& c) { c.node_slots = slots - 1; });
    // Short limits here, so "older than the limit" needs little uptime.
    change_config([](lb_config& c) { c.peer_stale_ns = c.self_stale_ns = kShortStaleNs; });
    const uint64_t now = monotonic_ns();
    ASSERT_GT(now, kShortStaleNs + kSecondNs) << "uptime too short for a stale timestamp";
    for (uint32_t slot = kNodeSlots; slot < slots; slot++)
        maps().set_node(slot, test_node(LB_FAMILY_IPV4, slot, 0, now));
    set_loads({9000, 6999, 0, 0, 0, 0, 0, 0});
    set_load_at(2, 0, now - kShortStaleNs - kSecondNs); // stale
    set_state(3, LB_NODE_DEAD);
    set_state(4, LB_NODE_SUSPECT);
    set_state(5, LB_NODE_UNROUTABLE);
    set_state(6, LB_NODE_EMPTY);
    // Slot 7 is alive, fresh and idle, but beyond node_slots.

    for (uint32_t pick : {LB_PICK_WEIGHTED, LB_PICK_LEAST}) {
        SCOPED_TRACE(pick == LB_PICK_LEAST ? "least" : "weighted");
        change_config([&](lb_config& c) { c.pick = pick; });
        std::map<uint32_t, int> per_node = send_syns(500, uint16_t(kFirstPort + 1000 * pick));
        EXPECT_EQ(per_node, (std::map<uint32_t, int>{{1, 500}}));
    }
    // Without slot 1 nobody is left: everything stays.
    set_load(1, 7001);
    std::map<uint32_t, int> per_node = send_syns(200, kFirstPort + 5000);
    EXPECT_EQ(per_node, (std::map<uint32_t, int>{{LB_NODE_LOCAL, 200}}));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_weighted", 500},
                                        {"syn_forward_least", 500},
                                        {"syn_local_no_lower_peer", 200}}));
}

TEST_F(XdpDecision, StaleOwnLoadKeepsEverything)
{
    change_config([](lb_config& c) { c.peer_stale_ns = c.self_stale_ns = kShortStaleNs; });
    const uint64_t now = monotonic_ns();
    ASSERT_GT(now, kShortStaleNs + kSecondNs) << "uptime too short for a stale timestamp";
    set_loads({9000, 0, 0, 0});
    set_load_at(kSelfSlot, 9000, now - kShortStaleNs - kSecondNs);
    expect_syn(kFirstPort, LB_NODE_LOCAL, "syn_local_failsafe");
    EXPECT_EQ(maps().flow(client_key(LB_FAMILY_IPV4, kFirstPort))->reason, LB_REASON_FAILSAFE);
    // Never written at all: the same.
    set_load_at(kSelfSlot, 9000, 0);
    expect_syn(kFirstPort + 1, LB_NODE_LOCAL, "syn_local_failsafe");
}

TEST_F(XdpDecision, RetransmittedSynGoesWhereTheFirstWent)
{
    // Kept, then this node gets loaded: the retransmission stays.
    set_loads({1000, 1000, 2000, 4000});
    Bytes kept = client_syn(LB_FAMILY_IPV4, kFirstPort);
    EXPECT_TRUE(passed_untouched(run_xdp(kept), kept));
    set_loads({9000, 0, 0, 0});
    EXPECT_TRUE(passed_untouched(run_xdp(kept), kept));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_local_below_t1", 1}, {"pass_flow_local", 1}}));

    // Forwarded to slot 1, then slot 1 is the busiest peer: still slot 1.
    set_loads({9000, 1000, 2000, 4000});
    Bytes forwarded = client_syn(LB_FAMILY_IPV4, kFirstPort + 1);
    EXPECT_TRUE(l2_forwarded(run_xdp(forwarded), forwarded, 1));
    set_loads({9000, 6000, 0, 0});
    EXPECT_TRUE(l2_forwarded(run_xdp(forwarded), forwarded, 1));
    // Also once this node would keep new connections.
    set_load(kSelfSlot, 0);
    EXPECT_TRUE(l2_forwarded(run_xdp(forwarded), forwarded, 1));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"tx_flow_forward", 2}}));
    // A new connection does see the new loads.
    set_loads({9000, 6000, 0, 0});
    expect_syn(kFirstPort + 2, 2, "syn_forward_least");
    EXPECT_EQ(conns_forwarded(1), 1u);
}

TEST_F(XdpDecision, RetransmittedSynGoesWhereTheFirstWentOverIpv6AndIpip)
{
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV6);
    set_loads({9000, 1000, 2000, 4000});
    Bytes syn = client_syn(LB_FAMILY_IPV6);
    RunResult first = run_xdp(syn);
    ASSERT_EQ(first.verdict, XDP_TX);
    set_loads({9000, 6000, 0, 0});
    RunResult again = run_xdp(syn);
    EXPECT_EQ(again.verdict, XDP_TX);
    EXPECT_EQ(hex(again.out), hex(first.out));
    EXPECT_EQ(maps().flow(client_key(LB_FAMILY_IPV6))->node, 1u);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"tx_flow_forward", 1}}));
}

} // namespace
} // namespace peerlb::test
