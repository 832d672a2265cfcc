// Gratuitous ARP / unsolicited neighbour advertisements for a service address
// that moved here, and the established connections on an address
// (DESIGN.md sections 3 and 5).
#include "announce.h"
#include "sock_diag.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/ethernet.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netpacket/packet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"

namespace peerlb {
namespace {

void send_all(int sock, const void* data, size_t len, const sockaddr* to, socklen_t tolen,
              const std::string& what)
{
    ssize_t sent;
    do
        sent = ::sendto(sock, data, len, 0, to, tolen);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        throw SystemError(what + ": sendto", errno);
    if (size_t(sent) != len)
        throw Error(fmt::format("{}: sent {} of {} bytes", what, sent, len));
}

// Ethernet broadcast + ARP request "who has A? tell A (at MAC)": hosts that
// have A in their cache replace its MAC; others ignore it.
void gratuitous_arp(const IpAddress& address, unsigned ifindex, const Mac& mac)
{
    const std::string what =
        fmt::format("gratuitous ARP for {} on interface {}", format_ip(address), ifindex);

    struct Frame {
        ether_header eth;
        ether_arp arp;
    } frame{};
    static_assert(sizeof(Frame) == 42, "Ethernet header + ARP for IPv4 over Ethernet");
    std::memset(frame.eth.ether_dhost, 0xff, ETH_ALEN);
    std::memcpy(frame.eth.ether_shost, mac.data(), ETH_ALEN);
    frame.eth.ether_type = htons(ETHERTYPE_ARP);
    frame.arp.arp_hrd = htons(ARPHRD_ETHER);
    frame.arp.arp_pro = htons(ETHERTYPE_IP);
    frame.arp.arp_hln = ETH_ALEN;
    frame.arp.arp_pln = 4;
    frame.arp.arp_op = htons(ARPOP_REQUEST);
    std::memcpy(frame.arp.arp_sha, mac.data(), ETH_ALEN);
    std::memcpy(frame.arp.arp_spa, &address.addr.v4, 4);
    // arp_tha stays 00:00:00:00:00:00.
    std::memcpy(frame.arp.arp_tpa, &address.addr.v4, 4);

    // Protocol 0: a send-only socket, it never queues received frames.
    Fd sock(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!sock)
        throw SystemError(what + ": socket(AF_PACKET)", errno);
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = int(ifindex);
    if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) < 0)
        throw SystemError(what + ": bind", errno);
    ll.sll_protocol = htons(ETH_P_ARP);
    ll.sll_halen = ETH_ALEN;
    std::memset(ll.sll_addr, 0xff, ETH_ALEN);
    send_all(sock.get(), &frame, sizeof(frame), reinterpret_cast<sockaddr*>(&ll), sizeof(ll), what);
}

void set_int_option(int sock, int level, int name, int value, const std::string& what,
                    const char* option)
{
    if (::setsockopt(sock, level, name, &value, sizeof(value)) < 0)
        throw SystemError(fmt::format("{}: setsockopt({})", what, option), errno);
}

