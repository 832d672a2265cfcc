#include "fuzz_generate.h"

#include <algorithm>
#include <cstring>

namespace peerlb::test::fuzz {
namespace {

// The largest frame the generators make: BPF_PROG_TEST_RUN keeps up to
// PAGE_SIZE - headroom - tailroom (~3500 bytes) in one linear buffer, which
// is all an XDP program without frags support sees.
constexpr size_t kMaxFrame = 3000;
// Oversize frames aim at up to this, before options and mutations.
constexpr size_t kMaxOversize = 2900;

bool is_ipv6_ext(uint8_t next)
{
    return next == kProtoHopOpts || next == kProtoRouting || next == kProtoDstOpts ||
           next == kProtoAh;
}

} // namespace

const char* gen_name(Gen g)
{
    switch (g) {
    case Gen::Random:
        return "random bytes";
    case Gen::WellFormed:
        return "well-formed";
    case Gen::Mutated:
        return "mutated";
    case Gen::Count:
        break;
    }
    return "?";
}

std::string FuzzPacket::describe() const
{
    std::string s = std::string(gen_name(gen)) + ", shape " + shape;
    if (!mutations.empty()) {
        s += ", mutations";
        for (const char* m : mutations)
            s += std::string(" ") + m;
    }
    return s;
}

Generator::Generator(uint64_t seed, Catalog catalog) : rng_(seed), cat_(std::move(catalog)) {}

uint64_t Generator::below(uint64_t n)
{
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_);
}

uint64_t Generator::between(uint64_t lo, uint64_t hi)
{
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
}

bool Generator::percent(unsigned p)
{
    return below(100) < p;
}

Bytes Generator::random_bytes(size_t n)
{
    Bytes b(n);
    for (size_t i = 0; i < n; i += 8) {
        const uint64_t r = rng_();
        std::memcpy(b.data() + i, &r, std::min<size_t>(8, n - i));
    }
    return b;
}

IpAddress Generator::random_addr(uint8_t family)
{
    IpAddress ip;
    ip.family = family;
    const Bytes b = random_bytes(16);
    std::memcpy(&ip.addr, b.data(), family == LB_FAMILY_IPV4 ? 4 : 16);
    return ip;
}

IpAddress Generator::client(uint8_t family)
{
    if (percent(70)) {
        std::vector<IpAddress> of;
        for (const IpAddress& c : cat_.clients)
            if (c.family == family)
                of.push_back(c);
        if (!of.empty())
            return pick(of);
    }
    return random_addr(family);
}

IpAddress Generator::node_addr(uint8_t family)
{
    std::vector<IpAddress> of;
    for (const IpAddress& a : cat_.node_addrs)
        if (a.family == family)
            of.push_back(a);
    return pick(of);
}

Mac Generator::random_mac()
{
    Mac m{};
    const Bytes b = random_bytes(6);
    std::copy(b.begin(), b.end(), m.begin());
    return m;
}

Ethernet Generator::ethernet()
{
    Ethernet eth;
    const uint64_t d = below(100);
    eth.dst = d < 85 ? cat_.self_mac : d < 90 ? Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
                                              : random_mac();
    const uint64_t s = below(100);
    eth.src = s < 60   ? cat_.router_mac
              : s < 85 ? pick(cat_.peer_macs)
              : s < 90 ? cat_.self_mac
                       : random_mac();
    const uint64_t t = below(100);
    const size_t tags = t < 60 ? 0 : t < 85 ? 1 : 2;
    for (size_t i = 0; i < tags; i++)
        eth.vlans.push_back({percent(50) ? kEthVlan : kEthQinQ, uint16_t(below(0x10000))});
    return eth;
}

// Who talks to whom: a known flow, a service, or something that is not one.
Tuple Generator::endpoints(uint8_t family)
{
    const uint64_t r = below(100);
    if (r < 35) {
        std::vector<Tuple> of;
        for (const Tuple& t : cat_.flows)
            if (t.client.family == family)
                of.push_back(t);
        if (!of.empty())
            return pick(of);
    }
    std::vector<Service> svcs;
    for (const Service& s : cat_.services)
        if (s.addr.family == family)
            svcs.push_back(s);
    const Service& svc = pick(svcs);
    Tuple t{client(family), svc.addr, uint16_t(between(1024, 65535)), svc.port};
    if (r < 75)
        return t;
    if (r < 85) { // the service address, another port
        t.dport = uint16_t(below(0x10000));
        if (t.dport == svc.port)
            t.dport++;
    } else if (r < 90) {
        std::vector<IpAddress> of;
        for (const IpAddress& a : cat_.grace_only)
            if (a.family == family)
                of.push_back(a);
        t.service = of.empty() ? random_addr(family) : pick(of);
    } else if (r < 95) {
        t.service = node_addr(family);
    } else {
        t.service = random_addr(family);
        t.dport = uint16_t(below(0x10000));
    }
    return t;
}

