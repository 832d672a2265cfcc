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
