// peerlb: the command line (DESIGN.md section 6).
#include <arpa/inet.h>
#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../dataplane/dataplane.h"
#include "../dataplane/error.h"
#include "../dataplane/maps.h"
#include "../dataplane/net.h"
#include "../dataplane/skeleton.h"
#include "agent_commands.h"

using json = nlohmann::ordered_json;
using namespace peerlb;

namespace {

struct CommonOptions {
    std::string pin_root = kDefaultPinRoot;
    std::string run_dir = kDefaultRunDir;
    std::string iface;
    bool json = false;
};

bool g_verbose = false;

// libbpf's messages reach the user only with --verbose (one level quieter).
int libbpf_log(enum libbpf_print_level, const char* format, va_list args)
{
    return g_verbose ? std::vfprintf(stderr, format, args) : 0;
}

void add_common(CLI::App* cmd, CommonOptions& o, bool with_json)
{
    cmd->add_option("--pin-root", o.pin_root, "bpffs directory for pinned maps")
        ->capture_default_str();
    cmd->add_option("--run-dir", o.run_dir, "directory of the agent's control socket")
        ->capture_default_str();
    cmd->add_option("--iface", o.iface, "network interface");
    if (with_json)
        cmd->add_flag("--json", o.json, "print JSON only");
    cmd->add_flag("-v,--verbose", g_verbose, "show libbpf's messages");
}

std::string resolve_iface(const CommonOptions& o)
{
    return o.iface.empty() ? only_attached_iface(o.pin_root) : o.iface;
}

Maps open_maps(const CommonOptions& o, std::string& iface)
{
    require_bpffs(o.pin_root);
    iface = resolve_iface(o);
    const std::string dir = pin_dir(o.pin_root, iface);
    try {
        return Maps::open_pinned(dir);
    } catch (const SystemError& e) {
        if (e.code() == ENOENT)
            throw Error(fmt::format("no peerlb data plane for {} under {}", iface, o.pin_root));
        throw;
    }
}

uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

const char* forward_name(uint32_t f) { return f == LB_FORWARD_IPIP ? "ipip" : "l2"; }
const char* pick_name(uint32_t p) { return p == LB_PICK_LEAST ? "least" : "weighted"; }

// Power of d choices: "2", or "0 (every candidate)".
std::string choices_text(uint32_t d)
{
    return d ? std::to_string(d) : "0 (every candidate)";
}
const char* syn_cookies_name(uint32_t c)
{
    return c == LB_SYN_COOKIES_ALWAYS ? "always" : c == LB_SYN_COOKIES_OFF ? "off" : "auto";
}

const char* state_name(uint8_t s)
{
    switch (s) {
    case LB_NODE_ALIVE: return "alive";
    case LB_NODE_SUSPECT: return "suspect";
    case LB_NODE_DEAD: return "dead";
    case LB_NODE_UNROUTABLE: return "unroutable";
    default: return "empty";
    }
}

const char* reason_name(uint32_t r)
{
    switch (r) {
    case LB_REASON_BELOW_T1: return "below_t1";
    case LB_REASON_NO_LOWER_PEER: return "no_lower_peer";
    case LB_REASON_FAILSAFE: return "failsafe";
    case LB_REASON_LEAST: return "least";
    case LB_REASON_WEIGHTED: return "weighted";
    case LB_REASON_HANDOVER: return "handover";
    case LB_REASON_PINNED: return "pinned";
    case LB_REASON_OVERFLOW: return "overflow";
    default: return "unknown";
    }
}

std::string endpoint(const lb_addr& a, uint8_t family, uint16_t port_be)
{
    std::string ip = format_ip(a, family);
    return family == LB_FAMILY_IPV6 ? fmt::format("[{}]:{}", ip, ntohs(port_be))
                                    : fmt::format("{}:{}", ip, ntohs(port_be));
}

double load_pct(uint32_t bp) { return bp / 100.0; }

int cmd_attach(const CommonOptions& o, const std::string& forward, const std::string& mode)
{
    if (o.iface.empty())
        throw Error("attach needs --iface");
    AttachOptions opts;
    opts.pin_root = o.pin_root;
    opts.iface = o.iface;
    if (!forward.empty())
        opts.forward = forward == "ipip" ? LB_FORWARD_IPIP : LB_FORWARD_L2;
    opts.mode = mode == "skb" ? XdpMode::skb : XdpMode::native;
    attach(opts);
    AttachState st = query(o.pin_root, o.iface);
    std::cout << fmt::format("attached to {} ({} mode, prog id {}), maps in {}\n", o.iface,
                             st.mode, st.prog_id, pin_dir(o.pin_root, o.iface));
    return 0;
}

int cmd_detach(const CommonOptions& o)
{
    if (o.iface.empty())
        throw Error("detach needs --iface");
    detach(o.pin_root, o.iface);
    std::cout << fmt::format("detached from {}\n", o.iface);
    return 0;
}

// handed: the connections this node decided for the slot since its load
// was written, still open (the data plane's correction of that load).
json node_json(uint32_t slot, const lb_node& n, int32_t handed, uint64_t now, bool self)
{
    return {
        {"slot", slot},
        {"address", format_ip(n.addr, n.family)},
        {"mac", format_mac(n.mac)},
        {"state", self ? "self" : state_name(n.state)},
        {"load", load_pct(n.load_bp)},
        {"handed", handed},
        {"weight", n.weight / double(LB_WEIGHT_ONE)},
        {"standby", (n.flags & LB_NODE_STANDBY) != 0},
        {"age_ms", n.updated_ns && now >= n.updated_ns ? (now - n.updated_ns) / 1'000'000 : 0},
    };
}

int cmd_status(const CommonOptions& o)
{
    std::string iface;
    Maps maps = open_maps(o, iface);
    AttachState st = query(o.pin_root, iface);
    lb_config cfg = maps.config();
    uint64_t now = monotonic_ns();

    json nodes = json::array();
    for (uint32_t slot = 0; slot < cfg.node_slots && slot < LB_MAX_NODES; slot++) {
        lb_node n = maps.node(slot);
        if (n.state != LB_NODE_EMPTY || slot == cfg.self_slot)
            nodes.push_back(node_json(slot, n, int32_t(maps.handed_open(slot) - n.handed_at_report),
                                      now, slot == cfg.self_slot));
    }
    json services = json::array();
    for (const auto& [k, v] : maps.services())
        services.push_back({{"service", endpoint(k.addr, k.family, k.port)},
                            {"mode", v.mode == LB_MODE_L4     ? "l4"
                                     : v.mode == LB_MODE_HTTP ? "http"
                                                              : "unknown"},
                            {"shared", (v.flags & LB_SERVICE_SHARED) != 0}});
    // verified_insns: the verifier's processed instructions, against the
    // budget of DESIGN.md section 2.
    json programs = json::array();
    for (const auto& prog : st.programs)
        programs.push_back(
            {{"hook", prog.hook}, {"id", prog.id}, {"verified_insns", prog.verified_insns}});
    json doc = {
        {"interface", iface},
        {"pin_dir", pin_dir(o.pin_root, iface)},
        {"attached", st.attached},
        {"xdp_mode", st.mode},
        {"prog_id", st.prog_id},
        {"tc_egress", st.tc_attached},
        {"programs", programs},
        {"config",
         {{"accept_below", load_pct(cfg.accept_below_bp)},
          {"min_difference", load_pct(cfg.min_difference_bp)},
          {"pick", pick_name(cfg.pick)},
          {"choices", cfg.choices},
          {"forward", forward_name(cfg.forward)},
          {"syn_cookies", syn_cookies_name(cfg.syn_cookies)},
          {"syn_cookie_rate", cfg.syn_cookie_rate},
          {"mtu", cfg.mtu},
          {"self_slot", cfg.self_slot},
          {"node_slots", cfg.node_slots},
          {"peer_stale_ms", cfg.peer_stale_ns / 1'000'000},
          {"self_stale_ms", cfg.self_stale_ns / 1'000'000},
          {"shared_buckets", cfg.shared_buckets}}},
        {"nodes", nodes},
        {"services", services},
        {"flows", maps.flows().size()},
    };
    // The data plane is read directly: it works whether or not the agent runs.
    auto agent = cli::agent_status(o.run_dir);
    doc["agent"] = json{{"running", agent.has_value()}};
    if (agent)
        doc["agent"].update(json(*agent));
    if (o.json) {
        std::cout << doc.dump(2) << "\n";
        return 0;
    }
    std::cout << fmt::format("interface   {} ({})\n", iface,
                             st.attached ? fmt::format("attached, {} mode, prog id {}, tc egress {}",
                                                       st.mode, st.prog_id,
                                                       st.tc_attached ? "yes" : "no")
                                         : "maps pinned, program NOT attached");
    std::cout << fmt::format("pin dir     {}\n", pin_dir(o.pin_root, iface));
    for (const auto& prog : st.programs)
        std::cout << fmt::format("program     {:<10} id {:<6} verified_insns {} (budget {})\n",
                                 prog.hook, prog.id, prog.verified_insns, kVerifierBudgetInsns);
    std::cout << fmt::format(
        "agent       {}\n",
        agent ? fmt::format("running: node {}, {}", (*agent)["node_id"].get<std::string>(),
                            (*agent)["healthy"].get<bool>() ? "healthy" : "UNHEALTHY")
              : fmt::format("NOT running (nothing answers under {}); the data plane keeps "
                            "working on its own",
                            o.run_dir));
    if (agent) {
        for (const auto& a : (*agent)["addresses"]) {
            const time_t since = a["since_unix_ms"].get<uint64_t>() / 1000;
            char when[32];
            std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::localtime(&since));
            std::cout << fmt::format(
                "holds       {} ({}, since {})\n", a["address"].get<std::string>(),
                a["why"] == "own" ? "own" : "taken over from " + a["from"].get<std::string>(),
                when);
        }
        std::cout << fmt::format("coordinator {}\n", (*agent)["coordinator"].get<std::string>());
        const auto& shared = (*agent)["shared"];
        if (shared.is_object() && !shared["addresses"].empty())
            std::cout << fmt::format(
                "shared      {}: {}, {} of {} buckets here{}\n",
                fmt::join(shared["addresses"].get<std::vector<std::string>>(), " "),
                shared["table_version"].get<uint64_t>()
                    ? fmt::format("table v{} by {}", shared["table_version"].get<uint64_t>(),
                                  shared["table_author"].get<std::string>())
                    : std::string("no table yet"),
                shared["owned"].get<uint64_t>(), shared["buckets"].get<uint64_t>(),
                shared["draining"].get<bool>() ? ", DRAINING" : "");
    }
    std::cout << fmt::format("balance     accept_below {} %, min_difference {} %, pick {}, "
                             "choices {}, forward {}\n",
                             load_pct(cfg.accept_below_bp), load_pct(cfg.min_difference_bp),
                             pick_name(cfg.pick), choices_text(cfg.choices),
                             forward_name(cfg.forward));
    std::cout << fmt::format("nodes       {:>4}  {:<39} {:<17} {:<10} {:>7} {:>7} {:>8}\n", "slot",
                             "address", "mac", "state", "load %", "handed", "age ms");
    for (const auto& n : nodes)
        std::cout << fmt::format("            {:>4}  {:<39} {:<17} {:<10} {:>7.2f} {:>7} {:>8}\n",
                                 n["slot"].get<uint32_t>(), n["address"].get<std::string>(),
                                 n["mac"].get<std::string>(), n["state"].get<std::string>(),
                                 n["load"].get<double>(), n["handed"].get<int32_t>(),
                                 n["age_ms"].get<uint64_t>());
    for (const auto& s : services)
        std::cout << fmt::format("service     {} ({}{})\n", s["service"].get<std::string>(),
                                 s["mode"].get<std::string>(), s["shared"].get<bool>() ? ", shared" : "");
    std::cout << fmt::format("flows       {}\n", doc["flows"].get<size_t>());
    return 0;
}

