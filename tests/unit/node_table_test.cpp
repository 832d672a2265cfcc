// How the agent lays the cluster out in the data plane: node slots that
// survive restarts, and lb_config from the configuration.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "userspace/agent/node_table.h"
#include "userspace/dataplane/error.h"

using namespace peerlb;

namespace {

IpAddress ip(const char* text) { return parse_ip(text); }

} // namespace

TEST(SlotTable, KeepsPinnedSlotsAndFillsGaps)
{
    std::vector<std::optional<IpAddress>> pinned(LB_MAX_NODES);
    pinned[0] = ip("10.0.0.12");
    pinned[2] = ip("10.0.0.11");
    SlotTable slots(pinned);
    EXPECT_EQ(slots.slot_for(ip("10.0.0.11")), 2u); // as before the restart
    EXPECT_EQ(slots.slot_for(ip("10.0.0.12")), 0u);
    EXPECT_EQ(slots.slot_for(ip("10.0.0.13")), 1u); // the first free one
    EXPECT_EQ(slots.slot_for(ip("10.0.0.14")), 3u);
    EXPECT_EQ(slots.slot_for(ip("10.0.0.13")), 1u); // stable
    EXPECT_EQ(slots.slots_in_use(), 4u);
    EXPECT_FALSE(slots.find(ip("10.0.0.99")));
    EXPECT_EQ(slots.slot_for(ip("fd00::13")), 4u); // another family is another node
}

