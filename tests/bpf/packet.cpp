#include "packet.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace peerlb::test {
namespace {

void put8(Bytes& b, uint8_t v)
{
    b.push_back(v);
}

void put16(Bytes& b, uint16_t v)
{
    b.push_back(uint8_t(v >> 8));
    b.push_back(uint8_t(v));
}

void put32(Bytes& b, uint32_t v)
{
    put16(b, uint16_t(v >> 16));
    put16(b, uint16_t(v));
}

void append(Bytes& b, const Bytes& more)
{
    b.insert(b.end(), more.begin(), more.end());
}

// Sum of 16-bit big-endian words, an odd last byte padded with zero.
uint32_t sum_words(const uint8_t* data, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += uint32_t(data[i]) << 8 | data[i + 1];
    if (len % 2)
        sum += uint32_t(data[len - 1]) << 8;
    return sum;
}

uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return uint16_t(sum);
}

size_t addr_len(const IpAddress& ip)
{
    return ip.family == LB_FAMILY_IPV4 ? 4 : 16;
}

} // namespace

Bytes ethernet_frame(const Ethernet& eth, uint16_t ethertype, const Bytes& l3)
{
    Bytes b;
    append(b, mac_bytes(eth.dst));
    append(b, mac_bytes(eth.src));
    for (const VlanTag& tag : eth.vlans) {
        put16(b, tag.tpid);
        put16(b, tag.tci);
    }
    put16(b, ethertype);
    append(b, l3);
    return b;
}

uint16_t ethertype_of(uint8_t family)
{
    return family == LB_FAMILY_IPV4 ? kEthIpv4 : kEthIpv6;
}

Bytes ipv4_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                  const Bytes& payload, const Ipv4Fields& f)
{
    const size_t header_len = kIpv4HeaderLen + f.options.size();
    Bytes b;
    put8(b, uint8_t(0x40 | header_len / 4));
    put8(b, f.tos); // DSCP/ECN
    put16(b, uint16_t(header_len + payload.size()));
    put16(b, f.id);
    put16(b, f.frag_off);
    put8(b, f.ttl);
    put8(b, protocol);
    put16(b, 0); // checksum, below
    append(b, addr_bytes(src));
    append(b, addr_bytes(dst));
    append(b, f.options);
    write16(b, 10, internet_checksum(b.data(), b.size()));
    append(b, payload);
    return b;
}

Ipv6Ext ipv6_options_ext(uint8_t type, size_t total_len)
{
    if (total_len < 8 || total_len % 8)
        throw std::invalid_argument("options header length must be a multiple of 8");
    // PadN option (type 1) filling the body.
    Bytes body{1, uint8_t(total_len - 4)};
    body.resize(total_len - 2, 0);
    return {type, body};
}

Ipv6Ext ipv6_ah_ext(size_t icv_len)
{
    Bytes body;
    put16(body, 0);          // reserved
    put32(body, 0x1000);     // SPI
    put32(body, 1);          // sequence number
    body.resize(body.size() + icv_len, 0xa5);
    return {kProtoAh, body};
}

Ipv6Ext ipv6_fragment_ext(uint16_t offset, bool more, uint32_t id)
{
    Bytes body;
    body.push_back(uint8_t(offset >> 5));
    body.push_back(uint8_t(offset << 3 | (more ? 1 : 0)));
    put32(body, id);
    return {kProtoFragment, body};
}

Bytes ipv6_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                  const Bytes& payload, const std::vector<Ipv6Ext>& ext, uint8_t hop_limit,
                  uint32_t flow_label)
{
    // The extension headers, each naming the one after it.
    Bytes chain;
    for (size_t i = 0; i < ext.size(); i++) {
        const Ipv6Ext& e = ext[i];
        const size_t total = e.body.size() + 2;
        put8(chain, i + 1 < ext.size() ? ext[i + 1].type : protocol);
        if (e.type == kProtoAh)
            put8(chain, uint8_t(total / 4 - 2));
        else if (e.type == kProtoFragment)
            put8(chain, 0); // reserved: the fragment header has a fixed size
        else
            put8(chain, uint8_t(total / 8 - 1));
        append(chain, e.body);
    }
    Bytes b;
    put32(b, 6u << 28 | (flow_label & 0xfffff)); // version, traffic class 0, flow label
    put16(b, uint16_t(chain.size() + payload.size()));
    put8(b, ext.empty() ? protocol : ext.front().type);
    put8(b, hop_limit);
    append(b, addr_bytes(src));
    append(b, addr_bytes(dst));
    append(b, chain);
    append(b, payload);
    return b;
}

