// xdp_peerlb forwarding output, byte by byte: l2 (MAC rewrite) and ipip
// (outer IPv4/IPv6 header), with and without VLAN tags, and the MTU limit.
#include <linux/bpf.h>

#include <tuple>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

// The peer every forwarded SYN goes to: the least loaded (pick = least).
constexpr uint32_t kLeastPeer = 1;

std::string family_name(uint8_t family)
{
    return family == LB_FAMILY_IPV4 ? "ipv4" : "ipv6";
}

// The inner packet (from L3 on) of a client frame.
Bytes l3_of(const Bytes& frame)
{
    return slice(frame, l3_offset(frame));
}

// Checks, field by field, the frame an ipip forward to `peer` makes of `in`
// when the nodes' addresses are of `outer_family`; then compares it whole
// with one built independently.
void expect_encapsulated(const RunResult& r, const Bytes& in, uint32_t peer, uint8_t outer_family,
                         const std::vector<VlanTag>& vlans = {})
{
    ASSERT_EQ(r.error, 0);
    ASSERT_EQ(r.verdict, XDP_TX);
    const Bytes inner = l3_of(in);
    const uint8_t inner_proto =
        read16(in, l3_offset(in) - 2) == kEthIpv4 ? kProtoIpip : kProtoIpv6;
    const IpAddress self = node_addr(outer_family, kSelfSlot);
    const IpAddress to = node_addr(outer_family, peer);
    const size_t outer_len = outer_family == LB_FAMILY_IPV4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    ASSERT_EQ(r.out.size(), in.size() + outer_len);

    EXPECT_EQ(slice(r.out, 0, 6), mac_bytes(node_mac(peer))) << "destination MAC";
    EXPECT_EQ(slice(r.out, 6, 6), mac_bytes(node_mac(kSelfSlot))) << "source MAC";
    for (size_t i = 0; i < vlans.size(); i++) {
        EXPECT_EQ(read16(r.out, 12 + 4 * i), vlans[i].tpid) << "TPID of tag " << i;
        EXPECT_EQ(read16(r.out, 14 + 4 * i), vlans[i].tci) << "TCI of tag " << i;
    }
    const size_t l3 = kEthHeaderLen + kVlanTagLen * vlans.size();
    EXPECT_EQ(read16(r.out, l3 - 2), ethertype_of(outer_family)) << "ethertype";

    if (outer_family == LB_FAMILY_IPV4) {
        EXPECT_EQ(r.out[l3], 0x45) << "version / IHL";
        EXPECT_EQ(r.out[l3 + 1], 0) << "DSCP / ECN";
        EXPECT_EQ(read16(r.out, l3 + 2), inner.size() + kIpv4HeaderLen) << "tot_len";
        EXPECT_EQ(read16(r.out, l3 + 6), 0x4000) << "DF, offset 0";
        EXPECT_EQ(r.out[l3 + 8], 64) << "ttl";
        EXPECT_EQ(r.out[l3 + 9], inner_proto) << "protocol";
        EXPECT_EQ(slice(r.out, l3 + 12, 4), addr_bytes(self)) << "saddr";
        EXPECT_EQ(slice(r.out, l3 + 16, 4), addr_bytes(to)) << "daddr";
        EXPECT_TRUE(ipv4_checksum_ok(r.out.data() + l3, kIpv4HeaderLen))
            << "outer header checksum " << std::hex << read16(r.out, l3 + 10);
    } else {
        EXPECT_EQ(read32(r.out, l3), 6u << 28) << "version, traffic class, flow label";
        EXPECT_EQ(read16(r.out, l3 + 4), inner.size()) << "payload_len";
        EXPECT_EQ(r.out[l3 + 6], inner_proto) << "nexthdr";
        EXPECT_EQ(r.out[l3 + 7], 64) << "hop limit";
        EXPECT_EQ(slice(r.out, l3 + 8, 16), addr_bytes(self)) << "saddr";
        EXPECT_EQ(slice(r.out, l3 + 24, 16), addr_bytes(to)) << "daddr";
    }
    EXPECT_EQ(hex(slice(r.out, l3 + outer_len)), hex(inner)) << "inner packet";

    // The whole frame, built on its own (outer IPv4 ID 0).
    Ipv4Fields outer_fields;
    outer_fields.id = 0;
    const Ethernet eth{node_mac(peer), node_mac(kSelfSlot), vlans};
    const Bytes expected =
        outer_family == LB_FAMILY_IPV4
            ? ethernet_frame(eth, kEthIpv4, ipv4_packet(self, to, inner_proto, inner, outer_fields))
            : ethernet_frame(eth, kEthIpv6, ipv6_packet(self, to, inner_proto, inner));
    EXPECT_EQ(hex(r.out), hex(expected));
}

