#include "frame.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "userspace/dataplane/error.h"

namespace peerlb::flood {

namespace {

void put16(uint8_t* p, uint16_t v)
{
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

void put32(uint8_t* p, uint32_t v)
{
    put16(p, static_cast<uint16_t>(v >> 16));
    put16(p + 2, static_cast<uint16_t>(v));
}

const uint8_t* bytes_of(const IpAddress& ip) { return reinterpret_cast<const uint8_t*>(&ip.addr); }
uint8_t* bytes_of(IpAddress& ip) { return reinterpret_cast<uint8_t*>(&ip.addr); }
size_t addr_len(uint8_t family) { return family == LB_FAMILY_IPV4 ? 4 : 16; }

// Not folded: the partial sum a checksum starts from.
uint32_t sum_words(std::span<const uint8_t> data, uint32_t sum)
{
    size_t i = 0;
    for (; i + 1 < data.size(); i += 2)
        sum += uint32_t(data[i]) << 8 | data[i + 1];
    if (i < data.size())
        sum += uint32_t(data[i]) << 8;
    // Fold now and then would be needed past 64 KiB of input; frames are
    // far shorter, but keep the carry bits from overflowing anyway.
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

} // namespace

uint16_t internet_checksum(std::span<const uint8_t> data, uint32_t sum)
{
    sum = sum_words(data, sum);
    return static_cast<uint16_t>(~sum & 0xffff);
}

size_t build_frame(const Segment& s, std::span<uint8_t> out)
{
    if (s.src.family != s.dst.family ||
        (s.src.family != LB_FAMILY_IPV4 && s.src.family != LB_FAMILY_IPV6))
        throw Error("a segment's source and destination must be both IPv4 or both IPv6");
    if (out.size() < kMaxFrameLen)
        throw Error(fmt::format("frame buffer of {} bytes, {} needed", out.size(), kMaxFrameLen));
    const bool v4 = s.src.family == LB_FAMILY_IPV4;
    const size_t ip_len = v4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    const size_t tcp_len = kTcpHeaderLen + (s.mss ? kMssOptionLen : 0);
    const size_t alen = addr_len(s.src.family);
    uint8_t* f = out.data();

    // Ethernet.
    std::memcpy(f, s.dst_mac.data(), 6);
    std::memcpy(f + 6, s.src_mac.data(), 6);
    put16(f + 12, v4 ? kEthTypeIpv4 : kEthTypeIpv6);

    // IP.
    uint8_t* ip = f + kEthHeaderLen;
    if (v4) {
        ip[0] = 0x45; // version 4, 5 words
        ip[1] = 0;    // DSCP, ECN
        put16(ip + 2, static_cast<uint16_t>(kIpv4HeaderLen + tcp_len));
        put16(ip + 4, s.ip_id);
        put16(ip + 6, 0x4000); // DF, offset 0
        ip[8] = s.ttl;
        ip[9] = kProtoTcp;
        put16(ip + 10, 0);
        std::memcpy(ip + 12, bytes_of(s.src), 4);
        std::memcpy(ip + 16, bytes_of(s.dst), 4);
        put16(ip + 10, internet_checksum({ip, kIpv4HeaderLen}));
    } else {
        put32(ip, 6u << 28); // version 6, traffic class and flow label 0
        put16(ip + 4, static_cast<uint16_t>(tcp_len));
        ip[6] = kProtoTcp;
        ip[7] = s.ttl;
        std::memcpy(ip + 8, bytes_of(s.src), 16);
        std::memcpy(ip + 24, bytes_of(s.dst), 16);
    }

    // TCP.
    uint8_t* tcp = ip + ip_len;
    put16(tcp, s.sport);
    put16(tcp + 2, s.dport);
    put32(tcp + 4, s.seq);
    put32(tcp + 8, s.ack);
    tcp[12] = static_cast<uint8_t>(tcp_len / 4 << 4);
    tcp[13] = s.flags;
    put16(tcp + 14, s.window);
    put16(tcp + 16, 0); // checksum, below
    put16(tcp + 18, 0); // urgent pointer
    if (s.mss) {
        tcp[20] = 2; // kind MSS
        tcp[21] = kMssOptionLen;
        put16(tcp + 22, s.mss);
    }
    // The pseudo header: addresses, protocol and TCP length (RFC 793; RFC
    // 8200 section 8.1 for IPv6, whose length field is 32 bits).
    uint32_t pseudo = sum_words({bytes_of(s.src), alen}, 0);
    pseudo = sum_words({bytes_of(s.dst), alen}, pseudo);
    pseudo += kProtoTcp + static_cast<uint32_t>(tcp_len);
    put16(tcp + 16, internet_checksum({tcp, tcp_len}, pseudo));

    size_t len = kEthHeaderLen + ip_len + tcp_len;
    if (len < kMinFrameLen) {
        std::memset(f + len, 0, kMinFrameLen - len);
        len = kMinFrameLen;
    }
    return len;
}

Prefix parse_prefix(const std::string& text)
{
    auto bad = [&](std::string_view why) {
        return Error(fmt::format("'{}' is not a prefix ({}): want ADDR/LEN, e.g. 198.18.0.0/15", text, why));
    };
    const size_t slash = text.find('/');
    if (slash == std::string::npos)
        throw bad("no /LEN");
    Prefix p;
    try {
        p.base = parse_ip(text.substr(0, slash));
    } catch (const Error&) {
        throw bad("bad address");
    }
    const std::string len_text = text.substr(slash + 1);
    const unsigned max = p.base.family == LB_FAMILY_IPV4 ? 32 : 128;
    if (len_text.empty() || len_text.size() > 3 ||
        !std::all_of(len_text.begin(), len_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw bad("bad length");
    p.len = static_cast<unsigned>(std::stoul(len_text));
    if (p.len > max)
        throw bad(fmt::format("length over {}", max));
    if (address_in(p, 0, 0) != p.base)
        throw bad("host bits set");
    return p;
}

std::string format_prefix(const Prefix& p) { return fmt::format("{}/{}", format_ip(p.base), p.len); }

IpAddress address_in(const Prefix& p, uint64_t r0, uint64_t r1)
{
    IpAddress ip = p.base;
    const size_t n = addr_len(p.base.family);
    const uint8_t* base = bytes_of(p.base);
    uint8_t* out = bytes_of(ip);
    // Byte i from the end takes byte i of r0 (then of r1) where the prefix
    // leaves host bits.
    for (size_t i = 0; i < n; i++) {
        const size_t from_end = n - 1 - i;
        const uint8_t random = static_cast<uint8_t>(from_end < 8 ? r0 >> (8 * from_end)
                                                                 : r1 >> (8 * (from_end - 8)));
        const size_t bit0 = i * 8; // first bit of this byte
        uint8_t net_mask;
        if (p.len >= bit0 + 8)
            net_mask = 0xff;
        else if (p.len <= bit0)
            net_mask = 0;
        else
            net_mask = static_cast<uint8_t>(0xff << (8 - (p.len - bit0)));
        out[i] = static_cast<uint8_t>((base[i] & net_mask) | (random & ~net_mask));
    }
    return ip;
}

bool contains(const Prefix& p, const IpAddress& ip)
{
    if (ip.family != p.base.family)
        return false;
    Prefix host_zero = p;
    host_zero.base = ip;
    return address_in(host_zero, 0, 0) == address_in(p, 0, 0);
}

Pattern parse_pattern(std::string_view name)
{
    for (Pattern p : {Pattern::syn, Pattern::handshake, Pattern::ack, Pattern::rst})
        if (name == pattern_name(p))
            return p;
    throw Error(fmt::format("unknown pattern '{}' (syn, handshake, ack, rst)", name));
}

std::string_view pattern_name(Pattern p)
{
    switch (p) {
    case Pattern::syn:
        return "syn";
    case Pattern::handshake:
        return "handshake";
    case Pattern::ack:
        return "ack";
    case Pattern::rst:
        return "rst";
    }
    return "?";
}

unsigned packets_per_tuple(Pattern p) { return p == Pattern::handshake ? 3 : 1; }

Flood::Flood(Pattern pattern, const Target& target, uint64_t seed)
    : pattern_(pattern), target_(target), random_(seed)
{
    if (target.dst.family != target.sources.base.family)
        throw Error(fmt::format("the sources {} and the destination {} are not of one family",
                                format_prefix(target.sources), format_ip(target.dst)));
    seg_.src_mac = target.src_mac;
    seg_.dst_mac = target.dst_mac;
    seg_.dst = target.dst;
    seg_.dport = target.dport;
    seg_.ip_id = static_cast<uint16_t>(random_.next());
}

void Flood::new_tuple()
{
    const unsigned host_bits = (target_.dst.family == LB_FAMILY_IPV4 ? 32 : 128) - target_.sources.len;
    // Neither the prefix's own address nor (IPv4) its broadcast address,
    // where the prefix leaves room for others.
    for (int tries = 0;; tries++) {
        const uint64_t r0 = random_.next(), r1 = random_.next();
        seg_.src = address_in(target_.sources, r0, r1);
        if (host_bits < 2 || tries >= 8)
            break;
        const IpAddress all_ones = address_in(target_.sources, ~0ull, ~0ull);
        if (seg_.src != target_.sources.base &&
            (target_.dst.family == LB_FAMILY_IPV6 || seg_.src != all_ones))
            break;
    }
    const uint64_t r = random_.next();
    seg_.sport = static_cast<uint16_t>(kMinSourcePort + r % (65536 - kMinSourcePort));
    isn_ = static_cast<uint32_t>(r >> 32);
    ack_ = static_cast<uint32_t>(random_.next());
    tuples_++;
}

size_t Flood::next(std::span<uint8_t> out)
{
    if (step_ == 0)
        new_tuple();
    seg_.mss = 0;
    seg_.window = 64240;
    switch (pattern_) {
    case Pattern::syn:
        seg_.flags = tcp_flag::kSyn;
        seg_.seq = isn_;
        seg_.ack = 0;
        seg_.mss = kSynMss;
        break;
    case Pattern::handshake:
        if (step_ == 0) {
            seg_.flags = tcp_flag::kSyn;
            seg_.seq = isn_;
            seg_.ack = 0;
            seg_.mss = kSynMss;
        } else {
            // The SYN-ACK went to the spoofed address: its ISN is a guess.
            seg_.flags = tcp_flag::kAck;
            seg_.seq = isn_ + 1;
            seg_.ack = ack_;
            seg_.window = 502;
        }
        break;
    case Pattern::ack:
        seg_.flags = tcp_flag::kAck;
        seg_.seq = isn_;
        seg_.ack = ack_;
        seg_.window = 502;
        break;
    case Pattern::rst:
        seg_.flags = tcp_flag::kRst;
        seg_.seq = isn_;
        seg_.ack = 0;
        seg_.window = 0;
        break;
    }
    seg_.ip_id++;
    const size_t len = build_frame(seg_, out);
    step_ = (step_ + 1) % packets_per_tuple(pattern_);
    packets_++;
    return len;
}

} // namespace peerlb::flood