uint8_t Generator::tcp_flags()
{
    using namespace tcp_flags;
    const uint64_t r = below(100);
    if (r < 30)
        return kSyn;
    if (r < 45)
        return kAck;
    if (r < 55)
        return kPsh | kAck;
    if (r < 60)
        return kFin | kAck;
    if (r < 63)
        return kRst;
    if (r < 67)
        return kSyn | kAck;
    return byte(); // every combination, CWR and ECE included
}

// `len` bytes (a multiple of 4, 0..40) of options: real ones, or noise.
Bytes Generator::tcp_options(size_t len)
{
    if (percent(30))
        return random_bytes(len);
    Bytes b;
    while (b.size() < len) {
        const size_t room = len - b.size();
        const uint64_t k = below(6);
        if (k == 0 && room >= 4) {
            Bytes mss = mss_option(uint16_t(below(0x10000)));
            b.insert(b.end(), mss.begin(), mss.end());
        } else if (k == 1 && room >= 2) {
            b.insert(b.end(), {4, 2}); // SACK permitted
        } else if (k == 2 && room >= 10) {
            Bytes ts{8, 10};
            Bytes v = random_bytes(8);
            ts.insert(ts.end(), v.begin(), v.end());
            b.insert(b.end(), ts.begin(), ts.end());
        } else if (k == 3 && room >= 3) {
            b.insert(b.end(), {3, 3, uint8_t(below(15))}); // window scale
        } else if (k == 4) {
            b.push_back(0); // EOL
        } else {
            b.push_back(1); // NOP
        }
    }
    return b;
}

size_t Generator::payload_len()
{
    const uint64_t r = below(100);
    if (r < 45)
        return 0;
    if (r < 70)
        return between(1, 200);
    if (r < 90)
        return between(200, 1380);
    // Around the MTU less the outer header: fits or is one byte too many.
    return between(1380, 1480);
}

std::vector<Ipv6Ext> Generator::ext_chain(size_t count)
{
    std::vector<Ipv6Ext> chain;
    for (size_t i = 0; i < count; i++) {
        switch (below(4)) {
        case 0:
            chain.push_back(ipv6_options_ext(kProtoHopOpts, 8 * between(1, 4)));
            break;
        case 1:
            chain.push_back(ipv6_options_ext(kProtoDstOpts, 8 * between(1, 4)));
            break;
        case 2: {
            // Segment routing with nothing left to visit, 8..32 bytes.
            Bytes body{4, 0};
            body.resize(6 + 8 * below(4), 0);
            chain.push_back({kProtoRouting, body});
            break;
        }
        default:
            chain.push_back(ipv6_ah_ext(4 * between(1, 6)));
            break;
        }
    }
    return chain;
}

// An IPv4 / IPv6 packet carrying a TCP segment from t.client to t.service.
Bytes Generator::tcp_l3(uint8_t family, const Tuple& t, size_t payload, bool ipv6_ext)
{
    Tcp tcp;
    tcp.sport = t.sport;
    tcp.dport = t.dport;
    tcp.flags = tcp_flags();
    tcp.seq = uint32_t(rng_());
    tcp.ack = uint32_t(rng_());
    tcp.window = uint16_t(below(0x10000));
    tcp.options = tcp_options(4 * below(11));
    tcp.payload = random_bytes(payload);
    const Bytes seg = tcp_segment(t.client, t.service, tcp);
    if (family == LB_FAMILY_IPV4) {
        Ipv4Fields f;
        f.ttl = uint8_t(between(1, 255));
        f.id = uint16_t(below(0x10000));
        f.frag_off = percent(85) ? 0x4000 : 0;
        if (percent(15)) // options: NOPs, or noise
            f.options = percent(50) ? Bytes(4 * between(1, 10), 1) : random_bytes(4 * between(1, 10));
        return ipv4_packet(t.client, t.service, kProtoTcp, seg, f);
    }
    std::vector<Ipv6Ext> ext;
    if (ipv6_ext && percent(35))
        ext = ext_chain(percent(85) ? between(1, 4) : between(5, 6));
    return ipv6_packet(t.client, t.service, kProtoTcp, seg, ext, uint8_t(between(1, 255)));
}

