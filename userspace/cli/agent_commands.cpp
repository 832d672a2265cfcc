#include "agent_commands.h"

#include <bpf/libbpf.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "../agent/agent.h"
#include "../agent/control.h"
#include "../dataplane/error.h"

namespace peerlb::cli {
namespace {

using json = nlohmann::json;

// libbpf speaks through the agent's log, one level quieter than its own.
int libbpf_to_log(enum libbpf_print_level level, const char* format, va_list args)
{
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, args);
    std::string text(line);
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    spdlog::log(level == LIBBPF_WARN ? spdlog::level::info : spdlog::level::debug, "libbpf: {}",
                text);
    return 0;
}

std::string load_bar(double pct, int width)
{
    const int full = std::clamp(int(pct / 100.0 * width + 0.5), 0, width);
    return std::string(full, '#') + std::string(width - full, '.');
}

} // namespace

int cmd_agent(const std::string& config, const std::string& pin_root, const std::string& run_dir,
              const std::string& state_dir, bool verbose)
{
    auto logger = spdlog::stderr_color_mt("peerlb");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    spdlog::set_default_logger(logger);
    libbpf_set_print(libbpf_to_log);
    if (verbose)
        spdlog::set_level(spdlog::level::debug);
    return run_agent(AgentOptions{config, pin_root, run_dir, state_dir});
}

int cmd_peers(const std::string& run_dir, bool as_json)
{
    json peers = control_request(run_dir, {{"cmd", "peers"}});
    if (as_json) {
        std::cout << peers.dump(2) << "\n";
        return 0;
    }
    std::cout << fmt::format("{:<16} {:<24} {:<8} {:>7} {:>9} {:>6}  {}\n", "id", "address",
                             "state", "load %", "routable", "age ms", "owns");
    for (const auto& p : peers)
        std::cout << fmt::format("{:<16} {:<24} {:<8} {:>7.2f} {:>9} {:>6}  {}\n",
                                 p["id"].get<std::string>(), p["address"].get<std::string>(),
                                 p["state"].get<std::string>(), p["load"].get<double>(),
                                 p["routable"].get<bool>() ? "yes" : "no",
                                 p["age_ms"].get<uint64_t>(),
                                 fmt::join(p["owns"].get<std::vector<std::string>>(), " "));
    return 0;
}

int cmd_set(const std::string& run_dir, const std::string& key, const std::string& value)
{
    json reply = control_request(run_dir, {{"cmd", "set"}, {"key", key}, {"value", value}});
    std::cout << fmt::format("{} = {}\n", reply["key"].get<std::string>(),
                             reply["value"].get<std::string>());
    return 0;
}

int cmd_drain(const std::string& run_dir, bool undo)
{
    json reply = control_request(run_dir, {{"cmd", "drain"}, {"undo", undo}});
    const bool changed = reply.value("changed", false);
    if (undo)
        std::cout << (changed ? "drain undone: this node gets its share of the buckets back\n"
                              : "not draining: nothing to undo\n");
    else
        std::cout << (changed ? "draining: the coordinator moves this node's buckets away; its open "
                                "connections finish here\n"
                              : "already draining\n");
    return 0;
}

std::string buckets_text(const json& t)
{
    std::string out;
    const uint64_t version = t.value("version", uint64_t(0));
    const uint64_t buckets = t.value("buckets", uint64_t(0));
    if (version)
        out += fmt::format("bucket table v{} by {}, coordinator {}\n", version, t["author"].get<std::string>(),
                           t["coordinator"].get<std::string>());
    else
        out += fmt::format("no bucket table yet (coordinator {}): shared packets are dropped\n",
                           t["coordinator"].get<std::string>());
    out += fmt::format("{} buckets, hash {}, delivery {}\n\n", buckets, t["hash"].get<std::string>(),
                       t["delivery"].get<std::string>());
    out += fmt::format("{:<32} {:>8} {:>8} {:>11}  {}\n", "node", "buckets", "share %", "2nd hop %", "");
    for (const auto& [id, n] : t["owned"].items()) {
        std::string notes;
        for (const char* list : {"draining", "unroutable"})
            for (const auto& d : t[list])
                if (d == id)
                    notes += notes.empty() ? list : std::string(", ") + list;
        const auto hop = t["second_hop_percent"].find(id);
        out += fmt::format("{:<32} {:>8} {:>8.1f} {:>11}  {}\n", id, n.get<uint64_t>(),
                           buckets ? 100.0 * double(n.get<uint64_t>()) / double(buckets) : 0.0,
                           hop != t["second_hop_percent"].end() ? fmt::format("{:.1f}", hop->get<double>())
                                                                  : std::string("-"),
                           notes);
    }
    return out;
}

std::string client_bucket_text(const json& c)
{
    std::string who = c["client"].get<std::string>();
    if (!c["port"].is_null())
        who += fmt::format(" port {}", c["port"].get<uint64_t>());
    std::vector<std::string> previous = c["previous"].get<std::vector<std::string>>();
    return fmt::format("client {}: bucket {}, owner {}{}\n", who, c["bucket"].get<uint64_t>(),
                       c["owner"].is_null() ? "none (no table yet)" : c["owner"].get<std::string>(),
                       previous.empty() ? std::string()
                                        : fmt::format(", previous owners {}", fmt::join(previous, " then ")));
}

int cmd_buckets(const std::string& run_dir, bool as_json, const std::string& client,
                std::optional<uint16_t> port)
{
    json request = {{"cmd", "buckets"}};
    if (!client.empty()) {
        request["client"] = client;
        if (port)
            request["port"] = *port;
    }
    json reply = control_request(run_dir, request);
    if (as_json)
        std::cout << reply.dump(2) << "\n";
    else
        std::cout << (client.empty() ? buckets_text(reply) : client_bucket_text(reply));
    return 0;
}

int cmd_top(const std::string& run_dir, unsigned interval_ms, unsigned frames)
{
    const bool live = frames == 0 && isatty(STDOUT_FILENO);
    for (unsigned frame = 0; frames == 0 || frame < frames; frame++) {
        if (frame)
            std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
        json peers = control_request(run_dir, {{"cmd", "peers"}});
        std::string screen;
        if (live)
            screen += "\x1b[H\x1b[2J"; // home, clear
        screen += fmt::format("peerlb top: {} nodes, every {} ms (Ctrl-C quits)\n\n",
                              peers.size(), interval_ms);
        screen += fmt::format("{:<16} {:<8} {:<22} {:>7} {:>8} {:>11}\n", "node", "state", "load",
                              "load %", "kept/s", "forwarded/s");
        for (const auto& p : peers) {
            const double load = p["load"].get<double>();
            std::string state = p["state"].get<std::string>();
            if (!p["routable"].get<bool>() && state != "dead")
                state += "!";
            screen += fmt::format("{:<16} {:<8} [{}] {:>7.1f} {:>8} {:>11}\n",
                                  p["id"].get<std::string>(), state, load_bar(load, 20), load,
                                  p["kept_per_s"].get<uint64_t>(),
                                  p["forwarded_per_s"].get<uint64_t>());
        }
        std::cout << screen << std::flush;
    }
    return 0;
}

std::optional<json> agent_status(const std::string& run_dir)
{
    try {
        return control_request(run_dir, {{"cmd", "status"}});
    } catch (const Error&) {
        return std::nullopt;
    }
}

} // namespace peerlb::cli
