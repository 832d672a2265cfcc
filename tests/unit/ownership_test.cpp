// Who holds each service address: homes, takeover of a dead node's
// addresses, conflicting claims, give-back with hold-down, the coordinator.
#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <random>
#include <tuple>

#include <fmt/format.h>

#include "userspace/agent/ownership.h"
#include "userspace/agent/takeover.h"

using namespace peerlb;

namespace {

constexpr uint64_t kHoldDown = 30'000'000'000ull; // 30 s

IpAddress ip(const char* text) { return parse_ip(text); }

std::vector<IpAddress> ips(std::initializer_list<const char*> texts)
{
    std::vector<IpAddress> out;
    for (const char* text : texts)
        out.push_back(ip(text));
    return out;
}

NodeOwnershipView node(const char* id, bool live, std::initializer_list<const char*> home,
                       std::initializer_list<const char*> claims = {}, uint64_t alive_since = 0)
{
    NodeOwnershipView view;
    view.id = id;
    view.live = live;
    view.alive_since_ns = alive_since;
    view.home = ips(home);
    view.claims = ips(claims);
    return view;
}

// (address, owner, home) in map order: comparable and readable on failure.
using Row = std::tuple<std::string, std::string, std::string>;

std::vector<Row> rows(const OwnerMap& owners)
{
    std::vector<Row> out;
    for (const auto& [address, owner] : owners)
        out.emplace_back(format_ip(address), owner.owner, owner.home);
    return out;
}

std::string owner_of(const OwnerMap& owners, const char* address)
{
    auto it = owners.find(ip(address));
    EXPECT_NE(it, owners.end()) << address << " is not listed";
    return it == owners.end() ? "<missing>" : it->second.owner;
}

std::string home_of(const OwnerMap& owners, const char* address)
{
    auto it = owners.find(ip(address));
    EXPECT_NE(it, owners.end()) << address << " is not listed";
    return it == owners.end() ? "<missing>" : it->second.home;
}

// Every order of `nodes` gives the result of the first one.
void expect_order_independent(std::vector<NodeOwnershipView> nodes, const std::string& self,
                              uint64_t now)
{
    auto expected = rows(compute_owners(nodes, self, now, kHoldDown));
    std::mt19937 rng(1234);
    for (int i = 0; i < 20; i++) {
        std::shuffle(nodes.begin(), nodes.end(), rng);
        EXPECT_EQ(rows(compute_owners(nodes, self, now, kHoldDown)), expected) << "shuffle " << i;
    }
    std::reverse(nodes.begin(), nodes.end());
    EXPECT_EQ(rows(compute_owners(nodes, self, now, kHoldDown)), expected) << "reversed";
}

} // namespace

TEST(OwnershipOrder, FamilyThenBytes)
{
    IpAddressLess less;
    EXPECT_TRUE(less(ip("9.255.255.255"), ip("10.0.0.0"))); // byte order, not host order
    EXPECT_TRUE(less(ip("10.0.0.255"), ip("10.0.1.0")));
    EXPECT_FALSE(less(ip("10.0.1.0"), ip("10.0.0.255")));
    EXPECT_TRUE(less(ip("255.255.255.255"), ip("::"))); // IPv4 before IPv6
    EXPECT_FALSE(less(ip("::"), ip("255.255.255.255")));
    EXPECT_TRUE(less(ip("fd00::2"), ip("fd00::10")));
    EXPECT_TRUE(less(ip("fd00::ffff"), ip("fd00:0:0:1::")));
    EXPECT_FALSE(less(ip("fd00::1"), ip("fd00::1")));

    // IPv4 ignores the rest of the union, like operator==.
    IpAddress a = ip("10.0.0.1"), b = ip("10.0.0.1");
    b.addr.v6[2] = 0xdeadbeef;
    EXPECT_FALSE(less(a, b));
    EXPECT_FALSE(less(b, a));
}

