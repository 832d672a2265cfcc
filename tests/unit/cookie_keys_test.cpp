// The agent's cookie keys (userspace/agent/cookies.*): the same on every
// node for an epoch, different across epochs and cluster keys, and the
// slots the data plane holds around the current epoch.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "userspace/agent/cookies.h"

using namespace peerlb;

namespace {

const std::vector<uint8_t> kClusterKey(32, 0x42);

bool same_key(const lb_cookie_key& a, const lb_cookie_key& b)
{
    return a.k0 == b.k0 && a.k1 == b.k1 && a.epoch == b.epoch && a.valid == b.valid;
}

} // namespace

TEST(CookieKeys, DerivedFromClusterKeyAndEpochOnly)
{
    const lb_cookie_key a = derive_cookie_key(kClusterKey, 1000);
    EXPECT_TRUE(same_key(a, derive_cookie_key(kClusterKey, 1000))); // another node, same epoch
    EXPECT_EQ(a.epoch, 1000u);
    EXPECT_EQ(a.valid, 1u);
    EXPECT_FALSE(a.k0 == 0 && a.k1 == 0);
    const lb_cookie_key next = derive_cookie_key(kClusterKey, 1001);
    EXPECT_NE(a.k0, next.k0);
    EXPECT_NE(a.k1, next.k1);
    std::vector<uint8_t> other = kClusterKey;
    other[0] ^= 1;
    EXPECT_NE(derive_cookie_key(other, 1000).k0, a.k0);
}

// A key dies on the data plane's own clock at the start of epoch e + 2,
// whether or not an agent is there to clear it.
TEST(CookieKeys, KeysExpireOnTheMonotonicClockAtTheStartOfEpochPlusTwo)
{
    constexpr uint32_t epoch_s = 64;
    constexpr uint64_t mono = 5'000'000'000ull;
    // Now: 10 s into epoch 1000.
    const uint64_t unix_s = 1000 * epoch_s + 10;
    EXPECT_EQ(cookie_expires_ns(1000, epoch_s, unix_s, mono), mono + (2 * epoch_s - 10) * 1'000'000'000ull);
    EXPECT_EQ(cookie_expires_ns(999, epoch_s, unix_s, mono), mono + (epoch_s - 10) * 1'000'000'000ull);
    EXPECT_EQ(cookie_expires_ns(1001, epoch_s, unix_s, mono), mono + (3 * epoch_s - 10) * 1'000'000'000ull);
    // A key whose end is past already: expired now.
    EXPECT_EQ(cookie_expires_ns(998, epoch_s, unix_s, mono), mono);
}

TEST(CookieKeys, SlotsHoldPreviousCurrentAndNextEpoch)
{
    for (uint64_t epoch : {uint64_t{1}, uint64_t{28056057}, uint64_t{4}, uint64_t{7}}) {
        const CookieSlots s = cookie_slots(kClusterKey, epoch);
        EXPECT_EQ(s.current_slot, epoch % LB_COOKIE_SLOTS);
        for (uint64_t e : {epoch - 1, epoch, epoch + 1})
            EXPECT_TRUE(same_key(s.keys[e % LB_COOKIE_SLOTS], derive_cookie_key(kClusterKey, e)))
                << "epoch " << e;
        // Two epochs old: refused (a cookie lives one to two epochs).
        EXPECT_EQ(s.keys[(epoch + 2) % LB_COOKIE_SLOTS].valid, 0u);
    }
}
