// Fencing (DESIGN section 5, issue 15 item 12): a node whose agent is gone
// stops answering ARP / neighbour solicitations for its service addresses
// once its own information is older than fence_after_ns (a peer has taken
// them over), while it still serves its own connections; the peer that took
// an address over sends the address's unknown segments to it during the
// grace period; and the fenced node drops what it gets steered that none of
// its sockets has, instead of letting its kernel reset it.
#include <arpa/inet.h>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

constexpr uint64_t kFenceAfterNs = 1'500'000'000ull;
const Mac kRouterMac{0x02, 0xee, 0, 0, 0, 1};
const Mac kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

class XdpFence : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        use(LB_FORWARD_L2);
    }
    void use(uint32_t forward)
    {
        install_cluster(forward, family());
        change_config([](lb_config& cfg) { cfg.fence_after_ns = kFenceAfterNs; });
        counter_deltas();
    }
    uint8_t family() const { return GetParam(); }

    // This node's own information written `age_ns` ago.
    void own_information_aged(uint64_t age_ns)
    {
        set_load_at(kSelfSlot, 1000, monotonic_ns() - age_ns);
    }
    void fenced() { own_information_aged(kFenceAfterNs + 500'000'000ull); }

    // Who has `target`? (ARP request, or neighbour solicitation.)
    Bytes who_has(const IpAddress& target) const
    {
        if (target.family == LB_FAMILY_IPV4)
            return ethernet_frame(Ethernet{kBroadcast, kRouterMac, {}}, kEthArp,
                                  arp_request(kRouterMac, parse_ip("192.0.2.1"), target));
        Bytes ns{135, 0, 0, 0, 0, 0, 0, 0}; // type, code, checksum, reserved
        ns = concat(ns, addr_bytes(target));
        ns = concat(ns, {1, 1}); // source link-layer address option
        ns = concat(ns, mac_bytes(kRouterMac));
        const IpAddress src = parse_ip("fe80::1");
        return ethernet_frame(Ethernet{node_mac(kSelfSlot), kRouterMac, {}}, ethertype_of(LB_FAMILY_IPV6),
                              ipv6_packet(src, target, kProtoIcmpv6, ns, {}, 255));
    }

    // A client segment continuing a connection, steered here by peer 2.
    Bytes steered_ack(uint8_t flags = kAck) const
    {
        Tcp t;
        t.flags = flags;
        t.seq = 1001;
        t.ack = flags & kSyn ? 0 : 5001;
        Ethernet eth{node_mac(kSelfSlot), node_mac(2), {}};
        return tcp_frame(eth, client_addr(family()), service_addr(family()), t);
    }
    Bytes client_ack() const
    {
        Tcp t;
        t.flags = kAck;
        t.seq = 1001;
        t.ack = 5001;
        return client_frame(family(), t);
    }
};

