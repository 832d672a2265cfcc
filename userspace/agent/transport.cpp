#include "transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

union SockAddr {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
};

SockAddr sockaddr_of(const IpAddress& ip, uint16_t port, socklen_t& len)
{
    SockAddr a{};
    if (ip.family == LB_FAMILY_IPV4) {
        a.v4.sin_family = AF_INET;
        a.v4.sin_port = htons(port);
        a.v4.sin_addr.s_addr = ip.addr.v4;
        len = sizeof(a.v4);
    } else {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_port = htons(port);
        std::memcpy(&a.v6.sin6_addr, ip.addr.v6, 16);
        len = sizeof(a.v6);
    }
    return a;
}

void setopt(int fd, int level, int name, const void* value, socklen_t len, const char* what)
{
    if (setsockopt(fd, level, name, value, len))
        throw SystemError(fmt::format("heartbeat socket: {}", what), errno);
}

std::string endpoint_text(const Endpoint& e)
{
    return e.address.family == LB_FAMILY_IPV6 ? fmt::format("[{}]:{}", format_ip(e.address), e.port)
                                              : fmt::format("{}:{}", format_ip(e.address), e.port);
}

} // namespace

HeartbeatSocket::HeartbeatSocket(const Config& cfg, unsigned ifindex)
{
    const bool multicast = cfg.group.has_value();
    // Multicast: bound to the group, so only its traffic arrives. Unicast:
    // bound to the node address on the peers' port.
    const IpAddress bind_ip = multicast ? cfg.group->address : cfg.node_address;
    const uint16_t port = multicast ? cfg.group->port
                                    : (cfg.peers.empty() ? kHeartbeatPort : cfg.peers[0].port);
    const bool v6 = bind_ip.family == LB_FAMILY_IPV6;

    fd_ = Fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_)
        throw SystemError("heartbeat socket", errno);
    const int one = 1, zero = 0, ttl = 1;
    setopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one), "SO_REUSEADDR");
    // Room for a burst of forged datagrams (~2000 small ones) besides the
    // peers' heartbeats, beyond net.core.rmem_max (the agent runs as root);
    // best effort: the default buffer still works.
    const int rcvbuf = 2 << 20;
    if (setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)))
        (void)setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

    socklen_t len = 0;
    SockAddr local = sockaddr_of(bind_ip, port, len);
    if (::bind(fd_.get(), &local.sa, len))
        throw SystemError(fmt::format("bind heartbeat socket to {}",
                                      endpoint_text(Endpoint{bind_ip, port})),
                          errno);

    if (multicast && !v6) {
        ip_mreqn mreq{};
        mreq.imr_multiaddr.s_addr = bind_ip.addr.v4;
        mreq.imr_ifindex = static_cast<int>(ifindex);
        setopt(fd_.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq),
               "join the multicast group");
        setopt(fd_.get(), IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq), "IP_MULTICAST_IF");
        setopt(fd_.get(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl), "IP_MULTICAST_TTL");
        setopt(fd_.get(), IPPROTO_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero),
               "IP_MULTICAST_LOOP");
    } else if (multicast) {
        ipv6_mreq mreq{};
        std::memcpy(&mreq.ipv6mr_multiaddr, bind_ip.addr.v6, 16);
        mreq.ipv6mr_interface = ifindex;
        const int index = static_cast<int>(ifindex);
        setopt(fd_.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof(mreq),
               "join the multicast group");
        setopt(fd_.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof(index),
               "IPV6_MULTICAST_IF");
        setopt(fd_.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl),
               "IPV6_MULTICAST_HOPS");
        setopt(fd_.get(), IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero, sizeof(zero),
               "IPV6_MULTICAST_LOOP");
    }
    if (multicast)
        destinations_.push_back(*cfg.group);
    else
        destinations_ = cfg.peers;
}

int HeartbeatSocket::send(std::span<const uint8_t> datagram)
{
    int failed = 0;
    for (const auto& dest : destinations_) {
        socklen_t len = 0;
        SockAddr to = sockaddr_of(dest.address, dest.port, len);
        if (::sendto(fd_.get(), datagram.data(), datagram.size(), 0, &to.sa, len) < 0)
            failed++;
    }
    return failed;
}

std::optional<size_t> HeartbeatSocket::receive(std::span<uint8_t> buffer)
{
    ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), MSG_TRUNC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return std::nullopt;
        throw SystemError("receive heartbeat", errno);
    }
    return static_cast<size_t>(n);
}

} // namespace peerlb
