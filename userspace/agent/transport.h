// The heartbeat socket: UDP to a multicast group joined on the cluster
// interface (DESIGN 7: multicast needs an interface), or to a static list of
// unicast peers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "../dataplane/fd.h"
#include "config.h"

namespace peerlb {

class HeartbeatSocket {
public:
    // Throws Error naming what failed (socket, bind, join).
    HeartbeatSocket(const Config& cfg, unsigned ifindex);

    // Sends to the group, or to every peer; returns how many sends failed.
    int send(std::span<const uint8_t> datagram);
    // One datagram if one is waiting (non-blocking), else nullopt. Returns
    // its real length (MSG_TRUNC): more than buffer.size() means it did not
    // fit and must be dropped, not decoded from its first bytes.
    std::optional<size_t> receive(std::span<uint8_t> buffer);
    int fd() const { return fd_.get(); }

private:
    Fd fd_;
    std::vector<Endpoint> destinations_;
};

} // namespace peerlb
