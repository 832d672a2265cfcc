// The load meter (DESIGN.md section 3): the local load in basis points
// (0..10000) from one of five sources, smoothed. (The local health check of
// the service is in health.h.)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../dataplane/maps.h"
#include "config.h"

namespace peerlb {

// One raw reading of a source. read() returns the load in basis points
// (0..10000, clamped) or throws Error with what failed (the agent logs it,
// keeps its last value and marks itself unroutable after repeated failures).
class LoadSourceReader {
public:
    virtual ~LoadSourceReader() = default;
    virtual uint32_t read_bp(uint64_t now_ns) = 0;
    virtual std::string describe() const = 0;
};

// The reader the configuration asks for:
//   inflight:    connections established on the services (address and port
//                in lb_services), counted by the data plane's socket state
//                tracepoint (`maps`, required), over `capacity`; checked
//                against the socket table every second (InflightSource);
//   connections: established TCP sockets (IPv4 and IPv6, via NETLINK_SOCK_DIAG
//                inet_diag dumps, filtered in the kernel or in userspace) whose
//                local port is one of the [[service]] ports, over `capacity`;
//   cpu:         busy share of all CPUs from /proc/stat between two reads
//                (the first read returns 0);
//   cgroup:      CPU use of a cgroup v2 directory (cpu.stat usage_usec between
//                two reads) over its quota (cpu.max; "max" means all CPUs);
//   file:        a number 0..100 (decimal point allowed) read from a file;
//   exec:        a command run by /bin/sh that prints a number 0..100,
//                killed after a timeout (1 s).
std::unique_ptr<LoadSourceReader> make_load_source(const Config& cfg, const Maps* maps = nullptr);

// load.source = "inflight": the data plane's count of connections on the
// services (with the agent's correction) over `capacity`, 0..10000, as the
// XDP decision computes it. Throws SystemError when the map cannot be read.
uint32_t inflight_load_bp(const Maps& maps, uint32_t capacity);
// The same past 100 % too, up to `ceiling_bp`.
uint32_t inflight_load_exact_bp(const Maps& maps, uint32_t capacity, uint32_t ceiling_bp);

// The correction of the tracepoint's count (lb_inflight) from one walk of
// the socket table: `changes_before` / `changes_after` are the tracepoint's
// change counter read around the walk, `counted` its count, `sockets` what
// the walk found, `correction` the one in force. Returns the new
// correction, or nullopt to keep it. Only a walk during which nothing was
// counted is compared (with connections coming and going the socket table
// is never one instant), and only a difference seen on two such walks in a
// row is corrected (a socket between its traced change and its new state).
class InflightReconciler {
public:
    std::optional<int64_t> reconcile(uint64_t changes_before, uint64_t changes_after,
                                     int64_t counted, int64_t sockets, int64_t correction);

private:
    int suspicious_ = 0; // walks in a row that found the count off
};

// Exponentially weighted moving average over time: with time constant tau,
// a step reaches 63 % after tau. tau = 0: the raw value.
class LoadSmoother {
public:
    explicit LoadSmoother(uint32_t tau_ms) : tau_ns_(uint64_t(tau_ms) * 1'000'000) {}
    uint32_t update(uint32_t raw_bp, uint64_t now_ns);
    uint32_t value() const { return uint32_t(value_ + 0.5); }
    void set_tau_ms(uint32_t tau_ms) { tau_ns_ = uint64_t(tau_ms) * 1'000'000; }

private:
    uint64_t tau_ns_;
    double value_ = 0;
    uint64_t last_ns_ = 0;
    bool primed_ = false;
};

} // namespace peerlb
