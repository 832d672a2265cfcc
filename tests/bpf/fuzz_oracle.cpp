#include "fuzz_oracle.h"

#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace peerlb::test::fuzz {
namespace {

constexpr size_t kMacLen = 6;

uint16_t be16(const Bytes& b, size_t off)
{
    return uint16_t(b[off] << 8 | b[off + 1]);
}

IpAddress addr_at(const Bytes& b, size_t off, uint8_t family)
{
    IpAddress ip;
    ip.family = family;
    std::memcpy(&ip.addr, b.data() + off, family == LB_FAMILY_IPV4 ? 4 : 16);
    return ip;
}

bool same_bytes(const Bytes& a, size_t a_off, const Bytes& b, size_t b_off, size_t len)
{
    return a.size() >= a_off + len && b.size() >= b_off + len &&
           std::equal(a.begin() + a_off, a.begin() + a_off + len, b.begin() + b_off);
}

bool mac_is(const uint8_t* mac, const Mac& m)
{
    return std::equal(m.begin(), m.end(), mac);
}

bool is_ipv6_ext(uint8_t next)
{
    return next == kProtoHopOpts || next == kProtoRouting || next == kProtoDstOpts ||
           next == kProtoAh;
}

// The TCP header at v.l4, if the design would read one there.
void parse_tcp(const Bytes& f, View& v)
{
    if (v.l4 + kTcpHeaderLen > f.size())
        return;
    const size_t doff = f[v.l4 + 12] >> 4;
    if (doff < 5 || v.l4 + doff * 4 > f.size())
        return;
    v.tcp = true;
    v.sport = be16(f, v.l4);
    v.dport = be16(f, v.l4 + 2);
    v.flags = f[v.l4 + 13];
}

void parse_ipv4(const Bytes& f, View& v)
{
    const size_t l3 = v.l2_len;
    if (l3 + kIpv4HeaderLen > f.size() || f[l3] >> 4 != 4)
        return;
    const size_t hlen = size_t(f[l3] & 0x0f) * 4;
    if (hlen < kIpv4HeaderLen || l3 + hlen > f.size())
        return;
    v.family = LB_FAMILY_IPV4;
    v.src = addr_at(f, l3 + 12, LB_FAMILY_IPV4);
    v.dst = addr_at(f, l3 + 16, LB_FAMILY_IPV4);
    if (be16(f, l3 + 6) & 0x3fff) { // MF or an offset
        v.fragment = true;
        return;
    }
    const uint8_t proto = f[l3 + 9];
    if (proto == kProtoIpip || proto == kProtoIpv6) {
        v.encap = true;
        v.inner_proto = proto;
        v.outer_len = hlen;
    } else if (proto == kProtoTcp) {
        v.l4 = l3 + hlen;
        parse_tcp(f, v);
    }
}

void parse_ipv6(const Bytes& f, View& v)
{
    const size_t l3 = v.l2_len;
    if (l3 + kIpv6HeaderLen > f.size() || f[l3] >> 4 != 6)
        return;
    v.family = LB_FAMILY_IPV6;
    v.src = addr_at(f, l3 + 8, LB_FAMILY_IPV6);
    v.dst = addr_at(f, l3 + 24, LB_FAMILY_IPV6);
    uint8_t next = f[l3 + 6];
    size_t pos = l3 + kIpv6HeaderLen;
    for (int count = 0; is_ipv6_ext(next); count++) {
        if (count == 4 || pos + 2 > f.size())
            return; // a longer chain, or a cut one: not TCP
        const size_t len =
            next == kProtoAh ? (size_t(f[pos + 1]) + 2) * 4 : (size_t(f[pos + 1]) + 1) * 8;
        if (pos + len > f.size())
            return;
        next = f[pos];
        pos += len;
    }
    if (next == kProtoFragment) {
        v.fragment = true;
    } else if (next == kProtoIpip || next == kProtoIpv6) {
        v.encap = true;
        v.inner_proto = next;
        v.outer_len = pos - l3;
    } else if (next == kProtoTcp) {
        v.l4 = pos;
        parse_tcp(f, v);
    }
}

std::string ip_text(const IpAddress& ip)
{
    return format_ip(ip);
}

} // namespace

bool World::is_service(const IpAddress& addr, uint16_t port) const
{
    return std::any_of(services.begin(), services.end(), [&](const Service& s) {
        return s.addr == addr && s.port == port;
    });
}