// IPv6 carrying TCP to a service behind an extension chain of random length,
// types and lengths, the length fields true or not.
Bytes Generator::random_ext_chain_l3(const Tuple& t)
{
    static constexpr uint8_t kTypes[] = {kProtoHopOpts, kProtoRouting, kProtoDstOpts,
                                         kProtoAh,      kProtoFragment};
    const size_t count = below(9);
    std::vector<uint8_t> types;
    for (size_t i = 0; i < count; i++)
        types.push_back(percent(90) ? kTypes[below(5)] : byte());
    const uint64_t last = below(100);
    const uint8_t proto = last < 70 ? kProtoTcp : last < 80 ? kProtoIpip : last < 90 ? kProtoIpv6
                                                                                   : byte();
    Bytes chain;
    for (size_t i = 0; i < count; i++) {
        const uint8_t next = i + 1 < count ? types[i + 1] : proto;
        const uint8_t hdrlen = uint8_t(percent(75) ? below(4) : below(256));
        size_t len = types[i] == kProtoAh ? (size_t(hdrlen) + 2) * 4 : (size_t(hdrlen) + 1) * 8;
        if (types[i] == kProtoFragment)
            len = 8;
        if (percent(15) || len > 256) // a length field that lies
            len = 2 + below(40);
        chain.push_back(next);
        chain.push_back(hdrlen);
        const Bytes body = random_bytes(len - 2);
        chain.insert(chain.end(), body.begin(), body.end());
    }
    Tcp tcp;
    tcp.sport = t.sport;
    tcp.dport = t.dport;
    tcp.flags = tcp_flags();
    tcp.options = tcp_options(4 * below(11));
    const Bytes seg = tcp_segment(t.client, t.service, tcp);
    Bytes l3 = ipv6_packet(t.client, t.service, count ? types[0] : proto, {});
    l3.insert(l3.end(), chain.begin(), chain.end());
    l3.insert(l3.end(), seg.begin(), seg.end());
    write16(l3, 4, percent(70) ? uint16_t(l3.size() - kIpv6HeaderLen) : uint16_t(below(0x10000)));
    return l3;
}

FuzzPacket Generator::next()
{
    const uint64_t r = below(100);
    if (r < 20)
        return random_frame();
    if (r < 55)
        return well_formed();
    return mutated();
}

FuzzPacket Generator::random_frame()
{
    FuzzPacket p;
    p.gen = Gen::Random;
    p.shape = "bytes";
    p.bytes = random_bytes(below(1601));
    return p;
}