class XdpForward : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
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
};

INSTANTIATE_TEST_SUITE_P(Family, XdpForward,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         [](const auto& info) { return family_name(info.param); });

TEST_P(XdpForward, L2RewritesOnlyTheMacs)
{
    Bytes syn = client_syn(family());
    RunResult r = run_xdp(syn);
    ASSERT_EQ(r.verdict, XDP_TX);
    ASSERT_EQ(r.out.size(), syn.size());
    EXPECT_EQ(slice(r.out, 0, 6), mac_bytes(node_mac(kLeastPeer))) << "destination MAC";
    EXPECT_EQ(slice(r.out, 6, 6), mac_bytes(node_mac(kSelfSlot))) << "source MAC";
    EXPECT_EQ(hex(slice(r.out, 12)), hex(slice(syn, 12))) << "the rest of the frame";
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

TEST_P(XdpForward, IpipPushesAnOuterHeaderOfTheSameFamily)
{
    install_cluster(LB_FORWARD_IPIP, family());
    set_load(kSelfSlot, 9000);
    Bytes syn = client_syn(family());
    expect_encapsulated(run_xdp(syn), syn, kLeastPeer, family());
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    lb_node_counters to_peer = maps().node_counters().at(kLeastPeer);
    EXPECT_EQ(to_peer.bytes_forwarded, syn.size()); // as received
}

TEST_P(XdpForward, IpipPushesAnOuterHeaderOfTheOtherFamily)
{
    // The outer header follows the nodes' addresses, not the client's.
    const uint8_t other = family() == LB_FAMILY_IPV4 ? LB_FAMILY_IPV6 : LB_FAMILY_IPV4;
    install_cluster(LB_FORWARD_IPIP, other);
    set_load(kSelfSlot, 9000);
    // The ethertype changes: in the Ethernet header or in the inner tag.
    const std::vector<std::vector<VlanTag>> tag_sets{
        {}, {{kEthVlan, 3}}, {{kEthQinQ, 30}, {kEthVlan, 3}}};
    uint16_t port = kClientPort;
    for (const auto& tags : tag_sets) {
        SCOPED_TRACE(std::to_string(tags.size()) + " tags");
        Bytes syn = client_syn(family(), port++, tags);
        expect_encapsulated(run_xdp(syn), syn, kLeastPeer, other, tags);
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", tag_sets.size()}}));
}

TEST_P(XdpForward, IpipFlowHitOfADataSegment)
{
    install_cluster(LB_FORWARD_IPIP, family());
    add_flow(client_key(family()), 3);
    Tcp data;
    data.flags = kAck | kPsh;
    data.payload = Bytes(700, 0x5a);
    Bytes frame = client_frame(family(), data);
    expect_encapsulated(run_xdp(frame), frame, 3, family());
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
}

TEST_P(XdpForward, IpipDropsWhatWouldExceedTheMtuOnceEncapsulated)
{
    install_cluster(LB_FORWARD_IPIP, family());
    change_config([](lb_config& c) { c.mtu = 1500; });
    add_flow(client_key(family()), 2);
    const size_t outer = family() == LB_FAMILY_IPV4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    const size_t headers = (family() == LB_FAMILY_IPV4 ? kIpv4HeaderLen : kIpv6HeaderLen) +
                           kTcpHeaderLen;
    Tcp data;
    data.flags = kAck;

    // Exactly the MTU once encapsulated: sent.
    data.payload = Bytes(1500 - outer - headers, 0x42);
    Bytes fits = client_frame(family(), data);
    expect_encapsulated(run_xdp(fits), fits, 2, family());
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));

    // One byte more: dropped and counted, never sent.
    data.payload.push_back(0x42);
    Bytes too_big = client_frame(family(), data);
    RunResult r = run_xdp(too_big);
    EXPECT_EQ(r.verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_forward_error", 1}}));
    EXPECT_EQ(maps().node_counters().at(2).packets_forwarded, 1u);
}

TEST_P(XdpForward, IpipDropsAnOversizeSyn)
{
    install_cluster(LB_FORWARD_IPIP, family());
    set_load(kSelfSlot, 9000);
    change_config([](lb_config& c) { c.mtu = 576; });
    Tcp syn;
    syn.payload = Bytes(576, 0x42); // SYN with data (TFO)
    Bytes frame = client_frame(family(), syn);
    RunResult r = run_xdp(frame);
    EXPECT_EQ(r.verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"drop_forward_error", 1}}));
}

