#include "ownership.h"

#include <algorithm>
#include <cstring>

namespace peerlb {

namespace {

const void* address_bytes(const IpAddress& a)
{
    if (a.family == LB_FAMILY_IPV4)
        return &a.addr.v4;
    return a.addr.v6;
}

// Compares like IpAddress::operator==: IPv4 uses its 4 bytes, anything else
// the 16 bytes of the union.
size_t address_size(const IpAddress& a)
{
    return a.family == LB_FAMILY_IPV4 ? sizeof(a.addr.v4) : sizeof(a.addr.v6);
}

struct AddressState {
    const NodeOwnershipView* home = nullptr;         // nullptr: nobody's home
    std::vector<const NodeOwnershipView*> claimants; // live, not home; lowest id first
    bool home_holds = false; // the live home announces it holds it
};

using Counts = std::map<std::string, size_t>;

size_t count_of(const Counts& counts, const NodeOwnershipView* node)
{
    auto it = counts.find(node->id);
    return it == counts.end() ? 0 : it->second;
}

// Fewest addresses assigned so far, then lowest id, among those below
// `max_held`; `candidates` is sorted by id. nullptr when none has room.
const NodeOwnershipView* least_loaded(const std::vector<const NodeOwnershipView*>& candidates,
                                      const Counts& counts, size_t max_held)
{
    const NodeOwnershipView* best = nullptr;
    size_t best_count = 0;
    for (const auto* node : candidates) {
        size_t count = count_of(counts, node);
        if (count >= max_held)
            continue;
        if (!best || count < best_count) {
            best = node;
            best_count = count;
        }
    }
    return best;
}

bool held_down_passed(const NodeOwnershipView& node, uint64_t now_ns, uint64_t hold_down_ns)
{
    return now_ns >= node.alive_since_ns && now_ns - node.alive_since_ns >= hold_down_ns;
}

} // namespace

bool IpAddressLess::operator()(const IpAddress& a, const IpAddress& b) const
{
    if (a.family != b.family)
        return a.family < b.family;
    return std::memcmp(address_bytes(a), address_bytes(b), address_size(a)) < 0;
}

OwnerMap compute_owners(const std::vector<NodeOwnershipView>& nodes, const std::string& self_id,
                        uint64_t now_ns, uint64_t hold_down_ns, size_t max_held)
{
    std::vector<const NodeOwnershipView*> sorted;
    sorted.reserve(nodes.size());
    for (const auto& node : nodes)
        sorted.push_back(&node);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto* a, const auto* b) { return a->id < b->id; });

    std::vector<const NodeOwnershipView*> live;
    for (const auto* node : sorted)
        if (node->live)
            live.push_back(node);

    // Every service address: the homes first (the lowest id wins a shared
    // one), then whatever is claimed (a claim on nobody's home included).
    std::map<IpAddress, AddressState, IpAddressLess> addresses;
    for (const auto* node : sorted)
        for (const auto& address : node->home) {
            auto& state = addresses[address];
            if (!state.home)
                state.home = node;
        }
    for (const auto* node : sorted)
        for (const auto& address : node->claims) {
            auto& state = addresses[address];
            if (!node->live)
                continue;
            if (state.home == node) {
                state.home_holds = true;
                continue;
            }
            if (std::find(state.claimants.begin(), state.claimants.end(), node) ==
                state.claimants.end())
                state.claimants.push_back(node);
        }

    OwnerMap result;
    Counts counts;
    std::vector<IpAddress> give_back; // past the hold-down, still claimed
    auto assign = [&](const IpAddress& address, const AddressState& state,
                      const NodeOwnershipView* owner) {
        AddressOwner& entry = result[address];
        entry.home = state.home ? state.home->id : std::string();
        if (owner) {
            entry.owner = owner->id;
            counts[owner->id]++;
        }
    };

    // 1. Addresses whose home is live and unclaimed stay home; so do those
    //    the home holds, whoever else claims them (the others release).
    for (const auto& [address, state] : addresses)
        if (state.home && state.home->live && (state.claimants.empty() || state.home_holds))
            assign(address, state, state.home);

    // 2. A live home whose address another node holds: the claim holds (one
    //    winner if several) until the claimant releases it.
    for (const auto& [address, state] : addresses)
        if (state.home && state.home->live && !state.claimants.empty() && !state.home_holds) {
            const NodeOwnershipView* claimant = least_loaded(state.claimants, counts, max_held);
            if (!claimant) {
                // Every claimant is full: the home, which has room for its
                // own (it owns at most max_held), takes it back.
                assign(address, state, state.home);
                continue;
            }
            assign(address, state, claimant);
            if (held_down_passed(*state.home, now_ns, hold_down_ns))
                give_back.push_back(address);
        }

    // 3. Orphans (home dead, absent, or nobody's home), in address order.
    for (const auto& [address, state] : addresses) {
        if (state.home && state.home->live)
            continue;
        // An existing claim is kept (the least loaded claimant if several),
        // unless the claimants are full; nullptr: no live node has room.
        const NodeOwnershipView* owner = least_loaded(state.claimants, counts, max_held);
        assign(address, state, owner ? owner : least_loaded(live, counts, max_held));
    }

    // The only view-dependent step, after all the counting: the holder of an
    // address to give back sees it as the home's and releases it; every other
    // node (the home included) sees the holder until the claim disappears.
    for (const auto& address : give_back) {
        AddressOwner& entry = result[address];
        if (!self_id.empty() && entry.owner == self_id)
            entry.owner = entry.home;
    }
    return result;
}

std::optional<uint64_t> next_ownership_change(const std::vector<NodeOwnershipView>& nodes,
                                              uint64_t now_ns, uint64_t hold_down_ns)
{
    // Time enters compute_owners() only through held_down_passed(): for a
    // live home whose address a live node other than itself claims.
    std::optional<uint64_t> next;
    for (const auto& home : nodes) {
        if (!home.live || home.home.empty())
            continue;
        uint64_t ends;
        if (__builtin_add_overflow(home.alive_since_ns, hold_down_ns, &ends) || ends <= now_ns)
            continue; // never, or passed already (no change to come)
        if (next && *next <= ends)
            continue;
        const bool claimed_by_another = std::any_of(nodes.begin(), nodes.end(), [&](const auto& n) {
            return n.live && n.id != home.id &&
                   std::any_of(n.claims.begin(), n.claims.end(), [&](const IpAddress& a) {
                       return std::find(home.home.begin(), home.home.end(), a) != home.home.end();
                   });
        });
        if (claimed_by_another)
            next = ends;
    }
    return next;
}

std::optional<std::string> coordinator(const std::vector<NodeOwnershipView>& nodes)
{
    std::optional<std::string> lowest;
    for (const auto& node : nodes)
        if (node.live && (!lowest || node.id < *lowest))
            lowest = node.id;
    return lowest;
}

} // namespace peerlb