FuzzPacket Generator::well_formed()
{
    FuzzPacket p;
    p.gen = Gen::WellFormed;
    const Ethernet eth = ethernet();
    const uint8_t family = random_family();
    const uint64_t kind = below(100);

    if (kind < 55) { // TCP, to a service or not
        const Tuple t = endpoints(family);
        p.shape = family == LB_FAMILY_IPV4 ? "tcp4" : "tcp6";
        p.bytes = ethernet_frame(eth, ethertype_of(family), tcp_l3(family, t, payload_len(), true));
    } else if (kind < 70) { // IPIP / IPv6-in-IP from a node or not
        const uint8_t inner_family = random_family();
        Tuple t = endpoints(inner_family);
        const Bytes inner = tcp_l3(inner_family, t, payload_len() / 2, true);
        const uint8_t proto = inner_family == LB_FAMILY_IPV4 ? kProtoIpip : kProtoIpv6;
        const IpAddress src = percent(65) ? node_addr(family) : client(family);
        const IpAddress dst = percent(90) ? node_addr(family) : random_addr(family);
        static const char* const kShapes[2][2] = {{"ipip 4in4", "ipip 6in4"},
                                                  {"ipip 4in6", "ipip 6in6"}};
        p.shape = kShapes[family == LB_FAMILY_IPV6][inner_family == LB_FAMILY_IPV6];
        Bytes outer;
        if (family == LB_FAMILY_IPV4) {
            Ipv4Fields f;
            if (percent(10))
                f.frag_off = uint16_t(percent(50) ? 0x2000 : between(1, 0x1fff));
            if (percent(10))
                f.options = Bytes(4 * between(1, 10), 1);
            outer = ipv4_packet(src, dst, proto, inner, f);
        } else {
            outer = ipv6_packet(src, dst, proto, inner, percent(15) ? ext_chain(between(1, 2))
                                                                    : std::vector<Ipv6Ext>{});
        }
        p.bytes = ethernet_frame(eth, ethertype_of(family), outer);
    } else if (kind < 78) { // fragments of TCP to a service
        const Tuple t = endpoints(family);
        Tcp tcp;
        tcp.sport = t.sport;
        tcp.dport = t.dport;
        tcp.flags = tcp_flags();
        tcp.payload = random_bytes(below(200));
        const Bytes seg = tcp_segment(t.client, t.service, tcp);
        if (family == LB_FAMILY_IPV4) {
            p.shape = "fragment4";
            Ipv4Fields f;
            const uint64_t k = below(3);
            f.frag_off = uint16_t(k == 0 ? 0x2000 : k == 1 ? between(1, 0x1fff)
                                                           : 0x2000 | between(1, 0x1fff));
            p.bytes = ethernet_frame(eth, kEthIpv4, ipv4_packet(t.client, t.service, kProtoTcp,
                                                                seg, f));
        } else {
            p.shape = "fragment6";
            std::vector<Ipv6Ext> ext = ext_chain(below(3));
            ext.push_back(ipv6_fragment_ext(uint16_t(below(0x2000)), percent(50)));
            p.bytes = ethernet_frame(eth, kEthIpv6,
                                     ipv6_packet(t.client, t.service, kProtoTcp, seg, ext));
        }
    } else if (kind < 84) {
        const Tuple t = endpoints(family);
        p.shape = family == LB_FAMILY_IPV4 ? "udp4" : "udp6";
        p.bytes = ethernet_frame(
            eth, ethertype_of(family),
            ip_packet(t.client, t.service, kProtoUdp,
                      udp_datagram(t.client, t.service, t.sport, t.dport, random_bytes(below(300))),
                      family == LB_FAMILY_IPV6 && percent(30) ? ext_chain(between(1, 4))
                                                              : std::vector<Ipv6Ext>{}));
    } else if (kind < 89) {
        const Tuple t = endpoints(family);
        p.shape = family == LB_FAMILY_IPV4 ? "icmp4" : "icmp6";
        p.bytes = ethernet_frame(eth, ethertype_of(family), icmp_echo(t.client, t.service));
    } else if (kind < 93) {
        p.shape = "arp";
        const Tuple t = endpoints(LB_FAMILY_IPV4);
        p.bytes = ethernet_frame(eth, kEthArp, arp_request(eth.src, t.client, t.service));
    } else if (kind < 96) { // an IP packet under the other family's ethertype
        const Tuple t = endpoints(family);
        p.shape = "wrong ethertype";
        p.bytes = ethernet_frame(eth, ethertype_of(family == LB_FAMILY_IPV4 ? LB_FAMILY_IPV6
                                                                            : LB_FAMILY_IPV4),
                                 tcp_l3(family, t, below(100), false));
    } else { // some other protocol
        const Tuple t = endpoints(family);
        p.shape = "other protocol";
        uint8_t proto = byte();
        if (proto == kProtoTcp || proto == kProtoIpip || proto == kProtoIpv6 ||
            is_ipv6_ext(proto) || proto == kProtoFragment)
            proto = 132; // SCTP
        p.bytes = ethernet_frame(eth, ethertype_of(family),
                                 ip_packet(t.client, t.service, proto, random_bytes(below(200))));
    }
    return p;
}

