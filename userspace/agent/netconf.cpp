#include "netconf.h"

#include <ifaddrs.h>
#include <linux/if_addr.h>
#include <netinet/in.h>
#include <netlink/route/addr.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "../dataplane/error.h"

namespace peerlb {

std::string unfit_service_address(const IpAddress& address,
                                  const std::vector<IpAddress>& node_addresses,
                                  const std::vector<IpAddress>& gateways)
{
    for (const auto& n : node_addresses)
        if (n == address)
            return "it is a node's own address";
    for (const auto& g : gateways)
        if (g == address)
            return "it is a gateway of this node";
    if (address.family == LB_FAMILY_IPV4) {
        const uint32_t a = ntohl(address.addr.v4);
        if (a == 0)
            return "it is unspecified";
        if ((a >> 24) == 127)
            return "it is a loopback address";
        if ((a >> 28) == 0xe)
            return "it is a multicast address";
        if ((a >> 16) == 0xa9fe)
            return "it is link-local";
        if (a == 0xffffffffu)
            return "it is the broadcast address";
        return "";
    }
    const auto* b = reinterpret_cast<const uint8_t*>(address.addr.v6);
    static const uint8_t unspecified[16] = {}, loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                              0, 0, 0, 0, 0, 0, 0, 1};
    if (std::equal(b, b + 16, unspecified))
        return "it is unspecified";
    if (std::equal(b, b + 16, loopback))
        return "it is a loopback address";
    if (b[0] == 0xff)
        return "it is a multicast address";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "it is link-local";
    return "";
}
namespace {

void write_sysctl(const std::string& path, const std::string& value)
{
    std::ofstream f(path);
    f << value;
    f.flush();
    if (!f)
        throw Error(fmt::format("cannot write {} = {}", path, value));
}

std::string read_sysctl(const std::string& path)
{
    std::ifstream f(path);
    std::string value;
    if (!(f >> value))
        throw Error(fmt::format("cannot read {}", path));
    return value;
}

// The host address (/32 or /128) `address` on `ifindex`, as libnl wants it
// for RTM_NEWADDR and RTM_DELADDR; the caller puts it.
rtnl_addr* host_address(const IpAddress& address, unsigned ifindex)
{
    const bool v4 = address.family == LB_FAMILY_IPV4;
    rtnl_addr* addr = rtnl_addr_alloc();
    nl_addr* local = nl_addr_build(v4 ? AF_INET : AF_INET6,
                                   v4 ? static_cast<const void*>(&address.addr.v4)
                                      : static_cast<const void*>(address.addr.v6),
                                   v4 ? 4 : 16);
    if (!addr || !local) {
        rtnl_addr_put(addr);
        nl_addr_put(local);
        throw Error("netlink: out of memory");
    }
    nl_addr_set_prefixlen(local, v4 ? 32 : 128);
    rtnl_addr_set_ifindex(addr, static_cast<int>(ifindex));
    rtnl_addr_set_local(addr, local); // takes its own reference
    nl_addr_put(local);
    return addr;
}

} // namespace

std::vector<IpAddress> gateways()
{
    std::vector<IpAddress> out;
    // IPv4: "Iface Destination Gateway ...", the gateway as the kernel's
    // %08X of a network-order word: its native bytes are the address.
    std::ifstream v4("/proc/net/route");
    std::string line;
    std::getline(v4, line); // the header
    while (std::getline(v4, line)) {
        char iface[64] = {}, dst[16] = {}, gw[16] = {};
        if (std::sscanf(line.c_str(), "%63s %15s %15s", iface, dst, gw) != 3)
            continue;
        const uint32_t word = uint32_t(std::strtoul(gw, nullptr, 16));
        if (word == 0)
            continue;
        IpAddress a{};
        a.family = LB_FAMILY_IPV4;
        std::memcpy(&a.addr.v4, &word, sizeof(word));
        out.push_back(a);
    }
    // IPv6: the fifth field is the next hop, 32 hex digits in order.
    std::ifstream v6("/proc/net/ipv6_route");
    while (std::getline(v6, line)) {
        char f[5][40] = {};
        if (std::sscanf(line.c_str(), "%39s %39s %39s %39s %39s", f[0], f[1], f[2], f[3], f[4]) != 5 ||
            std::strlen(f[4]) != 32)
            continue;
        IpAddress a{};
        a.family = LB_FAMILY_IPV6;
        auto* bytes = reinterpret_cast<uint8_t*>(a.addr.v6);
        bool any = false;
        for (int i = 0; i < 16; i++) {
            const char pair[3] = {f[4][2 * i], f[4][2 * i + 1], 0};
            bytes[i] = uint8_t(std::strtoul(pair, nullptr, 16));
            any |= bytes[i] != 0;
        }
        if (any)
            out.push_back(a);
    }
    return out;
}

bool interface_has_address(const std::string& iface, const IpAddress& address)
{
    const auto found = interface_addresses(iface);
    return std::any_of(found.begin(), found.end(),
                       [&](const InterfaceAddress& f) { return f.address == address; });
}

