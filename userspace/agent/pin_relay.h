// Stateful URI rules' pins, the same on every node: this node's data plane
// pins a client (an event on its ring buffer) and every peer is told; a
// peer's announcement is installed in the pin map.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "../dataplane/maps.h"
#include "heartbeat.h"

struct ring_buffer;

namespace peerlb {

// What this node announces for one of its data plane's pin events, but the
// sender's stamp (id, incarnation, sequence, time); `serving` is the node id
// of the event's slot.
PinAnnouncement pin_announcement(const lb_pin_event& ev, std::string serving);
// The pin a peer's announcement installs here, the serving node in `slot`.
lb_pin pin_of(const PinAnnouncement& a, uint32_t slot, uint64_t now_ns);
lb_pin_key pin_key_of(const PinAnnouncement& a);

class PinRelay {
public:
    // Node ids and this node's slots, either way; nullopt: not known here.
    struct Nodes {
        std::function<std::optional<std::string>(uint32_t slot)> id_of_slot;
        std::function<std::optional<uint32_t>(const std::string& id)> slot_of_id;
    };
    // Stamps, signs and sends to every peer; returns the failed sends.
    using Send = std::function<int(PinAnnouncement&)>;
    // Runs one event's handling (an exception ends that event only).
    using Guard = std::function<void(const char* what, const std::function<void()>& handle)>;

    PinRelay(Maps& maps, Nodes nodes, Send send);
    ~PinRelay();
    PinRelay(const PinRelay&) = delete;
    PinRelay& operator=(const PinRelay&) = delete;

    // Reads the data plane's pin events from now on (http services only).
    void listen(Guard guard);
    int poll_fd() const; // -1 when not listening
    void consume();      // the events waiting, each announced

    void announce(const lb_pin_event& ev);
    void take(const PinAnnouncement& a, uint64_t now_ns);

private:
    Maps& maps_;
    Nodes nodes_;
    Send send_;
    Guard guard_;
    ring_buffer* events_ = nullptr;
};

} // namespace peerlb
