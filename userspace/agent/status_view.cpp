#include "status_view.h"

#include "metrics.h"

namespace peerlb {
namespace {

using json = nlohmann::ordered_json;

constexpr uint64_t kMs = 1'000'000;

double percent(uint32_t bp) { return bp / 100.0; }

// The addresses `id` holds by the last ownership computation; before the
// first one, its home addresses.
std::vector<std::string> held_by(const OwnerMap& owners, const std::string& id,
                                 const std::vector<IpAddress>& home)
{
    std::vector<std::string> out;
    if (owners.empty()) {
        for (const auto& a : home)
            out.push_back(format_ip(a));
        return out;
    }
    for (const auto& [address, owner] : owners)
        if (owner.owner == id)
            out.push_back(format_ip(address));
    return out;
}

// Decisions on new connections, whatever the mode (SYN or http request).
bool is_decision(const CounterTotal& c)
{
    return c.kind == LB_KIND_KEPT || c.kind == LB_KIND_FORWARDED;
}

uint64_t dropped(const StatusSnapshot& s, DropReason r)
{
    auto it = s.drops.find(r);
    return it == s.drops.end() ? 0 : it->second;
}

json shared_json(const StatusSnapshot::Shared& sh)
{
    json addresses = json::array();
    for (const auto& a : sh.addresses)
        addresses.push_back(format_ip(a));
    return {
        {"addresses", addresses},
        {"table_version", sh.table_version},
        {"table_author", sh.table_version ? json(sh.table_author) : json(nullptr)},
        {"coordinator", sh.coordinator},
        {"buckets", sh.buckets},
        {"owned", sh.owned},
        {"draining", sh.draining},
        {"announce", sh.announce},
        {"bird", sh.bird ? json{{"announced", sh.bird_announced ? json(*sh.bird_announced) : json(nullptr)},
                                {"error", sh.bird_error}}
                         : json(nullptr)},
        {"second_hop_percent", sh.second_hop_permille / 10.0},
        {"tables_applied", sh.stats.tables_applied},
        {"tables_made", sh.stats.tables_made},
    };
}

uint64_t packets(const std::vector<CounterTotal>& counters, const char* name)
{
    for (const auto& c : counters)
        if (c.name == name)
            return c.packets;
    return 0;
}

void shared_metrics(MetricsText& m, const StatusSnapshot::Shared& sh, const std::vector<CounterTotal>& counters)
{
    m.family("peerlb_shared_table_version", "gauge",
             "Version of the bucket table of shared addresses applied here (0: none yet).")
        .sample("peerlb_shared_table_version", {}, double(sh.table_version));
    m.family("peerlb_shared_buckets_owned", "gauge", "Buckets of the shared addresses this node owns.")
        .sample("peerlb_shared_buckets_owned", {}, sh.owned);
    m.family("peerlb_shared_draining", "gauge", "1 while this node drains (peerlb drain).")
        .sample("peerlb_shared_draining", {}, sh.draining ? 1 : 0);
    m.family("peerlb_shared_bucket_moves_total", "counter",
             "Buckets this node moved as the coordinator, by reason.")
        .sample("peerlb_shared_bucket_moves_total", {{"reason", "membership"}}, sh.stats.moves.membership)
        .sample("peerlb_shared_bucket_moves_total", {{"reason", "load"}}, sh.stats.moves.load)
        .sample("peerlb_shared_bucket_moves_total", {{"reason", "drain"}}, sh.stats.moves.drain);
    m.family("peerlb_shared_tables_applied_total", "counter", "Bucket tables applied to the data plane.")
        .sample("peerlb_shared_tables_applied_total", {}, double(sh.stats.tables_applied));
    m.family("peerlb_shared_tables_refused_total", "counter",
             "Complete bucket tables refused (undecodable, or for another bucket count).")
        .sample("peerlb_shared_tables_refused_total", {}, double(sh.stats.tables_refused));
    m.family("peerlb_shared_table_chunks_sent_total", "counter", "Bucket table chunks sent to the peers.")
        .sample("peerlb_shared_table_chunks_sent_total", {}, double(sh.stats.chunks_sent));
    m.family("peerlb_shared_table_chunks_resent_total", "counter",
             "Bucket table chunks sent again for a peer that showed another version.")
        .sample("peerlb_shared_table_chunks_resent_total", {}, double(sh.stats.chunks_resent));
    m.family("peerlb_shared_second_hops_total", "counter",
             "Shared-address packets sent on along a bucket's chain of previous owners.")
        .sample("peerlb_shared_second_hops_total", {}, double(packets(counters, "shared_second_hop")));
    m.family("peerlb_shared_chain_drops_total", "counter",
             "Shared-address packets dropped at the end of a chain without their connection.")
        .sample("peerlb_shared_chain_drops_total", {}, double(packets(counters, "shared_chain_drop")));
}

} // namespace

json peers_json(const StatusSnapshot& s)
{
    json out = json::array();
    out.push_back({
        {"id", s.node_id},
        {"address", format_ip(s.node_address)},
        {"state", "self"},
        {"load", percent(s.load_bp)},
        {"owns", held_by(s.owners, s.node_id, s.home)},
        {"routable", s.healthy},
        {"slot", s.slot},
        {"age_ms", 0},
        {"incarnation", s.incarnation},
        {"kept_per_s", s.kept_per_s},
        {"forwarded_per_s", s.forwarded_per_s},
        {"weight", s.weight / 100.0},
        {"standby", s.standby},
    });
    for (const auto& [id, entry] : s.peers) {
        const Peer& p = entry.peer;
        out.push_back({
            {"id", id},
            {"address", format_ip(p.last.node_address)},
            {"state", peer_state_name(p.state)},
            {"load", percent(p.last.load_bp)},
            {"owns", held_by(s.owners, id, p.last.services)},
            {"routable", p.routable()},
            {"slot", entry.slot ? json(*entry.slot) : json(nullptr)},
            {"age_ms", (s.taken_ns - p.last_heard_ns) / kMs},
            {"incarnation", p.last.incarnation},
            {"kept_per_s", p.last.kept_per_s},
            {"forwarded_per_s", p.last.forwarded_per_s},
            {"weight", p.last.weight / 100.0},
            {"standby", p.last.standby},
        });
    }
    return out;
}

json status_json(const StatusSnapshot& s)
{
    json drops = json::object();
    for (DropReason r : kAllDropReasons)
        drops[drop_reason_name(r)] = dropped(s, r);
    json errors = json::object();
    for (const auto& [what, count] : s.errors)
        errors[what] = count;
    return {
        {"node_id", s.node_id},
        {"interface", s.interface},
        {"config", s.config_path},
        {"incarnation", s.incarnation},
        {"load", percent(s.load_bp)},
        {"healthy", s.healthy},
        {"interval_ms", s.interval_ms},
        {"dead_after", s.dead_after},
        {"accept_below", s.accept_below},
        {"min_difference", s.min_difference},
        {"pick", s.pick_least ? "least" : "weighted"},
        {"choices", s.choices},
        {"heartbeats_sent", s.heartbeats_sent},
        {"heartbeats_taken", s.heartbeats_taken},
        {"heartbeat_drops", drops},
        {"addresses", s.addresses},
        {"coordinator", s.coordinator},
        {"takeovers", s.takeovers},
        {"givebacks", s.givebacks},
        {"flows_installed", s.flows_installed},
        {"flows_announced", s.flows_announced},
        {"node_slots_refused", s.node_slots_refused},
        {"duplicate_ids", s.duplicate_ids},
        {"errors", errors},
        {"shared", shared_json(s.shared)},
    };
}

std::string metrics_text(const StatusSnapshot& s, const std::vector<CounterTotal>& counters,
                         const std::vector<lb_node_counters>& per_slot)
{
    MetricsText m;
    m.family("peerlb_local_load_percent", "gauge", "Measured local load (0-100).")
        .sample("peerlb_local_load_percent", {}, percent(s.load_bp));
    m.family("peerlb_healthy", "gauge", "1 when the local service passes its health check.")
        .sample("peerlb_healthy", {}, s.healthy ? 1 : 0);
    m.family("peerlb_peer_load_percent", "gauge", "Last load announced by each peer (0-100).");
    for (const auto& [id, entry] : s.peers)
        m.sample("peerlb_peer_load_percent", {{"node", id}}, percent(entry.peer.last.load_bp));
    m.family("peerlb_peer_state", "gauge", "1 for the state each peer is in.");
    for (const auto& [id, entry] : s.peers)
        for (PeerState state : {PeerState::alive, PeerState::suspect, PeerState::dead})
            m.sample("peerlb_peer_state", {{"node", id}, {"state", peer_state_name(state)}},
                     entry.peer.state == state ? 1 : 0);
    m.family("peerlb_heartbeats_sent_total", "counter", "Heartbeats sent.")
        .sample("peerlb_heartbeats_sent_total", {}, double(s.heartbeats_sent));
    m.family("peerlb_heartbeats_received_total", "counter", "Heartbeats taken from peers.")
        .sample("peerlb_heartbeats_received_total", {}, double(s.heartbeats_taken));
    m.family("peerlb_heartbeat_drops_total", "counter", "Heartbeats dropped, by reason.");
    for (DropReason r : kAllDropReasons)
        m.sample("peerlb_heartbeat_drops_total", {{"reason", drop_reason_name(r)}},
                 double(dropped(s, r)));
    m.family("peerlb_agent_errors_total", "counter",
             "Events the agent failed to handle (logged, then carried on), by event kind.");
    for (const auto& [what, count] : s.errors)
        m.sample("peerlb_agent_errors_total", {{"event", what}}, double(count));
    m.family("peerlb_duplicate_node_id_total", "counter",
             "Heartbeats showing two nodes with one id (logged with the id and addresses).")
        .sample("peerlb_duplicate_node_id_total", {}, double(s.duplicate_ids_total));
    m.family("peerlb_node_slots_refused_total", "counter",
             "Writes of a peer left out of the data plane: every node slot held by a live node.")
        .sample("peerlb_node_slots_refused_total", {}, double(s.node_slots_refused));
    m.family("peerlb_decisions_total", "counter",
             "New connections decided (SYNs, http first requests), by outcome and counter.");
    for (const auto& c : counters)
        if (is_decision(c))
            m.sample("peerlb_decisions_total",
                     {{"kind", counter_kind_name(c.kind)}, {"counter", c.name}},
                     double(c.packets));
    m.family("peerlb_redirects_total", "counter", "New connections handed to each peer.");
    for (const auto& [id, entry] : s.peers)
        if (entry.slot && *entry.slot < per_slot.size())
            m.sample("peerlb_redirects_total", {{"node", id}},
                     double(per_slot[*entry.slot].conns_forwarded));
    m.family("peerlb_takeovers_total", "counter", "Peers' addresses this node took over.")
        .sample("peerlb_takeovers_total", {}, double(s.takeovers));
    m.family("peerlb_givebacks_total", "counter", "Addresses given back to their returning node.")
        .sample("peerlb_givebacks_total", {}, double(s.givebacks));
    m.family("peerlb_handover_flows_total", "counter",
             "Connections handed over when an address moved, by direction.")
        .sample("peerlb_handover_flows_total", {{"direction", "installed"}},
                double(s.flows_installed))
        .sample("peerlb_handover_flows_total", {{"direction", "announced"}},
                double(s.flows_announced));
    m.family("peerlb_orphans_total", "counter",
             "Segments with no flow and no socket, by outcome.");
    for (const auto& c : counters) {
        if (c.name == "drop_orphan_grace")
            m.sample("peerlb_orphans_total", {{"outcome", "dropped_in_grace"}}, double(c.packets));
        else if (c.name == "pass_orphan")
            m.sample("peerlb_orphans_total", {{"outcome", "passed"}}, double(c.packets));
    }
    m.family("peerlb_packets_total", "counter",
             "Data plane packets, by counter (verdict and reason) and its kind.");
    for (const auto& c : counters)
        m.sample("peerlb_packets_total", {{"kind", counter_kind_name(c.kind)}, {"counter", c.name}},
                 double(c.packets));
    if (!s.shared.addresses.empty())
        shared_metrics(m, s.shared, counters);
    return m.text();
}

} // namespace peerlb