namespace {

unsigned mask_bits(const uint8_t* mask, size_t size)
{
    unsigned bits = 0;
    for (size_t i = 0; i < size; i++)
        bits += unsigned(__builtin_popcount(mask[i]));
    return bits;
}

} // namespace

std::vector<InterfaceAddress> interface_addresses(const std::string& iface)
{
    ifaddrs* list = nullptr;
    if (getifaddrs(&list))
        throw SystemError("list interface addresses", errno);
    std::vector<InterfaceAddress> out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || iface != i->ifa_name)
            continue;
        InterfaceAddress found;
        if (i->ifa_addr->sa_family == AF_INET) {
            found.address.family = LB_FAMILY_IPV4;
            found.address.addr.v4 = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
            found.prefix_len = 32;
            if (i->ifa_netmask)
                found.prefix_len = mask_bits(reinterpret_cast<const uint8_t*>(
                    &reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr), 4);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            found.address.family = LB_FAMILY_IPV6;
            std::memcpy(found.address.addr.v6,
                        &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
            found.prefix_len = 128;
            if (i->ifa_netmask)
                found.prefix_len = mask_bits(reinterpret_cast<const uint8_t*>(
                    &reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr), 16);
        } else {
            continue;
        }
        out.push_back(found);
    }
    freeifaddrs(list);
    return out;
}

void set_arp_sysctls(const std::string& iface)
{
    for (const std::string& dev : {std::string("all"), iface}) {
        const std::string dir = "/proc/sys/net/ipv4/conf/" + dev + "/";
        write_sysctl(dir + "arp_ignore", "1");
        write_sysctl(dir + "arp_announce", "2");
    }
}

void set_cookie_sysctls()
{
    // tcp_syncookies: the kernel takes a BPF-made request socket only then
    // (1 is enough: its own cookies stay for overflows). The options are
    // per namespace and must be on for what cookies promise clients.
    const char* const needed[] = {"tcp_syncookies", "tcp_window_scaling", "tcp_sack",
                                  "tcp_timestamps"};
    for (const char* name : needed) {
        const std::string path = std::string("/proc/sys/net/ipv4/") + name;
        if (read_sysctl(path) == "0") {
            write_sysctl(path, "1");
            spdlog::info("cluster SYN cookies: set net.ipv4.{} = 1 (was 0)", name);
        }
    }
}

void set_ipip_sysctls()
{
    for (const char* family : {"ipv4", "ipv6"}) {
        const std::string path = fmt::format("/proc/sys/net/{}/conf/lo/forwarding", family);
        if (!std::filesystem::exists(path)) // IPv6 disabled on this host
            continue;
        if (read_sysctl(path) == "0") {
            write_sysctl(path, "1");
            spdlog::info("ipip forwarding: set net.{}.conf.lo.forwarding = 1 (was 0)", family);
        }
    }
}

AddressManager::AddressManager() : sock_(nl_socket_alloc())
{
    if (!sock_)
        throw Error("netlink: cannot allocate a socket");
    if (int err = nl_connect(sock_, NETLINK_ROUTE)) {
        nl_socket_free(sock_);
        throw Error(fmt::format("netlink: connect: {}", nl_geterror(err)));
    }
}

AddressManager::~AddressManager()
{
    nl_socket_free(sock_);
}

bool AddressManager::add(const IpAddress& address, unsigned ifindex)
{
    rtnl_addr* addr = host_address(address, ifindex);
    if (address.family != LB_FAMILY_IPV4)
        rtnl_addr_set_flags(addr, IFA_F_NODAD); // usable at once, not after DAD
    int err = rtnl_addr_add(sock_, addr, NLM_F_EXCL);
    rtnl_addr_put(addr);
    if (err == -NLE_EXIST)
        return false;
    if (err)
        throw Error(fmt::format("add address {} to interface {}: {}", format_ip(address), ifindex,
                                nl_geterror(err)));
    return true;
}

bool AddressManager::remove(const IpAddress& address, unsigned ifindex)
{
    rtnl_addr* addr = host_address(address, ifindex);
    int err = rtnl_addr_delete(sock_, addr, 0);
    rtnl_addr_put(addr);
    // The kernel answers EADDRNOTAVAIL (libnl: NLE_NOADDR) when no address
    // with this local address and prefix length is on the interface, for
    // IPv4 and IPv6 alike; ENOENT (NLE_OBJ_NOTFOUND) is accepted as well in
    // case a kernel says it that way. A missing interface (NLE_NODEV) is an
    // error: the caller named the wrong one.
    if (err == -NLE_NOADDR || err == -NLE_OBJ_NOTFOUND)
        return false;
    if (err)
        throw Error(fmt::format("remove address {} from interface {}: {}", format_ip(address),
                                ifindex, nl_geterror(err)));
    return true;
}

} // namespace peerlb
