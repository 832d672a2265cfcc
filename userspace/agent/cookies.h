// Cluster SYN cookie keys of the "http" mode (DESIGN.md section 4): every
// agent derives the key of an epoch from the cluster key, so every node
// makes and checks the same cookies without sending keys around; the keys
// rotate with the wall clock (epoch = unix seconds / cookie_epoch_s).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "../dataplane/maps.h"

namespace peerlb {

// HMAC-SHA256(cluster key, "peerlb cookie key" | epoch as u64 big-endian),
// its first 16 bytes as SipHash's k0 and k1 (little-endian).
lb_cookie_key derive_cookie_key(std::span<const uint8_t> cluster_key, uint64_t epoch);

// What the data plane holds for `epoch`: slot (e % 4) of e - 1, e and e + 1
// valid (nodes whose clocks are up to one epoch apart agree), e + 2 cleared
// (a cookie older than two epochs is refused).
struct CookieSlots {
    lb_cookie_key keys[LB_COOKIE_SLOTS];
    uint32_t current_slot;
};
CookieSlots cookie_slots(std::span<const uint8_t> cluster_key, uint64_t epoch);

// When the key of `key_epoch` stops, on the data plane's clock
// (CLOCK_MONOTONIC ns): at the start of epoch key_epoch + 2, when the agent
// would clear it, computed from the wall clock now (unix_s) and the
// monotonic clock now (mono_ns). A second early at most (unix_s is whole).
uint64_t cookie_expires_ns(uint64_t key_epoch, uint32_t epoch_s, uint64_t unix_s, uint64_t mono_ns);

// Writes the keys and the current slot when the epoch changes.
class CookieRotation {
public:
    CookieRotation(Maps& maps, std::vector<uint8_t> cluster_key, uint32_t epoch_s)
        : maps_(maps), key_(std::move(cluster_key)), epoch_s_(epoch_s)
    {
    }
    // Returns true when it wrote a new epoch's keys.
    bool update(uint64_t unix_s);

private:
    Maps& maps_;
    std::vector<uint8_t> key_;
    uint32_t epoch_s_;
    std::optional<uint64_t> epoch_;
};

} // namespace peerlb