bool World::is_node_addr(const IpAddress& addr) const
{
    return std::find(node_addrs.begin(), node_addrs.end(), addr) != node_addrs.end();
}

bool World::is_live_peer_addr(const IpAddress& addr) const
{
    return std::any_of(peers.begin(), peers.end(), [&](const Peer& p) {
        return p.addr == addr && p.state != LB_NODE_DEAD && !(addr == self_addr);
    });
}

bool World::is_node_mac(const uint8_t* mac) const
{
    return std::any_of(node_macs.begin(), node_macs.end(),
                       [&](const Mac& m) { return mac_is(mac, m); });
}

bool World::in_grace(const IpAddress& addr) const
{
    return std::find(grace.begin(), grace.end(), addr) != grace.end();
}

const Peer* World::peer_by_mac(const uint8_t* mac) const
{
    for (const Peer& p : peers)
        if (mac_is(mac, p.mac))
            return &p;
    return nullptr;
}

View parse_view(const Bytes& f)
{
    View v;
    if (f.size() < kEthHeaderLen)
        return v;
    v.ethernet = true;
    size_t type_at = 12;
    uint16_t type = be16(f, type_at);
    for (int tags = 0; tags < 2 && (type == kEthVlan || type == kEthQinQ); tags++) {
        // The tag's TCI and the ethertype after it must be there.
        if (type_at + 6 > f.size())
            return v;
        type_at += kVlanTagLen;
        type = be16(f, type_at);
    }
    v.l2_len = type_at + 2;
    v.ethertype = type;
    if (type == kEthIpv4)
        parse_ipv4(f, v);
    else if (type == kEthIpv6)
        parse_ipv6(f, v);
    return v;
}

const char* outcome_name(Outcome o)
{
    switch (o) {
    case Outcome::Refused:
        return "refused (EINVAL, < 14 bytes)";
    case Outcome::PassUntouched:
        return "XDP_PASS untouched";
    case Outcome::PassDecapsulated:
        return "XDP_PASS decapsulated";
    case Outcome::TxL2:
        return "XDP_TX l2";
    case Outcome::TxIpip:
        return "XDP_TX ipip";
    case Outcome::DropForwardError:
        return "XDP_DROP forward error";
    case Outcome::DropOrphanGrace:
        return "XDP_DROP orphan in grace";
    case Outcome::Count:
        break;
    }
    return "?";
}