TEST_P(XdpForward, IpipToAPeerOfAnotherFamilyIsDropped)
{
    // Self has an address of one family, the peer of the other: no outer
    // header can join them.
    install_cluster(LB_FORWARD_IPIP, family());
    lb_node peer = maps().node(kLeastPeer);
    IpAddress other = node_addr(family() == LB_FAMILY_IPV4 ? LB_FAMILY_IPV6 : LB_FAMILY_IPV4,
                                kLeastPeer);
    peer.addr = other.addr;
    peer.family = other.family;
    maps().set_node(kLeastPeer, peer);
    set_load(kSelfSlot, 9000);
    Bytes syn = client_syn(family());
    EXPECT_EQ(run_xdp(syn).verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"drop_forward_error", 1}}));
}

TEST_P(XdpForward, FlowToAnEmptiedSlotIsDropped)
{
    add_flow(client_key(family()), 2);
    maps().clear_node(2);
    Tcp data;
    data.flags = kAck;
    Bytes frame = client_frame(family(), data);
    EXPECT_EQ(run_xdp(frame).verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_forward_error", 1}}));
}

// VLAN-tagged SYNs, forwarded in both modes: family x tags x mode.
using VlanCase = std::tuple<uint8_t, std::vector<VlanTag>, uint32_t>;

class XdpVlanForward : public DataPlaneTest, public ::testing::WithParamInterface<VlanCase> {
protected:
    uint8_t family() const { return std::get<0>(GetParam()); }
    const std::vector<VlanTag>& vlans() const { return std::get<1>(GetParam()); }
    uint32_t forward() const { return std::get<2>(GetParam()); }
};

std::string vlan_case_name(const ::testing::TestParamInfo<VlanCase>& info)
{
    const auto& [family, vlans, forward] = info.param;
    std::string name = family_name(family);
    for (const VlanTag& tag : vlans)
        name += tag.tpid == kEthQinQ ? "_qinq" : "_dot1q";
    return name + (forward == LB_FORWARD_L2 ? "_l2" : "_ipip");
}

INSTANTIATE_TEST_SUITE_P(
    Tags, XdpVlanForward,
    ::testing::Combine(::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                       ::testing::Values(std::vector<VlanTag>{{kEthVlan, 0x0064}},
                                         std::vector<VlanTag>{{kEthQinQ, 0x0c8},
                                                              {kEthVlan, 0x2064}},
                                         std::vector<VlanTag>{{kEthVlan, 0x0fff},
                                                              {kEthVlan, 0x0001}}),
                       ::testing::Values(uint32_t(LB_FORWARD_L2), uint32_t(LB_FORWARD_IPIP))),
    vlan_case_name);

TEST_P(XdpVlanForward, SynIsForwardedWithItsTags)
{
    install_cluster(forward(), family());
    set_load(kSelfSlot, 9000);
    Bytes syn = client_syn(family(), kClientPort, vlans());
    RunResult r = run_xdp(syn);
    if (forward() == LB_FORWARD_L2)
        EXPECT_TRUE(l2_forwarded(r, syn, kLeastPeer));
    else
        expect_encapsulated(r, syn, kLeastPeer, family(), vlans());
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    std::optional<lb_flow> flow = maps().flow(client_key(family()));
    ASSERT_TRUE(flow);
    EXPECT_EQ(flow->node, kLeastPeer);
}

TEST_P(XdpVlanForward, SynBelowT1PassesWithItsTags)
{
    install_cluster(forward(), family());
    Bytes syn = client_syn(family(), kClientPort, vlans());
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_local_below_t1", 1}}));
}

} // namespace
} // namespace peerlb::test