std::string rule_pattern(const lb_uri_rule& r)
{
    return std::string(reinterpret_cast<const char*>(r.pattern),
                       std::min<size_t>(r.pattern_len, sizeof(r.pattern)));
}

// How an http-mode flow's first request was routed, beside its reason.
std::string http_route(const lb_flow& f, const Maps& maps)
{
    if (!(f.http & LB_FLOW_HTTP))
        return "";
    if (f.http & LB_FLOW_NOT_HTTP)
        return "not http: by load";
    if (f.http & LB_FLOW_INCOMPLETE)
        return "request line cut: by load";
    if (!f.rule)
        return "no rule: by load";
    const std::string pattern = rule_pattern(maps.uri_rule(f.rule - 1u));
    if (f.http & LB_FLOW_PIN_ENDED)
        return "pinned by " + pattern + ", exit: pin ended";
    if (f.http & LB_FLOW_PINNED)
        return "pinned by " + pattern;
    if (f.http & LB_FLOW_PIN_SET)
        return "rule " + pattern + ": client pinned";
    return (f.http & LB_FLOW_SPILLED) ? "rule " + pattern + " (nodes busy: by load)"
                                      : "rule " + pattern;
}

int cmd_rules(const CommonOptions& o)
{
    std::string iface;
    Maps maps = open_maps(o, iface);
    const lb_config cfg = maps.config();
    const auto counters = maps.rule_counters();
    json rows = json::array();
    for (uint32_t i = 0; i < cfg.uri_rules && i < LB_MAX_URI_RULES; i++) {
        const lb_uri_rule r = maps.uri_rule(i);
        json nodes = json::array();
        if (r.flags & LB_URI_SELF)
            nodes.push_back("local");
        for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++) {
            if (!lb_node_set_has(r.nodes, slot) || slot == cfg.self_slot)
                continue;
            lb_node n = maps.node(slot);
            nodes.push_back(format_ip(n.addr, n.family));
        }
        auto text = [](const uint8_t* b, uint16_t len, size_t room) {
            return std::string(reinterpret_cast<const char*>(b), std::min<size_t>(len, room));
        };
        rows.push_back({
            {"index", i},
            {"pattern", rule_pattern(r)},
            {"match", (r.flags & LB_URI_GLOB) ? "glob" : "prefix"},
            {"host", r.host_len ? json(text(r.host, r.host_len, sizeof(r.host))) : json(nullptr)},
            {"port", r.port ? json(ntohs(r.port)) : json(nullptr)},
            {"nodes", nodes},
            {"stateful", bool(r.flags & LB_URI_STATEFUL)},
            {"exit", (r.flags & LB_URI_STATEFUL) ? json(text(r.exit_pattern, r.exit_len,
                                                             sizeof(r.exit_pattern)))
                                                 : json(nullptr)},
            {"hits", counters[i].hits},
            {"spilled", counters[i].spilled},
        });
    }
    if (o.json) {
        std::cout << rows.dump(2) << "\n";
        return 0;
    }
    if (rows.empty()) {
        std::cout << "no URI rules (services in mode \"http\" route by load only)\n";
        return 0;
    }
    std::cout << fmt::format("{:<3} {:<24} {:<7} {:<40} {:>10} {:>10}\n", "#", "pattern", "match",
                             "nodes", "hits", "spilled");
    for (const auto& r : rows) {
        std::vector<std::string> nodes = r["nodes"].get<std::vector<std::string>>();
        std::cout << fmt::format("{:<3} {:<24} {:<7} {:<40} {:>10} {:>10}\n",
                                 r["index"].get<uint32_t>(), r["pattern"].get<std::string>(),
                                 r["match"].get<std::string>(), fmt::format("{}", fmt::join(nodes, ",")),
                                 r["hits"].get<uint64_t>(), r["spilled"].get<uint64_t>());
    }
    return 0;
}

