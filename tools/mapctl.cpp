// peerlb-mapctl: writes the data plane's maps by hand, for tests and demos
// that run without the agent (nodes, loads, services, settings).
//
//   peerlb-mapctl --pin-root R --iface IF node SLOT --addr A [--mac M | --mac-of IF]
//                 [--load PCT] [--state alive|suspect|dead|unroutable] [--self]
//   peerlb-mapctl ... load SLOT PCT            # fresh load, pending reset
//   peerlb-mapctl ... service ADDR PORT
//   peerlb-mapctl ... config KEY VALUE         # accept_below, min_difference,
//                 pick, forward, conn_cost_bp, peer_stale_ms, self_stale_ms, choices
//
// The candidate lists (maps/candidates.h) follow every node, load and
// config change, as the agent keeps them.
#include <algorithm>
#include <arpa/inet.h>

#include <ctime>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "userspace/dataplane/candidates.h"
#include "userspace/dataplane/dataplane.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/maps.h"
#include "userspace/dataplane/net.h"

extern "C" {
#include "bpf/decision.h" // LB_MAX_CHOICES
}

using namespace peerlb;

namespace {

uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

uint32_t percent_to_bp(double pct)
{
    if (pct < 0 || pct > 100)
        throw Error(fmt::format("load {} is outside 0..100", pct));
    return static_cast<uint32_t>(pct * 100 + 0.5);
}

uint8_t parse_state(const std::string& s)
{
    static const std::map<std::string, uint8_t> states = {
        {"alive", LB_NODE_ALIVE}, {"suspect", LB_NODE_SUSPECT},
        {"dead", LB_NODE_DEAD},   {"unroutable", LB_NODE_UNROUTABLE},
        {"empty", LB_NODE_EMPTY},
    };
    auto it = states.find(s);
    if (it == states.end())
        throw Error(fmt::format("unknown node state '{}'", s));
    return it->second;
}

void set_config_key(lb_config& cfg, const std::string& key, const std::string& value)
{
    auto number = [&] { return std::stoull(value); };
    if (key == "accept_below")
        cfg.accept_below_bp = percent_to_bp(std::stod(value));
    else if (key == "min_difference")
        cfg.min_difference_bp = percent_to_bp(std::stod(value));
    else if (key == "pick" && (value == "least" || value == "weighted"))
        cfg.pick = value == "least" ? LB_PICK_LEAST : LB_PICK_WEIGHTED;
    else if (key == "forward" && (value == "l2" || value == "ipip"))
        cfg.forward = value == "ipip" ? LB_FORWARD_IPIP : LB_FORWARD_L2;
    else if (key == "conn_cost_bp")
        cfg.conn_cost_bp = static_cast<uint32_t>(number());
    else if (key == "peer_stale_ms")
        cfg.peer_stale_ns = number() * 1'000'000ull;
    else if (key == "self_stale_ms")
        cfg.self_stale_ns = number() * 1'000'000ull;
    else if (key == "cookie_slot")
        cfg.cookie_slot = static_cast<uint32_t>(number());
    else if (key == "http_wscale")
        cfg.http_wscale = static_cast<uint32_t>(number());
    else if (key == "syn_cookies" && (value == "auto" || value == "always" || value == "off"))
        cfg.syn_cookies = value == "auto"     ? LB_SYN_COOKIES_AUTO
                          : value == "always" ? LB_SYN_COOKIES_ALWAYS
                                              : LB_SYN_COOKIES_OFF;
    else if (key == "syn_cookie_rate")
        cfg.syn_cookie_rate = static_cast<uint32_t>(number());
    else if (key == "choices" && number() <= LB_MAX_CHOICES)
        cfg.choices = static_cast<uint32_t>(number());
    else
        throw Error(fmt::format("unknown config key or value: {} {}", key, value));
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-mapctl: write peerlb maps by hand (tests, demos)"};
    app.require_subcommand(1);
    std::string pin_root = kDefaultPinRoot, iface;
    app.add_option("--pin-root", pin_root)->capture_default_str();
    app.add_option("--iface", iface)->required();

    uint32_t slot = 0;
    std::string addr, mac, mac_of, state = "alive";
    double load = 0;
    bool self = false;
    auto* node_cmd = app.add_subcommand("node", "write a node slot");
    node_cmd->add_option("slot", slot)->required();
    node_cmd->add_option("--addr", addr, "node address")->required();
    node_cmd->add_option("--mac", mac, "next-hop MAC of the node");
    node_cmd->add_option("--mac-of", mac_of, "take the MAC of this local interface");
    node_cmd->add_option("--load", load, "load in percent");
    node_cmd->add_option("--state", state)->capture_default_str();
    node_cmd->add_flag("--self", self, "this node: also sets config.self_slot");

    auto* load_cmd = app.add_subcommand("load", "write a fresh load for a slot");
    load_cmd->add_option("slot", slot)->required();
    load_cmd->add_option("percent", load)->required();

    std::string svc_addr;
    uint16_t port = 0;
    auto* service_cmd = app.add_subcommand("service", "add a balanced service");
    service_cmd->add_option("address", svc_addr)->required();
    service_cmd->add_option("port", port)->required();

    std::string mode = "l4";
    service_cmd->add_option("--mode", mode, "l4 or http")->capture_default_str();

    // Test keys: slot s gets k0 = seed + s, k1 = ~(seed + s).
    uint64_t seed = 0;
    std::vector<uint32_t> key_slots;
    auto* cookie_cmd = app.add_subcommand("cookie-keys", "install cluster SYN cookie keys");
    cookie_cmd->add_option("--seed", seed)->required();
    cookie_cmd->add_option("slots", key_slots, "valid slots (others are cleared)")->required();

    std::string key, value;
    auto* config_cmd = app.add_subcommand("config", "change one setting");
    config_cmd->add_option("key", key)->required();
    config_cmd->add_option("value", value)->required();

    CLI11_PARSE(app, argc, argv);

    try {
        Maps maps = Maps::open_pinned(pin_dir(pin_root, iface));
        if (*node_cmd) {
            IpAddress ip = parse_ip(addr);
            lb_node n{};
            n.addr = ip.addr;
            n.family = ip.family;
            Mac m = !mac_of.empty() ? interface_mac(mac_of)
                    : !mac.empty()  ? parse_mac(mac)
                                    : throw Error("node needs --mac or --mac-of");
            std::copy(m.begin(), m.end(), n.mac);
            n.state = parse_state(state);
            n.load_bp = percent_to_bp(load);
            n.handed_at_report = maps.handed_open(slot);
            n.updated_ns = monotonic_ns();
            lb_config cfg = maps.config();
            n.conn_cost_bp = cfg.conn_cost_bp;
            n.weight = LB_WEIGHT_ONE;
            maps.set_node(slot, n);
            if (slot + 1 > cfg.node_slots)
                cfg.node_slots = slot + 1;
            if (self)
                cfg.self_slot = slot;
            maps.set_config(cfg);
        } else if (*load_cmd) {
            lb_node n = maps.node(slot);
            n.load_bp = percent_to_bp(load);
            n.handed_at_report = maps.handed_open(slot);
            n.updated_ns = monotonic_ns();
            maps.set_node(slot, n);
        } else if (*service_cmd) {
            IpAddress ip = parse_ip(svc_addr);
            lb_service_key k{};
            k.addr = ip.addr;
            k.family = ip.family;
            k.port = htons(port);
            if (mode != "l4" && mode != "http")
                throw Error(fmt::format("--mode {}: l4 or http", mode));
            maps.add_service(k, lb_service{mode == "http" ? LB_MODE_HTTP : LB_MODE_L4, 0, 0});
        } else if (*cookie_cmd) {
            for (uint32_t s = 0; s < LB_COOKIE_SLOTS; s++) {
                lb_cookie_key ck{};
                ck.k0 = seed + s;
                ck.k1 = ~(seed + s);
                ck.epoch = s;
                ck.expires_ns = ~0ull; // keys written by hand: until rewritten
                ck.valid = std::find(key_slots.begin(), key_slots.end(), s) != key_slots.end();
                maps.set_cookie_key(s, ck);
            }
        } else if (*config_cmd) {
            lb_config cfg = maps.config();
            set_config_key(cfg, key, value);
            maps.set_config(cfg);
        }
        if (*node_cmd || *load_cmd || *config_cmd)
            sync_candidates(maps);
    } catch (const std::exception& e) {
        std::cerr << "peerlb-mapctl: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
