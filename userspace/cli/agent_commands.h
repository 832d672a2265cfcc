// The CLI commands that talk to the agent (or are the agent).
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace peerlb::cli {

int cmd_agent(const std::string& config, const std::string& pin_root, const std::string& run_dir,
              const std::string& state_dir, bool verbose);
int cmd_peers(const std::string& run_dir, bool json);
int cmd_set(const std::string& run_dir, const std::string& key, const std::string& value);
// `peerlb drain [--undo]` (DESIGN.md sections 5b, 6).
int cmd_drain(const std::string& run_dir, bool undo);
// `peerlb buckets [--json] [--client ADDR [--port P]]`.
int cmd_buckets(const std::string& run_dir, bool json, const std::string& client,
                std::optional<uint16_t> port);
// The text form of `peerlb buckets`' answers (JSON as the agent gives it).
std::string buckets_text(const nlohmann::json& table);
std::string client_bucket_text(const nlohmann::json& client);
// A live view, redrawn every interval; `frames` > 0 stops after that many
// (without clearing the screen: for scripts and tests).
int cmd_top(const std::string& run_dir, unsigned interval_ms, unsigned frames);

// The agent's status, or nullopt when no agent answers under run_dir.
std::optional<nlohmann::json> agent_status(const std::string& run_dir);

} // namespace peerlb::cli