// ICMPv6 neighbour advertisement to all nodes, Override set, Solicited and
// Router clear, with the target link-layer address option.
void unsolicited_na(const IpAddress& address, unsigned ifindex, const Mac& mac)
{
    const std::string what = fmt::format("unsolicited neighbour advertisement for {} on interface {}",
                                         format_ip(address), ifindex);

    struct Message {
        nd_neighbor_advert na;
        nd_opt_hdr opt;
        uint8_t lladdr[ETH_ALEN];
    } msg{};
    static_assert(sizeof(Message) == 32, "NA (24 bytes) + one 8-byte option");
    msg.na.nd_na_type = ND_NEIGHBOR_ADVERT;
    msg.na.nd_na_code = 0;
    msg.na.nd_na_cksum = 0; // the kernel computes it on ICMPv6 raw sockets
    msg.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE; // already in network order
    std::memcpy(&msg.na.nd_na_target, address.addr.v6, 16);
    msg.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
    msg.opt.nd_opt_len = 1; // in units of 8 bytes
    std::memcpy(msg.lladdr, mac.data(), ETH_ALEN);

    Fd sock(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
    if (!sock)
        throw SystemError(what + ": socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)", errno);
    // Send only: no ICMPv6 message is queued on it while it is open.
    icmp6_filter filter;
    ICMP6_FILTER_SETBLOCKALL(&filter);
    if (::setsockopt(sock.get(), IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter)) < 0)
        throw SystemError(what + ": setsockopt(ICMP6_FILTER)", errno);
    set_int_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, int(ifindex), what,
                   "IPV6_MULTICAST_IF");
    // Receivers drop neighbour discovery with any other hop limit (RFC 4861 7.1.2).
    set_int_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 255, what, "IPV6_MULTICAST_HOPS");
    set_int_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 0, what, "IPV6_MULTICAST_LOOP");

    // The source is the address itself. It is normally configured here
    // already (on lo for every service address, on the NIC once owned), but
    // the kernel refuses to bind an address that is absent or still
    // tentative (DAD running) with EADDRNOTAVAIL. Freebind lifts only that
    // check; the advertisement is still valid for receivers, which check the
    // hop limit and the target, not whether the source is assigned.
    sockaddr_in6 src{};
    src.sin6_family = AF_INET6;
    std::memcpy(&src.sin6_addr, address.addr.v6, 16);
    src.sin6_scope_id = ifindex; // used only if the address is link-local
    if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&src), sizeof(src)) < 0) {
        if (errno != EADDRNOTAVAIL)
            throw SystemError(what + ": bind", errno);
        set_int_option(sock.get(), IPPROTO_IPV6, IPV6_FREEBIND, 1, what, "IPV6_FREEBIND");
        if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&src), sizeof(src)) < 0)
            throw SystemError(what + ": bind (with IPV6_FREEBIND)", errno);
    }

    sockaddr_in6 dst{};
    dst.sin6_family = AF_INET6;
    dst.sin6_addr.s6_addr[0] = 0xff; // ff02::1, all nodes on the link
    dst.sin6_addr.s6_addr[1] = 0x02;
    dst.sin6_addr.s6_addr[15] = 0x01;
    dst.sin6_scope_id = ifindex;
    send_all(sock.get(), &msg, sizeof(msg), reinterpret_cast<sockaddr*>(&dst), sizeof(dst), what);
}

// ::ffff:a.b.c.d, as an IPv4 connection to a dual-stack socket shows.
bool is_v4_mapped(const __be32 a[4])
{
    return a[0] == 0 && a[1] == 0 && a[2] == htonl(0xffff);
}

} // namespace

void announce_address(const IpAddress& address, unsigned ifindex, const Mac& mac)
{
    if (address.family == LB_FAMILY_IPV4)
        gratuitous_arp(address, ifindex, mac);
    else if (address.family == LB_FAMILY_IPV6)
        unsolicited_na(address, ifindex, mac);
    else
        throw Error(fmt::format("announce: address family {} is not IPv4 or IPv6", address.family));
}

std::vector<LocalConnection> established_on(const IpAddress& local)
{
    if (local.family != LB_FAMILY_IPV4 && local.family != LB_FAMILY_IPV6)
        throw Error(fmt::format("established_on: address family {} is not IPv4 or IPv6", local.family));

    SockDiag diag;
    std::vector<LocalConnection> out;
    if (local.family == LB_FAMILY_IPV4) {
        diag.established(AF_INET, {}, [&](const inet_diag_msg& m) {
            if (m.id.idiag_src[0] != local.addr.v4)
                return;
            LocalConnection c;
            c.client.family = LB_FAMILY_IPV4;
            c.client.addr.v4 = m.id.idiag_dst[0];
            c.client_port = ntohs(m.id.idiag_dport);
            c.local_port = ntohs(m.id.idiag_sport);
            out.push_back(c);
        });
        // An IPv4 connection accepted by a dual-stack (AF_INET6, not
        // V6ONLY) listener is an AF_INET6 socket with mapped addresses; the
        // IPv4 dump does not list it, yet its packets are IPv4.
        diag.established(AF_INET6, {}, [&](const inet_diag_msg& m) {
            if (!is_v4_mapped(m.id.idiag_src) || m.id.idiag_src[3] != local.addr.v4 ||
                !is_v4_mapped(m.id.idiag_dst))
                return;
            LocalConnection c;
            c.client.family = LB_FAMILY_IPV4;
            c.client.addr.v4 = m.id.idiag_dst[3];
            c.client_port = ntohs(m.id.idiag_dport);
            c.local_port = ntohs(m.id.idiag_sport);
            out.push_back(c);
        });
    } else {
        diag.established(AF_INET6, {}, [&](const inet_diag_msg& m) {
            if (std::memcmp(m.id.idiag_src, local.addr.v6, 16) != 0)
                return;
            LocalConnection c;
            c.client.family = LB_FAMILY_IPV6;
            std::memcpy(c.client.addr.v6, m.id.idiag_dst, 16);
            c.client_port = ntohs(m.id.idiag_dport);
            c.local_port = ntohs(m.id.idiag_sport);
            out.push_back(c);
        });
    }
    return out;
}

} // namespace peerlb
