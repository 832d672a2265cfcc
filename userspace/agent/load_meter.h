// The load meter's thread (DESIGN.md section 3): reads the configured
// source at its period, smooths it, and hands each reading on.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "../dataplane/maps.h"
#include "config.h"
#include "load_period.h"

namespace peerlb {

// Whether two settings make the same source: a sampling source is made
// again, and starts over from zero, only when they do not.
bool same_load_source(const Config& a, const Config& b);

class LoadMeter {
public:
    // Each reading, on the meter's thread (now_ns: CLOCK_MONOTONIC).
    using Publish = std::function<void(uint32_t load_bp, uint64_t now_ns)>;

    // `maps`: the data plane's, for load.source = "inflight" (it must
    // outlive the meter).
    LoadMeter(const Config& cfg, Publish publish, const Maps* maps = nullptr);
    ~LoadMeter() { stop(); }
    LoadMeter(const LoadMeter&) = delete;
    LoadMeter& operator=(const LoadMeter&) = delete;

    void start();
    void stop(); // joins the thread
    // Any thread: taken at the next reading.
    void configure(const Config& cfg);

    uint32_t load_bp() const { return load_bp_; }
    // A reading succeeded at least once.
    bool measured() const { return measured_; }

private:
    void loop();

    Publish publish_;
    const Maps* maps_;
    std::mutex mu_; // guards next_
    std::optional<Config> next_;
    std::atomic<uint32_t> load_bp_{0};
    std::atomic<bool> measured_{false};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

} // namespace peerlb
