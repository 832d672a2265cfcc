// What receiving heartbeats costs one agent at N nodes, measured on this
// machine (peerlb-sim --cpu): the agent's own code on real datagrams,
// without the socket and the data plane.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

namespace peerlb::sim {

struct ReceiveCost {
    uint32_t peers = 0;
    size_t datagram_bytes = 0;
    double heartbeats_per_s = 0;   // (N - 1) peers x 1000 / interval_ms
    // One datagram as Agent::receive_datagrams takes it: DatagramRouter::route
    // (HMAC check, decode, own id, replay guard), the duplicate-id check,
    // Membership::on_heartbeat, the copy of the peer for the node table,
    // learn_services' lookup and ServiceBook::announce. Not counted: the
    // recvfrom() and the node table's map write (one bpf() call each).
    double ns_per_heartbeat = 0;
    double ns_decode = 0;          // decode_heartbeat alone, of the above
    // What one turn of the agent's loop does over every peer when nothing
    // changes: Membership::tick and forget_dead.
    double ns_per_turn = 0;
    // Of one core: the heartbeats, and a turn for each of them (the agent
    // wakes on every datagram when it is otherwise idle).
    double core_percent_heartbeats = 0;
    double core_percent_turns = 0;
};

ReceiveCost measure_receive_cost(uint32_t nodes, uint32_t interval_ms, uint32_t dead_after);
nlohmann::json to_json(const ReceiveCost& c);
void print_receive_cost(const nlohmann::json& c);

} // namespace peerlb::sim