TEST(Ownership, AllAliveEachAddressAtHome)
{
    std::vector<NodeOwnershipView> nodes = {
        node("node-b", true, {"10.0.0.2", "fd00::2"}),
        node("node-a", true, {"10.0.0.1"}),
        node("node-c", true, {"10.0.0.3", "10.0.0.4"}),
    };
    auto owners = compute_owners(nodes, "node-a", 0, kHoldDown);
    std::vector<Row> expected = {
        {"10.0.0.1", "node-a", "node-a"}, {"10.0.0.2", "node-b", "node-b"},
        {"10.0.0.3", "node-c", "node-c"}, {"10.0.0.4", "node-c", "node-c"},
        {"fd00::2", "node-b", "node-b"},
    };
    EXPECT_EQ(rows(owners), expected);
    for (const auto& [address, owner] : owners)
        EXPECT_FALSE(owner.taken_over()) << format_ip(address);
    expect_order_independent(nodes, "node-a", 0);
    // Every node computes the same.
    EXPECT_EQ(rows(compute_owners(nodes, "node-c", 0, kHoldDown)), expected);
}

TEST(Ownership, DeadNodesTwoAddressesSplitOneEach)
{
    // Listed out of order: the hand-out follows the address order.
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.12", "10.0.0.11"}),
        node("b", true, {"10.0.0.2"}),
        node("c", true, {"10.0.0.3"}),
    };
    auto owners = compute_owners(nodes, "b", 0, kHoldDown);
    EXPECT_EQ(owner_of(owners, "10.0.0.11"), "b"); // tie 1-1: lowest id
    EXPECT_EQ(owner_of(owners, "10.0.0.12"), "c"); // now c has fewer
    EXPECT_EQ(home_of(owners, "10.0.0.11"), "a");
    EXPECT_TRUE(owners.at(ip("10.0.0.11")).taken_over());
    EXPECT_EQ(owner_of(owners, "10.0.0.2"), "b");
    EXPECT_EQ(owner_of(owners, "10.0.0.3"), "c");
    expect_order_independent(nodes, "b", 0);
    EXPECT_EQ(rows(compute_owners(nodes, "c", 0, kHoldDown)), rows(owners));
}

TEST(Ownership, ThreeOrphansCountEachAssignment)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1", "10.0.0.2", "10.0.0.3"}),
        node("b", true, {"10.0.1.1", "10.0.1.2"}),
        node("c", true, {"10.0.2.1"}),
    };
    auto owners = compute_owners(nodes, "b", 0, kHoldDown);
    EXPECT_EQ(owner_of(owners, "10.0.0.1"), "c"); // c 1 < b 2
    EXPECT_EQ(owner_of(owners, "10.0.0.2"), "b"); // 2-2: lowest id
    EXPECT_EQ(owner_of(owners, "10.0.0.3"), "c"); // c 2 < b 3
    expect_order_independent(nodes, "c", 0);
}

TEST(Ownership, ExistingUniqueClaimIsKept)
{
    // Without claims the orphan goes to c, which owns fewer.
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1"}),
        node("b", true, {"10.0.0.2", "10.0.0.3"}),
        node("c", true, {"10.0.0.4"}),
    };
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", 0, kHoldDown), "10.0.0.1"), "c");

    // b took it earlier (c was not there then): no reshuffling.
    nodes[1].claims = ips({"10.0.0.1"});
    for (const char* self : {"b", "c"}) {
        auto owners = compute_owners(nodes, self, 0, kHoldDown);
        EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b") << self;
    }
    expect_order_independent(nodes, "c", 0);

    // A dead node's claim counts for nothing.
    nodes[1].live = false;
    nodes.push_back(node("d", true, {}));
    EXPECT_EQ(owner_of(compute_owners(nodes, "c", 0, kHoldDown), "10.0.0.1"), "d");
}

TEST(Ownership, ConflictingClaimsSameWinnerFromBothViews)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1"}),
        node("b", true, {"10.0.0.2", "10.0.0.3"}, {"10.0.0.1"}),
        node("c", true, {"10.0.0.4"}, {"10.0.0.1"}),
    };
    auto from_b = compute_owners(nodes, "b", 0, kHoldDown);
    auto from_c = compute_owners(nodes, "c", 0, kHoldDown);
    EXPECT_EQ(owner_of(from_b, "10.0.0.1"), "c"); // fewest owned
    EXPECT_NE(owner_of(from_b, "10.0.0.1"), "b"); // the loser releases
    EXPECT_EQ(rows(from_b), rows(from_c));
    expect_order_independent(nodes, "b", 0);

    // Equal counts: the lowest id wins.
    nodes[2].home = ips({"10.0.0.4", "10.0.0.5"});
    auto tie_b = compute_owners(nodes, "b", 0, kHoldDown);
    auto tie_c = compute_owners(nodes, "c", 0, kHoldDown);
    EXPECT_EQ(owner_of(tie_b, "10.0.0.1"), "b");
    EXPECT_EQ(rows(tie_b), rows(tie_c));
}

