// The frames of peerlb-flood (tools/flood/frame.h): every field at its
// offset per RFC 791 / 8200 / 793, checksums verified by a separate
// implementation here (and against a published example), and the order of
// each pattern's packets.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tools/flood/frame.h"
#include "userspace/dataplane/error.h"

namespace {

using namespace peerlb;
using namespace peerlb::flood;

using Frame = std::vector<uint8_t>;

uint16_t rd16(const Frame& f, size_t off) { return uint16_t(f.at(off) << 8 | f.at(off + 1)); }
uint32_t rd32(const Frame& f, size_t off) { return uint32_t(rd16(f, off)) << 16 | rd16(f, off + 2); }

// The one's complement sum of big-endian 16-bit words with the carry added
// back at every step (not folded at the end, as the code under test does).
uint16_t ones_sum(const std::vector<uint8_t>& data)
{
    uint16_t sum = 0;
    for (size_t i = 0; i < data.size(); i += 2) {
        const uint16_t word = uint16_t(data[i] << 8 | (i + 1 < data.size() ? data[i + 1] : 0));
        const uint32_t s = uint32_t(sum) + word;
        sum = uint16_t((s & 0xffff) + (s >> 16));
    }
    return sum;
}

// A header or segment verifies when the sum over it, checksum included, is
// all ones.
bool ipv4_header_ok(const Frame& f)
{
    return ones_sum({f.begin() + kEthHeaderLen, f.begin() + kEthHeaderLen + kIpv4HeaderLen}) == 0xffff;
}

bool tcp_ok(const Frame& f)
{
    const bool v4 = rd16(f, 12) == 0x0800;
    const size_t ip = kEthHeaderLen;
    std::vector<uint8_t> pseudo;
    size_t tcp, tcp_len;
    if (v4) {
        tcp = ip + kIpv4HeaderLen;
        tcp_len = rd16(f, ip + 2) - kIpv4HeaderLen;
        pseudo.insert(pseudo.end(), f.begin() + ip + 12, f.begin() + ip + 20); // src, dst
        pseudo.insert(pseudo.end(), {0, 6, uint8_t(tcp_len >> 8), uint8_t(tcp_len)});
    } else {
        tcp = ip + kIpv6HeaderLen;
        tcp_len = rd16(f, ip + 4);
        pseudo.insert(pseudo.end(), f.begin() + ip + 8, f.begin() + ip + 40); // src, dst
        pseudo.insert(pseudo.end(), {0, 0, uint8_t(tcp_len >> 8), uint8_t(tcp_len), 0, 0, 0, 6});
    }
    pseudo.insert(pseudo.end(), f.begin() + tcp, f.begin() + tcp + tcp_len);
    return ones_sum(pseudo) == 0xffff;
}

Frame build(const Segment& s)
{
    Frame f(kMaxFrameLen + 16, 0xee); // garbage where padding must be zeroed
    f.resize(build_frame(s, f));
    return f;
}

Segment v4_syn()
{
    Segment s;
    s.dst_mac = parse_mac("02:77:00:00:00:01");
    s.src_mac = parse_mac("02:77:00:00:00:c8");
    s.src = parse_ip("198.19.7.9");
    s.dst = parse_ip("10.77.0.111");
    s.sport = 40001;
    s.dport = 80;
    s.seq = 0xdeadbeef;
    s.ack = 0;
    s.flags = tcp_flag::kSyn;
    s.window = 64240;
    s.mss = 1460;
    s.ip_id = 0x1234;
    s.ttl = 63;
    return s;
}

TEST(FloodFrame, ChecksumMatchesPublishedExample)
{
    // An IPv4 header with its checksum field zero; its checksum is 0xb861
    // (the worked example of the "Internet checksum" articles).
    const std::vector<uint8_t> header = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                         0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    EXPECT_EQ(internet_checksum(header), 0xb861);
    // An odd length pads the last byte with zero.
    EXPECT_EQ(internet_checksum(std::vector<uint8_t>{0x01}), uint16_t(~0x0100));
    // A partial sum carried in counts like leading words.
    EXPECT_EQ(internet_checksum(std::vector<uint8_t>{0x12, 0x34}, 0x1111), uint16_t(~(0x1234 + 0x1111)));
}

TEST(FloodFrame, Ipv4SynLayout)
{
    const Segment s = v4_syn();
    const Frame f = build(s);
    // 14 + 20 + 24 = 58 bytes, padded to Ethernet's 60 with zeros.
    ASSERT_EQ(f.size(), 60u);
    EXPECT_EQ(Frame(f.begin(), f.begin() + 6), (Frame{0x02, 0x77, 0, 0, 0, 0x01}));
    EXPECT_EQ(Frame(f.begin() + 6, f.begin() + 12), (Frame{0x02, 0x77, 0, 0, 0, 0xc8}));
    EXPECT_EQ(rd16(f, 12), 0x0800);
    const size_t ip = 14;
    EXPECT_EQ(f[ip], 0x45);
    EXPECT_EQ(f[ip + 1], 0);
    EXPECT_EQ(rd16(f, ip + 2), 44); // total length
    EXPECT_EQ(rd16(f, ip + 4), 0x1234);
    EXPECT_EQ(rd16(f, ip + 6), 0x4000); // DF, not a fragment
    EXPECT_EQ(f[ip + 8], 63);
    EXPECT_EQ(f[ip + 9], 6);
    EXPECT_EQ(Frame(f.begin() + ip + 12, f.begin() + ip + 16), (Frame{198, 19, 7, 9}));
    EXPECT_EQ(Frame(f.begin() + ip + 16, f.begin() + ip + 20), (Frame{10, 77, 0, 111}));
    const size_t tcp = ip + 20;
    EXPECT_EQ(rd16(f, tcp), 40001);
    EXPECT_EQ(rd16(f, tcp + 2), 80);
    EXPECT_EQ(rd32(f, tcp + 4), 0xdeadbeefu);
    EXPECT_EQ(rd32(f, tcp + 8), 0u);
    EXPECT_EQ(f[tcp + 12], 6 << 4); // 24-byte header
    EXPECT_EQ(f[tcp + 13], 0x02);
    EXPECT_EQ(rd16(f, tcp + 14), 64240);
    EXPECT_EQ(rd16(f, tcp + 18), 0); // urgent pointer
    EXPECT_EQ(Frame(f.begin() + tcp + 20, f.begin() + tcp + 24), (Frame{2, 4, 0x05, 0xb4}));
    EXPECT_EQ(f[58], 0);
    EXPECT_EQ(f[59], 0);
    EXPECT_TRUE(ipv4_header_ok(f));
    EXPECT_TRUE(tcp_ok(f));
}

TEST(FloodFrame, Ipv4AckWithoutOptions)
{
    Segment s = v4_syn();
    s.flags = tcp_flag::kAck;
    s.mss = 0;
    s.seq = 7;
    s.ack = 0x80000001;
    const Frame f = build(s);
    ASSERT_EQ(f.size(), 60u); // 54, padded
    EXPECT_EQ(rd16(f, 14 + 2), 40);
    EXPECT_EQ(f[34 + 12], 5 << 4);
    EXPECT_EQ(f[34 + 13], 0x10);
    EXPECT_EQ(rd32(f, 34 + 8), 0x80000001u);
    EXPECT_EQ(Frame(f.begin() + 54, f.end()), (Frame{0, 0, 0, 0, 0, 0}));
    EXPECT_TRUE(ipv4_header_ok(f));
    EXPECT_TRUE(tcp_ok(f));
}

TEST(FloodFrame, Ipv6Layout)
{
    Segment s = v4_syn();
    s.src = parse_ip("2001:db8:0:1::77");
    s.dst = parse_ip("fd77::111");
    const Frame f = build(s);
    ASSERT_EQ(f.size(), 14u + 40 + 24); // no padding needed
    EXPECT_EQ(rd16(f, 12), 0x86dd);
    const size_t ip = 14;
    EXPECT_EQ(rd32(f, ip), 0x60000000u); // version 6, no class or label
    EXPECT_EQ(rd16(f, ip + 4), 24);      // payload length
    EXPECT_EQ(f[ip + 6], 6);
    EXPECT_EQ(f[ip + 7], 63);
    EXPECT_EQ(rd32(f, ip + 8), 0x20010db8u);
    EXPECT_EQ(rd32(f, ip + 20), 0x77u);
    EXPECT_EQ(rd32(f, ip + 24), 0xfd770000u);
    EXPECT_EQ(rd32(f, ip + 36), 0x111u);
    EXPECT_EQ(rd16(f, ip + 40), 40001);
    EXPECT_EQ(f[ip + 40 + 13], 0x02);
    EXPECT_TRUE(tcp_ok(f));
}

TEST(FloodFrame, EveryChangedByteBreaksAChecksum)
{
    for (const char* src : {"198.19.7.9", "2001:db8::9"}) {
        Segment s = v4_syn();
        s.src = parse_ip(src);
        s.dst = parse_ip(s.src.family == LB_FAMILY_IPV4 ? "10.77.0.111" : "fd77::111");
        const Frame good = build(s);
        const bool v4 = s.src.family == LB_FAMILY_IPV4;
        const size_t ip_end = kEthHeaderLen + (v4 ? kIpv4HeaderLen : kIpv6HeaderLen);
        const size_t end = ip_end + kTcpHeaderLen + kMssOptionLen;
        // Every byte the checksums cover (v4: the IP header, and the
        // addresses and all of TCP; v6: the addresses and all of TCP).
        for (size_t at = kEthHeaderLen; at < end; at++) {
            if (!v4 && at < kEthHeaderLen + 8)
                continue; // IPv6 has no header checksum; the pseudo header has length and protocol
            Frame bad = good;
            bad[at] ^= 0x40;
            EXPECT_FALSE((v4 ? ipv4_header_ok(bad) : true) && tcp_ok(bad)) << src << " byte " << at;
        }
    }
}

TEST(FloodFrame, RefusesMixedFamiliesAndShortBuffers)
{
    Segment s = v4_syn();
    s.dst = parse_ip("fd77::111");
    Frame f(kMaxFrameLen);
    EXPECT_THROW(build_frame(s, f), Error);
    s = v4_syn();
    Frame small(kMaxFrameLen - 1);
    EXPECT_THROW(build_frame(s, small), Error);
}

TEST(FloodPrefix, Parses)
{
    const Prefix p = parse_prefix("198.18.0.0/15");
    EXPECT_EQ(format_prefix(p), "198.18.0.0/15");
    EXPECT_EQ(p.len, 15u);
    EXPECT_EQ(format_prefix(parse_prefix("2001:db8::/32")), "2001:db8::/32");
    EXPECT_EQ(format_prefix(parse_prefix("10.1.2.3/32")), "10.1.2.3/32");
    EXPECT_EQ(format_prefix(parse_prefix("0.0.0.0/0")), "0.0.0.0/0");
    for (const char* bad : {"198.18.0.0", "198.18.0.1/15", "198.18.0.0/33", "198.18.0.0/", "/15",
                            "198.18.0.0/1x", "2001:db8::/129", "2001:db8::1/64", "nonsense/8"})
        EXPECT_THROW(parse_prefix(bad), Error) << bad;
}

TEST(FloodPrefix, AddressesStayInside)
{
    const Prefix p = parse_prefix("198.18.0.0/15");
    Random r(3);
    std::set<uint32_t> second_octets;
    for (int i = 0; i < 10000; i++) {
        const IpAddress a = address_in(p, r.next(), r.next());
        ASSERT_TRUE(contains(p, a)) << format_ip(a);
        second_octets.insert(reinterpret_cast<const uint8_t*>(&a.addr)[1]);
    }
    EXPECT_EQ(second_octets, (std::set<uint32_t>{18, 19})); // both halves of the /15
    EXPECT_EQ(format_ip(address_in(p, ~0ull, ~0ull)), "198.19.255.255");
    EXPECT_EQ(format_ip(address_in(parse_prefix("10.1.2.3/32"), ~0ull, 0)), "10.1.2.3");
    const Prefix v6 = parse_prefix("2001:db8::/32");
    EXPECT_EQ(format_ip(address_in(v6, 0x1122334455667788ull, 0xaabbccddeeff0011ull)),
              "2001:db8:eeff:11:1122:3344:5566:7788");
    EXPECT_FALSE(contains(p, parse_ip("198.20.0.1")));
    EXPECT_FALSE(contains(p, parse_ip("2001:db8::1")));
}

Target target_v4()
{
    Target t;
    t.src_mac = parse_mac("02:77:00:00:00:c8");
    t.dst_mac = parse_mac("02:77:00:00:00:01");
    t.dst = parse_ip("10.77.0.111");
    t.dport = 80;
    t.sources = parse_prefix("198.18.0.0/15");
    return t;
}

struct Parsed {
    uint32_t saddr;
    uint16_t sport;
    uint32_t seq, ack;
    uint8_t flags;
    bool has_mss;
};

Parsed next_parsed(Flood& flood)
{
    Frame f(kMaxFrameLen);
    f.resize(flood.next(f));
    EXPECT_TRUE(ipv4_header_ok(f));
    EXPECT_TRUE(tcp_ok(f));
    EXPECT_EQ(rd32(f, 30), 0x0a4d006fu); // to 10.77.0.111
    EXPECT_EQ(rd16(f, 36), 80);
    return {rd32(f, 26), rd16(f, 34), rd32(f, 38), rd32(f, 42), f[47], f[46] == (6 << 4)};
}

TEST(FloodPattern, HandshakeIsSynAckAckPerTuple)
{
    Flood flood(Pattern::handshake, target_v4(), 11);
    std::set<std::pair<uint32_t, uint16_t>> tuples;
    for (int t = 0; t < 1000; t++) {
        const Parsed syn = next_parsed(flood), ack1 = next_parsed(flood), ack2 = next_parsed(flood);
        EXPECT_EQ(syn.flags, tcp_flag::kSyn);
        EXPECT_TRUE(syn.has_mss);
        EXPECT_EQ(syn.ack, 0u);
        for (const Parsed& a : {ack1, ack2}) {
            EXPECT_EQ(a.flags, tcp_flag::kAck);
            EXPECT_FALSE(a.has_mss);
            EXPECT_EQ(a.saddr, syn.saddr);
            EXPECT_EQ(a.sport, syn.sport);
            EXPECT_EQ(a.seq, syn.seq + 1); // the SYN took one sequence number
        }
        EXPECT_EQ(ack1.ack, ack2.ack);
        EXPECT_EQ(syn.saddr >> 17, (198u << 24 | 18u << 16) >> 17); // in 198.18.0.0/15
        EXPECT_GE(syn.sport, kMinSourcePort);
        tuples.insert({syn.saddr, syn.sport});
    }
    EXPECT_EQ(tuples.size(), 1000u);
    EXPECT_EQ(flood.tuples(), 1000u);
    EXPECT_EQ(flood.packets(), 3000u);
}

TEST(FloodPattern, OnePacketPerTupleForTheOthers)
{
    for (auto [pattern, flags] : {std::pair{Pattern::syn, tcp_flag::kSyn}, std::pair{Pattern::ack, tcp_flag::kAck},
                                  std::pair{Pattern::rst, tcp_flag::kRst}}) {
        Flood flood(pattern, target_v4(), 5);
        std::set<std::pair<uint32_t, uint16_t>> tuples;
        std::set<uint32_t> acks;
        for (int i = 0; i < 20000; i++) {
            const Parsed p = next_parsed(flood);
            ASSERT_EQ(p.flags, flags) << pattern_name(pattern);
            EXPECT_EQ(p.has_mss, pattern == Pattern::syn);
            tuples.insert({p.saddr, p.sport});
            acks.insert(p.ack);
        }
        // 2^17 addresses x 64512 ports: a handful of repeats at most.
        EXPECT_GE(tuples.size(), 19990u) << pattern_name(pattern);
        EXPECT_EQ(flood.tuples(), 20000u);
        if (pattern == Pattern::ack)
            EXPECT_GE(acks.size(), 19990u); // random ack numbers
        else
            EXPECT_EQ(acks, std::set<uint32_t>{0});
    }
}

TEST(FloodPattern, SeedMakesTheSameFlood)
{
    auto frames = [](uint64_t seed) {
        Flood flood(Pattern::handshake, target_v4(), seed);
        std::vector<Frame> out;
        for (int i = 0; i < 30; i++) {
            Frame f(kMaxFrameLen);
            f.resize(flood.next(f));
            out.push_back(f);
        }
        return out;
    };
    EXPECT_EQ(frames(9), frames(9));
    EXPECT_NE(frames(9), frames(10));
}

TEST(FloodPattern, NamesAndFamilies)
{
    for (Pattern p : {Pattern::syn, Pattern::handshake, Pattern::ack, Pattern::rst})
        EXPECT_EQ(parse_pattern(pattern_name(p)), p);
    EXPECT_THROW(parse_pattern("fin"), Error);
    Target t = target_v4();
    t.dst = parse_ip("fd77::111");
    EXPECT_THROW(Flood(Pattern::syn, t, 1), Error);
    t.sources = parse_prefix("2001:db8::/32");
    Flood v6(Pattern::syn, t, 1);
    Frame f(kMaxFrameLen);
    f.resize(v6.next(f));
    EXPECT_EQ(rd16(f, 12), 0x86dd);
    EXPECT_TRUE(tcp_ok(f));
    EXPECT_TRUE(contains(t.sources, v6.last().src));
}

} // namespace
