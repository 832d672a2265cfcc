// Two nodes with one id (see duplicate_ids.h).
#include "duplicate_ids.h"

#include <fmt/format.h>

namespace peerlb {

std::optional<std::string> duplicate_id_evidence(const Heartbeat& hb, DropReason verdict,
                                                 const Heartbeat* last, const NodeIdentity& self,
                                                 uint64_t now_unix_ms, uint64_t window_ms)
{
    if (verdict == DropReason::stale)
        return std::nullopt;
    const bool is_self = hb.node_id == self.id;
    if (!is_self && !last)
        return std::nullopt; // a peer heard for the first time
    const IpAddress& known_address = is_self ? self.address : last->node_address;
    const uint64_t known_incarnation = is_self ? self.incarnation : last->incarnation;

    const auto describe = [&] {
        if (is_self)
            return fmt::format("a heartbeat with this node's id {} comes from {} (incarnation {}); "
                               "this node is {} (incarnation {})",
                               hb.node_id, format_ip(hb.node_address), hb.incarnation,
                               format_ip(known_address), known_incarnation);
        return fmt::format("heartbeats with id {} come from {} (incarnation {}) and from {} "
                           "(incarnation {})",
                           hb.node_id, format_ip(hb.node_address), hb.incarnation,
                           format_ip(known_address), known_incarnation);
    };

    if (hb.incarnation > known_incarnation)
        return is_self ? std::optional(describe()) : std::nullopt; // a peer's restart, maybe moved
    if (hb.node_address == known_address)
        return std::nullopt; // self looped back, or a past life of the node
    if (hb.incarnation < known_incarnation) {
        const uint64_t age = hb.sent_unix_ms > now_unix_ms ? hb.sent_unix_ms - now_unix_ms
                                                           : now_unix_ms - hb.sent_unix_ms;
        if (age > window_ms)
            return std::nullopt;
    }
    return describe();
}

bool DuplicateIds::record(const std::string& id, uint64_t now_ns, uint64_t* unlogged)
{
    total_++;
    if (!ids_.count(id) && ids_.size() < kMaxIds)
        ids_.insert(id);
    return log_.record(ids_.count(id) ? id : kOtherIds, now_ns, unlogged);
}

} // namespace peerlb
