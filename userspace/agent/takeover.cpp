#include "takeover.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "announce.h"

namespace peerlb {
namespace {

constexpr uint64_t kMs = 1'000'000;
// Neighbour announcements after a move: at once, then again, since one frame
// may be lost and a neighbour entry updated within its locktime (1 s by
// default) ignores a new one.
constexpr uint64_t kNeighbourRepeatsMs[] = {200, 1100, 2500};
// Flow announcements go again after these delays: one lost datagram must
// not reset the connections it carried.
constexpr uint64_t kAnnounceRepeatsMs[] = {300, 1000};

} // namespace

std::vector<IpAddress> nic_leftovers(const std::vector<InterfaceAddress>& found,
                                     const IpAddress& node_address,
                                     const std::vector<IpAddress>& own_services)
{
    std::vector<IpAddress> out;
    for (const auto& f : found) {
        const unsigned host_len = f.address.family == LB_FAMILY_IPV4 ? 32 : 128;
        if (f.address.family != LB_FAMILY_IPV4 && f.address.family != LB_FAMILY_IPV6)
            continue;
        if (f.prefix_len != host_len || f.address == node_address)
            continue;
        if (std::find(own_services.begin(), own_services.end(), f.address) != own_services.end())
            continue;
        if (std::find(out.begin(), out.end(), f.address) == out.end())
            out.push_back(f.address);
    }
    return out;
}

std::vector<Adoption> adoptable(const std::vector<IpAddress>& leftovers, const OwnerMap& owners)
{
    std::vector<Adoption> out;
    for (const auto& a : leftovers) {
        auto it = owners.find(a);
        if (it != owners.end())
            out.push_back({a, it->second.home});
    }
    return out;
}

bool affects_ownership(const Config& before, const Config& after)
{
    return before.node_id != after.node_id || before.owned_services != after.owned_services ||
           before.takeover != after.takeover || before.hold_down_ms != after.hold_down_ms ||
           before.dead_after != after.dead_after || before.interval_ms != after.interval_ms;
}

Takeover::Takeover(const Config& cfg, AddressManager& addrs, Maps& maps, unsigned nic_ifindex,
                   const Mac& nic_mac, SendAnnouncement send)
    : cfg_(cfg), addrs_(addrs), maps_(maps), ifindex_(nic_ifindex), mac_(nic_mac),
      send_(std::move(send))
{
}

bool Takeover::apply(const OwnerMap& owners, uint64_t now_ns, uint64_t now_unix_ms)
{
    bool settled = true;
    // Leftovers the cluster names now: held from here on, so this node's
    // next heartbeat and computation count its claim (the usual rules then
    // keep it, or release it to a home that holds it or after the hold-down).
    std::vector<IpAddress> adopted_now;
    for (const auto& [address, home] : adoptable(leftovers_, owners)) {
        bool on_nic = false;
        try {
            on_nic = interface_has_address(cfg_.interface, address);
        } catch (const std::exception& e) {
            spdlog::error("looking for {} on {}: {} (trying again)", format_ip(address),
                          cfg_.interface, e.what());
            settled = false;
            continue;
        }
        std::erase(leftovers_, address);
        if (!on_nic || held_.count(address))
            continue; // gone meanwhile, or held already: nothing to adopt
        held_[address] = Held{home, now_unix_ms};
        adopted_now.push_back(address);
        spdlog::warn("found {} ({}'s service address) on {} at start: held as taken over, "
                     "kept or released as ownership decides",
                     format_ip(address), home.empty() ? "unknown" : home, cfg_.interface);
    }

    for (const auto& [address, owner] : owners) {
        const bool mine = owner.owner == cfg_.node_id;
        const bool held = held_.count(address) > 0;
        const bool just_adopted =
            std::find(adopted_now.begin(), adopted_now.end(), address) != adopted_now.end();
        // A leftover adopted now is decided at the next computation, which
        // counts this node's claim on it.
        if (mine && !held && !just_adopted)
            settled = take(address, owner, now_ns, now_unix_ms) && settled;
        else if (!mine && held && !just_adopted)
            release(address, owner);

        // The holder changed: it gets the connections this node serves on
        // the address, so it forwards their packets here. (Not at the first
        // computation: nothing moved, this agent just started.)
        auto& last = last_owner_[address];
        if (!last.empty() && owner.owner != last && !owner.owner.empty() && !mine) {
            announce_flows(address, owner.owner);
            for (uint64_t delay : kAnnounceRepeatsMs)
                pending_.push_back({now_ns + delay * kMs, address, owner.owner});
        }
        last = owner.owner;
    }
    return settled;
}

bool Takeover::take(const IpAddress& a, const AddressOwner& o, uint64_t now_ns,
                    uint64_t now_unix_ms)
{
    try {
        // Until peers have announced what they serve on it, unknown
        // segments are dropped rather than reset; or sent to the holder
        // before, if its agent is gone (its data plane may still serve).
        uint32_t previous = LB_NODE_LOCAL;
        const auto last = last_owner_.find(a);
        if (fenced_slot_ && last != last_owner_.end() && !last->second.empty() &&
            last->second != cfg_.node_id)
            previous = fenced_slot_(last->second);
        maps_.set_grace(a, now_ns + uint64_t(cfg_.grace_ms) * kMs, previous);
        addrs_.add(a, ifindex_);
    } catch (const std::exception& e) {
        spdlog::error("cannot take {}: {} (trying again)", format_ip(a), e.what());
        return false;
    }
    held_[a] = Held{o.home, now_unix_ms};
    if (o.taken_over()) {
        takeovers_++;
        spdlog::warn("took over {} from {}", format_ip(a), o.home.empty() ? "nobody" : o.home);
    } else {
        spdlog::info("holding own address {}", format_ip(a));
    }
    announce_neighbours(a);
    for (uint64_t delay : kNeighbourRepeatsMs)
        pending_.push_back({now_ns + delay * kMs, a, ""});
    return true;
}

void Takeover::release(const IpAddress& a, const AddressOwner& o)
{
    const Held held = held_[a];
    held_.erase(a);
    try {
        // Off the NIC only: it stays on lo, so connections handed here
        // still end here.
        addrs_.remove(a, ifindex_);
        maps_.set_grace(a, 0);
    } catch (const std::exception& e) {
        spdlog::error("releasing {}: {}", format_ip(a), e.what());
    }
    std::erase_if(pending_, [&](const Pending& p) { return p.to.empty() && p.address == a; });
    if (held.home != cfg_.node_id && o.owner == held.home) {
        givebacks_++;
        spdlog::info("gave {} back to {}", format_ip(a), held.home);
    } else {
        spdlog::warn("released {}: {} holds it", format_ip(a),
                     o.owner.empty() ? "nobody" : o.owner);
    }
}

void Takeover::adopt(const IpAddress& a, const std::string& home, uint64_t now_unix_ms)
{
    held_[a] = Held{home, now_unix_ms};
}

void Takeover::release_all()
{
    for (const auto& [address, held] : held_) {
        try {
            addrs_.remove(address, ifindex_);
        } catch (const std::exception& e) {
            spdlog::error("releasing {}: {}", format_ip(address), e.what());
        }
    }
    held_.clear();
}

void Takeover::announce_neighbours(const IpAddress& a)
{
    try {
        announce_address(a, ifindex_, mac_);
    } catch (const std::exception& e) {
        spdlog::error("announcing {}: {}", format_ip(a), e.what());
    }
}

void Takeover::announce_flows(const IpAddress& a, const std::string& to)
{
    std::vector<LocalConnection> conns;
    try {
        conns = established_on(a);
    } catch (const std::exception& e) {
        spdlog::error("listing connections on {}: {}", format_ip(a), e.what());
        return;
    }
    // One datagram even when empty: the holder learns we have none.
    FlowAnnouncement msg;
    msg.to = to;
    msg.service_address = a;
    size_t sent = 0;
    do {
        msg.flows.clear();
        for (size_t i = sent; i < conns.size() && msg.flows.size() < kMaxFlowsPerAnnouncement; i++)
            msg.flows.push_back({conns[i].client, conns[i].client_port, conns[i].local_port});
        sent += msg.flows.size();
        send_(msg);
    } while (sent < conns.size());
    flows_announced_ += conns.size();
    if (!conns.empty())
        spdlog::info("announced {} connection(s) on {} to {}", conns.size(), format_ip(a), to);
}

void Takeover::run_timers(uint64_t now_ns)
{
    std::vector<Pending> due;
    std::erase_if(pending_, [&](const Pending& p) {
        if (p.at_ns > now_ns)
            return false;
        due.push_back(p);
        return true;
    });
    for (const auto& p : due) {
        if (p.to.empty()) {
            if (held_.count(p.address))
                announce_neighbours(p.address);
        } else if (last_owner_[p.address] == p.to) {
            announce_flows(p.address, p.to);
        }
    }
}

size_t Takeover::install_flows(const FlowAnnouncement& a, uint32_t sender_slot, uint64_t now_ns)
{
    size_t n = 0;
    for (const auto& f : a.flows) {
        if (f.client.family != a.service_address.family)
            continue;
        lb_flow_key key{};
        key.saddr = f.client.addr;
        key.daddr = a.service_address.addr;
        key.sport = htons(f.client_port);
        key.dport = htons(f.service_port);
        key.family = f.client.family;
        key.protocol = IPPROTO_TCP;
        lb_flow flow{};
        flow.node = sender_slot;
        flow.reason = LB_REASON_HANDOVER;
        flow.created_ns = now_ns;
        maps_.add_flow(key, flow);
        n++;
    }
    flows_installed_ += n;
    if (n)
        spdlog::info("{} serves {} connection(s) on {}: flows installed", a.node_id, n,
                     format_ip(a.service_address));
    return n;
}

std::vector<IpAddress> Takeover::claims() const
{
    std::vector<IpAddress> out;
    for (const auto& [address, held] : held_)
        out.push_back(address);
    return out;
}

nlohmann::json Takeover::status() const
{
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [address, held] : held_) {
        const bool own = held.home == cfg_.node_id;
        out.push_back({{"address", format_ip(address)},
                       {"why", own ? "own" : "taken over"},
                       {"from", own || held.home.empty() ? nlohmann::json(nullptr)
                                                         : nlohmann::json(held.home)},
                       {"since_unix_ms", held.since_unix_ms}});
    }
    return out;
}

} // namespace peerlb
