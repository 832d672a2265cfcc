// The packet builder against values computed elsewhere: the BPF tests trust
// its checksums and layouts, so they are pinned here (no root needed).
#include <gtest/gtest.h>

#include "packet.h"

namespace peerlb::test {
namespace {

const IpAddress kClient4 = parse_ip("198.51.100.7");
const IpAddress kService4 = parse_ip("192.0.2.10");
const IpAddress kClient6 = parse_ip("2001:db8:c::7");
const IpAddress kService6 = parse_ip("2001:db8:5::10");

TEST(PacketBuilder, Ipv4HeaderMatchesAKnownChecksum)
{
    // The usual textbook header: 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
    Ipv4Fields fields;
    fields.id = 0;
    Bytes packet = ipv4_packet(parse_ip("192.168.0.1"), parse_ip("192.168.0.199"), kProtoUdp,
                               Bytes(0x73 - 20, 0), fields);
    const Bytes header{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                       0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    EXPECT_EQ(hex(slice(packet, 0, 20)), hex(header));
    EXPECT_TRUE(ipv4_checksum_ok(packet.data(), 20));
    packet[8]--; // ttl
    EXPECT_FALSE(ipv4_checksum_ok(packet.data(), 20));
}

TEST(PacketBuilder, TcpChecksumsMatchAnIndependentComputation)
{
    // Reference values from a separate implementation of RFC 793 / 8200
    // pseudo headers (Python struct), for a bare SYN 40000 -> 80.
    Tcp syn;
    Bytes v4 = tcp_segment(kClient4, kService4, syn);
    Bytes v6 = tcp_segment(kClient6, kService6, syn);
    EXPECT_EQ(read16(v4, 16), 0x2834);
    EXPECT_EQ(read16(v6, 16), 0xb8df);
    EXPECT_TRUE(tcp_checksum_ok(kClient4, kService4, v4.data(), v4.size()));
    EXPECT_TRUE(tcp_checksum_ok(kClient6, kService6, v6.data(), v6.size()));
    // The pseudo header counts: the same bytes towards another address fail.
    EXPECT_FALSE(tcp_checksum_ok(kClient4, kClient4, v4.data(), v4.size()));
}

TEST(PacketBuilder, TcpHeaderLayout)
{
    Tcp t;
    t.sport = 0x1234;
    t.dport = 0x0050;
    t.flags = tcp_flags::kSyn | tcp_flags::kAck;
    t.seq = 0x01020304;
    t.ack = 0x05060708;
    t.window = 0xfaf0;
    t.options = mss_option(1460);
    t.payload = {0xaa};
    Bytes b = tcp_segment(kClient4, kService4, t);
    ASSERT_EQ(b.size(), 25u);
    EXPECT_EQ(read16(b, 0), 0x1234);
    EXPECT_EQ(read16(b, 2), 0x0050);
    EXPECT_EQ(read32(b, 4), 0x01020304u);
    EXPECT_EQ(read32(b, 8), 0x05060708u);
    EXPECT_EQ(b[12], 6 << 4); // 24-byte header
    EXPECT_EQ(b[13], 0x12);
    EXPECT_EQ(read16(b, 14), 0xfaf0);
    EXPECT_EQ(slice(b, 20, 4), (Bytes{2, 4, 0x05, 0xb4}));
    EXPECT_EQ(b[24], 0xaa);
    EXPECT_TRUE(tcp_checksum_ok(kClient4, kService4, b.data(), b.size())); // odd length
}

TEST(PacketBuilder, Ipv6ExtensionChainLinksEachHeaderToTheNext)
{
    Bytes p = ipv6_packet(kClient6, kService6, kProtoTcp, Bytes(20, 0),
                          {ipv6_options_ext(kProtoHopOpts, 16), ipv6_ah_ext(12),
                           ipv6_fragment_ext(3, true, 9)});
    ASSERT_EQ(p.size(), 40u + 16 + 24 + 8 + 20);
    EXPECT_EQ(read16(p, 4), 16 + 24 + 8 + 20); // payload length
    EXPECT_EQ(p[6], kProtoHopOpts);
    EXPECT_EQ(p[40], kProtoAh); // hop-by-hop: next, length in 8-byte units - 1
    EXPECT_EQ(p[41], 1);
    EXPECT_EQ(p[56], kProtoFragment); // AH: next, length in 4-byte units - 2
    EXPECT_EQ(p[57], 4);
    EXPECT_EQ(p[80], kProtoTcp); // fragment: next, reserved, offset 3 and M
    EXPECT_EQ(p[81], 0);
    EXPECT_EQ(read16(p, 82), 3 << 3 | 1);
    EXPECT_EQ(read32(p, 84), 9u);
}

TEST(PacketBuilder, EthernetWithTwoTags)
{
    Bytes f = ethernet_frame(Ethernet{{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12},
                                      {{kEthQinQ, 0x0064}, {kEthVlan, 0x2005}}},
                             kEthIpv6, {0xee});
    EXPECT_EQ(hex(f), hex(Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x88, 0xa8, 0x00, 0x64,
                                0x81, 0x00, 0x20, 0x05, 0x86, 0xdd, 0xee}));
    EXPECT_EQ(l3_offset(f), 22u);
}

} // namespace
} // namespace peerlb::test
