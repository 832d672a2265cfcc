// Announcing the shared addresses by BGP through the node's BIRD 2 daemon
// (DESIGN.md section 5b, announce = "bird"). The node's BIRD configuration
// holds the routes in one protocol (shared.bird_protocol), disabled at
// start; the agent enables it on BIRD's control socket to announce and
// disables it to withdraw. BIRD keeps the BGP sessions; a node that is gone
// altogether is withdrawn by the session or its hold timer.
//
// Control socket replies: lines "CODE-text" (more follow) or "CODE text"
// (last); 0008/0009 already disabled/disabled, 0010/0011 already
// enabled/enabled, 8xxx/9xxx errors.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace peerlb {

struct BirdReply {
    int code = 0;     // of the line that told the outcome (0 when none did)
    std::string text; // that line's text
    bool error = false;
};

// The reply to one command once `received` holds all of it (its last line
// read), else nullopt.
std::optional<BirdReply> parse_bird_reply(std::string_view received);

class BirdControl {
public:
    enum class Outcome { changed, unchanged, failed };
    struct Result {
        Outcome outcome = Outcome::failed;
        std::string message; // BIRD's words, or what went wrong
    };

    BirdControl(std::string socket_path, std::string protocol,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(500));

    // Enables (announce) or disables (withdraw) the protocol: one
    // connection, one command, at most `timeout` in all.
    Result set_announced(bool announce) const;

    const std::string& socket_path() const { return socket_path_; }
    const std::string& protocol() const { return protocol_; }

private:
    std::string socket_path_;
    std::string protocol_;
    std::chrono::milliseconds timeout_;
};

// When to tell BIRD: at every change of what the agent wants, and again
// every `reassert` (BIRD restarted reads its configuration: the protocol is
// disabled again) and after a failure, every `retry`.
class BirdAnnouncer {
public:
    explicit BirdAnnouncer(BirdControl control,
                           std::chrono::milliseconds reassert = std::chrono::seconds(5),
                           std::chrono::milliseconds retry = std::chrono::seconds(1));

    // Called from the agent's tick with what it wants now; returns the
    // result when it told BIRD this time.
    std::optional<BirdControl::Result> update(bool announce, uint64_t now_ms);

    // What BIRD confirmed last (nullopt: never confirmed, or the last try failed).
    std::optional<bool> announced() const { return confirmed_; }
    const BirdControl& control() const { return control_; }

private:
    BirdControl control_;
    uint64_t reassert_ms_, retry_ms_;
    std::optional<bool> wanted_;
    std::optional<bool> confirmed_;
    uint64_t last_try_ms_ = 0;
};

// A BirdAnnouncer on a thread of its own: a BIRD that answers slowly, or
// not at all, never holds up the agent's loop (heartbeats).
class BirdWorker {
public:
    explicit BirdWorker(BirdAnnouncer announcer);
    ~BirdWorker();
    BirdWorker(const BirdWorker&) = delete;
    BirdWorker& operator=(const BirdWorker&) = delete;

    void want(bool announce); // cheap: the thread tells BIRD
    // What BIRD confirmed last (nullopt: not yet, or the last try failed),
    // and the last failure's message ("" after a success).
    std::optional<bool> announced() const;
    std::string last_error() const;
    // Before the agent exits: the thread ends, then the withdrawal is told
    // here, waiting for BIRD's answer (at most the control's timeout).
    BirdControl::Result withdraw_and_stop();

private:
    void loop();
    void record(const BirdControl::Result& r, bool announce);

    BirdAnnouncer announcer_; // the thread's, then withdraw_and_stop's
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool want_ = false, stop_ = false;
    std::optional<bool> confirmed_;
    std::string error_;
    std::thread thread_;
};

} // namespace peerlb