namespace {

// What decapsulating `in` must give: the original L2 header with the
// ethertype before L3 naming the inner family, then the inner packet.
Bytes decapsulated(const Bytes& in, const View& v)
{
    Bytes out(in.begin(), in.begin() + long(v.l2_len));
    write16(out, v.l2_len - 2, v.inner_proto == kProtoIpip ? kEthIpv4 : kEthIpv6);
    out.insert(out.end(), in.begin() + long(v.l2_len + v.outer_len), in.end());
    return out;
}

// The checks of an XDP_TX frame; empty when it is well formed.
std::string check_tx(const World& w, const Bytes& in, const View& v, const Bytes& out)
{
    if (out.size() < kEthHeaderLen)
        return fmt::format("XDP_TX frame of {} bytes", out.size());
    const Peer* peer = w.peer_by_mac(out.data());
    if (!peer)
        return fmt::format("XDP_TX to destination MAC {}, not a peer's", format_mac(out.data()));
    if (!mac_is(out.data() + kMacLen, w.self_mac))
        return fmt::format("XDP_TX with source MAC {}, not this node's ({})",
                           format_mac(out.data() + kMacLen), format_mac(w.self_mac.data()));

    if (w.forward == LB_FORWARD_L2) {
        if (out.size() != in.size())
            return fmt::format("l2 XDP_TX changed the length {} -> {}", in.size(), out.size());
        if (!same_bytes(out, 2 * kMacLen, in, 2 * kMacLen, in.size() - 2 * kMacLen))
            return "l2 XDP_TX changed more than the MACs";
        return {};
    }

    // ipip: MACs, the same tags, the outer family's ethertype, the outer
    // header, then the input from its L3 on.
    const size_t l2 = v.l2_len;
    const bool outer4 = w.self_addr.family == LB_FAMILY_IPV4;
    const size_t outer_len = outer4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    const uint8_t inner_proto = v.family == LB_FAMILY_IPV4 ? kProtoIpip : kProtoIpv6;
    if (out.size() != in.size() + outer_len)
        return fmt::format("ipip XDP_TX frame of {} bytes for {} in, expected {}", out.size(),
                           in.size(), in.size() + outer_len);
    if (!same_bytes(out, 2 * kMacLen, in, 2 * kMacLen, l2 - 2 - 2 * kMacLen))
        return "ipip XDP_TX changed the VLAN tags";
    if (read16(out, l2 - 2) != (outer4 ? kEthIpv4 : kEthIpv6))
        return fmt::format("ipip XDP_TX ethertype {:#06x} before the outer IPv{} header",
                           read16(out, l2 - 2), outer4 ? 4 : 6);
    if (out.size() - l2 > w.mtu)
        return fmt::format("ipip XDP_TX of an IP packet of {} bytes, MTU {}", out.size() - l2,
                           w.mtu);
    if (outer4) {
        if (out[l2] != 0x45)
            return fmt::format("outer IPv4 version/IHL byte {:#04x}", out[l2]);
        if (read16(out, l2 + 2) != out.size() - l2)
            return fmt::format("outer tot_len {}, {} bytes follow L2", read16(out, l2 + 2),
                               out.size() - l2);
        const uint16_t frag = read16(out, l2 + 6);
        if (!(frag & 0x4000) || (frag & 0x3fff))
            return fmt::format("outer frag_off {:#06x}: DF must be set, MF and offset clear",
                               frag);
        if (out[l2 + 8] == 0)
            return "outer TTL 0";
        if (out[l2 + 9] != inner_proto)
            return fmt::format("outer protocol {}, inner is IPv{}", out[l2 + 9],
                               v.family == LB_FAMILY_IPV4 ? 4 : 6);
        if (!ipv4_checksum_ok(out.data() + l2, kIpv4HeaderLen))
            return fmt::format("outer IPv4 checksum {:#06x} does not verify", read16(out, l2 + 10));
        if (!(addr_at(out, l2 + 12, LB_FAMILY_IPV4) == w.self_addr))
            return fmt::format("outer source {}, not this node's {}",
                               ip_text(addr_at(out, l2 + 12, LB_FAMILY_IPV4)),
                               ip_text(w.self_addr));
        if (!(addr_at(out, l2 + 16, LB_FAMILY_IPV4) == peer->addr))
            return fmt::format("outer destination {}, but the MAC is slot {}'s ({})",
                               ip_text(addr_at(out, l2 + 16, LB_FAMILY_IPV4)), peer->slot,
                               ip_text(peer->addr));
    } else {
        if (out[l2] >> 4 != 6)
            return fmt::format("outer IPv6 version {}", out[l2] >> 4);
        if (read16(out, l2 + 4) != out.size() - l2 - kIpv6HeaderLen)
            return fmt::format("outer payload_len {}, {} bytes follow the header",
                               read16(out, l2 + 4), out.size() - l2 - kIpv6HeaderLen);
        if (out[l2 + 6] != inner_proto)
            return fmt::format("outer nexthdr {}, inner is IPv{}", out[l2 + 6],
                               v.family == LB_FAMILY_IPV4 ? 4 : 6);
        if (out[l2 + 7] == 0)
            return "outer hop limit 0";
        if (!(addr_at(out, l2 + 8, LB_FAMILY_IPV6) == w.self_addr))
            return fmt::format("outer source {}, not this node's {}",
                               ip_text(addr_at(out, l2 + 8, LB_FAMILY_IPV6)), ip_text(w.self_addr));
        if (!(addr_at(out, l2 + 24, LB_FAMILY_IPV6) == peer->addr))
            return fmt::format("outer destination {}, but the MAC is slot {}'s ({})",
                               ip_text(addr_at(out, l2 + 24, LB_FAMILY_IPV6)), peer->slot,
                               ip_text(peer->addr));
    }
    if (!same_bytes(out, l2 + outer_len, in, l2, in.size() - l2))
        return "ipip XDP_TX: the inner packet is not the input from its L3 on";
    return {};
}

} // namespace

