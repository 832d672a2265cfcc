// The agent's control socket (<run-dir>/agent.sock, mode 0600): one JSON
// request per connection, answered by one JSON line. `peerlb peers`, `set`,
// `status` and `top` are its clients.
#pragma once

#include <poll.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dataplane/fd.h"

namespace peerlb {

std::string control_socket_path(const std::string& run_dir);

// Served on the agent's event loop without ever blocking it: each client's
// bytes are read as they come and its answer written as the socket takes
// it, between the loop's other duties, so a client that trickles its
// request (or reads its answer slowly) delays no heartbeat. Each client gets
// a deadline in all and a place among at most kMaxClients; while all are
// taken, new clients wait in the listen backlog.
class ControlServer {
public:
    using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kMaxClients = 8;

    // Creates run_dir if needed; refuses (Error) when another agent answers
    // on the socket; replaces a stale socket file left by a dead agent.
    explicit ControlServer(const std::string& run_dir);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Appends what the loop polls for: the listening socket while there is
    // room, each client for reading its request or writing its answer.
    void add_poll_fds(std::vector<pollfd>& fds) const;
    // Never blocks: accepts the clients waiting (up to kMaxClients), reads
    // what they sent, answers each complete request (the handler runs here;
    // a bad request gets {"error": "..."}), writes what the sockets take,
    // and ends the clients done or past their deadline (told why when the
    // socket takes it).
    void serve(const Handler& handler);
    // The earliest client deadline, when serve() must run even if nothing
    // is ready; nullopt without clients.
    std::optional<Clock::time_point> next_deadline() const;
    size_t clients() const { return clients_.size(); }

private:
    struct Client {
        Fd fd;
        Clock::time_point deadline;
        std::string in;       // the request read so far
        std::string out;      // the answer, once the request is complete
        size_t written = 0;   // of `out`
    };
    // Reads or writes what it can; false once the client is done with.
    bool step(Client& c, const Handler& handler);

    std::string path_;
    std::string created_dir_; // the run directory, when this server made it (removed if empty)
    Fd listen_;
    std::vector<Client> clients_;
};

// Sends one request to the agent under run_dir and returns its answer;
// throws Error when no agent runs there or it answers with an error.
nlohmann::json control_request(const std::string& run_dir, const nlohmann::json& request);

} // namespace peerlb
