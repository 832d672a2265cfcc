// The agent's control socket (<run-dir>/agent.sock, mode 0600): one JSON
// request per connection, answered by one JSON line. `peerlb peers`, `set`,
// `status` and `top` are its clients.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "../dataplane/fd.h"

namespace peerlb {

std::string control_socket_path(const std::string& run_dir);

class ControlServer {
public:
    using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

    // Creates run_dir if needed; refuses (Error) when another agent answers
    // on the socket; replaces a stale socket file left by a dead agent.
    explicit ControlServer(const std::string& run_dir);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    int fd() const { return listen_.get(); }
    // Accepts one waiting client, reads its request (bounded in size and
    // time), answers it. A bad request gets {"error": "..."}.
    void serve_one(const Handler& handler);

private:
    std::string path_;
    std::string created_dir_; // the run directory, when this server made it (removed if empty)
    Fd listen_;
};

// Sends one request to the agent under run_dir and returns its answer;
// throws Error when no agent runs there or it answers with an error.
nlohmann::json control_request(const std::string& run_dir, const nlohmann::json& request);

} // namespace peerlb
