// xdp_peerlb, one test per verdict path (DESIGN section 2, steps 1-6), for
// IPv4 and IPv6: verdict, output bytes, the counter that moved, the flow
// table.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

// This node is 90 % loaded and every peer far lower: a packet that reached
// the SYN decision would be forwarded, so a pass proves the path taken.
class XdpVerdict : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(LB_FORWARD_L2, family());
        set_load(kSelfSlot, 9000);
    }
    uint8_t family() const { return GetParam(); }
    IpAddress client() const { return client_addr(family()); }
    IpAddress service() const { return service_addr(family()); }
    size_t flow_count() const { return maps().flows().size(); }
};

INSTANTIATE_TEST_SUITE_P(Family, XdpVerdict,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

// Paths that do not depend on the client's family.
class Xdp : public DataPlaneTest {};

Tcp ack_with_data(uint16_t sport = kClientPort)
{
    Tcp t;
    t.sport = sport;
    t.flags = kAck | kPsh;
    t.seq = 1001;
    t.ack = 5001;
    t.payload = Bytes{'G', 'E', 'T', ' ', '/', '\r', '\n'};
    return t;
}

TEST_F(Xdp, ArpPassesUntouched)
{
    set_load(kSelfSlot, 9000);
    Bytes arp = ethernet_frame(Ethernet{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, router_mac(), {}},
                               kEthArp,
                               arp_request(router_mac(), parse_ip("192.0.2.1"),
                                           service_addr(LB_FAMILY_IPV4)));
    EXPECT_TRUE(passed_untouched(run_xdp(arp), arp));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_ip", 1}}));
}

TEST_F(Xdp, UnknownEthertypeBehindVlanTagPassesUntouched)
{
    set_load(kSelfSlot, 9000);
    Bytes lldp = ethernet_frame(inbound({{kEthVlan, 5}}), 0x88cc, Bytes(46, 0x11));
    EXPECT_TRUE(passed_untouched(run_xdp(lldp), lldp));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_ip", 1}}));
}

TEST_P(XdpVerdict, UdpToServicePortPassesUntouched)
{
    Bytes udp = ethernet_frame(inbound(), ethertype_of(family()),
                               ip_packet(client(), service(), kProtoUdp,
                                         udp_datagram(client(), service(), kClientPort,
                                                      kServicePort, Bytes(20, 0x33))));
    EXPECT_TRUE(passed_untouched(run_xdp(udp), udp));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_tcp", 1}}));
    EXPECT_EQ(flow_count(), 0u);
}

TEST_P(XdpVerdict, IcmpEchoPassesUntouched)
{
    Bytes ping = ethernet_frame(inbound(), ethertype_of(family()), icmp_echo(client(), service()));
    EXPECT_TRUE(passed_untouched(run_xdp(ping), ping));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_tcp", 1}}));
}

TEST_P(XdpVerdict, FragmentsPassUntouched)
{
    Tcp syn;
    const Bytes segment = tcp_segment(client(), service(), syn);
    std::vector<Bytes> fragments;
    if (family() == LB_FAMILY_IPV4) {
        Ipv4Fields first, later;
        first.frag_off = 0x2000; // MF, offset 0: the TCP header is all there
        later.frag_off = 185;    // offset 1480, last fragment
        fragments.push_back(ethernet_frame(
            inbound(), kEthIpv4, ipv4_packet(client(), service(), kProtoTcp, segment, first)));
        fragments.push_back(ethernet_frame(
            inbound(), kEthIpv4, ipv4_packet(client(), service(), kProtoTcp, segment, later)));
    } else {
        for (auto [offset, more] : {std::pair<uint16_t, bool>{0, true}, {185, false}})
            fragments.push_back(ethernet_frame(
                inbound(), kEthIpv6,
                ipv6_packet(client(), service(), kProtoTcp, segment,
                            {ipv6_fragment_ext(offset, more)})));
        // A fragment header behind a hop-by-hop header is still a fragment.
        fragments.push_back(ethernet_frame(
            inbound(), kEthIpv6,
            ipv6_packet(client(), service(), kProtoTcp, segment,
                        {ipv6_options_ext(kProtoHopOpts), ipv6_fragment_ext(0, true)})));
    }
    for (const Bytes& frame : fragments)
        EXPECT_TRUE(passed_untouched(run_xdp(frame), frame));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_fragment", fragments.size()}}));
    EXPECT_EQ(flow_count(), 0u);
}

TEST_P(XdpVerdict, NotAServicePassesUntouched)
{
    Tcp other_port;
    other_port.dport = 81;
    Bytes wrong_port = tcp_frame(inbound(), client(), service(), other_port);
    Bytes wrong_addr = tcp_frame(inbound(), client(), node_addr(family(), kSelfSlot), Tcp{});
    EXPECT_TRUE(passed_untouched(run_xdp(wrong_port), wrong_port));
    EXPECT_TRUE(passed_untouched(run_xdp(wrong_addr), wrong_addr));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_service", 2}}));
    EXPECT_EQ(flow_count(), 0u);
}

TEST_P(XdpVerdict, FlowTableHitLocalPassesUntouched)
{
    add_flow(client_key(family()), LB_NODE_LOCAL);
    Bytes data = client_frame(family(), ack_with_data());
    EXPECT_TRUE(passed_untouched(run_xdp(data), data));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_flow_local", 1}}));
}

TEST_P(XdpVerdict, FlowTableHitForwardsToTheRecordedNode)
{
    // Slot 2 is not the least loaded: the flow entry, not a decision, sends it.
    add_flow(client_key(family()), 2);
    Bytes data = client_frame(family(), ack_with_data());
    EXPECT_TRUE(l2_forwarded(run_xdp(data), data, 2));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
    lb_node_counters to_peer = maps().node_counters().at(2);
    EXPECT_EQ(to_peer.packets_forwarded, 1u);
    EXPECT_EQ(to_peer.bytes_forwarded, data.size());
    EXPECT_EQ(to_peer.conns_forwarded, 0u);
}

TEST_P(XdpVerdict, SynBelowT1IsKept)
{
    set_load(kSelfSlot, 4999);
    Bytes syn = client_syn(family());
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_local_below_t1", 1}}));
    std::optional<lb_flow> flow = maps().flow(client_key(family()));
    ASSERT_TRUE(flow);
    EXPECT_EQ(flow->node, LB_NODE_LOCAL);
    EXPECT_EQ(flow->reason, LB_REASON_BELOW_T1);
    EXPECT_EQ(handed_since(kSelfSlot), 1); // charged to this node
}

TEST_P(XdpVerdict, SynAboveT1IsForwardedToTheLeastLoadedPeer)
{
    const uint64_t before = monotonic_ns();
    Bytes syn = client_syn(family());
    EXPECT_TRUE(l2_forwarded(run_xdp(syn), syn, 1));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    std::optional<lb_flow> flow = maps().flow(client_key(family()));
    ASSERT_TRUE(flow);
    EXPECT_EQ(flow->node, 1u);
    EXPECT_EQ(flow->reason, LB_REASON_LEAST);
    EXPECT_GE(flow->created_ns, before);
    EXPECT_LE(flow->created_ns, monotonic_ns());
    EXPECT_EQ(handed_since(1), 1);
    EXPECT_EQ(handed_since(kSelfSlot), 0);
    lb_node_counters to_peer = maps().node_counters().at(1);
    EXPECT_EQ(to_peer.conns_forwarded, 1u);
    EXPECT_EQ(to_peer.packets_forwarded, 1u);
    EXPECT_EQ(to_peer.bytes_forwarded, syn.size());
}

TEST_P(XdpVerdict, SegmentsWithoutFlowOrSocketAreOrphans)
{
    // Neither an ACK, nor a SYN-ACK, nor a RST opens a connection.
    Tcp synack;
    synack.flags = kSyn | kAck;
    Tcp rst;
    rst.flags = kRst;
    for (const Tcp& tcp : {ack_with_data(), synack, rst}) {
        Bytes frame = client_frame(family(), tcp);
        EXPECT_TRUE(passed_untouched(run_xdp(frame), frame));
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 3}}));
    EXPECT_EQ(flow_count(), 0u);
}

