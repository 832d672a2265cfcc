// Host settings the agent keeps (DESIGN 1): the NIC answers ARP only for
// its own addresses, every cluster service address is held on lo so this
// node can terminate any connection handed to it, and the owned service
// addresses are on the NIC.
#pragma once

#include <string>
#include <vector>

#include "../dataplane/net.h"

struct nl_sock;

namespace peerlb {

// net.ipv4.conf.{all,IFACE}.arp_ignore = 1 and arp_announce = 2.
void set_arp_sysctls(const std::string& iface);

// What services in "http" mode need from the kernel (DESIGN.md section 4):
// SYN cookies accepted, and window scaling, SACK and timestamps allowed.
// Sets only those that are off, and logs it.
void set_cookie_sysctls();

// What forward = "ipip" needs from the kernel: forwarding on lo, IPv4 and
// IPv6 (net.ipv{4,6}.conf.lo.forwarding = 1), without which the data plane's
// route lookup for the outer header (bpf_fib_lookup, input interface lo)
// answers nothing. Nothing the node receives is routed by it. Sets only
// those that are off, and logs it.
void set_ipip_sysctls();

// Whether `address` is configured on `iface` (getifaddrs).
bool interface_has_address(const std::string& iface, const IpAddress& address);

// An IPv4 or IPv6 address configured on an interface, with its prefix length.
struct InterfaceAddress {
    IpAddress address;
    unsigned prefix_len = 0;
};

// Every IPv4 and IPv6 address on `iface` (getifaddrs), in the kernel's order.
std::vector<InterfaceAddress> interface_addresses(const std::string& iface);

// Why `address`, announced by a peer as one of its service addresses, must
// not be held on this node's lo (and balanced), or "" when it may: loopback,
// unspecified, multicast, link-local and broadcast addresses, any node's
// own address (this node's or a peer's: holding it would steal its
// traffic), or a gateway of this node (its routes' next hops).
std::string unfit_service_address(const IpAddress& address,
                                  const std::vector<IpAddress>& node_addresses,
                                  const std::vector<IpAddress>& gateways = {});

// The next hops of this node's IPv4 and IPv6 routes (/proc/net/route,
// /proc/net/ipv6_route); empty when they cannot be read.
std::vector<IpAddress> gateways();

class AddressManager {
public:
    AddressManager();
    ~AddressManager();
    AddressManager(const AddressManager&) = delete;
    AddressManager& operator=(const AddressManager&) = delete;

    // Adds a host address (/32 or /128, no DAD) to the interface; returns
    // false when it was already there. Throws Error on any other failure.
    bool add(const IpAddress& address, unsigned ifindex);
    // Removes it; returns false when it was not there.
    bool remove(const IpAddress& address, unsigned ifindex);

private:
    nl_sock* sock_;
};

} // namespace peerlb