Bytes ip_packet(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                const Bytes& payload, const std::vector<Ipv6Ext>& ext)
{
    if (src.family == LB_FAMILY_IPV4)
        return ipv4_packet(src, dst, protocol, payload);
    return ipv6_packet(src, dst, protocol, payload, ext);
}

Bytes ip_tunnel_packet(const IpAddress& src, const IpAddress& dst, const Bytes& inner,
                       uint32_t mark)
{
    const uint8_t proto = !inner.empty() && inner[0] >> 4 == 4 ? kProtoIpip : kProtoIpv6;
    const uint8_t dscp = uint8_t(mark >> 16 & 0x3f);
    if (src.family == LB_FAMILY_IPV4) {
        Ipv4Fields outer;
        outer.id = uint16_t(mark);
        outer.tos = uint8_t(dscp << 2);
        return ipv4_packet(src, dst, proto, inner, outer);
    }
    Bytes b = ipv6_packet(src, dst, proto, inner, {}, 64, mark & 0xffff);
    // The traffic class: the low 4 bits of byte 0, the high 4 of byte 1.
    const uint8_t traffic_class = uint8_t(dscp << 2);
    b[0] = uint8_t(b[0] | traffic_class >> 4);
    b[1] = uint8_t(b[1] | (traffic_class & 0xf) << 4);
    return b;
}

Bytes tcp_segment(const IpAddress& src, const IpAddress& dst, const Tcp& tcp)
{
    if (tcp.options.size() % 4)
        throw std::invalid_argument("TCP options must be padded to 4 bytes");
    Bytes b;
    put16(b, tcp.sport);
    put16(b, tcp.dport);
    put32(b, tcp.seq);
    put32(b, tcp.ack);
    put8(b, uint8_t((kTcpHeaderLen + tcp.options.size()) / 4 << 4));
    put8(b, tcp.flags);
    put16(b, tcp.window);
    put16(b, 0); // checksum, below
    put16(b, 0); // urgent pointer
    append(b, tcp.options);
    append(b, tcp.payload);
    uint32_t pseudo = pseudo_header_sum(src, dst, kProtoTcp, b.size());
    write16(b, 16, internet_checksum(b.data(), b.size(), pseudo));
    return b;
}

Bytes udp_datagram(const IpAddress& src, const IpAddress& dst, uint16_t sport, uint16_t dport,
                   const Bytes& payload)
{
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put16(b, uint16_t(8 + payload.size()));
    put16(b, 0);
    append(b, payload);
    uint16_t sum = internet_checksum(b.data(), b.size(),
                                     pseudo_header_sum(src, dst, kProtoUdp, b.size()));
    write16(b, 6, sum ? sum : 0xffff);
    return b;
}

Bytes icmp_echo(const IpAddress& src, const IpAddress& dst)
{
    const bool v4 = src.family == LB_FAMILY_IPV4;
    Bytes b;
    put8(b, v4 ? 8 : 128); // echo request
    put8(b, 0);
    put16(b, 0);
    put16(b, 0x4242); // identifier
    put16(b, 1);      // sequence
    append(b, Bytes(16, 0x61));
    uint32_t pseudo = v4 ? 0 : pseudo_header_sum(src, dst, kProtoIcmpv6, b.size());
    write16(b, 2, internet_checksum(b.data(), b.size(), pseudo));
    return ip_packet(src, dst, v4 ? kProtoIcmp : kProtoIcmpv6, b);
}

Bytes arp_request(const Mac& sender, const IpAddress& sender_ip, const IpAddress& target_ip)
{
    Bytes b;
    put16(b, 1);        // Ethernet
    put16(b, kEthIpv4); // IPv4
    put8(b, 6);
    put8(b, 4);
    put16(b, 1); // request
    append(b, mac_bytes(sender));
    append(b, addr_bytes(sender_ip));
    append(b, Bytes(6, 0));
    append(b, addr_bytes(target_ip));
    return b;
}

