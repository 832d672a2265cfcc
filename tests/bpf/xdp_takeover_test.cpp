// The data plane's part of keeping connections alive (DESIGN section 5):
// half-open and established flows in separate tables (a SYN flood cannot
// evict an established flow), and orphans dropped while a moved address is
// in its grace period.
#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

class XdpTakeover : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(LB_FORWARD_L2, family());
        set_load(kSelfSlot, 9000); // every SYN is forwarded: to slot 1 (least)
    }
    uint8_t family() const { return GetParam(); }

    Bytes client_ack(uint16_t sport = kClientPort) const
    {
        Tcp t;
        t.sport = sport;
        t.flags = kAck;
        t.seq = 1001;
        t.ack = 5001;
        return client_frame(family(), t);
    }
    size_t established() const
    {
        size_t n = 0;
        for (const auto& f : maps().flows())
            n += f.established;
        return n;
    }
};

INSTANTIATE_TEST_SUITE_P(Family, XdpTakeover,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

TEST_P(XdpTakeover, SynIsHalfOpenUntilTheHandshakeGoesOn)
{
    const Bytes syn = client_syn(family());
    EXPECT_EQ(run_xdp(syn).verdict, uint32_t(XDP_TX));
    auto flows = maps().flows();
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_FALSE(flows[0].established);

    // A retransmitted SYN stays half-open and goes the same way.
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 1));
    EXPECT_EQ(established(), 0u);

    // The handshake's ACK moves the entry to the established table and
    // follows it.
    const Bytes ack = client_ack();
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 1));
    flows = maps().flows();
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_TRUE(flows[0].established);
    EXPECT_EQ(flows[0].value.node, 1u);
    EXPECT_EQ(flows[0].value.reason, LB_REASON_LEAST);
}

// A SYN on a tuple whose entry's node is gone (dead, or its information
// stale) is a new connection: decided anew, never black-holed to that node
// (a client behind NAT reusing its port). The reused tuple's established
// entry is dropped so that the new half-open one is the one found.
TEST_P(XdpTakeover, SynOnAnEntryWhoseNodeIsGoneIsDecidedAnew)
{
    run_xdp(client_syn(family()));
    run_xdp(client_ack()); // established, to slot 1
    ASSERT_EQ(established(), 1u);
    set_state(1, LB_NODE_DEAD);
    counter_deltas();

    const Bytes syn = client_syn(family());
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 2)); // slot 2: now the least loaded
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    auto flows = maps().flows();
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_FALSE(flows[0].established);
    EXPECT_EQ(flows[0].value.node, 2u);

    // Its handshake ACK follows the new decision.
    const Bytes ack = client_ack();
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 2));
}

// The same for a retransmitted SYN whose half-open entry's node went stale.
TEST_P(XdpTakeover, RetransmittedSynWhoseNodeWentStaleIsDecidedAnew)
{
    const Bytes syn = client_syn(family());
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 1));
    set_load_at(1, 1000, 1); // its load last written at boot: stale
    counter_deltas();
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 2));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    auto flows = maps().flows();
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_EQ(flows[0].value.node, 2u);
}

// While the entry's node is usable, a SYN follows the entry, established or
// not: a spoofed SYN on a live connection's tuple cannot move it (the
// serving kernel answers it as TCP does).
TEST_P(XdpTakeover, SynOnALiveEntryFollowsIt)
{
    run_xdp(client_syn(family()));
    run_xdp(client_ack()); // established, to slot 1
    set_load(1, 9500);     // a new decision would pick another node
    counter_deltas();
    const Bytes syn = client_syn(family());
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 1));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
    EXPECT_EQ(established(), 1u);
}

TEST_P(XdpTakeover, SynsNeverTouchTheEstablishedTable)
{
    run_xdp(client_syn(family()));
    run_xdp(client_ack()); // established, to slot 1
    set_load(1, 9500);     // later SYNs go elsewhere
    for (uint16_t port = 1; port <= 500; port++)
        run_xdp(client_syn(family(), uint16_t(kClientPort + port)));
    EXPECT_EQ(established(), 1u);
    EXPECT_EQ(maps().flows().size(), 501u);
    const Bytes ack = client_ack();
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 1)) << "the established flow kept its node";
}

TEST_P(XdpTakeover, AnnouncedFlowIsForwardedToItsNode)
{
    // What the agent installs from a peer's announcement after a takeover.
    lb_flow flow{};
    flow.node = 2;
    flow.reason = LB_REASON_HANDOVER;
    maps().add_flow(client_key(family()), flow);
    const Bytes ack = client_ack();
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 2));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
}

TEST_P(XdpTakeover, OrphansAreDroppedDuringTheGracePeriodOnly)
{
    const Bytes ack = client_ack();
    maps().set_grace(service_addr(family()), monotonic_ns() + 60'000'000'000ull);
    EXPECT_EQ(run_xdp(ack).verdict, uint32_t(XDP_DROP));
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_orphan_grace", 1}}));

    // SYNs are decided as always during the grace period.
    EXPECT_EQ(run_xdp(client_syn(family(), 50000)).verdict, uint32_t(XDP_TX));
    counter_deltas();

    // Past the deadline the kernel answers orphans again.
    maps().set_grace(service_addr(family()), monotonic_ns() - 1);
    EXPECT_TRUE(passed_untouched(run_xdp(ack), ack));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));

    // A grace period of another address does not matter here.
    maps().set_grace(service_addr(family()), 0);
    maps().set_grace(node_addr(family(), 3), monotonic_ns() + 60'000'000'000ull);
    EXPECT_TRUE(passed_untouched(run_xdp(ack), ack));
}

} // namespace
} // namespace peerlb::test
