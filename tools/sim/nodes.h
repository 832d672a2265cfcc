// The simulated nodes' ids and heartbeats, shared by the simulation and the
// receive cost measurement so that both handle the same datagrams.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "userspace/agent/heartbeat.h"

namespace peerlb::sim {

// "n0042" among 1000 nodes: ids sort in index order.
inline std::string node_id(uint32_t index, uint32_t nodes)
{
    return fmt::format("n{:0{}}", index, std::to_string(nodes - 1).size());
}

// What agent.cpp's send_heartbeat fills for node `index`: its addresses,
// one service address it owns (and holds), a load, rates and a capacity.
// Sequence and send time are stamped at each send.
inline Heartbeat node_heartbeat(uint32_t index, uint32_t nodes, uint32_t interval_ms)
{
    Heartbeat hb;
    hb.node_id = node_id(index, nodes);
    hb.incarnation = 1;
    hb.interval_ms = interval_ms;
    hb.node_address = parse_ip(fmt::format("10.{}.{}.{}", 1 + index / 65536, (index / 256) % 256, index % 256));
    hb.mac = {2, 0, uint8_t(index >> 24), uint8_t(index >> 16), uint8_t(index >> 8), uint8_t(index)};
    hb.services = {parse_ip(fmt::format("10.{}.{}.{}", 200 + index / 65536, (index / 256) % 256, index % 256))};
    hb.claims = hb.services;
    hb.load_bp = uint16_t(3000 + index * 37 % 4000);
    hb.kept_per_s = 100;
    hb.forwarded_per_s = 20;
    hb.conn_cost_bp = 10;
    return hb;
}

} // namespace peerlb::sim