TEST_P(XdpVerdict, SegmentOfALocalConnectionPassesAsLocalSocket)
{
    // bpf_skc_lookup_tcp in a test run looks in this network namespace: a
    // real loopback connection is the local socket, the service its address.
    const bool v4 = family() == LB_FAMILY_IPV4;
    const IpAddress loopback = parse_ip(v4 ? "127.0.0.1" : "::1");
    const int af = v4 ? AF_INET : AF_INET6;
    sockaddr_storage addr{};
    socklen_t len = v4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (v4) {
        auto* a = reinterpret_cast<sockaddr_in*>(&addr);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = loopback.addr.v4;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
        a->sin6_family = AF_INET6;
        std::memcpy(&a->sin6_addr, loopback.addr.v6, 16);
    }
    Fd listener(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) ||
        ::listen(listener.get(), 4))
        GTEST_SKIP() << "no loopback listener for this family: " << std::strerror(errno);
    ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    Fd client(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    sockaddr_storage local{};
    socklen_t local_len = sizeof(local);
    ASSERT_EQ(::getsockname(client.get(), reinterpret_cast<sockaddr*>(&local), &local_len), 0);
    const uint16_t server_port = ntohs(v4 ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    const uint16_t client_port =
        ntohs(v4 ? reinterpret_cast<sockaddr_in*>(&local)->sin_port
                 : reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);

    lb_service_key key{};
    key.addr = loopback.addr;
    key.port = htons(server_port);
    key.family = loopback.family;
    maps().add_service(key, lb_service{LB_MODE_L4, 2, 0});

    Tcp segment = ack_with_data(client_port);
    segment.dport = server_port;
    Bytes ours = tcp_frame(inbound(), loopback, loopback, segment);
    EXPECT_TRUE(passed_untouched(run_xdp(ours), ours));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_local_socket", 1}}));

    // Another client port matches only the listener: not a connection here.
    segment.sport = client_port == 65535 ? 1024 : client_port + 1;
    Bytes stranger = tcp_frame(inbound(), loopback, loopback, segment);
    EXPECT_TRUE(passed_untouched(run_xdp(stranger), stranger));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
}

TEST_P(XdpVerdict, SynFromAKnownPeerMacPassesInL2Mode)
{
    // A peer steered it here: never steered again, however loaded we are.
    Ethernet from_peer{node_mac(kSelfSlot), node_mac(2), {}};
    Bytes syn = tcp_frame(from_peer, client(), service(), Tcp{});
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_steered_in", 1}}));
    EXPECT_EQ(flow_count(), 0u);
}

TEST_P(XdpVerdict, KnownPeerMacIsNotSteeredInIpipMode)
{
    // In ipip mode node MACs are next hops (maybe a router): they prove nothing.
    install_cluster(LB_FORWARD_IPIP, family());
    set_load(kSelfSlot, 9000);
    Ethernet from_peer{node_mac(kSelfSlot), node_mac(2), {}};
    Bytes syn = tcp_frame(from_peer, client(), service(), Tcp{});
    RunResult r = run_xdp(syn);
    EXPECT_EQ(r.verdict, XDP_TX);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

// Steered in by a peer with an outer header (any forward mode).
class XdpDecap : public XdpVerdict {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(LB_FORWARD_IPIP, family());
        set_load(kSelfSlot, 9000);
    }
    uint8_t tunnel_proto() const { return family() == LB_FAMILY_IPV4 ? kProtoIpip : kProtoIpv6; }
    // The packet of a client SYN as the peer in `from` encapsulates it.
    Bytes encapsulated(const IpAddress& from, const Bytes& inner, std::vector<VlanTag> vlans = {})
    {
        return ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(2), std::move(vlans)},
                              ethertype_of(from.family),
                              ip_packet(from, node_addr(from.family, kSelfSlot), tunnel_proto(),
                                        inner));
    }
};

