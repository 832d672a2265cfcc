#include "net.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include <fmt/format.h>

#include "error.h"
#include "fd.h"

namespace peerlb {

IpAddress parse_ip(const std::string& text)
{
    IpAddress ip;
    if (inet_pton(AF_INET, text.c_str(), &ip.addr.v4) == 1) {
        ip.family = LB_FAMILY_IPV4;
        return ip;
    }
    if (inet_pton(AF_INET6, text.c_str(), ip.addr.v6) == 1) {
        ip.family = LB_FAMILY_IPV6;
        return ip;
    }
    throw Error(fmt::format("'{}' is not an IPv4 or IPv6 address", text));
}

std::string format_ip(const lb_addr& addr, uint8_t family)
{
    char buf[INET6_ADDRSTRLEN] = "?";
    if (family == LB_FAMILY_IPV4)
        inet_ntop(AF_INET, &addr.v4, buf, sizeof(buf));
    else if (family == LB_FAMILY_IPV6)
        inet_ntop(AF_INET6, addr.v6, buf, sizeof(buf));
    return buf;
}

Mac parse_mac(const std::string& text)
{
    Mac mac{};
    unsigned b[6];
    char tail;
    if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
                    &b[5], &tail) != 6)
        throw Error(fmt::format("'{}' is not a MAC address (aa:bb:cc:dd:ee:ff)", text));
    for (int i = 0; i < 6; i++)
        mac[i] = static_cast<uint8_t>(b[i]);
    return mac;
}

std::string format_mac(const uint8_t* mac)
{
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3],
                       mac[4], mac[5]);
}

Mac interface_mac(const std::string& iface)
{
    Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock)
        throw SystemError("socket for interface query", errno);
    ifreq req{};
    iface.copy(req.ifr_name, IFNAMSIZ - 1);
    if (ioctl(sock.get(), SIOCGIFHWADDR, &req))
        throw SystemError(fmt::format("read MAC of {}", iface), errno);
    Mac mac{};
    for (int i = 0; i < 6; i++)
        mac[i] = static_cast<uint8_t>(req.ifr_hwaddr.sa_data[i]);
    return mac;
}

} // namespace peerlb
