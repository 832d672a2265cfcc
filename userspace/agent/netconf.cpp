#include "netconf.h"

#include <linux/if_addr.h>
#include <netlink/route/addr.h>
#include <sys/socket.h>

#include <fstream>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

void write_sysctl(const std::string& path, const std::string& value)
{
    std::ofstream f(path);
    f << value;
    f.flush();
    if (!f)
        throw Error(fmt::format("cannot write {} = {}", path, value));
}

} // namespace

void set_arp_sysctls(const std::string& iface)
{
    for (const std::string& dev : {std::string("all"), iface}) {
        const std::string dir = "/proc/sys/net/ipv4/conf/" + dev + "/";
        write_sysctl(dir + "arp_ignore", "1");
        write_sysctl(dir + "arp_announce", "2");
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
    rtnl_addr_set_local(addr, local);
    if (!v4)
        rtnl_addr_set_flags(addr, IFA_F_NODAD); // usable at once, not after DAD
    int err = rtnl_addr_add(sock_, addr, NLM_F_EXCL);
    nl_addr_put(local);
    rtnl_addr_put(addr);
    if (err == -NLE_EXIST)
        return false;
    if (err)
        throw Error(fmt::format("add address {} to interface {}: {}", format_ip(address), ifindex,
                                nl_geterror(err)));
    return true;
}

} // namespace peerlb