TEST(Ownership, ConflictCountsAddressesAssignedBefore)
{
    // .1 is handed out first (tie: b); the dispute over .2 then sees b with 2.
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1", "10.0.0.2"}),
        node("b", true, {"10.0.1.1"}, {"10.0.0.2"}),
        node("c", true, {"10.0.1.2"}, {"10.0.0.2"}),
    };
    for (const char* self : {"b", "c"}) {
        auto owners = compute_owners(nodes, self, 0, kHoldDown);
        EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b") << self;
        EXPECT_EQ(owner_of(owners, "10.0.0.2"), "c") << self;
    }
    expect_order_independent(nodes, "b", 0);
}

TEST(Ownership, GiveBackAfterHoldDownReleaseFirst)
{
    const uint64_t back = 1'000'000'000'000ull; // a is alive again since then
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {}, back),
        node("b", true, {"10.0.0.2"}, {"10.0.0.1"}),
        node("c", true, {"10.0.0.3"}),
    };

    // Within the hold-down: b keeps it, in every view.
    for (uint64_t now : {back, back + kHoldDown / 2, back + kHoldDown - 1})
        for (const char* self : {"a", "b", "c"}) {
            auto owners = compute_owners(nodes, self, now, kHoldDown);
            EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b") << self << " at " << now - back;
            EXPECT_TRUE(owners.at(ip("10.0.0.1")).taken_over());
        }

    // Hold-down over: b sees it as a's (releases); a and c still see b as
    // long as b's claim is visible, so a does not add it yet.
    const uint64_t later = back + kHoldDown;
    auto from_b = compute_owners(nodes, "b", later, kHoldDown);
    EXPECT_EQ(owner_of(from_b, "10.0.0.1"), "a");
    EXPECT_FALSE(from_b.at(ip("10.0.0.1")).taken_over());
    EXPECT_EQ(owner_of(compute_owners(nodes, "a", later, kHoldDown), "10.0.0.1"), "b");
    EXPECT_EQ(owner_of(compute_owners(nodes, "c", later, kHoldDown), "10.0.0.1"), "b");
    expect_order_independent(nodes, "b", later);
    expect_order_independent(nodes, "a", later);

    // b's claim is gone: a's address is home.
    nodes[1].claims.clear();
    for (const char* self : {"a", "b", "c"}) {
        auto owners = compute_owners(nodes, self, later, kHoldDown);
        EXPECT_EQ(owner_of(owners, "10.0.0.1"), "a") << self;
        EXPECT_FALSE(owners.at(ip("10.0.0.1")).taken_over());
    }
}

TEST(Ownership, GiveBackWithSeveralClaimantsOnlyTheHolderReleases)
{
    const uint64_t back = 5'000;
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {}, back),
        node("b", true, {"10.0.0.2", "10.0.0.3"}, {"10.0.0.1"}),
        node("c", true, {"10.0.0.4"}, {"10.0.0.1"}),
    };
    const uint64_t now = back + kHoldDown;
    EXPECT_EQ(owner_of(compute_owners(nodes, "a", back, kHoldDown), "10.0.0.1"), "c");
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", back, kHoldDown), "10.0.0.1"), "c");
    EXPECT_EQ(owner_of(compute_owners(nodes, "c", now, kHoldDown), "10.0.0.1"), "a");
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", now, kHoldDown), "10.0.0.1"), "c");
    EXPECT_EQ(owner_of(compute_owners(nodes, "a", now, kHoldDown), "10.0.0.1"), "c");
}

TEST(Ownership, HomeDyingAgainDuringHoldDownLeavesItWithClaimant)
{
    const uint64_t back = 1'000;
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {}, back),
        node("b", true, {"10.0.0.2", "10.0.0.3"}, {"10.0.0.1"}),
        node("c", true, {"10.0.0.4"}),
    };
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", back + 10, kHoldDown), "10.0.0.1"), "b");
    nodes[0].live = false; // dies again before the hold-down ends
    for (uint64_t now : {back + 20, back + 2 * kHoldDown})
        for (const char* self : {"b", "c"}) {
            auto owners = compute_owners(nodes, self, now, kHoldDown);
            EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b") << self; // c owns fewer, b keeps it
        }
}

