// Failures of the agent's event handling (a datagram, a timer tick, a map
// write, an address add): each ends its own event only, and is counted and
// logged here, rate-limited per kind so that a flood cannot flood the log.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>

namespace peerlb {

// Runs handle(); what it throws comes back as the message, never further.
template <class Handle>
std::optional<std::string> run_guarded(Handle&& handle)
{
    try {
        handle();
        return std::nullopt;
    } catch (const std::exception& e) {
        return std::string(e.what());
    } catch (...) {
        return std::string("unknown exception");
    }
}

class EventErrors {
public:
    explicit EventErrors(uint64_t log_period_ns) : log_period_ns_(log_period_ns) {}

    // Counts a failure of `what` (a fixed kind name) at now_ns. True when it
    // is to be logged: the first one, or the first after log_period; then
    // *unlogged is how many failed since the last one logged.
    bool record(const std::string& what, uint64_t now_ns, uint64_t* unlogged)
    {
        Kind& k = kinds_[what];
        k.count++;
        if (k.logged && now_ns - k.logged_ns < log_period_ns_) {
            k.unlogged++;
            return false;
        }
        *unlogged = k.unlogged;
        k.logged = true;
        k.logged_ns = now_ns;
        k.unlogged = 0;
        return true;
    }

    std::map<std::string, uint64_t> counts() const
    {
        std::map<std::string, uint64_t> out;
        for (const auto& [what, k] : kinds_)
            out[what] = k.count;
        return out;
    }

private:
    struct Kind {
        uint64_t count = 0;
        bool logged = false;
        uint64_t logged_ns = 0;
        uint64_t unlogged = 0; // since logged_ns
    };
    uint64_t log_period_ns_;
    std::map<std::string, Kind> kinds_; // by kind: bounded by the kinds the agent names
};

} // namespace peerlb
