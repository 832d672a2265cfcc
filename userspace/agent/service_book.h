// Which service addresses this node holds on lo for its peers: those some
// peer announces, and for `linger_ns` after the last one stopped (a peer
// that changed its configuration, or was forgotten), so that connections
// already handed here on them can end. Pure bookkeeping: the agent adds
// and removes the addresses it is told to.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../dataplane/net.h"
#include "ownership.h" // IpAddressLess

namespace peerlb {

class ServiceBook {
public:
    explicit ServiceBook(uint64_t linger_ns) : linger_ns_(linger_ns) {}

    // What `peer` announces now (its whole list; empty: nothing).
    void announce(const std::string& peer, const std::vector<IpAddress>& services, uint64_t now_ns);
    // The peer is gone from the membership.
    void forget(const std::string& peer, uint64_t now_ns);
    // Addresses nobody has announced for linger_ns: dropped from the book,
    // for the caller to remove.
    std::vector<IpAddress> expired(uint64_t now_ns);
    // Whether some peer announces `address` now.
    bool announced(const IpAddress& address) const;

private:
    void unannounce(const std::set<IpAddress, IpAddressLess>& gone, uint64_t now_ns);

    uint64_t linger_ns_;
    std::map<std::string, std::set<IpAddress, IpAddressLess>> by_peer_;
    std::map<IpAddress, uint64_t, IpAddressLess> orphaned_since_; // announced by nobody
};

} // namespace peerlb