TEST(Ownership, FlappingHomeNeverGetsItBackWithinHoldDown)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1"}),
        node("b", true, {"10.0.0.2"}, {"10.0.0.1"}),
    };
    // a comes back every 20 s and is dead again 20 s later: each time it
    // comes back, its alive_since resets, so 30 s are never reached.
    const uint64_t step = 20'000'000'000ull;
    for (int i = 1; i <= 6; i++) {
        uint64_t now = i * step;
        auto& a = nodes[0];
        a.live = i % 2 == 1;
        if (a.live)
            a.alive_since_ns = now;
        for (uint64_t t : {now, now + step - 1})
            for (const char* self : {"a", "b"}) {
                auto owners = compute_owners(nodes, self, t, kHoldDown);
                EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b") << "step " << i << " " << self;
            }
    }
    // Alive long enough: b now releases.
    nodes[0].live = true;
    nodes[0].alive_since_ns = 10 * step;
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", 10 * step + kHoldDown, kHoldDown), "10.0.0.1"),
              "a");
}

TEST(Ownership, MixedFamilies)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"fd00::1", "192.168.1.1", "fd00::", "10.0.0.1"}),
        node("b", true, {"fd00::b"}),
        node("c", true, {"10.0.0.99"}),
    };
    auto owners = compute_owners(nodes, "c", 0, kHoldDown);
    // IPv4 first, then IPv6, each in byte order.
    std::vector<Row> expected = {
        {"10.0.0.1", "b", "a"},    {"10.0.0.99", "c", "c"}, {"192.168.1.1", "c", "a"},
        {"fd00::", "b", "a"},      {"fd00::1", "c", "a"},   {"fd00::b", "b", "b"},
    };
    EXPECT_EQ(rows(owners), expected);
    expect_order_independent(nodes, "b", 0);
}

TEST(Ownership, ClaimOnNobodysHomeIsAnOrphan)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {"192.0.2.1"}),
        node("b", true, {"10.0.0.2"}),
        node("d", false, {}, {"2001:db8::1"}), // was held by a dead node
    };
    auto owners = compute_owners(nodes, "b", 0, kHoldDown);
    EXPECT_EQ(owner_of(owners, "192.0.2.1"), "a"); // its unique claim is kept
    EXPECT_EQ(home_of(owners, "192.0.2.1"), "");
    EXPECT_TRUE(owners.at(ip("192.0.2.1")).taken_over());
    EXPECT_EQ(owner_of(owners, "2001:db8::1"), "b"); // a holds 2 by now, b 1
    EXPECT_EQ(home_of(owners, "2001:db8::1"), "");
    EXPECT_EQ(owners.size(), 4u);
    expect_order_independent(nodes, "a", 0);
}

TEST(Ownership, SharedHomeBelongsToLowestId)
{
    std::vector<NodeOwnershipView> nodes = {
        node("z", true, {"10.0.0.1"}),
        node("m", true, {"10.0.0.1", "10.0.0.2"}),
    };
    auto owners = compute_owners(nodes, "z", 0, kHoldDown);
    EXPECT_EQ(home_of(owners, "10.0.0.1"), "m");
    EXPECT_EQ(owner_of(owners, "10.0.0.1"), "m");
    EXPECT_EQ(owners.size(), 2u);
    expect_order_independent(nodes, "z", 0);
}

TEST(Ownership, NoLiveNodeNobodyOwns)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1"}),
        node("b", false, {"fd00::2"}, {"10.0.0.1"}),
    };
    auto owners = compute_owners(nodes, "a", 0, kHoldDown);
    ASSERT_EQ(owners.size(), 2u);
    for (const auto& [address, owner] : owners) {
        EXPECT_EQ(owner.owner, "") << format_ip(address);
        EXPECT_FALSE(owner.taken_over());
    }
    EXPECT_EQ(home_of(owners, "10.0.0.1"), "a");
    EXPECT_TRUE(compute_owners({}, "a", 0, kHoldDown).empty());
}

TEST(Coordinator, LowestLiveId)
{
    EXPECT_EQ(coordinator({node("node-c", true, {}), node("node-a", true, {}),
                           node("node-b", true, {})}),
              "node-a");
}