Judgement judge(const World& w, const Bytes& in, int error, uint32_t verdict, const Bytes& out,
                const DropDelta& drops)
{
    Judgement j;
    auto fail = [&j](std::string why) {
        j.failure = std::move(why);
        return j;
    };

    if (error) {
        if (error == EINVAL && in.size() < kEthHeaderLen) {
            j.outcome = Outcome::Refused;
            return j;
        }
        return fail(fmt::format("BPF_PROG_TEST_RUN failed on a {}-byte frame: {}", in.size(),
                                std::strerror(error)));
    }

    const View v = parse_view(in);
    j.to_service = v.tcp && w.is_service(v.dst, v.dport);
    // A tunnel trusted as steered here (DESIGN section 2): ipip mode, to this
    // node, from a live peer, TCP to a service inside.
    if (v.encap && w.forward == LB_FORWARD_IPIP && v.dst == w.self_addr &&
        w.is_live_peer_addr(v.src)) {
        View inner;
        inner.l2_len = v.l2_len + v.outer_len;
        if (v.inner_proto == kProtoIpip)
            parse_ipv4(in, inner);
        else
            parse_ipv6(in, inner);
        j.steered_encap = inner.tcp && w.is_service(inner.dst, inner.dport);
    }
    j.steered_mac = v.ethernet && w.forward == LB_FORWARD_L2 && w.is_node_mac(in.data() + kMacLen);
    const bool syn_only = v.tcp && (v.flags & tcp_flags::kSyn) && !(v.flags & tcp_flags::kAck);

    if (verdict != XDP_DROP && (drops.forward_error || drops.orphan_grace))
        return fail(fmt::format("verdict {} but drop counters moved (forward_error +{}, "
                                "orphan_grace +{})",
                                verdict, drops.forward_error, drops.orphan_grace));

    switch (verdict) {
    case XDP_PASS:
        if (out == in) {
            j.outcome = Outcome::PassUntouched;
            return j;
        }
        if (!j.steered_encap)
            return fail("XDP_PASS changed a frame that is not IPIP/IPv6-in-IP from a node address");
        if (out != decapsulated(in, v))
            return fail(fmt::format("XDP_PASS of a steered-in packet is not its decapsulation "
                                    "(L2 header, ethertype {:#06x}, then the inner packet); "
                                    "expected:\n{}",
                                    v.inner_proto == kProtoIpip ? kEthIpv4 : kEthIpv6,
                                    hex(decapsulated(in, v))));
        j.outcome = Outcome::PassDecapsulated;
        return j;

    case XDP_TX:
        if (j.steered_encap)
            return fail("XDP_TX of a packet steered in (tunnel from a node address)");
        if (!j.to_service)
            return fail("XDP_TX of a packet that is not TCP to a configured service");
        if (j.steered_mac)
            return fail("XDP_TX in l2 mode of a frame from a known node MAC (steered twice)");
        if (std::string why = check_tx(w, in, v, out); !why.empty())
            return fail(why);
        j.outcome = w.forward == LB_FORWARD_L2 ? Outcome::TxL2 : Outcome::TxIpip;
        return j;

    case XDP_DROP: {
        if (drops.forward_error + drops.orphan_grace != 1)
            return fail(fmt::format("XDP_DROP, drop_forward_error +{}, drop_orphan_grace +{} "
                                    "(exactly one must move by one)",
                                    drops.forward_error, drops.orphan_grace));
        if (!j.to_service)
            return fail("XDP_DROP of a packet that is not TCP to a configured service");
        if (j.steered_mac)
            return fail("XDP_DROP in l2 mode of a frame from a known node MAC (steered in: "
                        "pass)");
        if (drops.orphan_grace) {
            if (!w.in_grace(v.dst))
                return fail(fmt::format("drop_orphan_grace for {}, not in a grace period",
                                        ip_text(v.dst)));
            if (syn_only)
                return fail("drop_orphan_grace of a SYN (a SYN is decided, never an orphan)");
            j.outcome = Outcome::DropOrphanGrace;
            return j;
        }
        const size_t outer_len =
            w.self_addr.family == LB_FAMILY_IPV4 ? kIpv4HeaderLen : kIpv6HeaderLen;
        if (w.forward != LB_FORWARD_IPIP)
            return fail("drop_forward_error in l2 mode (every peer is reachable)");
        if (in.size() - v.l2_len + outer_len <= w.mtu)
            return fail(fmt::format("drop_forward_error of a {}-byte IP packet: with the outer "
                                    "header it fits the MTU {}",
                                    in.size() - v.l2_len, w.mtu));
        j.outcome = Outcome::DropForwardError;
        return j;
    }

    default:
        return fail(fmt::format("verdict {} ({}), not XDP_PASS / XDP_TX / XDP_DROP", verdict,
                                verdict == XDP_ABORTED    ? "XDP_ABORTED"
                                : verdict == XDP_REDIRECT ? "XDP_REDIRECT"
                                                          : "unknown"));
    }
}

} // namespace peerlb::test::fuzz
