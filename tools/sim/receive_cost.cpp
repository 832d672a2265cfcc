// The cost of receiving heartbeats (see receive_cost.h): one agent's view of
// N - 1 peers, each sending the simulator's heartbeat, encoded and signed
// beforehand; the receive path timed over several rounds of every peer.
#include "receive_cost.h"

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nodes.h"
#include "userspace/agent/datagram_router.h"
#include "userspace/agent/duplicate_ids.h"
#include "userspace/agent/membership.h"
#include "userspace/agent/service_book.h"

namespace peerlb::sim {

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kUnixEpochMs = 1'700'000'000'000ull;
constexpr uint64_t kForgetDeadAfterNs = 60'000 * kMs;

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0) { return std::chrono::duration<double, std::nano>(Clock::now() - t0).count(); }

} // namespace

ReceiveCost measure_receive_cost(uint32_t nodes, uint32_t interval_ms, uint32_t dead_after)
{
    ReceiveCost c;
    c.peers = nodes - 1;
    c.heartbeats_per_s = double(c.peers) * 1000.0 / interval_ms;
    const std::vector<uint8_t> key(32, 0x5a);
    const uint64_t period_ns = uint64_t(interval_ms) * kMs;
    // Rounds of one heartbeat from every peer, about 50 000 datagrams in all;
    // the first round (peers joining) is not timed.
    const uint32_t rounds = std::max<uint32_t>(4, 50'000 / c.peers + 1);
    std::vector<std::vector<uint8_t>> datagrams;
    datagrams.reserve(size_t(rounds) * c.peers);
    std::vector<Heartbeat> beats;
    for (uint32_t i = 1; i < nodes; i++)
        beats.push_back(node_heartbeat(i, nodes, interval_ms));
    for (uint32_t r = 0; r < rounds; r++)
        for (Heartbeat& hb : beats) {
            hb.sequence = r + 1;
            hb.sent_unix_ms = kUnixEpochMs + r * interval_ms;
            datagrams.push_back(encode_heartbeat(hb, key));
        }
    c.datagram_bytes = datagrams.front().size();

    // What Agent::take and Agent::note_duplicate_id do with a heartbeat,
    // but the node table's map write.
    const std::string self = node_id(0, nodes);
    const NodeIdentity identity{self, parse_ip("10.255.255.1"), 1};
    Membership members(self, dead_after);
    ServiceBook book(kForgetDeadAfterNs);
    std::set<std::string> known_services;
    uint64_t now = 1000 * kMs, sink = 0;
    DatagramRouter router(
        self, key, 10'000, 10'000 * kMs,
        {.heartbeat = {.take =
                           [&](const Heartbeat& hb) {
                               members.on_heartbeat(hb, now);
                               Peer peer = *members.find(hb.node_id); // for NodeTable::write_peer
                               sink += peer.heartbeats;
                               for (const IpAddress& a : hb.services) // learn_services
                                   if (!known_services.count(format_ip(a)))
                                       known_services.insert(format_ip(a));
                               book.announce(hb.node_id, hb.services, now);
                           },
                       .judged =
                           [&](const Heartbeat& hb, DropReason verdict) {
                               const Peer* p = members.find(hb.node_id);
                               sink += duplicate_id_evidence(hb, verdict, p ? &p->last : nullptr, identity,
                                                             kUnixEpochMs + now / kMs, 10'000)
                                           .has_value();
                           }},
         .announcement = {.take = [](const FlowAnnouncement&) {}},
         .pin = {.take = [](const PinAnnouncement&) {}}});

    const uint64_t step_ns = period_ns / c.peers; // arrivals spread over the period
    size_t k = 0, taken = 0;
    auto route = [&](size_t count) {
        for (size_t n = 0; n < count; n++, k++) {
            now += step_ns;
            taken += router.route(datagrams[k], false, now, kUnixEpochMs + now / kMs) == DropReason::none;
        }
    };
    route(c.peers); // round 0: every peer joins
    const size_t timed = datagrams.size() - c.peers;
    auto t0 = Clock::now();
    route(timed);
    c.ns_per_heartbeat = ns_since(t0) / double(timed);
    if (taken != datagrams.size())
        throw std::logic_error(fmt::format("receive cost: {} of {} heartbeats taken", taken, datagrams.size()));

    t0 = Clock::now();
    for (size_t n = 0; n < timed; n++)
        sink += decode_heartbeat(datagrams[c.peers + n], key).message.sequence;
    c.ns_decode = ns_since(t0) / double(timed);

    // Loop turns with every peer fresh: nothing changes, every peer judged.
    const uint32_t turns = std::max<uint32_t>(200, 2'000'000 / c.peers);
    t0 = Clock::now();
    for (uint32_t n = 0; n < turns; n++) {
        sink += members.tick(now).size();
        sink += members.forget_dead(now, kForgetDeadAfterNs).size();
    }
    c.ns_per_turn = ns_since(t0) / turns;
    if (sink == 0)
        fmt::print(stderr, "receive cost: nothing counted\n"); // keeps the work from being optimised away

    c.core_percent_heartbeats = c.ns_per_heartbeat * c.heartbeats_per_s / 1e7;
    c.core_percent_turns = c.ns_per_turn * c.heartbeats_per_s / 1e7;
    return c;
}

nlohmann::json to_json(const ReceiveCost& c)
{
    return {{"peers", c.peers},
            {"datagram_bytes", c.datagram_bytes},
            {"heartbeats_per_s", c.heartbeats_per_s},
            {"ns_per_heartbeat", c.ns_per_heartbeat},
            {"ns_decode", c.ns_decode},
            {"ns_per_turn", c.ns_per_turn},
            {"core_percent_heartbeats", c.core_percent_heartbeats},
            {"core_percent_turns", c.core_percent_turns}};
}

void print_receive_cost(const nlohmann::json& c)
{
    fmt::print("  receiving, {} peers, {:.0f} heartbeats/s of {} bytes: {:.0f} ns each ({:.0f} ns verify + "
               "decode) = {:.2f} % of one core; a loop turn over every peer {:.0f} ns, one per heartbeat = "
               "{:.2f} % more\n",
               c["peers"].get<uint32_t>(), c["heartbeats_per_s"].get<double>(), c["datagram_bytes"].get<size_t>(),
               c["ns_per_heartbeat"].get<double>(), c["ns_decode"].get<double>(),
               c["core_percent_heartbeats"].get<double>(), c["ns_per_turn"].get<double>(),
               c["core_percent_turns"].get<double>());
}

} // namespace peerlb::sim
