#include "pin_relay.h"

#include <bpf/libbpf.h>

#include <spdlog/spdlog.h>

#include "../dataplane/error.h"

namespace peerlb {

PinAnnouncement pin_announcement(const lb_pin_event& ev, std::string serving)
{
    PinAnnouncement a;
    a.pinned = ev.op == LB_PIN_SET;
    a.client.family = ev.key.family;
    a.client.addr = ev.key.client;
    a.serving = std::move(serving);
    a.rule = static_cast<uint8_t>(ev.rule);
    a.ttl_ms = ev.timeout_s * 1000;
    return a;
}

lb_pin_key pin_key_of(const PinAnnouncement& a)
{
    lb_pin_key key{};
    key.client = a.client.addr;
    key.family = a.client.family;
    return key;
}

lb_pin pin_of(const PinAnnouncement& a, uint32_t slot, uint64_t now_ns)
{
    lb_pin pin{};
    pin.node = slot;
    pin.rule = a.rule;
    pin.expires_ns = now_ns + uint64_t(a.ttl_ms) * 1'000'000;
    return pin;
}

PinRelay::PinRelay(Maps& maps, Nodes nodes, Send send)
    : maps_(maps), nodes_(std::move(nodes)), send_(std::move(send))
{
}

PinRelay::~PinRelay() { ring_buffer__free(events_); }

void PinRelay::listen(Guard guard)
{
    guard_ = std::move(guard);
    events_ = ring_buffer__new(
        maps_.fds().pin_events.get(),
        [](void* ctx, void* data, size_t size) {
            // Guarded here: no exception may unwind through libbpf.
            auto* self = static_cast<PinRelay*>(ctx);
            if (size >= sizeof(lb_pin_event))
                self->guard_("pin event", [&] { self->announce(*static_cast<const lb_pin_event*>(data)); });
            return 0;
        },
        this, nullptr);
    if (!events_)
        throw SystemError("open the pin event ring buffer", errno);
}

int PinRelay::poll_fd() const { return events_ ? ring_buffer__epoll_fd(events_) : -1; }

void PinRelay::consume() { ring_buffer__consume(events_); }

// This node's data plane pinned a client (or ended its pin): every peer
// installs the same pin, naming the serving node by id.
void PinRelay::announce(const lb_pin_event& ev)
{
    auto serving = nodes_.id_of_slot(ev.node);
    if (!serving) {
        spdlog::warn("pin of a client to slot {}: no known node there, not announced", ev.node);
        return;
    }
    PinAnnouncement a = pin_announcement(ev, *serving);
    if (int failed = send_(a))
        spdlog::warn("pin announcement: {} send(s) failed", failed);
    spdlog::debug("{} client {} to {} (rule {})", a.pinned ? "pinned" : "unpinned",
                  format_ip(a.client), a.serving, a.rule);
}

void PinRelay::take(const PinAnnouncement& a, uint64_t now_ns)
{
    if (!a.pinned) {
        maps_.delete_pin(pin_key_of(a));
        return;
    }
    auto slot = nodes_.slot_of_id(a.serving);
    if (!slot) {
        spdlog::warn("{} pinned {} to {}, a node not known here: ignored", a.node_id,
                     format_ip(a.client), a.serving);
        return;
    }
    maps_.set_pin(pin_key_of(a), pin_of(a, *slot, now_ns));
}

} // namespace peerlb