namespace {

IpAddress nth(uint32_t i) { return ip(("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)).c_str()); }

// Every slot taken by a live node at nth(i).
SlotTable full_of_live_nodes()
{
    SlotTable slots({});
    for (uint32_t i = 0; i < LB_MAX_NODES; i++) {
        EXPECT_EQ(slots.slot_for(nth(i)), i);
        slots.mark_live(nth(i));
    }
    return slots;
}

} // namespace

TEST(SlotTable, FullOfLiveNodesRefusesWithoutThrowing)
{
    SlotTable slots = full_of_live_nodes();
    std::optional<uint32_t> slot;
    EXPECT_NO_THROW(slot = slots.slot_for(ip("10.2.0.1")));
    EXPECT_FALSE(slot);
    EXPECT_FALSE(slots.find(ip("10.2.0.1")));
    EXPECT_EQ(slots.slots_in_use(), uint32_t(LB_MAX_NODES));
    for (uint32_t i = 0; i < LB_MAX_NODES; i++)
        EXPECT_EQ(slots.find(nth(i)), i) << "a live node keeps its slot";
}

TEST(SlotTable, FullTableReusesTheLongestDeadSlot)
{
    SlotTable slots = full_of_live_nodes();
    slots.mark_dead(nth(5), 3000);
    slots.mark_dead(nth(9), 1000); // dead longest
    slots.mark_dead(nth(2), 2000);
    std::optional<IpAddress> evicted;
    EXPECT_EQ(slots.slot_for(ip("10.2.0.1"), &evicted), 9u);
    ASSERT_TRUE(evicted);
    EXPECT_EQ(*evicted, nth(9));
    EXPECT_FALSE(slots.find(nth(9)));
    EXPECT_EQ(slots.slot_for(ip("10.2.0.2")), 2u);
    EXPECT_EQ(slots.slot_for(ip("10.2.0.3")), 5u);
    // The newcomers are live: nothing more to reuse.
    EXPECT_FALSE(slots.slot_for(ip("10.2.0.4")));
}

TEST(SlotTable, APeerBackFromTheDeadKeepsItsSlot)
{
    SlotTable slots = full_of_live_nodes();
    slots.mark_dead(nth(7), 1000);
    slots.mark_live(nth(7));
    EXPECT_FALSE(slots.slot_for(ip("10.2.0.1")));
    EXPECT_EQ(slots.find(nth(7)), 7u);
}

TEST(SlotTable, PinnedSlotsOfNodesNotHeardFromAreReusedFirst)
{
    // A restart with the pinned table full (the forged-heartbeat exhaustion):
    // the agent must still get a slot for itself and for real peers.
    std::vector<std::optional<IpAddress>> pinned(LB_MAX_NODES);
    for (uint32_t i = 0; i < LB_MAX_NODES; i++)
        pinned[i] = nth(i);
    SlotTable slots(pinned);
    EXPECT_EQ(slots.slot_for(nth(4)), 4u); // a node heard again keeps its slot
    slots.mark_live(nth(4));
    slots.mark_live(nth(0));
    slots.mark_dead(nth(0), 500); // heard, then died: reused after the unknown ones
    const auto self = slots.slot_for(ip("10.3.0.1"));
    ASSERT_TRUE(self);
    EXPECT_NE(*self, 0u);
    EXPECT_NE(*self, 4u);
    slots.mark_live(ip("10.3.0.1"));
    for (uint32_t n = 0; n < LB_MAX_NODES - 3; n++) {
        const auto slot = slots.slot_for(ip(fmt::format("10.4.{}.{}", n / 250, n % 250 + 1).c_str()));
        ASSERT_TRUE(slot) << n;
        EXPECT_NE(*slot, 0u);
        EXPECT_NE(*slot, 4u);
    }
    EXPECT_EQ(slots.slot_for(ip("10.5.0.1")), 0u); // the known dead one last
    EXPECT_FALSE(slots.slot_for(ip("10.5.0.2")));
}

TEST(SlotTable, AddressChurnNeverExhaustsTheTable)
{
    // One node renumbered again and again: each old address is marked dead
    // (NodeTable does it when a peer's address changes) and its slot reused.
    SlotTable slots({});
    for (uint32_t i = 0; i < 10 * LB_MAX_NODES; i++) {
        if (i)
            slots.mark_dead(nth(i - 1), 1000 + i);
        const auto slot = slots.slot_for(nth(i));
        ASSERT_TRUE(slot) << "change " << i;
        slots.mark_live(nth(i));
    }
}

TEST(DataplaneConfig, InflightCountsConnectionsOverCapacity)
{
    Config cfg; // load.source = "inflight" by default
    cfg.capacity = 8;
    cfg.conn_cost = 0.25; // not this source's: one connection is 1/8
    lb_config out = dataplane_config(cfg, lb_config{}, 0, 1);
    EXPECT_EQ(out.inflight_capacity, 8u);
    EXPECT_EQ(out.conn_cost_bp, 1250u);
    EXPECT_EQ(out.high_water_bp, 10000u);
    EXPECT_EQ(out.overflow, uint32_t(LB_OVERFLOW_KEEP));
    cfg.capacity = 30000; // less than a basis point each: still counted
    EXPECT_EQ(dataplane_config(cfg, lb_config{}, 0, 1).conn_cost_bp, 1u);
}

TEST(DataplaneConfig, FromTheConfiguration)
{
    Config cfg;
    cfg.accept_below = 40;
    cfg.min_difference = 15;
    cfg.pick_least = true;
    cfg.forward_ipip = true;
    cfg.conn_cost = 0.25;
    cfg.source = LoadSource::connections;
    cfg.high_water = 90;
    cfg.overflow_refuse = true;
    cfg.choices = 3;
    cfg.interval_ms = 200;
    cfg.dead_after = 4;
    cfg.failsafe_after_ms = 700;
    lb_config base{};
    base.mtu = 1400;
    lb_config out = dataplane_config(cfg, base, 3, 5);
    EXPECT_EQ(out.accept_below_bp, 4000u);
    EXPECT_EQ(out.min_difference_bp, 1500u);
    EXPECT_EQ(out.pick, uint32_t(LB_PICK_LEAST));
    EXPECT_EQ(out.forward, uint32_t(LB_FORWARD_IPIP));
    EXPECT_EQ(out.conn_cost_bp, 25u);
    EXPECT_EQ(out.inflight_capacity, 0u); // the agent writes the load
    EXPECT_EQ(out.high_water_bp, 9000u);
    EXPECT_EQ(out.overflow, uint32_t(LB_OVERFLOW_REFUSE));
    EXPECT_EQ(out.choices, 3u);
    EXPECT_EQ(out.self_slot, 3u);
    EXPECT_EQ(out.node_slots, 5u);
    EXPECT_EQ(out.mtu, 1400u); // written at attach, kept
    EXPECT_EQ(out.peer_stale_ns, 800'000'000ull); // dead_after x interval
    EXPECT_EQ(out.self_stale_ns, 700'000'000ull);
    // A peer heard every second is not stale between its heartbeats.
    EXPECT_EQ(dataplane_config(cfg, base, 3, 5, 1000).peer_stale_ns, 4'000'000'000ull);
    EXPECT_EQ(dataplane_config(cfg, base, 3, 5, 100).peer_stale_ns, 800'000'000ull);
}

TEST(DataplaneState, FromMembership)
{
    Peer p;
    p.state = PeerState::alive;
    p.last.state = AnnouncedState::alive;
    EXPECT_EQ(dataplane_state(p), LB_NODE_ALIVE);
    p.last.state = AnnouncedState::unroutable;
    EXPECT_EQ(dataplane_state(p), LB_NODE_UNROUTABLE);
    p.state = PeerState::suspect;
    EXPECT_EQ(dataplane_state(p), LB_NODE_SUSPECT);
    p.state = PeerState::dead;
    EXPECT_EQ(dataplane_state(p), LB_NODE_DEAD);
}