INSTANTIATE_TEST_SUITE_P(Family, XdpDecap,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

TEST_P(XdpDecap, FromAKnownNodeIsDecapsulatedAndPassed)
{
    const Bytes inner = ip_packet(client(), service(), kProtoTcp,
                                  tcp_segment(client(), service(), Tcp{}));
    Bytes frame = encapsulated(node_addr(family(), 2), inner);
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_PASS);
    const Bytes expected = ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(2), {}},
                                          ethertype_of(family()), inner);
    EXPECT_EQ(hex(r.out), hex(expected));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
    EXPECT_EQ(flow_count(), 0u); // not decided here: never steered again
}

TEST_P(XdpDecap, VlanTagsSurviveDecapsulation)
{
    const std::vector<VlanTag> tags{{kEthQinQ, 100}, {kEthVlan, 7}};
    const Bytes inner = ip_packet(client(), service(), kProtoTcp,
                                  tcp_segment(client(), service(), Tcp{}));
    Bytes frame = encapsulated(node_addr(family(), 3), inner, tags);
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_PASS);
    const Bytes expected = ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(2), tags},
                                          ethertype_of(family()), inner);
    EXPECT_EQ(hex(r.out), hex(expected));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
}

// Only what DESIGN section 2 trusts as steered here by a peer is unwrapped:
// ipip mode, to this node's address, from a live peer's node address, TCP
// to a service inside. Anything else passes as it came (the kernel has no
// tunnel device), counted as pass_tunnel_refused.
class XdpDecapRefused : public XdpDecap {
protected:
    ::testing::AssertionResult refused(const Bytes& frame)
    {
        ::testing::AssertionResult untouched = passed_untouched(run_xdp(frame), frame);
        if (!untouched)
            return untouched;
        const Counts counts = counter_deltas();
        if (counts != Counts{{"pass_tunnel_refused", 1}})
            return ::testing::AssertionFailure() << "counters: " << ::testing::PrintToString(counts);
        if (flow_count() != 0)
            return ::testing::AssertionFailure() << "a flow entry was made";
        return ::testing::AssertionSuccess();
    }
    Bytes inner_tcp(uint16_t dport = kServicePort) const
    {
        Tcp tcp;
        tcp.dport = dport;
        return ip_packet(client(), service(), kProtoTcp, tcp_segment(client(), service(), tcp));
    }
};

