// tc_mss_clamp: SYN-ACKs a service sends get an MSS that leaves room for the
// ipip outer header; the TCP checksum must still verify. A test run of a tc
// program takes the whole Ethernet frame and hands it back the same way.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>

#include <cerrno>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

class TcMssClamp : public DataPlaneTest {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV4);
    }

    // A SYN-ACK from the service to the client, as it leaves this node.
    static Bytes syn_ack(uint8_t family, const Bytes& options, uint16_t sport = kServicePort,
                         std::vector<VlanTag> vlans = {})
    {
        Tcp t;
        t.sport = sport;
        t.dport = kClientPort;
        t.flags = kSyn | kAck;
        t.seq = 777000;
        t.ack = 1001;
        t.window = 65160;
        t.options = options;
        return tcp_frame(Ethernet{router_mac(), node_mac(kSelfSlot), std::move(vlans)},
                         service_addr(family), client_addr(family), t);
    }

    // Runs the frame; it must come back TC_ACT_OK, with a valid checksum.
    Bytes clamp(const Bytes& frame, uint8_t family)
    {
        RunResult r = run_tc(frame);
        EXPECT_EQ(r.verdict, uint32_t(TC_ACT_OK));
        EXPECT_EQ(r.out.size(), frame.size());
        const size_t tcp = tcp_offset(r.out);
        EXPECT_TRUE(tcp_checksum_ok(service_addr(family), client_addr(family),
                                    r.out.data() + tcp, r.out.size() - tcp))
            << "TCP checksum " << std::hex << read16(r.out, tcp + 16);
        return r.out;
    }

    void expect_untouched(const Bytes& frame, uint8_t family)
    {
        EXPECT_EQ(hex(clamp(frame, family)), hex(frame));
        EXPECT_EQ(counter_deltas(), Counts{});
    }
};

TEST_F(TcMssClamp, Ipv4OverIpv4At1500Gets1440)
{
    Bytes in = syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460));
    Bytes out = clamp(in, LB_FAMILY_IPV4);
    const size_t tcp = tcp_offset(out);
    EXPECT_EQ(read16(out, tcp + kTcpHeaderLen + 2), 1440);
    // Nothing else changes but the MSS and the checksum.
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1440))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, MssAtOrBelowTheLimitStays)
{
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1440)), LB_FAMILY_IPV4);
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1400)), LB_FAMILY_IPV4);
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(536)), LB_FAMILY_IPV4);
}

TEST_F(TcMssClamp, OneAboveTheLimitIsClamped)
{
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1441)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1440))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, L2ModeLeavesSynAcksAlone)
{
    install_cluster(LB_FORWARD_L2, LB_FAMILY_IPV4);
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460)), LB_FAMILY_IPV4);
}

TEST_F(TcMssClamp, L2ModeClampsSharedAddresses)
{
    // A shared address's segments may cross an outer header in l2 mode too
    // (DESIGN.md 5b: its chain hops are always encapsulated).
    install_cluster(LB_FORWARD_L2, LB_FAMILY_IPV4);
    lb_service_key key{};
    key.addr = service_addr(LB_FAMILY_IPV4).addr;
    key.port = htons(kServicePort);
    key.family = LB_FAMILY_IPV4;
    maps().add_service(key, lb_service{LB_MODE_L4, 1, LB_SERVICE_SHARED});
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1440))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, OnlySynAcksOfAServiceAreClamped)
{
    // Another port of the service address.
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460), 8080), LB_FAMILY_IPV4);
    // Another address (the node's own) on the service port.
    Tcp from_node;
    from_node.sport = kServicePort;
    from_node.dport = kClientPort;
    from_node.flags = kSyn | kAck;
    from_node.options = linux_syn_options(1460);
    const IpAddress node = node_addr(LB_FAMILY_IPV4, kSelfSlot);
    Bytes frame = tcp_frame(Ethernet{router_mac(), node_mac(kSelfSlot), {}}, node,
                            client_addr(LB_FAMILY_IPV4), from_node);
    RunResult r = run_tc(frame);
    EXPECT_EQ(r.verdict, uint32_t(TC_ACT_OK));
    EXPECT_EQ(hex(r.out), hex(frame));
    // A SYN-ACK towards the service (this node as a client of it).
    Tcp to_service = from_node;
    to_service.sport = kClientPort;
    to_service.dport = kServicePort;
    frame = tcp_frame(Ethernet{router_mac(), node_mac(kSelfSlot), {}}, client_addr(LB_FAMILY_IPV4),
                      service_addr(LB_FAMILY_IPV4), to_service);
    r = run_tc(frame);
    EXPECT_EQ(hex(r.out), hex(frame));
    EXPECT_EQ(counter_deltas(), Counts{});
}

TEST_F(TcMssClamp, OnlySynAcksAreClamped)
{
    for (uint8_t flags : {kSyn, kAck, uint8_t(kAck | kPsh), uint8_t(kSyn | kRst)}) {
        SCOPED_TRACE("flags " + std::to_string(flags));
        Tcp t;
        t.sport = kServicePort;
        t.dport = kClientPort;
        t.flags = flags;
        t.options = linux_syn_options(1460);
        Bytes frame = tcp_frame(Ethernet{router_mac(), node_mac(kSelfSlot), {}},
                                service_addr(LB_FAMILY_IPV4), client_addr(LB_FAMILY_IPV4), t);
        expect_untouched(frame, LB_FAMILY_IPV4);
    }
}