TEST(Coordinator, SkipsDeadNodes)
{
    EXPECT_EQ(coordinator({node("b", true, {}), node("a", false, {}), node("c", true, {})}), "b");
}

TEST(Coordinator, NoneLive)
{
    EXPECT_EQ(coordinator({node("a", false, {}), node("b", false, {})}), std::nullopt);
    EXPECT_EQ(coordinator({}), std::nullopt);
}

namespace {

peerlb::NodeOwnershipView holding(std::string id, std::vector<const char*> home,
                                  std::vector<const char*> claims, uint64_t alive_since = 0)
{
    peerlb::NodeOwnershipView v;
    v.id = std::move(id);
    v.alive_since_ns = alive_since;
    for (const char* a : home)
        v.home.push_back(peerlb::parse_ip(a));
    for (const char* a : claims)
        v.claims.push_back(peerlb::parse_ip(a));
    return v;
}

} // namespace

// After a partition heals, a home that holds its own address keeps it, from
// every view and at once (no hold-down: it never let go).
TEST(Ownership, HomeHoldingItsAddressWinsAgainstAClaimant)
{
    const uint64_t now = 10'000'000'000ull, hold_down = 5'000'000'000ull;
    const std::vector<peerlb::NodeOwnershipView> views = {
        holding("s2", {"10.0.0.2"}, {"10.0.0.2", "10.0.0.3"}, now - 1), // just came back
        holding("s3", {"10.0.0.3"}, {"10.0.0.3", "10.0.0.2"}, now - 1),
    };
    for (const char* self : {"s2", "s3"}) {
        auto owners = peerlb::compute_owners(views, self, now, hold_down);
        EXPECT_EQ(owners.at(peerlb::parse_ip("10.0.0.2")).owner, "s2") << "view of " << self;
        EXPECT_EQ(owners.at(peerlb::parse_ip("10.0.0.3")).owner, "s3") << "view of " << self;
    }
}

// No node is given more addresses than a heartbeat can list as claims.
TEST(Ownership, NoNodeHoldsMoreThanItsLimit)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", false, {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}),
        node("b", true, {"10.0.1.1"}),
        node("c", true, {"10.0.2.1"}),
    };
    // Room for 2 each: b and c take one orphan each, then nobody has room.
    auto owners = compute_owners(nodes, "b", 0, kHoldDown, 2);
    EXPECT_EQ(owner_of(owners, "10.0.0.1"), "b");
    EXPECT_EQ(owner_of(owners, "10.0.0.2"), "c");
    EXPECT_EQ(owner_of(owners, "10.0.0.3"), "");
    EXPECT_EQ(owner_of(owners, "10.0.0.4"), "");
    EXPECT_EQ(rows(compute_owners(nodes, "c", 0, kHoldDown, 2)), rows(owners));

    // At the default limit (kMaxClaims) every orphan has a holder, and none
    // holds more than kMaxClaims even when a dead node owned that many.
    std::vector<NodeOwnershipView> full = {node("a", false, {}), node("b", true, {})};
    for (size_t i = 0; i < kMaxOwnedServices; i++) {
        full[0].home.push_back(ip(fmt::format("10.0.0.{}", i + 1).c_str()));
        full[1].home.push_back(ip(fmt::format("10.0.1.{}", i + 1).c_str()));
    }
    auto big = compute_owners(full, "b", 0, kHoldDown);
    size_t held_by_b = 0, held_by_nobody = 0;
    for (const auto& [address, owner] : big) {
        held_by_b += owner.owner == "b";
        held_by_nobody += owner.owner.empty();
    }
    EXPECT_EQ(held_by_b, kMaxClaims);
    EXPECT_EQ(held_by_nobody, 2 * kMaxOwnedServices - kMaxClaims);
}

// A claimant at its limit is passed over: the live home takes its address
// back instead of the claimant keeping more than it may list.
TEST(Ownership, FullClaimantLeavesALiveHomeItsAddress)
{
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {}, 0),
        node("b", true, {"10.0.1.1", "10.0.1.2"}, {"10.0.1.1", "10.0.1.2", "10.0.0.1"}),
    };
    auto owners = compute_owners(nodes, "a", 1, kHoldDown, 2);
    EXPECT_EQ(owner_of(owners, "10.0.0.1"), "a");
    EXPECT_EQ(rows(owners), rows(compute_owners(nodes, "b", 1, kHoldDown, 2)));
    // With room, the claim holds within the hold-down.
    EXPECT_EQ(owner_of(compute_owners(nodes, "a", 1, kHoldDown, 3), "10.0.0.1"), "b");
}

