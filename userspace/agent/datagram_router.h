// Every datagram the agent receives, whatever its kind: decoded, admitted
// (not our own id, not a replay: each kind has its guard) and handed to its
// handler, or dropped and counted by reason.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "event_errors.h"
#include "heartbeat.h"

namespace peerlb {

class DatagramRouter {
public:
    template <class Message>
    struct Handler {
        std::function<void(const Message&)> take;
        // Optional: every authenticated one, with its admission verdict
        // (none: about to be taken), before it is taken.
        std::function<void(const Message&, DropReason)> judged = {};
    };
    struct Handlers {
        Handler<Heartbeat> heartbeat;
        Handler<FlowAnnouncement> announcement;
        Handler<PinAnnouncement> pin;
        // Optional: without it, table chunks are dropped (counted as bad_magic).
        Handler<TableChunk> table = {};
    };

    DatagramRouter(std::string self_id, std::span<const uint8_t> key, uint64_t replay_window_ms,
                   uint64_t log_period_ns, Handlers handlers);

    // `cut`: the datagram did not fit in the receive buffer. Returns the
    // drop reason, none when a handler took it. Handlers may throw: the
    // datagram is then neither taken nor counted as dropped.
    DropReason route(std::span<const uint8_t> datagram, bool cut, uint64_t now_mono_ns,
                     uint64_t now_unix_ms);
    void set_replay_window(uint64_t window_ms);
    // Read from any thread.
    uint64_t dropped(DropReason r) const { return drops_[size_t(r)].load(); }

private:
    template <class Message>
    struct Lane {
        Decoded<Message> (*decode)(std::span<const uint8_t>, std::span<const uint8_t>);
        ReplayGuard guard;
        Handler<Message> handler;
    };
    template <class Message>
    DropReason dispatch(Lane<Message>& lane, std::span<const uint8_t> datagram, uint64_t now_mono_ns,
                        uint64_t now_unix_ms);
    template <class Message>
    DropReason admit(DropReason decoded, const Message& m, ReplayGuard& guard, uint64_t now_mono_ns,
                     uint64_t now_unix_ms);

    std::string self_id_;
    std::vector<uint8_t> key_;
    std::tuple<Lane<Heartbeat>, Lane<FlowAnnouncement>, Lane<PinAnnouncement>, Lane<TableChunk>> lanes_;
    EventErrors skew_log_;
    std::array<std::atomic<uint64_t>, size_t(DropReason::bad_id) + 1> drops_{};
};

} // namespace peerlb
