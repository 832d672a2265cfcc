// The datagram router: each kind reaches its own handler, and whatever is
// not taken (replayed, our own id, cut, forged) is dropped and counted.
#include "userspace/agent/datagram_router.h"

#include <gtest/gtest.h>

#include <vector>

namespace peerlb {
namespace {

using Bytes = std::vector<uint8_t>;
const Bytes kKey = {'r', 'o', 'u', 't', 'e', 'r', '-', 'k', 'e', 'y'};
constexpr uint64_t kNowUnixMs = 1'700'000'000'000ULL;
constexpr uint64_t kNowMonoNs = 5'000'000'000ULL;
constexpr uint64_t kWindowMs = 10'000;

template <class Message>
Message from(const std::string& id, uint64_t sequence)
{
    Message m;
    m.node_id = id;
    m.incarnation = 7;
    m.sequence = sequence;
    m.sent_unix_ms = kNowUnixMs;
    return m;
}

Bytes heartbeat(const std::string& id, uint64_t sequence)
{
    auto hb = from<Heartbeat>(id, sequence);
    hb.interval_ms = 500;
    hb.node_address = parse_ip("10.0.0.2");
    return encode_heartbeat(hb, kKey);
}

Bytes announcement(const std::string& id, uint64_t sequence)
{
    auto a = from<FlowAnnouncement>(id, sequence);
    a.to = "self";
    a.service_address = parse_ip("192.0.2.80");
    return encode_announcement(a, kKey);
}

Bytes pin(const std::string& id, uint64_t sequence)
{
    auto p = from<PinAnnouncement>(id, sequence);
    p.client = parse_ip("198.51.100.1");
    p.serving = "peer";
    p.ttl_ms = 1000;
    return encode_pin(p, kKey);
}

Bytes table_chunk(const std::string& id, uint64_t sequence)
{
    auto c = from<TableChunk>(id, sequence);
    c.version = 3;
    c.author = "peer";
    c.total_len = 10;
    c.count = 1;
    c.bytes = Bytes(10, 7);
    return encode_table_chunk(c, kKey);
}

struct Taken {
    std::vector<TableChunk> chunks;
    std::vector<Heartbeat> heartbeats;
    std::vector<FlowAnnouncement> announcements;
    std::vector<PinAnnouncement> pins;
    std::vector<DropReason> judged; // heartbeats' verdicts
};

DatagramRouter router_into(Taken& t)
{
    return DatagramRouter(
        "self", kKey, kWindowMs, 1'000'000'000,
        {.heartbeat = {.take = [&](const Heartbeat& hb) { t.heartbeats.push_back(hb); },
                       .judged = [&](const Heartbeat&, DropReason r) { t.judged.push_back(r); }},
         .announcement = {.take = [&](const FlowAnnouncement& a) { t.announcements.push_back(a); }},
         .pin = {.take = [&](const PinAnnouncement& p) { t.pins.push_back(p); }},
         .table = {.take = [&](const TableChunk& c) { t.chunks.push_back(c); }}});
}

DropReason route(DatagramRouter& r, const Bytes& d, bool cut = false)
{
    return r.route(d, cut, kNowMonoNs, kNowUnixMs);
}

uint64_t total_drops(const DatagramRouter& r)
{
    uint64_t n = 0;
    for (DropReason reason : kAllDropReasons)
        n += r.dropped(reason);
    return n;
}

TEST(DatagramRouter, EachKindReachesItsOwnHandler)
{
    Taken t;
    auto r = router_into(t);
    EXPECT_EQ(route(r, heartbeat("peer", 1)), DropReason::none);
    ASSERT_EQ(t.heartbeats.size(), 1u);
    EXPECT_EQ(t.heartbeats[0].node_address, parse_ip("10.0.0.2"));
    EXPECT_TRUE(t.announcements.empty());
    EXPECT_TRUE(t.pins.empty());

    EXPECT_EQ(route(r, announcement("peer", 2)), DropReason::none);
    ASSERT_EQ(t.announcements.size(), 1u);
    EXPECT_EQ(t.announcements[0].service_address, parse_ip("192.0.2.80"));

    EXPECT_EQ(route(r, pin("peer", 3)), DropReason::none);
    ASSERT_EQ(t.pins.size(), 1u);
    EXPECT_EQ(t.pins[0].serving, "peer");

    EXPECT_EQ(t.heartbeats.size(), 1u);
    EXPECT_EQ(t.announcements.size(), 1u);
    EXPECT_EQ(total_drops(r), 0u);
}

TEST(DatagramRouter, ReplayIsDroppedAndCountedForEveryKind)
{
    Taken t;
    auto r = router_into(t);
    for (const Bytes& d : {heartbeat("peer", 5), announcement("peer", 5), pin("peer", 5)}) {
        EXPECT_EQ(route(r, d), DropReason::none);
        EXPECT_EQ(route(r, d), DropReason::replayed);
    }
    EXPECT_EQ(t.heartbeats.size(), 1u);
    EXPECT_EQ(t.announcements.size(), 1u);
    EXPECT_EQ(t.pins.size(), 1u);
    EXPECT_EQ(r.dropped(DropReason::replayed), 3u);
    EXPECT_EQ(total_drops(r), 3u);
}

TEST(DatagramRouter, EachKindHasItsOwnReplayGuard)
{
    Taken t;
    auto r = router_into(t);
    // One sequence space at the sender, but a heartbeat's sequence does not
    // make an older pin a replay: the kinds are judged apart.
    EXPECT_EQ(route(r, heartbeat("peer", 10)), DropReason::none);
    EXPECT_EQ(route(r, pin("peer", 9)), DropReason::none);
    EXPECT_EQ(route(r, announcement("peer", 8)), DropReason::none);
}

TEST(DatagramRouter, JudgedSeesEveryAuthenticatedHeartbeatWithItsVerdict)
{
    Taken t;
    auto r = router_into(t);
    route(r, heartbeat("peer", 1));
    route(r, heartbeat("peer", 1));
    route(r, heartbeat("self", 2));
    route(r, Bytes(40, 0)); // not authenticated: not judged
    EXPECT_EQ(t.judged, (std::vector<DropReason>{DropReason::none, DropReason::replayed, DropReason::own_id}));
    EXPECT_EQ(t.heartbeats.size(), 1u);
}

TEST(DatagramRouter, OwnIdCutAndForgedAreDroppedByReason)
{
    Taken t;
    auto r = router_into(t);
    EXPECT_EQ(route(r, pin("self", 1)), DropReason::own_id);
    EXPECT_EQ(route(r, heartbeat("peer", 1), /*cut=*/true), DropReason::truncated);
    Bytes forged = announcement("peer", 1);
    forged.back() ^= 1;
    EXPECT_EQ(route(r, forged), DropReason::bad_mac);
    EXPECT_EQ(r.dropped(DropReason::own_id), 1u);
    EXPECT_EQ(r.dropped(DropReason::truncated), 1u);
    EXPECT_EQ(r.dropped(DropReason::bad_mac), 1u);
    EXPECT_TRUE(t.heartbeats.empty() && t.announcements.empty() && t.pins.empty());
    // Nothing was recorded by the dropped ones: the cut heartbeat's sequence is still new.
    EXPECT_EQ(route(r, heartbeat("peer", 1)), DropReason::none);
}

TEST(DatagramRouter, TableChunksHaveTheirLaneAndReplayGuard)
{
    Taken t;
    auto r = router_into(t);
    EXPECT_EQ(route(r, heartbeat("peer", 10)), DropReason::none);
    EXPECT_EQ(route(r, table_chunk("peer", 4)), DropReason::none);
    ASSERT_EQ(t.chunks.size(), 1u);
    EXPECT_EQ(t.chunks[0].version, 3u);
    EXPECT_EQ(t.chunks[0].bytes, Bytes(10, 7));
    EXPECT_EQ(route(r, table_chunk("peer", 4)), DropReason::replayed);
    EXPECT_EQ(route(r, table_chunk("self", 5)), DropReason::own_id);
    EXPECT_EQ(t.chunks.size(), 1u);
    EXPECT_EQ(t.heartbeats.size(), 1u);
}

TEST(DatagramRouter, TableChunksWithoutAHandlerAreDropped)
{
    Taken t;
    DatagramRouter r("self", kKey, kWindowMs, 1'000'000'000,
                     {.heartbeat = {.take = [&](const Heartbeat& hb) { t.heartbeats.push_back(hb); }},
                      .announcement = {.take = [](const FlowAnnouncement&) {}},
                      .pin = {.take = [](const PinAnnouncement&) {}}});
    EXPECT_EQ(route(r, table_chunk("peer", 1)), DropReason::bad_magic);
    EXPECT_EQ(r.dropped(DropReason::bad_magic), 1u);
}

TEST(DatagramRouter, StaleFirstDatagramIsDropped)
{
    Taken t;
    auto r = router_into(t);
    EXPECT_EQ(r.route(heartbeat("peer", 1), false, kNowMonoNs, kNowUnixMs + 2 * kWindowMs),
              DropReason::stale);
    EXPECT_EQ(r.dropped(DropReason::stale), 1u);
    r.set_replay_window(4 * kWindowMs);
    EXPECT_EQ(r.route(heartbeat("peer", 1), false, kNowMonoNs, kNowUnixMs + 2 * kWindowMs),
              DropReason::none);
}

} // namespace
} // namespace peerlb