INSTANTIATE_TEST_SUITE_P(Family, XdpDecapRefused,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

TEST_P(XdpDecapRefused, FromAnUnknownAddress)
{
    EXPECT_TRUE(refused(encapsulated(
        parse_ip(family() == LB_FAMILY_IPV4 ? "10.0.0.99" : "fd00::99"), inner_tcp())));
}

TEST_P(XdpDecapRefused, FromThisNodesOwnAddress)
{
    EXPECT_TRUE(refused(encapsulated(node_addr(family(), kSelfSlot), inner_tcp())));
}

TEST_P(XdpDecapRefused, FromADeadPeer)
{
    set_state(2, LB_NODE_DEAD);
    EXPECT_TRUE(refused(encapsulated(node_addr(family(), 2), inner_tcp())));
}

TEST_P(XdpDecapRefused, AddressedToAnotherNode)
{
    const Bytes frame = ethernet_frame(
        Ethernet{node_mac(kSelfSlot), node_mac(2), {}}, ethertype_of(family()),
        ip_packet(node_addr(family(), 2), node_addr(family(), 3), tunnel_proto(), inner_tcp()));
    EXPECT_TRUE(refused(frame));
}

TEST_P(XdpDecapRefused, InnerTcpToAPortThatIsNoService)
{
    EXPECT_TRUE(refused(encapsulated(node_addr(family(), 2), inner_tcp(8080))));
}

TEST_P(XdpDecapRefused, InnerUdpEvenToTheServiceAddress)
{
    const Bytes inner = ip_packet(client(), service(), kProtoUdp,
                                  udp_datagram(client(), service(), kClientPort, kServicePort,
                                               Bytes(8, 0x55)));
    EXPECT_TRUE(refused(encapsulated(node_addr(family(), 2), inner)));
}

TEST_P(XdpDecapRefused, InL2Mode)
{
    change_config([](lb_config& c) { c.forward = LB_FORWARD_L2; });
    EXPECT_TRUE(refused(encapsulated(node_addr(family(), 2), inner_tcp())));
}

TEST_F(Xdp, Ipv4InsideIpv6IsDecapsulatedWithTheIpv4Ethertype)
{
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV6);
    const IpAddress client = client_addr(LB_FAMILY_IPV4), service = service_addr(LB_FAMILY_IPV4);
    const Bytes inner =
        ipv4_packet(client, service, kProtoTcp, tcp_segment(client, service, Tcp{}));
    Bytes frame = ethernet_frame(
        Ethernet{node_mac(kSelfSlot), node_mac(1), {}}, kEthIpv6,
        ipv6_packet(node_addr(LB_FAMILY_IPV6, 1), node_addr(LB_FAMILY_IPV6, kSelfSlot),
                    kProtoIpip, inner));
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_PASS);
    EXPECT_EQ(hex(r.out),
              hex(ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(1), {}}, kEthIpv4, inner)));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
}

