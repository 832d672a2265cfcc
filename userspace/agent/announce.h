// Telling the segment where a service address lives now, and finding the
// connections this node serves on an address (DESIGN.md sections 3 and 5).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../dataplane/net.h"

namespace peerlb {

// One gratuitous ARP (IPv4: an ARP request broadcast with sender and target
// IP = address, sender MAC = the interface's) or one unsolicited neighbour
// advertisement (IPv6: ICMPv6 type 136 to ff02::1 with the override flag and
// the target link-layer address option, hop limit 255), sent out of
// `ifindex`. Throws Error naming what failed.
void announce_address(const IpAddress& address, unsigned ifindex, const Mac& mac);

// An established TCP connection whose local address is the one asked for.
struct LocalConnection {
    IpAddress client;
    uint16_t client_port = 0;  // host order
    uint16_t local_port = 0;   // host order
};

// Every established TCP socket (IPv4 or IPv6, by the address's family) in
// this network namespace whose local address is `local`, via sock_diag.
std::vector<LocalConnection> established_on(const IpAddress& local);

} // namespace peerlb
