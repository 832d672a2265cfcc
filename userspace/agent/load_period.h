// How often the load meter reads the configured source: update_ms, but at
// least 100 ms for sampled sources (a sock_diag walk, /proc, a cgroup) and
// 1 s for a command. The one place these rules live: the meter follows
// them, and the configuration checks against them (a header of its own, so
// the config parser's fuzz target needs none of the meter).
#pragma once

#include <algorithm>
#include <cstdint>

#include "config.h"

namespace peerlb {

inline uint32_t load_period_ms(const Config& cfg)
{
    // Costly sources are not read at update_ms: a process, a /proc read or
    // a sock_diag dump (~3 ms of kernel time for its hash walk) every 10 ms
    // would be load of its own.
    constexpr uint32_t kExecPeriodMs = 1000;
    constexpr uint32_t kSampledSourcePeriodMs = 100;
    if (cfg.source == LoadSource::exec)
        return std::max(cfg.update_ms, kExecPeriodMs);
    if (cfg.source != LoadSource::file)
        return std::max(cfg.update_ms, kSampledSourcePeriodMs);
    return cfg.update_ms;
}

} // namespace peerlb
