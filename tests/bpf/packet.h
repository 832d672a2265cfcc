// A small packet builder for the BPF tests: Ethernet (+VLAN tags), IPv4,
// IPv6 (+extension headers), TCP, UDP, ICMP, with correct checksums, and
// helpers to read a frame back. Everything is built byte by byte in network
// order, independently of the kernel's structs, so a test compares the
// program's output against what the protocol says, not against itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "userspace/dataplane/net.h"

namespace peerlb::test {

using Bytes = std::vector<uint8_t>;

inline constexpr uint16_t kEthIpv4 = 0x0800;
inline constexpr uint16_t kEthArp = 0x0806;
inline constexpr uint16_t kEthVlan = 0x8100;
inline constexpr uint16_t kEthQinQ = 0x88a8;
inline constexpr uint16_t kEthIpv6 = 0x86dd;

inline constexpr uint8_t kProtoHopOpts = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIpv6 = 41;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoDstOpts = 60;

namespace tcp_flags {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
} // namespace tcp_flags

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kIpv4HeaderLen = 20;
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kTcpHeaderLen = 20;

struct VlanTag {
    uint16_t tpid; // kEthVlan or kEthQinQ
    uint16_t tci;
};

struct Ethernet {
    Mac dst{};
    Mac src{};
    std::vector<VlanTag> vlans; // outermost first
};

// dst, src, each tag (TPID, TCI), the ethertype, then l3.
Bytes ethernet_frame(const Ethernet& eth, uint16_t ethertype, const Bytes& l3);
uint16_t ethertype_of(uint8_t family);

struct Ipv4Fields {
    uint8_t ttl = 64;
    uint8_t tos = 0;
    uint16_t id = 0x1234;
    uint16_t frag_off = 0x4000; // flags and offset, host order; DF by default
    Bytes options;              // padded to 4 bytes by the caller
};
// An IPv4 header with a valid checksum, then payload.
Bytes ipv4_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                  const Bytes& payload, const Ipv4Fields& fields = {});

// One IPv6 extension header. `body` follows the next-header and length bytes;
// its size must make the header a multiple of 8 bytes (of 4 for AH).
struct Ipv6Ext {
    uint8_t type;
    Bytes body;
};
// Hop-by-hop / destination options padded with PadN to `total_len` bytes.
Ipv6Ext ipv6_options_ext(uint8_t type, size_t total_len = 8);
// AH with an `icv_len`-byte integrity value (length in 4-byte units - 2).
Ipv6Ext ipv6_ah_ext(size_t icv_len = 12);
// Fragment header; offset in 8-byte units.
Ipv6Ext ipv6_fragment_ext(uint16_t offset, bool more, uint32_t id = 7);

// An IPv6 header and the extension headers, chained to `protocol`.
Bytes ipv6_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                  const Bytes& payload, const std::vector<Ipv6Ext>& ext = {},
                  uint8_t hop_limit = 64, uint32_t flow_label = 0);

// IPv4 or IPv6 by the family of src.
Bytes ip_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                const Bytes& payload, const std::vector<Ipv6Ext>& ext = {});

// The IP packet `inner` in an outer header from src to dst (IPv4 or IPv6 by
// src's family; IPIP or IPv6-in-IP by inner's version), as a peerlb node
// forwards it: IPv4 with DF, IPv6 with a flow label, carrying a shared
// address's hop `mark` as the node writes it (maps/shared.h: the IPv4 id /
// the flow label's low 16 bits, and the DSCP); TTL / hop limit 64.
Bytes ip_tunnel_packet(const IpAddress& src, const IpAddress& dst, const Bytes& inner,
                       uint32_t mark = 0);

struct Tcp {
    uint16_t sport = 40000;
    uint16_t dport = 80;
    uint8_t flags = tcp_flags::kSyn;
    uint32_t seq = 1000;
    uint32_t ack = 0;
    uint16_t window = 64240;
    Bytes options; // padded to 4 bytes by the caller
    Bytes payload;
};
// A TCP segment whose checksum covers the src/dst pseudo header.
Bytes tcp_segment(const IpAddress& src, const IpAddress& dst, const Tcp& tcp);
Bytes udp_datagram(const IpAddress& src, const IpAddress& dst, uint16_t sport, uint16_t dport,
                   const Bytes& payload);
// ICMP (IPv4) or ICMPv6 echo request.
Bytes icmp_echo(const IpAddress& src, const IpAddress& dst);
Bytes arp_request(const Mac& sender, const IpAddress& sender_ip, const IpAddress& target_ip);

// TCP options.
Bytes mss_option(uint16_t mss);
// What Linux puts in a SYN: MSS, SACK permitted, timestamps, NOP, window scale.
Bytes linux_syn_options(uint16_t mss = 1460);

// A whole Ethernet frame carrying a TCP segment from src to dst.
Bytes tcp_frame(const Ethernet& eth, const IpAddress& src, const IpAddress& dst, const Tcp& tcp,
                const std::vector<Ipv6Ext>& ext = {});

// RFC 1071 sum, folded and complemented; `sum` carries a partial sum in.
uint16_t internet_checksum(const uint8_t* data, size_t len, uint32_t sum = 0);
// Sum of the IPv4 or IPv6 pseudo header (not folded).
uint32_t pseudo_header_sum(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                           size_t l4_len);
// True when the IPv4 header at data verifies.
bool ipv4_checksum_ok(const uint8_t* header, size_t header_len);
// True when the TCP segment (header and payload) verifies for src/dst.
bool tcp_checksum_ok(const IpAddress& src, const IpAddress& dst, const uint8_t* segment,
                     size_t len);

// Reading back.
uint16_t read16(const Bytes& b, size_t off);
uint32_t read32(const Bytes& b, size_t off);
void write16(Bytes& b, size_t off, uint16_t value);
Bytes slice(const Bytes& b, size_t off, size_t len = SIZE_MAX);
Bytes concat(const Bytes& a, const Bytes& b);
Bytes mac_bytes(const Mac& mac);
Bytes addr_bytes(const IpAddress& ip);
// Offset of the L3 header: past Ethernet and any 802.1Q / 802.1ad tags.
size_t l3_offset(const Bytes& frame);
// Offset of TCP in an IPv4/IPv6 (no extension headers) frame.
size_t tcp_offset(const Bytes& frame);

// Hex dump, 16 bytes a line with offsets, so failed comparisons show a diff.
std::string hex(const Bytes& b);

} // namespace peerlb::test
