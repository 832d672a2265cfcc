#include "load_meter.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "load.h"

namespace peerlb {

bool same_load_source(const Config& a, const Config& b)
{
    return a.source == b.source && a.capacity == b.capacity && a.load_file == b.load_file &&
           a.load_command == b.load_command && a.cgroup == b.cgroup;
}

LoadMeter::LoadMeter(const Config& cfg, Publish publish, const Maps* maps)
    : publish_(std::move(publish)), maps_(maps), next_(cfg)
{
}

void LoadMeter::start()
{
    stop_ = false;
    thread_ = std::thread([this] { loop(); });
}

void LoadMeter::stop()
{
    stop_ = true;
    if (thread_.joinable())
        thread_.join();
}

void LoadMeter::configure(const Config& cfg)
{
    std::lock_guard lock(mu_);
    next_ = cfg;
}

void LoadMeter::loop()
{
    std::unique_ptr<LoadSourceReader> source;
    Config built_from; // the settings `source` was made with
    LoadSmoother smoother(0);
    uint32_t period_ms = 10;
    bool failing = false;
    while (!stop_) {
        {
            std::lock_guard lock(mu_);
            if (next_) {
                // Rebuilt only when its own settings change: a sampling
                // source starts over from zero.
                if (!source || !same_load_source(built_from, *next_)) {
                    source = make_load_source(*next_, maps_);
                    built_from = *next_;
                }
                smoother.set_tau_ms(next_->smoothing_ms);
                period_ms = load_period_ms(*next_);
                next_.reset();
            }
        }
        // CLOCK_MONOTONIC: the data plane's clock (bpf_ktime_get_ns).
        const uint64_t now = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
        try {
            load_bp_ = smoother.update(source->read_bp(now), now);
            if (failing)
                spdlog::info("load source {} reads again", source->describe());
            failing = false;
            measured_ = true;
            publish_(load_bp_, now);
        } catch (const std::exception& e) {
            if (!failing)
                spdlog::error("load source {}: {}", source->describe(), e.what());
            failing = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(period_ms));
    }
}

} // namespace peerlb