int cmd_flows(const CommonOptions& o)
{
    std::string iface;
    Maps maps = open_maps(o, iface);
    uint64_t now = monotonic_ns();
    json rows = json::array();
    for (const auto& f : maps.flows()) {
        std::string node = "local";
        if (f.value.node != LB_NODE_LOCAL) {
            lb_node n = maps.node(f.value.node);
            node = format_ip(n.addr, n.family);
        }
        rows.push_back({
            {"client", endpoint(f.key.saddr, f.key.family, f.key.sport)},
            {"service", endpoint(f.key.daddr, f.key.family, f.key.dport)},
            {"node", node},
            {"slot", f.value.node == LB_NODE_LOCAL ? json(nullptr) : json(f.value.node)},
            {"reason", reason_name(f.value.reason)},
            {"rule", f.value.rule ? json(rule_pattern(maps.uri_rule(f.value.rule - 1u)))
                                  : json(nullptr)},
            {"route", http_route(f.value, maps)},
            {"established", f.established},
            {"age_s", now >= f.value.created_ns ? (now - f.value.created_ns) / 1'000'000'000 : 0},
        });
    }
    if (o.json) {
        std::cout << rows.dump(2) << "\n";
        return 0;
    }
    std::cout << fmt::format("{:<47} {:<47} {:<39} {:<14} {:<11} {:>6}  {}\n", "client", "service",
                             "node", "reason", "state", "age s", "http route");
    for (const auto& r : rows)
        std::cout << fmt::format("{:<47} {:<47} {:<39} {:<14} {:<11} {:>6}  {}\n",
                                 r["client"].get<std::string>(), r["service"].get<std::string>(),
                                 r["node"].get<std::string>(), r["reason"].get<std::string>(),
                                 r["established"].get<bool>() ? "established" : "half-open",
                                 r["age_s"].get<uint64_t>(), r["route"].get<std::string>());
    return 0;
}

int cmd_stats(const CommonOptions& o)
{
    std::string iface;
    Maps maps = open_maps(o, iface);
    lb_config cfg = maps.config();
    json counters = json::object();
    for (const auto& c : maps.counters())
        counters[c.name] = {
            {"kind", counter_kind_name(c.kind)}, {"packets", c.packets}, {"bytes", c.bytes}};
    json nodes = json::array();
    auto per_node = maps.node_counters();
    for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++) {
        const auto& c = per_node[slot];
        if (!c.conns_forwarded && !c.packets_forwarded)
            continue;
        lb_node n = maps.node(slot);
        nodes.push_back({{"slot", slot},
                         {"address", format_ip(n.addr, n.family)},
                         {"connections_forwarded", c.conns_forwarded},
                         {"packets_forwarded", c.packets_forwarded},
                         {"bytes_forwarded", c.bytes_forwarded}});
    }
    (void)cfg;
    if (o.json) {
        std::cout << json{{"interface", iface}, {"counters", counters}, {"nodes", nodes}}.dump(2)
                  << "\n";
        return 0;
    }
    std::cout << fmt::format("{:<26} {:<10} {:>14} {:>16}\n", "counter", "kind", "packets",
                             "bytes");
    for (const auto& [name, v] : counters.items())
        std::cout << fmt::format("{:<26} {:<10} {:>14} {:>16}\n", name,
                                 v["kind"].get<std::string>(), v["packets"].get<uint64_t>(),
                                 v["bytes"].get<uint64_t>());
    if (!nodes.empty()) {
        std::cout << fmt::format("\n{:<39} {:>12} {:>14} {:>16}\n", "forwarded to", "connections",
                                 "packets", "bytes");
        for (const auto& n : nodes)
            std::cout << fmt::format("{:<39} {:>12} {:>14} {:>16}\n",
                                     n["address"].get<std::string>(),
                                     n["connections_forwarded"].get<uint64_t>(),
                                     n["packets_forwarded"].get<uint64_t>(),
                                     n["bytes_forwarded"].get<uint64_t>());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb: every server balances its own load (XDP + agent)", "peerlb"};
    app.require_subcommand(1);
    CommonOptions common;
    std::string forward, mode = "native";

    auto* attach_cmd = app.add_subcommand("attach", "attach the data plane to an interface");
    add_common(attach_cmd, common, false);
    attach_cmd->add_option("--forward", forward, "how to hand flows to peers")
        ->check(CLI::IsMember({"l2", "ipip"}));
    attach_cmd->add_option("--xdp-mode", mode, "XDP attach mode")
        ->check(CLI::IsMember({"native", "skb"}))
        ->capture_default_str();
    auto* detach_cmd = app.add_subcommand("detach", "detach and remove the pinned maps");
    add_common(detach_cmd, common, false);
    auto* status_cmd = app.add_subcommand("status", "data plane state and settings");
    add_common(status_cmd, common, true);
    auto* flows_cmd = app.add_subcommand("flows", "where each connection goes, and why");
    add_common(flows_cmd, common, true);
    auto* stats_cmd = app.add_subcommand("stats", "counters summed over CPUs");
    add_common(stats_cmd, common, true);
    auto* rules_cmd = app.add_subcommand("rules", "URI rules of the http mode, with hit counters");
    add_common(rules_cmd, common, true);

    std::string config_path, state_dir;
    auto* agent_cmd = app.add_subcommand("agent", "run this node's agent in the foreground");
    add_common(agent_cmd, common, false);
    agent_cmd->add_option("-c,--config", config_path, "TOML configuration file")->required();
    agent_cmd->add_option("--state-dir", state_dir,
                          "directory of the incarnation counter (default: [node] state_dir, "
                          "else /var/lib/peerlb/<node id>)")
        ->check(CLI::Validator(
            [](std::string& dir) { return dir.empty() ? std::string("empty path") : std::string(); },
            "DIR"));
    auto* peers_cmd = app.add_subcommand("peers", "the cluster as this node's agent sees it");
    add_common(peers_cmd, common, true);
    std::string set_key, set_value;
    auto* set_cmd = app.add_subcommand("set", "change a setting of the running agent");
    add_common(set_cmd, common, false);
    set_cmd->add_option("key", set_key, "e.g. balance.accept_below")->required();
    set_cmd->add_option("value", set_value, "new value")->required();
    bool drain_undo = false;
    auto* drain_cmd = app.add_subcommand("drain", "move this node's buckets of the shared addresses away");
    add_common(drain_cmd, common, false);
    drain_cmd->add_flag("--undo", drain_undo, "take this node's share of the buckets back");
    std::string buckets_client;
    std::optional<uint16_t> buckets_port;
    auto* buckets_cmd =
        app.add_subcommand("buckets", "the bucket table of the shared addresses, or one client's bucket");
    add_common(buckets_cmd, common, true);
    auto* client_opt = buckets_cmd->add_option("--client", buckets_client, "a client address: its bucket");
    buckets_cmd->add_option("--port", buckets_port, "the client's port (with hash = \"address+port\")")
        ->needs(client_opt);
    unsigned top_interval_ms = 1000, top_frames = 0;
    auto* top_cmd = app.add_subcommand("top", "live view of the cluster");
    add_common(top_cmd, common, false);
    top_cmd->add_option("--interval-ms", top_interval_ms, "refresh period")
        ->check(CLI::Range(100u, 60000u))
        ->capture_default_str();
    top_cmd->add_option("--frames", top_frames, "stop after N frames, no screen clearing");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "peerlb: " << e.what() << " (see peerlb --help)\n";
        return 2;
    }

    libbpf_set_print(libbpf_log);
    try {
        if (*attach_cmd)
            return cmd_attach(common, forward, mode);
        if (*detach_cmd)
            return cmd_detach(common);
        if (*status_cmd)
            return cmd_status(common);
        if (*flows_cmd)
            return cmd_flows(common);
        if (*stats_cmd)
            return cmd_stats(common);
        if (*rules_cmd)
            return cmd_rules(common);
        if (*agent_cmd)
            return cli::cmd_agent(config_path, common.pin_root, common.run_dir, state_dir, g_verbose);
        if (*peers_cmd)
            return cli::cmd_peers(common.run_dir, common.json);
        if (*set_cmd)
            return cli::cmd_set(common.run_dir, set_key, set_value);
        if (*top_cmd)
            return cli::cmd_top(common.run_dir, top_interval_ms, top_frames);
        if (*drain_cmd)
            return cli::cmd_drain(common.run_dir, drain_undo);
        if (*buckets_cmd)
            return cli::cmd_buckets(common.run_dir, common.json, buckets_client, buckets_port);
    } catch (const std::exception& e) {
        std::cerr << "peerlb: " << e.what() << "\n";
        return 1;
    }
    return 2;
}