TEST_F(TcMssClamp, Ipv6OverIpv6At1500Gets1400)
{
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV6);
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV6, linux_syn_options(1440)), LB_FAMILY_IPV6);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV6, linux_syn_options(1400))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, MixedFamiliesCountBothHeaders)
{
    // IPv4 clients over IPv6 nodes: 1500 - 20 - 20 - 40.
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV6);
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1420))));
    // IPv6 clients over IPv4 nodes: 1500 - 40 - 20 - 20.
    install_cluster(LB_FORWARD_IPIP, LB_FAMILY_IPV4);
    out = clamp(syn_ack(LB_FAMILY_IPV6, linux_syn_options(1440)), LB_FAMILY_IPV6);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV6, linux_syn_options(1420))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 2}}));
}

TEST_F(TcMssClamp, FollowsTheConfiguredMtu)
{
    change_config([](lb_config& c) { c.mtu = 9000; });
    expect_untouched(syn_ack(LB_FAMILY_IPV4, linux_syn_options(8940)), LB_FAMILY_IPV4);
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(8960)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(8940))));
    change_config([](lb_config& c) { c.mtu = 1280; });
    out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1220))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 2}}));
}

TEST_F(TcMssClamp, MssBehindOtherOptions)
{
    // Timestamps, NOP, window scale, then MSS, EOL padding.
    Bytes before{8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7};
    auto options = [&](uint16_t mss) {
        Bytes o = concat(before, mss_option(mss));
        o.resize(20, 0);
        return o;
    };
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, options(1460)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, options(1440))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, MssAtAnOddOffset)
{
    // One NOP first puts the MSS value at an odd offset in the segment: the
    // checksum update must account for the byte position.
    auto options = [](uint16_t mss) {
        Bytes o = concat(Bytes{1}, mss_option(mss));
        o.resize(8, 0);
        return o;
    };
    for (uint16_t mss : {uint16_t(1460), uint16_t(0xffff), uint16_t(1441)}) {
        SCOPED_TRACE("MSS " + std::to_string(mss));
        Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, options(mss)), LB_FAMILY_IPV4);
        EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, options(1440))));
    }
}

TEST_F(TcMssClamp, VlanTaggedSynAck)
{
    const std::vector<VlanTag> tags{{kEthVlan, 42}};
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460), kServicePort, tags),
                      LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, linux_syn_options(1440), kServicePort, tags)));
}

TEST_F(TcMssClamp, MalformedOrMissingOptionsAreLeftAlone)
{
    // No options at all.
    expect_untouched(syn_ack(LB_FAMILY_IPV4, {}), LB_FAMILY_IPV4);
    // An option of length 0 before the MSS: the walk stops there.
    Bytes zero_len{3, 0, 2, 4, 0x05, 0xb4, 0, 0};
    expect_untouched(syn_ack(LB_FAMILY_IPV4, zero_len), LB_FAMILY_IPV4);
    // An option running past the header before the MSS.
    Bytes overrun{8, 30, 2, 4, 0x05, 0xb4, 0, 0};
    expect_untouched(syn_ack(LB_FAMILY_IPV4, overrun), LB_FAMILY_IPV4);
    // EOL before the MSS.
    Bytes eol_first{0, 2, 4, 0x05, 0xb4, 0, 0, 0};
    expect_untouched(syn_ack(LB_FAMILY_IPV4, eol_first), LB_FAMILY_IPV4);
    // An MSS option of the wrong length.
    Bytes wrong_len{2, 6, 0x05, 0xb4, 0, 0, 1, 1};
    expect_untouched(syn_ack(LB_FAMILY_IPV4, wrong_len), LB_FAMILY_IPV4);
    // 40 bytes of NOPs: the longest walk, nothing found.
    expect_untouched(syn_ack(LB_FAMILY_IPV4, Bytes(40, 1)), LB_FAMILY_IPV4);
}

TEST_F(TcMssClamp, MssInTheLastFourBytesOfFortyBytesOfOptions)
{
    auto options = [](uint16_t mss) { return concat(Bytes(36, 1), mss_option(mss)); };
    Bytes out = clamp(syn_ack(LB_FAMILY_IPV4, options(1460)), LB_FAMILY_IPV4);
    EXPECT_EQ(hex(out), hex(syn_ack(LB_FAMILY_IPV4, options(1440))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tc_mss_clamped", 1}}));
}

TEST_F(TcMssClamp, TruncatedSynAckIsLeftAlone)
{
    Bytes whole = syn_ack(LB_FAMILY_IPV4, linux_syn_options(1460));
    for (size_t len = kEthHeaderLen; len < whole.size(); len++) {
        SCOPED_TRACE("first " + std::to_string(len) + " bytes");
        Bytes cut = slice(whole, 0, len);
        RunResult r = try_run(bpf_program__fd(skeleton()->progs.tc_mss_clamp), cut);
        if (len < kEthHeaderLen + kIpv4HeaderLen) {
            // The kernel refuses an skb test run without a whole IP header.
            EXPECT_EQ(r.error, EINVAL);
            continue;
        }
        EXPECT_EQ(r.error, 0);
        EXPECT_EQ(r.verdict, uint32_t(TC_ACT_OK));
        EXPECT_EQ(hex(r.out), hex(cut));
    }
    EXPECT_EQ(counter_deltas(), Counts{});
}

} // namespace
} // namespace peerlb::test
