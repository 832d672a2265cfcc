#include "service_book.h"

namespace peerlb {

void ServiceBook::announce(const std::string& peer, const std::vector<IpAddress>& services,
                           uint64_t now_ns)
{
    std::set<IpAddress, IpAddressLess> now(services.begin(), services.end());
    auto& before = by_peer_[peer];
    std::set<IpAddress, IpAddressLess> gone;
    for (const auto& a : before)
        if (!now.count(a))
            gone.insert(a);
    before = std::move(now);
    for (const auto& a : before)
        orphaned_since_.erase(a);
    unannounce(gone, now_ns);
}

void ServiceBook::forget(const std::string& peer, uint64_t now_ns)
{
    auto it = by_peer_.find(peer);
    if (it == by_peer_.end())
        return;
    const auto gone = std::move(it->second);
    by_peer_.erase(it);
    unannounce(gone, now_ns);
}

bool ServiceBook::announced(const IpAddress& address) const
{
    for (const auto& [peer, services] : by_peer_)
        if (services.count(address))
            return true;
    return false;
}

void ServiceBook::unannounce(const std::set<IpAddress, IpAddressLess>& gone, uint64_t now_ns)
{
    for (const auto& a : gone)
        if (!announced(a))
            orphaned_since_.emplace(a, now_ns); // keeps an earlier time
}

std::vector<IpAddress> ServiceBook::expired(uint64_t now_ns)
{
    std::vector<IpAddress> out;
    for (auto it = orphaned_since_.begin(); it != orphaned_since_.end();) {
        if (now_ns - it->second >= linger_ns_) {
            out.push_back(it->first);
            it = orphaned_since_.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

} // namespace peerlb