// Agent start-up after a crash (issue "hostile networks and faults", item
// 4): what the dead agent held is still on the NIC. Candidates are the host
// addresses other than the node address and the node's own services; the
// admin's (other prefixes) never are.
TEST(Adoption, LeftoversAreHostAddressesBeyondNodeAddressAndOwnServices)
{
    const IpAddress node_address = ip("10.77.0.13");
    const auto own = ips({"10.77.0.113", "fd77::113"});
    const std::vector<InterfaceAddress> found = {
        {ip("10.77.0.13"), 24},    // the node address
        {ip("10.77.0.13"), 32},    // the node address again, as a host address
        {ip("fd77::13"), 64},      // the node's IPv6 address
        {ip("fe80::77:13"), 64},   // link-local
        {ip("10.77.0.113"), 32},   // own service (adopted as own elsewhere)
        {ip("fd77::113"), 128},    // own service
        {ip("10.77.0.112"), 32},   // a peer's service, left by the dead agent
        {ip("fd77::112"), 128},    // its IPv6 address
        {ip("192.168.9.1"), 24},   // the admin's
        {ip("10.9.9.9"), 32},      // a host address: a candidate, not adopted yet
        {ip("10.77.0.112"), 32},   // listed twice: once
    };
    auto leftovers = nic_leftovers(found, node_address, own);
    std::vector<std::string> texts;
    for (const auto& a : leftovers)
        texts.push_back(format_ip(a));
    EXPECT_EQ(texts, (std::vector<std::string>{"10.77.0.112", "fd77::112", "10.9.9.9"}));
}

// Adopted are the leftovers the ownership computation names (a node's home,
// or claimed by a live node), with their home; the others stay untouched.
TEST(Adoption, OnlyAddressesTheClusterNamesAreAdopted)
{
    const auto leftovers = ips({"10.77.0.112", "fd77::112", "10.9.9.9", "10.77.0.111"});
    // Before any peer is heard: nothing but this node's own.
    std::vector<NodeOwnershipView> alone = {node("s3", true, {"10.77.0.113"})};
    EXPECT_TRUE(adoptable(leftovers, compute_owners(alone, "s3", 0, kHoldDown)).empty());

    // s2 is heard (its home); s1 was never heard by this fresh agent, but
    // s2 claims s1's address: a service address with an unknown home.
    std::vector<NodeOwnershipView> nodes = {
        node("s3", true, {"10.77.0.113"}),
        node("s2", true, {"10.77.0.112", "fd77::112"}, {"10.77.0.112", "fd77::112", "10.77.0.111"}),
    };
    auto adopted = adoptable(leftovers, compute_owners(nodes, "s3", 0, kHoldDown));
    EXPECT_EQ(adopted, (std::vector<Adoption>{
                           {ip("10.77.0.112"), "s2"}, {ip("fd77::112"), "s2"}, {ip("10.77.0.111"), ""}}));
}

