// `peerlb agent`: one process per node, in the foreground (DESIGN.md 3).
// It attaches the data plane (or keeps the one attached), measures the local
// load, exchanges heartbeats, keeps the maps true, and answers the CLI.
#pragma once

#include <string>

namespace peerlb {

struct AgentOptions {
    std::string config_path;
    std::string pin_root;
    std::string run_dir;
    std::string state_dir; // overrides [node] state_dir when not empty
};

// Runs until SIGINT or SIGTERM; returns the exit code. An invalid
// configuration throws Error before anything on the system changes.
int run_agent(const AgentOptions& opts);

} // namespace peerlb
