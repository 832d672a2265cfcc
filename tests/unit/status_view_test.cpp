// The CLI's and the metrics page's views of one snapshot.
#include "userspace/agent/status_view.h"

#include <gtest/gtest.h>

namespace peerlb {
namespace {

constexpr uint64_t kMs = 1'000'000;

StatusSnapshot two_nodes()
{
    StatusSnapshot s;
    s.taken_ns = 10'000 * kMs;
    s.node_id = "a";
    s.node_address = parse_ip("10.0.0.1");
    s.home = {parse_ip("192.0.2.1")};
    s.load_bp = 2550;
    s.slot = 0;
    s.choices = 2;
    Peer b;
    b.last.node_id = "b";
    b.last.node_address = parse_ip("10.0.0.2");
    b.last.services = {parse_ip("192.0.2.2")};
    b.last.load_bp = 7000;
    b.state = PeerState::suspect;
    b.last_heard_ns = 9'250 * kMs;
    s.peers["b"] = {b, 4};
    s.drops[DropReason::replayed] = 3;
    s.errors["datagram"] = 2;
    return s;
}

TEST(StatusView, PeersListSelfFirstThenEachPeer)
{
    StatusSnapshot s = two_nodes();
    const auto peers = peers_json(s);
    ASSERT_EQ(peers.size(), 2u);
    EXPECT_EQ(peers[0]["state"], "self");
    EXPECT_EQ(peers[0]["load"], 25.5);
    EXPECT_EQ(peers[0]["owns"], nlohmann::ordered_json({"192.0.2.1"})); // no owners yet: home
    EXPECT_EQ(peers[1]["id"], "b");
    EXPECT_EQ(peers[1]["state"], "suspect");
    EXPECT_EQ(peers[1]["slot"], 4);
    EXPECT_EQ(peers[1]["age_ms"], 750);
    EXPECT_EQ(peers[1]["load"], 70.0);

    // Once computed, the owners say who holds what: a took b's address.
    s.owners[parse_ip("192.0.2.1")] = AddressOwner{"a", "a"};
    s.owners[parse_ip("192.0.2.2")] = AddressOwner{"a", "b"};
    s.peers["b"].slot.reset();
    const auto after = peers_json(s);
    EXPECT_EQ(after[0]["owns"], nlohmann::ordered_json({"192.0.2.1", "192.0.2.2"}));
    EXPECT_TRUE(after[1]["owns"].empty());
    EXPECT_TRUE(after[1]["slot"].is_null());
}

TEST(StatusView, StatusCountsEveryDropReason)
{
    const auto status = status_json(two_nodes());
    ASSERT_EQ(status["heartbeat_drops"].size(), std::size(kAllDropReasons));
    EXPECT_EQ(status["heartbeat_drops"]["replayed"], 3);
    EXPECT_EQ(status["heartbeat_drops"]["bad_mac"], 0);
    EXPECT_EQ(status["errors"]["datagram"], 2);
    EXPECT_EQ(status["pick"], "weighted");
    EXPECT_EQ(status["choices"], 2);
}

TEST(StatusView, MetricsShowPeersDropsAndRedirectsBySlot)
{
    std::vector<lb_node_counters> per_slot(8);
    per_slot[4].conns_forwarded = 17;
    const std::vector<CounterTotal> counters = {{"kept_low_load", LB_KIND_KEPT, 5, 0},
                                                {"pass_orphan", LB_KIND_PASSED, 2, 0}};
    const std::string text = metrics_text(two_nodes(), counters, per_slot);
    for (const char* line : {
             "peerlb_local_load_percent 25.5\n",
             "peerlb_peer_state{node=\"b\",state=\"suspect\"} 1\n",
             "peerlb_peer_state{node=\"b\",state=\"alive\"} 0\n",
             "peerlb_heartbeat_drops_total{reason=\"replayed\"} 3\n",
             "peerlb_agent_errors_total{event=\"datagram\"} 2\n",
             "peerlb_redirects_total{node=\"b\"} 17\n",
             "peerlb_decisions_total{kind=\"kept\",counter=\"kept_low_load\"} 5\n",
             "peerlb_orphans_total{outcome=\"passed\"} 2\n",
         })
        EXPECT_NE(text.find(line), std::string::npos) << line << "missing from:\n" << text;
    EXPECT_EQ(text.find("peerlb_decisions_total{kind=\"passed\""), std::string::npos);
}

} // namespace
} // namespace peerlb

namespace peerlb {
namespace {

TEST(StatusView, SharedAddressesTableVersionAndDrain)
{
    StatusSnapshot s = two_nodes();
    auto status = status_json(s);
    EXPECT_EQ(status["shared"]["addresses"], nlohmann::ordered_json::array());
    EXPECT_EQ(status["shared"]["table_version"], 0);
    EXPECT_EQ(status["shared"]["draining"], false);
    EXPECT_EQ(metrics_text(s, {}, {}).find("peerlb_shared_"), std::string::npos)
        << "no shared address: no shared metrics";

    s.shared.addresses = {parse_ip("10.0.0.100")};
    s.shared.table_version = 7;
    s.shared.table_author = "a";
    s.shared.owned = 40;
    s.shared.draining = true;
    s.shared.stats.moves.drain = 5;
    s.shared.stats.chunks_resent = 3;
    status = status_json(s);
    EXPECT_EQ(status["shared"]["addresses"], nlohmann::ordered_json({"10.0.0.100"}));
    EXPECT_EQ(status["shared"]["table_version"], 7);
    EXPECT_EQ(status["shared"]["table_author"], "a");
    EXPECT_EQ(status["shared"]["owned"], 40);
    EXPECT_EQ(status["shared"]["draining"], true);

    const std::vector<CounterTotal> counters = {{"shared_second_hop", LB_KIND_SENT, 11, 0},
                                                {"shared_chain_drop", LB_KIND_DROPPED, 2, 0}};
    const std::string m = metrics_text(s, counters, {});
    for (const char* line : {"peerlb_shared_table_version 7\n", "peerlb_shared_buckets_owned 40\n",
                             "peerlb_shared_draining 1\n",
                             "peerlb_shared_bucket_moves_total{reason=\"drain\"} 5\n",
                             "peerlb_shared_table_chunks_resent_total 3\n",
                             "peerlb_shared_second_hops_total 11\n", "peerlb_shared_chain_drops_total 2\n"})
        EXPECT_NE(m.find(line), std::string::npos) << line;
}

} // namespace
} // namespace peerlb
