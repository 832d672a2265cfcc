// How the agent lays the cluster out in the data plane: node slots that
// survive restarts, and lb_config from the configuration.
#include <gtest/gtest.h>

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

TEST(SlotTable, FullTableRefuses)
{
    SlotTable slots({});
    for (uint32_t i = 0; i < LB_MAX_NODES; i++)
        ASSERT_EQ(slots.slot_for(ip(("10.1.0." + std::to_string(i + 1)).c_str())), i);
    EXPECT_THROW(slots.slot_for(ip("10.2.0.1")), Error);
    EXPECT_EQ(slots.slots_in_use(), uint32_t(LB_MAX_NODES));
}

TEST(DataplaneConfig, FromTheConfiguration)
{
    Config cfg;
    cfg.accept_below = 40;
    cfg.min_difference = 15;
    cfg.pick_least = true;
    cfg.forward_ipip = true;
    cfg.conn_cost = 0.25;
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