Bytes mss_option(uint16_t mss)
{
    Bytes b{2, 4};
    put16(b, mss);
    return b;
}

Bytes linux_syn_options(uint16_t mss)
{
    Bytes b = mss_option(mss);
    append(b, {4, 2});                   // SACK permitted
    append(b, {8, 10});                  // timestamps
    put32(b, 0x01020304);
    put32(b, 0);
    append(b, {1, 3, 3, 7});             // NOP, window scale 7
    return b;
}

Bytes tcp_frame(const Ethernet& eth, const IpAddress& src, const IpAddress& dst, const Tcp& tcp,
                const std::vector<Ipv6Ext>& ext)
{
    return ethernet_frame(eth, ethertype_of(src.family),
                          ip_packet(src, dst, kProtoTcp, tcp_segment(src, dst, tcp), ext));
}

uint16_t internet_checksum(const uint8_t* data, size_t len, uint32_t sum)
{
    return uint16_t(~fold(sum_words(data, len, sum)));
}

uint32_t pseudo_header_sum(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                           size_t l4_len)
{
    Bytes b = addr_bytes(src);
    append(b, addr_bytes(dst));
    if (src.family == LB_FAMILY_IPV4) {
        put8(b, 0);
        put8(b, protocol);
        put16(b, uint16_t(l4_len));
    } else {
        put32(b, uint32_t(l4_len));
        append(b, {0, 0, 0, protocol});
    }
    return sum_words(b.data(), b.size(), 0);
}

bool ipv4_checksum_ok(const uint8_t* header, size_t header_len)
{
    return fold(sum_words(header, header_len, 0)) == 0xffff;
}

bool tcp_checksum_ok(const IpAddress& src, const IpAddress& dst, const uint8_t* segment,
                     size_t len)
{
    return fold(sum_words(segment, len, pseudo_header_sum(src, dst, kProtoTcp, len))) == 0xffff;
}

uint16_t read16(const Bytes& b, size_t off)
{
    return uint16_t(b.at(off) << 8 | b.at(off + 1));
}

uint32_t read32(const Bytes& b, size_t off)
{
    return uint32_t(read16(b, off)) << 16 | read16(b, off + 2);
}

void write16(Bytes& b, size_t off, uint16_t value)
{
    b.at(off) = uint8_t(value >> 8);
    b.at(off + 1) = uint8_t(value);
}

Bytes slice(const Bytes& b, size_t off, size_t len)
{
    if (off > b.size())
        return {};
    len = std::min(len, b.size() - off);
    return Bytes(b.begin() + off, b.begin() + off + len);
}

Bytes concat(const Bytes& a, const Bytes& b)
{
    Bytes out = a;
    append(out, b);
    return out;
}

Bytes mac_bytes(const Mac& mac)
{
    return Bytes(mac.begin(), mac.end());
}

Bytes addr_bytes(const IpAddress& ip)
{
    const auto* p = reinterpret_cast<const uint8_t*>(&ip.addr);
    return Bytes(p, p + addr_len(ip));
}

size_t l3_offset(const Bytes& frame)
{
    size_t off = 12;
    while (read16(frame, off) == kEthVlan || read16(frame, off) == kEthQinQ)
        off += kVlanTagLen;
    return off + 2;
}

size_t tcp_offset(const Bytes& frame)
{
    const size_t l3 = l3_offset(frame);
    if (read16(frame, l3 - 2) == kEthIpv4)
        return l3 + (frame.at(l3) & 0x0f) * 4;
    return l3 + kIpv6HeaderLen;
}

std::string hex(const Bytes& b)
{
    std::string out;
    for (size_t i = 0; i < b.size(); i++) {
        if (i % 16 == 0)
            out += fmt::format("{}{:04x}:", i ? "\n" : "", i);
        out += fmt::format(" {:02x}", b[i]);
    }
    return out + fmt::format("\n({} bytes)", b.size());
}

} // namespace peerlb::test