INSTANTIATE_TEST_SUITE_P(Family, XdpFence,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

TEST_P(XdpFence, NeighbourRequestsForServiceAddressesStopOnceOwnInformationIsStale)
{
    const Bytes for_service = who_has(service_addr(family()));
    const Bytes for_node = who_has(node_addr(family(), kSelfSlot));

    // Fresh, and stale but not yet for as long as the peers take.
    for (uint64_t age : {uint64_t(0), uint64_t(kFenceAfterNs - 500'000'000ull)}) {
        own_information_aged(age);
        EXPECT_TRUE(passed_untouched(run_xdp(for_service), for_service));
    }
    counter_deltas();

    fenced();
    EXPECT_EQ(run_xdp(for_service).verdict, uint32_t(XDP_DROP));
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_fenced_neigh", 1}}));
    // The node's own address stays reachable.
    EXPECT_TRUE(passed_untouched(run_xdp(for_node), for_node));
    if (family() == LB_FAMILY_IPV6) {
        const Bytes link_local = who_has(parse_ip("fe80::77"));
        EXPECT_TRUE(passed_untouched(run_xdp(link_local), link_local));
    }

    // Without a fence setting (no agent ever set one), never.
    change_config([](lb_config& cfg) { cfg.fence_after_ns = 0; });
    EXPECT_TRUE(passed_untouched(run_xdp(for_service), for_service));
    // Own information never written (an agent starting): not fenced.
    change_config([](lb_config& cfg) { cfg.fence_after_ns = kFenceAfterNs; });
    set_load_at(kSelfSlot, 1000, 0);
    EXPECT_TRUE(passed_untouched(run_xdp(for_service), for_service));
}

TEST_P(XdpFence, FencedNodeStillServesItsConnectionsAndDropsSteeredUnknowns)
{
    fenced();
    // Its own connection's packets from the client: the flow entry, as ever.
    add_flow(client_key(family()), LB_NODE_LOCAL);
    const Bytes mine = client_ack();
    EXPECT_TRUE(passed_untouched(run_xdp(mine), mine));

    // Steered here by the peer that holds the address now: no socket has
    // it, so it is dropped (the kernel would reset another node's
    // connection); a SYN still passes.
    const Bytes unknown = steered_ack();
    EXPECT_EQ(run_xdp(unknown).verdict, uint32_t(XDP_DROP));
    const Bytes syn = steered_ack(kSyn);
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_flow_local", 1},
                                        {"drop_fenced_orphan", 1},
                                        {"pass_steered_in", 1}}));

    // Not fenced: steered packets pass untouched, as always.
    own_information_aged(0);
    EXPECT_TRUE(passed_untouched(run_xdp(unknown), unknown));
}

TEST_P(XdpFence, FencedNodeDropsTunnelledUnknownsToo)
{
    use(LB_FORWARD_IPIP);
    const IpAddress from = node_addr(family(), 2);
    Tcp t;
    t.flags = kAck;
    t.seq = 1001;
    t.ack = 5001;
    const Bytes inner =
        ip_packet(client_addr(family()), service_addr(family()), kProtoTcp,
                  tcp_segment(client_addr(family()), service_addr(family()), t));
    const Bytes frame = ethernet_frame(
        Ethernet{node_mac(kSelfSlot), node_mac(2), {}}, ethertype_of(family()),
        ip_packet(from, node_addr(family(), kSelfSlot),
                  family() == LB_FAMILY_IPV4 ? kProtoIpip : kProtoIpv6, inner));
    EXPECT_EQ(run_xdp(frame).verdict, uint32_t(XDP_PASS));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
    fenced();
    EXPECT_EQ(run_xdp(frame).verdict, uint32_t(XDP_DROP));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}, {"drop_fenced_orphan", 1}}));
}

TEST_P(XdpFence, NewHolderSendsUnknownSegmentsToTheFencedHolderDuringGrace)
{
    set_load(kSelfSlot, 1000);
    const Bytes ack = client_ack();
    // Taken over from slot 3, whose agent is gone.
    maps().set_grace(service_addr(family()), monotonic_ns() + 60'000'000'000ull, 3);
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 3));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_grace_previous", 1}}));
    // Recorded: the connection keeps going there after the grace period
    // (a peer's announcement would overwrite the entry).
    auto flows = maps().flows();
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_TRUE(flows[0].established);
    EXPECT_EQ(flows[0].value.node, 3u);
    EXPECT_EQ(flows[0].value.reason, LB_REASON_HANDOVER);
    maps().set_grace(service_addr(family()), monotonic_ns() - 1, 3);
    EXPECT_TRUE(l2_forwarded(run_xdp(ack), ack, 3));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));

    // After the grace period the kernel answers, as for any orphan.
    Tcp t;
    t.sport = kClientPort + 1;
    t.flags = kAck;
    t.seq = 1001;
    t.ack = 5001;
    const Bytes other = client_frame(family(), t);
    EXPECT_TRUE(passed_untouched(run_xdp(other), other));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
}

} // namespace
} // namespace peerlb::test
