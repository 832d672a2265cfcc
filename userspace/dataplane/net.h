// Text forms of the addresses and MACs stored in the maps.
#pragma once

#include <array>
#include <cstdint>
#include <string>

extern "C" {
#include "../../maps/common.h"
}

namespace peerlb {

struct IpAddress {
    lb_addr addr{};
    uint8_t family = 0; // LB_FAMILY_IPV4 / LB_FAMILY_IPV6
};

// Throws Error on anything but a plain IPv4 or IPv6 address.
IpAddress parse_ip(const std::string& text);
std::string format_ip(const lb_addr& addr, uint8_t family);

using Mac = std::array<uint8_t, 6>;
Mac parse_mac(const std::string& text);
std::string format_mac(const uint8_t* mac);

// The MAC of a local interface (throws Error if it has none).
Mac interface_mac(const std::string& iface);

} // namespace peerlb
