#include "cookies.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstring>
#include <ctime>
#include <string_view>

#include "../dataplane/error.h"

namespace peerlb {

lb_cookie_key derive_cookie_key(std::span<const uint8_t> cluster_key, uint64_t epoch)
{
    constexpr std::string_view label = "peerlb cookie key";
    std::vector<uint8_t> message(label.begin(), label.end());
    for (int shift = 56; shift >= 0; shift -= 8)
        message.push_back(static_cast<uint8_t>(epoch >> shift));
    std::array<uint8_t, 32> digest{};
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), cluster_key.data(), static_cast<int>(cluster_key.size()),
              message.data(), message.size(), digest.data(), &len))
        throw Error("cookie key: HMAC-SHA256 failed");
    lb_cookie_key k{};
    for (int i = 7; i >= 0; i--) {
        k.k0 = k.k0 << 8 | digest[i];
        k.k1 = k.k1 << 8 | digest[8 + i];
    }
    k.epoch = epoch;
    k.valid = 1;
    return k;
}

CookieSlots cookie_slots(std::span<const uint8_t> cluster_key, uint64_t epoch)
{
    CookieSlots out{};
    for (uint64_t e : {epoch - 1, epoch, epoch + 1})
        out.keys[e % LB_COOKIE_SLOTS] = derive_cookie_key(cluster_key, e);
    out.keys[(epoch + 2) % LB_COOKIE_SLOTS] = lb_cookie_key{}; // valid = 0
    out.current_slot = static_cast<uint32_t>(epoch % LB_COOKIE_SLOTS);
    return out;
}

uint64_t cookie_expires_ns(uint64_t key_epoch, uint32_t epoch_s, uint64_t unix_s, uint64_t mono_ns)
{
    const uint64_t end_unix_s = (key_epoch + 2) * epoch_s;
    return end_unix_s > unix_s ? mono_ns + (end_unix_s - unix_s) * 1'000'000'000ull : mono_ns;
}

bool CookieRotation::update(uint64_t unix_s)
{
    const uint64_t epoch = unix_s / epoch_s_;
    if (epoch_ == epoch)
        return false;
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const uint64_t mono_ns = uint64_t(now.tv_sec) * 1'000'000'000ull + uint64_t(now.tv_nsec);
    CookieSlots slots = cookie_slots(key_, epoch);
    for (auto& k : slots.keys)
        if (k.valid)
            k.expires_ns = cookie_expires_ns(k.epoch, epoch_s_, unix_s, mono_ns);
    // Keys first: the slot the data plane signs with is valid before it
    // points there.
    for (uint32_t s = 0; s < LB_COOKIE_SLOTS; s++)
        maps_.set_cookie_key(s, slots.keys[s]);
    lb_config cfg = maps_.config();
    cfg.cookie_slot = slots.current_slot;
    maps_.set_config(cfg);
    epoch_ = epoch;
    return true;
}

} // namespace peerlb
