// The frames of peerlb-flood: spoofed TCP segments in Ethernet + IPv4/IPv6,
// written byte by byte in network order with valid IP and TCP checksums,
// and the order in which each flood pattern sends them. No I/O here, so
// the unit tests check exactly what the generator puts on the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "userspace/dataplane/net.h"

namespace peerlb::flood {

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kIpv4HeaderLen = 20;
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kTcpHeaderLen = 20;
inline constexpr size_t kMssOptionLen = 4;
// Ethernet's minimum frame without the FCS: shorter frames are padded with
// zeros after the IP packet, as a NIC would.
inline constexpr size_t kMinFrameLen = 60;
// The longest frame build_frame writes (IPv6 with the MSS option).
inline constexpr size_t kMaxFrameLen = kEthHeaderLen + kIpv6HeaderLen + kTcpHeaderLen + kMssOptionLen;

inline constexpr uint16_t kEthTypeIpv4 = 0x0800;
inline constexpr uint16_t kEthTypeIpv6 = 0x86dd;
inline constexpr uint8_t kProtoTcp = 6;

namespace tcp_flag {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
} // namespace tcp_flag

// One TCP segment and the frame around it.
struct Segment {
    Mac src_mac{};
    Mac dst_mac{};
    IpAddress src; // src and dst of one family
    IpAddress dst;
    uint16_t sport = 0;
    uint16_t dport = 0;
    uint32_t seq = 0;
    uint32_t ack = 0;
    uint8_t flags = 0;
    uint16_t window = 64240;
    uint16_t mss = 0;   // non-zero: an MSS option (a SYN's)
    uint16_t ip_id = 0; // IPv4 identification
    uint8_t ttl = 64;   // TTL or hop limit
};

// Writes the frame of `s` at the start of `out` (at least kMaxFrameLen
// bytes) and returns its length. Throws Error on mixed families or a short
// buffer.
size_t build_frame(const Segment& s, std::span<uint8_t> out);

// RFC 1071: the one's complement sum of `data` (16-bit big-endian words, an
// odd last byte padded with zero) added to `sum`, folded and complemented.
uint16_t internet_checksum(std::span<const uint8_t> data, uint32_t sum = 0);

// Addresses the sources are drawn from: base/len, host bits of base zero.
struct Prefix {
    IpAddress base;
    unsigned len = 0;
};
// "198.18.0.0/15", "2001:db8::/32"; throws Error otherwise.
Prefix parse_prefix(const std::string& text);
std::string format_prefix(const Prefix& p);
// The address of `p` whose host bits are taken from `r0` (the low 64) and
// `r1` (the high 64, IPv6 only).
IpAddress address_in(const Prefix& p, uint64_t r0, uint64_t r1);
bool contains(const Prefix& p, const IpAddress& ip);

// splitmix64: the same floods for a seed everywhere (the std::
// distributions are implementation-defined).
class Random {
public:
    explicit Random(uint64_t seed) : state_(seed) {}
    uint64_t next()
    {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }

private:
    uint64_t state_;
};

// What a flood sends for each tuple (source address and port):
//  syn        one SYN (with an MSS option)
//  handshake  a SYN, then two ACKs completing a handshake the sender never
//             saw answered: seq = ISN + 1, ack a random number
//  ack        one ACK, random seq and ack
//  rst        one RST, random seq
enum class Pattern { syn, handshake, ack, rst };
Pattern parse_pattern(std::string_view name); // throws Error
std::string_view pattern_name(Pattern p);
unsigned packets_per_tuple(Pattern p);

struct Target {
    Mac src_mac{};
    Mac dst_mac{};
    IpAddress dst;
    uint16_t dport = 80;
    Prefix sources;
};

inline constexpr uint16_t kMinSourcePort = 1024;
inline constexpr uint16_t kSynMss = 1460;

// The frames of one flood, tuple after tuple: a new random source address
// (in the prefix) and port for each tuple.
class Flood {
public:
    // Throws Error when the target's families differ.
    Flood(Pattern pattern, const Target& target, uint64_t seed);
    // Writes the next frame into `out` (at least kMaxFrameLen bytes); returns
    // its length.
    size_t next(std::span<uint8_t> out);
    // The segment of the frame next() wrote last.
    const Segment& last() const { return seg_; }
    uint64_t tuples() const { return tuples_; } // tuples begun
    uint64_t packets() const { return packets_; }

private:
    void new_tuple();

    Pattern pattern_;
    Target target_;
    Random random_;
    Segment seg_;
    unsigned step_ = 0; // packet of the current tuple next() writes
    uint32_t isn_ = 0;
    uint32_t ack_ = 0;
    uint64_t tuples_ = 0;
    uint64_t packets_ = 0;
};

} // namespace peerlb::flood
