// xdp_peerlb parsing: IPv6 extension header chains, and truncated or
// malformed headers, which must pass untouched (never XDP_TX). This node is
// 90 % loaded throughout, so a packet parsed as a SYN would be forwarded.
#include <linux/bpf.h>

#include <cerrno>
#include <functional>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

const IpAddress kClient4 = client_addr(LB_FAMILY_IPV4);
const IpAddress kService4 = service_addr(LB_FAMILY_IPV4);
const IpAddress kClient6 = client_addr(LB_FAMILY_IPV6);
const IpAddress kService6 = service_addr(LB_FAMILY_IPV6);

Ipv6Ext routing_ext()
{
    // Segment routing header type 4 with nothing left to visit.
    return {kProtoRouting, {4, 0, 0, 0, 0, 0}};
}

class XdpParse : public DataPlaneTest, public ::testing::WithParamInterface<uint32_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(GetParam(), LB_FAMILY_IPV6);
        set_load(kSelfSlot, 9000);
    }
    Bytes syn6(const std::vector<Ipv6Ext>& ext)
    {
        Tcp syn;
        syn.options = linux_syn_options();
        return client_frame(LB_FAMILY_IPV6, syn, {}, ext);
    }
    // Forwarded to the least-loaded peer, the frame otherwise intact.
    void expect_forwarded(const Bytes& in)
    {
        RunResult r = run_xdp(in);
        ASSERT_EQ(r.verdict, XDP_TX);
        if (GetParam() == LB_FORWARD_L2) {
            EXPECT_TRUE(l2_forwarded(r, in, 1));
        } else {
            ASSERT_EQ(r.out.size(), in.size() + kIpv6HeaderLen);
            EXPECT_EQ(r.out[kEthHeaderLen + 6], kProtoIpv6);
            EXPECT_EQ(hex(slice(r.out, kEthHeaderLen + kIpv6HeaderLen)),
                      hex(slice(in, kEthHeaderLen)));
        }
    }
};

INSTANTIATE_TEST_SUITE_P(Mode, XdpParse,
                         ::testing::Values(uint32_t(LB_FORWARD_L2), uint32_t(LB_FORWARD_IPIP)),
                         [](const auto& info) {
                             return std::string(info.param == LB_FORWARD_L2 ? "l2" : "ipip");
                         });

TEST_P(XdpParse, Ipv6HopByHopAndDestinationOptionsBeforeTcp)
{
    Bytes syn = syn6({ipv6_options_ext(kProtoHopOpts), ipv6_options_ext(kProtoDstOpts, 24)});
    expect_forwarded(syn);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    // The ports were found behind the chain.
    EXPECT_TRUE(maps().flow(client_key(LB_FAMILY_IPV6)));
}

