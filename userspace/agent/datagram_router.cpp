#include "datagram_router.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace peerlb {
namespace {
constexpr uint64_t kMs = 1'000'000;
}

DatagramRouter::DatagramRouter(std::string self_id, std::span<const uint8_t> key,
                               uint64_t replay_window_ms, uint64_t log_period_ns, Handlers handlers)
    : self_id_(std::move(self_id)), key_(key.begin(), key.end()),
      lanes_{Lane<Heartbeat>{decode_heartbeat, ReplayGuard(replay_window_ms), std::move(handlers.heartbeat)},
             Lane<FlowAnnouncement>{decode_announcement, ReplayGuard(replay_window_ms),
                                    std::move(handlers.announcement)},
             Lane<PinAnnouncement>{decode_pin, ReplayGuard(replay_window_ms), std::move(handlers.pin)},
             Lane<TableChunk>{decode_table_chunk, ReplayGuard(replay_window_ms), std::move(handlers.table)}},
      skew_log_(log_period_ns)
{
}

DropReason DatagramRouter::route(std::span<const uint8_t> datagram, bool cut, uint64_t now_mono_ns,
                                 uint64_t now_unix_ms)
{
    DropReason reason;
    if (cut)
        reason = DropReason::truncated; // did not fit: never decoded from a part
    else if (datagram_kind(datagram) == DatagramKind::table)
        reason = std::get<Lane<TableChunk>>(lanes_).handler.take
                     ? dispatch(std::get<Lane<TableChunk>>(lanes_), datagram, now_mono_ns, now_unix_ms)
                     : DropReason::bad_magic; // a node without shared addresses has no use for tables
    else if (datagram_kind(datagram) == DatagramKind::pin)
        reason = dispatch(std::get<Lane<PinAnnouncement>>(lanes_), datagram, now_mono_ns, now_unix_ms);
    else if (datagram_kind(datagram) == DatagramKind::announcement)
        reason = dispatch(std::get<Lane<FlowAnnouncement>>(lanes_), datagram, now_mono_ns, now_unix_ms);
    else // an unknown magic too: the heartbeat decoder names what is wrong
        reason = dispatch(std::get<Lane<Heartbeat>>(lanes_), datagram, now_mono_ns, now_unix_ms);
    if (reason == DropReason::none)
        return reason;
    drops_[size_t(reason)]++;
    spdlog::debug("datagram dropped: {}", drop_reason_name(reason));
    return reason;
}

void DatagramRouter::set_replay_window(uint64_t window_ms)
{
    std::apply([&](auto&... lane) { (lane.guard.set_window(window_ms), ...); }, lanes_);
}

template <class Message>
DropReason DatagramRouter::dispatch(Lane<Message>& lane, std::span<const uint8_t> datagram,
                                    uint64_t now_mono_ns, uint64_t now_unix_ms)
{
    const Decoded<Message> d = lane.decode(datagram, key_);
    const DropReason verdict = admit(d.reason, d.message, lane.guard, now_mono_ns, now_unix_ms);
    if (d.reason == DropReason::none && lane.handler.judged)
        lane.handler.judged(d.message, verdict);
    if (verdict == DropReason::none)
        lane.handler.take(d.message);
    return verdict;
}

// What every kind of authenticated datagram passes before it is taken: not
// our own id, and not a replay (each kind has its guard).
template <class Message>
DropReason DatagramRouter::admit(DropReason decoded, const Message& m, ReplayGuard& guard,
                                 uint64_t now_mono_ns, uint64_t now_unix_ms)
{
    if (decoded != DropReason::none)
        return decoded;
    if (m.node_id == self_id_)
        return DropReason::own_id;
    const DropReason verdict = guard.check(m, now_mono_ns / kMs, now_unix_ms);
    // A known incarnation is taken whatever its send time: only a new one
    // (a node joining or restarting) is refused for its clock, and the
    // operator must hear of it.
    uint64_t unlogged = 0;
    if (verdict == DropReason::stale && skew_log_.record("clock skew", now_mono_ns, &unlogged)) {
        const int64_t skew = guard.last_stale_skew_ms();
        spdlog::error("first datagram of {} incarnation {} refused: sent {} ms {} this node's clock, "
                      "outside replay_window_ms {}; not taken until the two clocks agree (check "
                      "NTP on both){}",
                      m.node_id, m.incarnation, skew < 0 ? -uint64_t(skew) : uint64_t(skew),
                      skew < 0 ? "behind" : "ahead of", guard.window_ms(),
                      unlogged ? fmt::format(" ({} more refused for skew, not logged)", unlogged) : "");
    }
    return verdict;
}

} // namespace peerlb
