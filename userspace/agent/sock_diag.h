// Established TCP sockets of this network namespace, through NETLINK_SOCK_DIAG
// (inet_diag dumps): what the load meter counts and what a node announces
// when a service address moves.
#pragma once

#include <linux/inet_diag.h>

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "../dataplane/fd.h"

namespace peerlb {

class SockDiag {
public:
    // Throws SystemError when the netlink socket cannot be opened.
    SockDiag();

    // Calls `each` for every established TCP socket of `family` (AF_INET or
    // AF_INET6) that `filter` (inet_diag bytecode, evaluated by the kernel;
    // empty: all) accepts. A kernel without IPv6 has no IPv6 sockets: no
    // call, no error. Throws SystemError / Error on anything else.
    void established(int family, std::span<const inet_diag_bc_op> filter,
                     const std::function<void(const inet_diag_msg&)>& each);

private:
    Fd sock_;
    uint32_t seq_ = 0;
    std::vector<uint32_t> buf_; // netlink messages are 4-byte aligned; so is this
};

// Bytecode for "local port is one of `ports`" (empty when there are too many
// ports for 16-bit jumps: then filter in userspace only).
std::vector<inet_diag_bc_op> local_port_filter(std::span<const uint16_t> ports);

} // namespace peerlb