TEST_P(XdpParse, Ipv6ChainOfFourIncludingAhAndRouting)
{
    // AH counts 4-byte units, the others 8-byte units: both must be right
    // for TCP to be found.
    Bytes syn = syn6({ipv6_options_ext(kProtoHopOpts), routing_ext(), ipv6_ah_ext(12),
                      ipv6_options_ext(kProtoDstOpts, 16)});
    expect_forwarded(syn);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

TEST_P(XdpParse, Ipv6ChainLongerThanTheLimitPassesUntouched)
{
    Bytes syn = syn6({ipv6_options_ext(kProtoHopOpts), ipv6_options_ext(kProtoDstOpts),
                      routing_ext(), ipv6_options_ext(kProtoDstOpts),
                      ipv6_options_ext(kProtoDstOpts)});
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_tcp", 1}}));
    EXPECT_TRUE(maps().flows().empty());
}

TEST_P(XdpParse, ThreeVlanTagsAreNotParsed)
{
    Tcp syn;
    Bytes frame = client_frame(LB_FAMILY_IPV4, syn,
                               {{kEthQinQ, 1}, {kEthVlan, 2}, {kEthVlan, 3}});
    EXPECT_TRUE(passed_untouched(run_xdp(frame), frame));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_not_ip", 1}}));
}

// A named way of breaking a well-formed SYN.
struct Malformed {
    const char* what;
    Bytes frame;
};

std::vector<Malformed> malformed_frames()
{
    const Ethernet eth{node_mac(kSelfSlot), router_mac(), {}};
    const Bytes syn4 = tcp_frame(eth, kClient4, kService4, Tcp{}); // 54 bytes, no options
    const Bytes syn6 = tcp_frame(eth, kClient6, kService6, Tcp{}); // 74 bytes
    const size_t tcp4 = kEthHeaderLen + kIpv4HeaderLen;
    const size_t tcp6 = kEthHeaderLen + kIpv6HeaderLen;
    auto changed = [](Bytes b, size_t off, uint8_t value) {
        b.at(off) = value;
        return b;
    };
    std::vector<Malformed> cases;
    cases.push_back({"Ethernet header only", slice(syn4, 0, kEthHeaderLen)});
    cases.push_back({"VLAN tag cut short",
                     concat(ethernet_frame(eth, kEthVlan, {}), Bytes{0x00, 0x05})});
    cases.push_back({"second VLAN tag cut short",
                     concat(ethernet_frame(Ethernet{eth.dst, eth.src, {{kEthQinQ, 5}}}, kEthVlan,
                                           {}),
                            Bytes{0x00})});
    cases.push_back({"IPv4 header cut short", slice(syn4, 0, kEthHeaderLen + 19)});
    // Short IHLs on packets where a parser that believed them would find a
    // plausible TCP header (doff 5) and count something else.
    Tcp doff_in_ack;
    doff_in_ack.ack = 0x50020000; // read as doff 5 and SYN 16 bytes early
    cases.push_back({"IPv4 IHL 4",
                     changed(tcp_frame(eth, kClient4, kService4, doff_in_ack), kEthHeaderLen,
                             0x44)});
    const IpAddress doff_in_saddr = parse_ip("80.0.0.1"); // 0x50: doff 5 at IP offset 12
    cases.push_back({"IPv4 IHL 0",
                     changed(tcp_frame(eth, doff_in_saddr, kService4, Tcp{}), kEthHeaderLen,
                             0x40)});
    cases.push_back({"IPv4 IHL beyond the packet", changed(syn4, kEthHeaderLen, 0x4f)});
    cases.push_back({"IPv4 version 6", changed(syn4, kEthHeaderLen, 0x65)});
    cases.push_back({"TCP header cut short", slice(syn4, 0, tcp4 + 10)});
    cases.push_back({"TCP doff 4", changed(syn4, tcp4 + 12, 0x40)});
    cases.push_back({"TCP doff 0", changed(syn4, tcp4 + 12, 0x00)});
    cases.push_back({"TCP doff beyond the packet", changed(syn4, tcp4 + 12, 0xf0)});
    cases.push_back({"IPv6 header cut short", slice(syn6, 0, kEthHeaderLen + 39)});
    cases.push_back({"IPv6 version 4", changed(syn6, kEthHeaderLen, 0x40)});
    cases.push_back({"IPv4 packet under the IPv6 ethertype",
                     ethernet_frame(eth, kEthIpv6, slice(syn4, kEthHeaderLen))});
    cases.push_back({"IPv6 TCP header cut short", slice(syn6, 0, tcp6 + 19)});
    cases.push_back({"IPv6 TCP doff 2", changed(syn6, tcp6 + 12, 0x20)});
    // Hop-by-hop header announced but only one byte of it there.
    cases.push_back({"extension header cut short",
                     ethernet_frame(eth, kEthIpv6,
                                    concat(slice(ipv6_packet(kClient6, kService6, kProtoTcp, {},
                                                             {ipv6_options_ext(kProtoHopOpts)}),
                                                 0, kIpv6HeaderLen),
                                           Bytes{kProtoTcp}))});
    // Hop-by-hop header whose length runs past the end of the packet.
    Bytes long_ext = tcp_frame(eth, kClient6, kService6, Tcp{}, {ipv6_options_ext(kProtoHopOpts)});
    long_ext.at(tcp6 + 1) = 255;
    cases.push_back({"extension header longer than the packet", long_ext});
    return cases;
}

TEST_P(XdpParse, MalformedHeadersPassUntouched)
{
    const std::vector<Malformed> cases = malformed_frames();
    for (const Malformed& c : cases) {
        SCOPED_TRACE(c.what);
        EXPECT_TRUE(passed_untouched(run_xdp(c.frame), c.frame));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_malformed", 1}}));
    }
    EXPECT_TRUE(maps().flows().empty());
}

TEST_P(XdpParse, EveryTruncationOfAForwardableSynPassesUntouched)
{
    // Two tags, an extension header chain, TCP options: every prefix cuts a
    // header somewhere, and only the whole frame is forwarded.
    const std::vector<VlanTag> tags{{kEthQinQ, 10}, {kEthVlan, 20}};
    Tcp syn;
    syn.options = linux_syn_options();
    const std::vector<Bytes> frames{
        client_frame(LB_FAMILY_IPV4, syn, tags),
        client_frame(LB_FAMILY_IPV6, syn, tags,
                     {ipv6_options_ext(kProtoHopOpts), ipv6_ah_ext(12),
                      ipv6_options_ext(kProtoDstOpts)})};
    for (const Bytes& whole : frames) {
        for (size_t len = 1; len < whole.size(); len++) {
            SCOPED_TRACE("first " + std::to_string(len) + " of " + std::to_string(whole.size()) +
                         " bytes");
            const Bytes cut = slice(whole, 0, len);
            RunResult r =
                try_run(bpf_program__fd(skeleton()->progs.xdp_peerlb), cut, test_link_ifindex());
            if (len < kEthHeaderLen) {
                // The kernel refuses runts before the program sees them.
                EXPECT_EQ(r.error, EINVAL);
                continue;
            }
            EXPECT_TRUE(passed_untouched(r, cut));
        }
        EXPECT_EQ(run_xdp(whole).verdict, XDP_TX);
    }
    const uint64_t cuts = frames[0].size() + frames[1].size() - 2 * kEthHeaderLen;
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_malformed", cuts}, {"syn_forward_least", 2}}));
}

} // namespace
} // namespace peerlb::test