// Once adopted, the address is this node's claim, and the usual rules apply.
TEST(Adoption, AdoptedAddressIsReleasedToALiveHome)
{
    const uint64_t now = 1'000'000'000;
    // s2 alive and holding its address: s3's adopted claim loses at once.
    std::vector<NodeOwnershipView> holding = {
        node("s3", true, {"10.77.0.113"}, {"10.77.0.113", "10.77.0.112"}, now),
        node("s2", true, {"10.77.0.112"}, {"10.77.0.112"}, 0),
    };
    EXPECT_EQ(owner_of(compute_owners(holding, "s3", now, kHoldDown), "10.77.0.112"), "s2");
    EXPECT_EQ(owner_of(compute_owners(holding, "s2", now, kHoldDown), "10.77.0.112"), "s2");

    // s2 alive but not holding it (back within the hold-down): s3 keeps it
    // until s2 has been alive for the hold-down, then gives it back.
    std::vector<NodeOwnershipView> back = {
        node("s3", true, {"10.77.0.113"}, {"10.77.0.113", "10.77.0.112"}, 0),
        node("s2", true, {"10.77.0.112"}, {}, now),
    };
    EXPECT_EQ(owner_of(compute_owners(back, "s3", now + 1, kHoldDown), "10.77.0.112"), "s3");
    EXPECT_EQ(owner_of(compute_owners(back, "s3", now + kHoldDown, kHoldDown), "10.77.0.112"), "s2");
    // s2 waits for the release: never two holders.
    EXPECT_EQ(owner_of(compute_owners(back, "s2", now + kHoldDown, kHoldDown), "10.77.0.112"), "s3");

    // A dead node's address that two live nodes hold (one of them from
    // before its agent restarted, home unknown to it): one keeps it, and
    // both views agree.
    std::vector<NodeOwnershipView> twice = {
        node("s3", true, {"10.77.0.113"}, {"10.77.0.113", "10.77.0.111"}),
        node("s2", true, {"10.77.0.112"}, {"10.77.0.112", "10.77.0.111"}),
    };
    const auto a = compute_owners(twice, "s3", now, kHoldDown);
    EXPECT_EQ(owner_of(a, "10.77.0.111"), "s2");
    EXPECT_EQ(home_of(a, "10.77.0.111"), "");
    EXPECT_EQ(rows(a), rows(compute_owners(twice, "s2", now, kHoldDown)));
}

// The agent computes the owners again only when its inputs change or at
// next_ownership_change(): the time a give-back comes due.
TEST(NextOwnershipChange, AGiveBackComesDueAtTheHomesHoldDownEnd)
{
    const uint64_t back = 1'000'000'000'000ull;
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {}, back),
        node("b", true, {"10.0.0.2"}, {"10.0.0.2", "10.0.0.1"}),
    };
    EXPECT_EQ(next_ownership_change(nodes, back, kHoldDown), back + kHoldDown);
    EXPECT_EQ(next_ownership_change(nodes, back + kHoldDown - 1, kHoldDown), back + kHoldDown);
    // The answer the deadline stands for: b releases at it, not before.
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", back + kHoldDown - 1, kHoldDown), "10.0.0.1"), "b");
    EXPECT_EQ(owner_of(compute_owners(nodes, "b", back + kHoldDown, kHoldDown), "10.0.0.1"), "a");
    // Once it has passed, time changes nothing more.
    EXPECT_EQ(next_ownership_change(nodes, back + kHoldDown, kHoldDown), std::nullopt);
    // The earliest of two.
    nodes.push_back(node("c", true, {"10.0.0.3"}, {}, back - 5));
    nodes[1].claims.push_back(ip("10.0.0.3"));
    EXPECT_EQ(next_ownership_change(nodes, back, kHoldDown), back - 5 + kHoldDown);
}

TEST(NextOwnershipChange, NothingComesDueWithoutAClaimOnALiveHome)
{
    const uint64_t back = 1'000'000'000'000ull;
    // Nobody claims a's address; b's claim on a dead node's address (held
    // for as long as c stays dead, whatever the time); b's own address.
    std::vector<NodeOwnershipView> nodes = {
        node("a", true, {"10.0.0.1"}, {"10.0.0.1"}, back),
        node("b", true, {"10.0.0.2"}, {"10.0.0.2", "10.0.0.3"}, back),
        node("c", false, {"10.0.0.3"}, {}, back),
    };
    EXPECT_EQ(next_ownership_change(nodes, back, kHoldDown), std::nullopt);
    // A dead claimant's claim does not count either.
    nodes[2].claims = ips({"10.0.0.1"});
    EXPECT_EQ(next_ownership_change(nodes, back, kHoldDown), std::nullopt);
    // A hold-down that never ends (saturated) is no deadline.
    nodes[1].claims.push_back(ip("10.0.0.1"));
    EXPECT_EQ(next_ownership_change(nodes, back, UINT64_MAX), std::nullopt);
    EXPECT_EQ(next_ownership_change(nodes, back, kHoldDown), back + kHoldDown);
}