TEST_F(Xdp, Ipv6InsideIpv4IsDecapsulatedWithTheIpv6Ethertype)
{
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV4);
    const IpAddress client = client_addr(LB_FAMILY_IPV6), service = service_addr(LB_FAMILY_IPV6);
    const Bytes inner =
        ipv6_packet(client, service, kProtoTcp, tcp_segment(client, service, Tcp{}));
    Bytes frame = ethernet_frame(
        Ethernet{node_mac(kSelfSlot), node_mac(1), {{kEthVlan, 9}}}, kEthIpv4,
        ipv4_packet(node_addr(LB_FAMILY_IPV4, 1), node_addr(LB_FAMILY_IPV4, kSelfSlot),
                    kProtoIpv6, inner));
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_PASS);
    EXPECT_EQ(hex(r.out), hex(ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(1),
                                                      {{kEthVlan, 9}}},
                                             kEthIpv6, inner)));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
}

TEST_F(Xdp, IpipFromAKnownNodeWithIpOptionsIsDecapsulated)
{
    // The outer header's length comes from IHL, not a constant 20.
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV4);
    const IpAddress client = client_addr(LB_FAMILY_IPV4), service = service_addr(LB_FAMILY_IPV4);
    const Bytes inner =
        ipv4_packet(client, service, kProtoTcp, tcp_segment(client, service, Tcp{}));
    Ipv4Fields with_options;
    with_options.options = {1, 1, 1, 0}; // NOP NOP NOP EOL
    Bytes frame = ethernet_frame(
        Ethernet{node_mac(kSelfSlot), node_mac(3), {}}, kEthIpv4,
        ipv4_packet(node_addr(LB_FAMILY_IPV4, 3), node_addr(LB_FAMILY_IPV4, kSelfSlot),
                    kProtoIpip, inner, with_options));
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_PASS);
    EXPECT_EQ(hex(r.out),
              hex(ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(3), {}}, kEthIpv4, inner)));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
}

} // namespace
} // namespace peerlb::test
