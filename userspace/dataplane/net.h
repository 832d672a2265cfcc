// Text forms of the addresses and MACs stored in the maps.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

extern "C" {
#include "../../maps/common.h"
}

namespace peerlb {

struct IpAddress {
    lb_addr addr{.v6 = {}}; // all 16 bytes zero: `{}` would zero only v4
    uint8_t family = 0;     // LB_FAMILY_IPV4 / LB_FAMILY_IPV6

    // IPv4 compares only v4: the rest of the union is not part of it.
    bool operator==(const IpAddress& o) const
    {
        if (family != o.family)
            return false;
        if (family == LB_FAMILY_IPV4)
            return addr.v4 == o.addr.v4;
        return std::equal(std::begin(addr.v6), std::end(addr.v6), std::begin(o.addr.v6));
    }
};

// Throws Error on anything but a plain IPv4 or IPv6 address.
IpAddress parse_ip(const std::string& text);
std::string format_ip(const lb_addr& addr, uint8_t family);
inline std::string format_ip(const IpAddress& ip) { return format_ip(ip.addr, ip.family); }

using Mac = std::array<uint8_t, 6>;
Mac parse_mac(const std::string& text);
std::string format_mac(const uint8_t* mac);

// The MAC of a local interface (throws Error if it has none).
Mac interface_mac(const std::string& iface);

} // namespace peerlb