// The property the agent relies on, over random clusters: from every view,
// compute_owners() gives the same answer at every time before the deadline
// (at all times when there is none), so computing it only at the deadline
// and on input changes misses nothing.
TEST(NextOwnershipChange, NoAnswerChangesBeforeTheDeadline)
{
    std::mt19937_64 rng(20240515);
    const std::vector<const char*> addresses = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4",
                                                "10.0.0.5", "fd00::1"};
    const uint64_t now = 100 * kHoldDown;
    size_t with_deadline = 0, changed_at_deadline = 0;
    for (int round = 0; round < 2000; round++) {
        std::vector<NodeOwnershipView> nodes;
        const int count = 2 + int(rng() % 3);
        for (int i = 0; i < count; i++) {
            NodeOwnershipView v;
            v.id = fmt::format("n{}", i);
            v.live = rng() % 4 != 0;
            // Back a while ago, just now, or not yet (a clock read later).
            v.alive_since_ns = now - kHoldDown * 2 + rng() % (kHoldDown * 2 + 1000);
            for (const char* a : addresses) {
                if (rng() % 5 == 0)
                    v.home.push_back(ip(a));
                if (rng() % 4 == 0)
                    v.claims.push_back(ip(a));
            }
            nodes.push_back(v);
        }
        const auto deadline = next_ownership_change(nodes, now, kHoldDown);
        const uint64_t end = deadline.value_or(now + 3 * kHoldDown);
        if (deadline) {
            with_deadline++;
            ASSERT_GT(*deadline, now);
        }
        for (const auto& self : nodes) {
            const auto at_now = rows(compute_owners(nodes, self.id, now, kHoldDown));
            for (uint64_t t : {now + 1, now + (end - now) / 2, end - 1})
                ASSERT_EQ(rows(compute_owners(nodes, self.id, t, kHoldDown)), at_now)
                    << "round " << round << ", view of " << self.id << ", " << t - now
                    << " ns after now; deadline " << (deadline ? fmt::format("{}", *deadline - now) : "none");
            if (deadline && rows(compute_owners(nodes, self.id, *deadline, kHoldDown)) != at_now)
                changed_at_deadline++;
        }
    }
    // The random clusters reach the interesting cases.
    EXPECT_GT(with_deadline, 100u);
    EXPECT_GT(changed_at_deadline, 50u);
}

// A `set` computes the owners again only when it changes what they depend on.
TEST(AffectsOwnership, EveryRuntimeSettingIsClassified)
{
    Config base;
    base.node_id = "s1";
    // Keys whose change may move addresses: the rules, and the listen
    // period of a starting agent (dead_after x interval_ms).
    const std::map<std::string, std::pair<std::string, bool>> changes = {
        {"balance.accept_below", {"61", false}},     {"balance.min_difference", {"33", false}},
        {"balance.pick", {"least", false}},          {"balance.conn_cost", {"0.7", false}},
        {"balance.failsafe_after_ms", {"4000", false}},
        {"balance.syn_cookies", {"always", false}}, {"balance.syn_cookie_rate", {"5000", false}},
        {"balance.high_water", {"90", false}},      {"balance.overflow", {"refuse", false}},
        {"balance.choices", {"0", false}},
        {"node.weight", {"2.5", false}},            {"node.standby", {"true", false}},
        {"cluster.interval_ms", {"250", true}},      {"cluster.dead_after", {"5", true}},
        {"cluster.load_step", {"20", false}},        {"cluster.replay_window_ms", {"20000", false}},
        {"cluster.hold_down_ms", {"1234", true}},    {"cluster.grace_ms", {"3000", false}},
        {"load.capacity", {"77", false}},            {"load.update_ms", {"20", false}},
        {"load.smoothing_ms", {"300", false}},       {"health.enabled", {"false", false}},
        {"health.interval_ms", {"700", false}},      {"health.timeout_ms", {"300", false}},
        {"health.fail_after", {"4", false}},         {"log.level", {"debug", false}},
    };
    for (const auto& key : runtime_settings()) {
        auto it = changes.find(key);
        ASSERT_NE(it, changes.end()) << key << ": a new runtime setting; does it affect ownership?";
        const Config next = apply_setting(base, key, it->second.first);
        EXPECT_EQ(affects_ownership(base, next), it->second.second) << key;
        EXPECT_FALSE(affects_ownership(next, next)) << key;
    }
    Config other = base;
    other.takeover = false;
    EXPECT_TRUE(affects_ownership(base, other));
    other = base;
    other.owned_services = ips({"10.0.0.9"});
    EXPECT_TRUE(affects_ownership(base, other));
}
