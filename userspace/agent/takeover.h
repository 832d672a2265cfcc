// Address takeover and give-back on this node (DESIGN.md sections 3 and 5):
// acts on the owners compute_owners() gives, keeps the NIC's addresses, the
// data plane's grace periods and the neighbours' caches in step, and hands
// the connections this node serves on a moved address to its new holder.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dataplane/maps.h"
#include "config.h"
#include "heartbeat.h"
#include "netconf.h"
#include "ownership.h"

namespace peerlb {

// Agent start-up after a crash: what the dead agent held stays on the NIC,
// and a peer may have taken it over since (two NICs answer ARP for it).
//
// The addresses found on the NIC that may be service addresses a previous
// agent left there: host addresses (/32, /128, as Takeover adds them) other
// than the node address and this node's own services (those are adopted as
// its own at once). The admin's addresses (the node address, any other
// prefix) are never candidates.
std::vector<IpAddress> nic_leftovers(const std::vector<InterfaceAddress>& found,
                                     const IpAddress& node_address,
                                     const std::vector<IpAddress>& own_services);

struct Adoption {
    IpAddress address;
    std::string home; // its home node; empty: nobody the computation knows
    bool operator==(const Adoption&) const = default;
};

// Which of `leftovers` to adopt now: those the ownership computation lists,
// that is, service addresses of the cluster (a node's home, or claimed by a
// live node). A leftover the cluster does not name is not adopted (it may be
// the admin's: adopting it would announce it as a claim and remove it at
// release); it is looked up again at each computation.
std::vector<Adoption> adoptable(const std::vector<IpAddress>& leftovers, const OwnerMap& owners);

// Whether going from settings `before` to `after` may change what the
// agent computes of the address owners: the rules (takeover, hold-down),
// the node's identity and home addresses, and the listen period at start
// (dead_after x interval_ms). A `set` of anything else needs no new
// computation.
bool affects_ownership(const Config& before, const Config& after);

class Takeover {
public:
    // Sends one announcement datagram (signed by the caller's codec).
    using SendAnnouncement = std::function<void(const FlowAnnouncement&)>;

    Takeover(const Config& cfg, AddressManager& addrs, Maps& maps, unsigned nic_ifindex,
             const Mac& nic_mac, SendAnnouncement send);

    void set_config(const Config& cfg) { cfg_ = cfg; }
    // The data plane slot of a node whose agent is gone (dead to the
    // cluster), LB_NODE_LOCAL for any other: an address taken over from
    // such a node sends its unknown segments there during the grace period
    // (the node is fenced, its connections may live on).
    using FencedSlot = std::function<uint32_t(const std::string& node_id)>;
    void set_fenced_slot(FencedSlot fenced_slot) { fenced_slot_ = std::move(fenced_slot); }

    // Takes, releases and announces as `owners` (this node's computation)
    // says. now_ns: CLOCK_MONOTONIC; now_unix_ms for status. False when
    // something failed and is to be tried again with the same owners (an
    // address that could not be added, a leftover that could not be looked
    // up): the caller calls again soon, even if nothing else changed.
    bool apply(const OwnerMap& owners, uint64_t now_ns, uint64_t now_unix_ms);

    // An address found on the NIC at start (this agent restarted): held, so
    // the first computation keeps or releases it like any other.
    void adopt(const IpAddress& a, const std::string& home, uint64_t now_unix_ms);
    // Host addresses found on the NIC at start that may be peers' service
    // addresses left by a previous agent (nic_leftovers): each is adopted,
    // as taken over from its home, as soon as a computation given to apply()
    // names it (adoptable), and then kept or released like any other held
    // address from the next computation on (its claim counts there).
    void set_leftovers(std::vector<IpAddress> leftovers) { leftovers_ = std::move(leftovers); }
    // Off the NIC with everything held (leaving the cluster: peers take over).
    void release_all();

    // Repeats gratuitous ARP / NA and announcements on their schedule.
    void run_timers(uint64_t now_ns);

    // A peer announces the connections it serves on an address that moved
    // here: each becomes an established flow towards `sender_slot`.
    size_t install_flows(const FlowAnnouncement& a, uint32_t sender_slot, uint64_t now_ns);

    // Every service address this node holds now, own ones included (for
    // the heartbeat: a home node that holds its address wins it).
    std::vector<IpAddress> claims() const;
    // What this node holds and why, for `peerlb status`.
    nlohmann::json status() const;

    uint64_t takeovers() const { return takeovers_; }
    uint64_t givebacks() const { return givebacks_; }
    uint64_t flows_installed() const { return flows_installed_; }
    uint64_t flows_announced() const { return flows_announced_; }

private:
    struct Held {
        std::string home;          // node id that owns it by configuration
        uint64_t since_unix_ms = 0;
    };
    struct Pending {               // something to repeat at `at_ns`
        uint64_t at_ns;
        IpAddress address;
        std::string to;            // announcement: the holder; empty: a neighbour announcement
    };

    bool take(const IpAddress& a, const AddressOwner& o, uint64_t now_ns, uint64_t now_unix_ms);
    void release(const IpAddress& a, const AddressOwner& o);
    void announce_flows(const IpAddress& a, const std::string& to);
    void announce_neighbours(const IpAddress& a);

    Config cfg_;
    AddressManager& addrs_;
    Maps& maps_;
    unsigned ifindex_;
    Mac mac_;
    SendAnnouncement send_;
    FencedSlot fenced_slot_;
    std::map<IpAddress, Held, IpAddressLess> held_;
    std::map<IpAddress, std::string, IpAddressLess> last_owner_;
    std::vector<Pending> pending_;
    std::vector<IpAddress> leftovers_; // found at start, not adopted yet
    uint64_t takeovers_ = 0, givebacks_ = 0, flows_installed_ = 0, flows_announced_ = 0;
};

} // namespace peerlb