FuzzPacket Generator::mutated()
{
    FuzzPacket p;
    const uint64_t base = below(100);
    size_t rounds = between(1, 3);
    if (base < 12) {
        // Oversize: TCP to a service, 1500..3000 bytes, lengths right.
        const uint8_t family = random_family();
        const Ethernet eth = ethernet();
        const Tuple t = endpoints(family);
        const size_t target = between(1500, kMaxOversize);
        Bytes frame = ethernet_frame(eth, ethertype_of(family), tcp_l3(family, t, 0, true));
        if (frame.size() < target)
            frame = ethernet_frame(eth, ethertype_of(family),
                                   tcp_l3(family, t, target - frame.size(), false));
        p.bytes = std::move(frame);
        p.shape = "oversize";
        p.mutations.push_back("oversize");
        rounds = below(2);
    } else if (base < 24) {
        p.bytes = ethernet_frame(ethernet(), kEthIpv6, random_ext_chain_l3(endpoints(LB_FAMILY_IPV6)));
        p.shape = "ipv6 ext chain";
        p.mutations.push_back("ext-chain");
        rounds = below(2);
    } else {
        p = well_formed();
    }
    p.gen = Gen::Mutated;
    for (size_t i = 0; i < rounds; i++)
        mutate(p);
    if (p.bytes.size() > kMaxFrame)
        p.bytes.resize(kMaxFrame);
    return p;
}

// One of: truncate, flip bytes, bad IHL, bad doff, a lying length, VLAN tags.
void Generator::mutate(FuzzPacket& p)
{
    Bytes& b = p.bytes;
    const View v = parse_view(b);
    // The header offsets of the frame (or, for a tunnel, of either packet).
    size_t l3 = v.l2_len;
    uint16_t type = v.ethertype;
    if (v.encap && percent(50) && l3 + v.outer_len < b.size()) {
        l3 += v.outer_len;
        type = v.inner_proto == kProtoIpip ? kEthIpv4 : kEthIpv6;
    }
    const size_t tcp_at = v.tcp ? v.l4
                          : type == kEthIpv4 && l3 < b.size()
                              ? l3 + size_t(b[l3] & 0x0f) * 4
                              : l3 + kIpv6HeaderLen;

    switch (below(7)) {
    case 0:
        if (!b.empty()) {
            b.resize(below(b.size()));
            p.mutations.push_back("truncate");
            return;
        }
        break;
    case 1:
        if (v.ethernet && type == kEthIpv4 && l3 < b.size()) {
            b[l3] = uint8_t((b[l3] & 0xf0) | below(16));
            p.mutations.push_back("ihl");
            return;
        }
        break;
    case 2:
        if (v.l2_len && tcp_at + 13 <= b.size()) {
            b[tcp_at + 12] = uint8_t(below(16) << 4 | (b[tcp_at + 12] & 0x0f));
            p.mutations.push_back("doff");
            return;
        }
        break;
    case 3:
        if (v.ethernet && type == kEthIpv4 && l3 + 4 <= b.size()) {
            write16(b, l3 + 2, percent(50) ? uint16_t(below(0x10000))
                                           : uint16_t(read16(b, l3 + 2) + between(1, 40) - 20));
            p.mutations.push_back("tot_len");
            return;
        }
        if (v.ethernet && type == kEthIpv6 && l3 + kIpv6HeaderLen + 2 <= b.size()) {
            if (percent(50) && is_ipv6_ext(b[l3 + 6])) {
                b[l3 + kIpv6HeaderLen + 1] = byte();
                p.mutations.push_back("ext-hdrlen");
            } else {
                write16(b, l3 + 4, uint16_t(below(0x10000)));
                p.mutations.push_back("payload_len");
            }
            return;
        }
        break;
    case 4:
        if (v.l2_len) { // one more tag, or a TPID where the ethertype was
            if (percent(50)) {
                const Bytes tag{uint8_t(percent(50) ? 0x81 : 0x88), uint8_t(percent(50) ? 0x00 : 0xa8),
                                byte(), byte()};
                b.insert(b.begin() + 12, tag.begin(), tag.end());
            } else {
                write16(b, v.l2_len - 2, percent(50) ? kEthVlan : kEthQinQ);
            }
            p.mutations.push_back("vlan");
            return;
        }
        break;
    default:
        break;
    }
    if (b.empty())
        return;
    const size_t n = between(1, 8);
    for (size_t i = 0; i < n; i++) {
        const size_t at = percent(75) ? below(std::min<size_t>(b.size(), 96)) : below(b.size());
        b[at] ^= uint8_t(between(1, 255));
    }
    p.mutations.push_back("flip");
}

} // namespace peerlb::test::fuzz
