// Cluster SYN cookie arithmetic of bpf/cookie.h: the very code the XDP and
// TC programs run, compiled here as C++. SipHash-2-4 is checked against
// OpenSSL's implementation; the cookie against its documented layout and
// against tampering with anything it covers.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <vector>

extern "C" {
#include "bpf/cookie.h"
}

namespace {

using Message = std::array<uint8_t, LB_COOKIE_WORDS * 8>;

// OpenSSL's SipHash-2-4 with an 8-byte output, the 16-byte key being k0
// then k1, each little-endian (the reference implementation's convention).
uint64_t openssl_siphash(uint64_t k0, uint64_t k1, const uint8_t* msg, size_t len)
{
    struct MacFree {
        void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
    };
    struct CtxFree {
        void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
    };
    static const std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "SIPHASH", nullptr));
    if (!mac)
        throw std::runtime_error("OpenSSL has no SIPHASH");
    std::unique_ptr<EVP_MAC_CTX, CtxFree> ctx(EVP_MAC_CTX_new(mac.get()));
    uint8_t key[16];
    for (int i = 0; i < 8; i++) {
        key[i] = uint8_t(k0 >> (8 * i));
        key[8 + i] = uint8_t(k1 >> (8 * i));
    }
    size_t size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    uint8_t out[8];
    size_t out_len = 0;
    if (!ctx || !EVP_MAC_init(ctx.get(), key, sizeof(key), params) ||
        !EVP_MAC_update(ctx.get(), msg, len) ||
        !EVP_MAC_final(ctx.get(), out, &out_len, sizeof(out)) || out_len != 8)
        throw std::runtime_error("OpenSSL SipHash failed");
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | out[i];
    return h;
}

uint64_t le64(const uint8_t* b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

lb_flow_key random_flow_key(std::mt19937_64& rng, uint8_t family)
{
    lb_flow_key key{};
    if (family == LB_FAMILY_IPV4) {
        key.saddr.v4 = uint32_t(rng());
        key.daddr.v4 = uint32_t(rng());
    } else {
        for (int i = 0; i < 4; i++) {
            key.saddr.v6[i] = uint32_t(rng());
            key.daddr.v6[i] = uint32_t(rng());
        }
    }
    key.sport = uint16_t(rng());
    key.dport = uint16_t(rng());
    key.family = family;
    key.protocol = 6;
    return key;
}

lb_cookie_key random_cookie_key(std::mt19937_64& rng)
{
    lb_cookie_key k{};
    k.k0 = rng();
    k.k1 = rng();
    k.valid = 1;
    return k;
}

// The message lb_cookie_hash feeds SipHash, built from bytes: the flow key
// as it lies in memory, then ISN and low bits, little-endian.
Message cookie_message(const lb_flow_key& key, uint32_t isn, uint32_t low)
{
    Message m{};
    std::memcpy(m.data(), &key, sizeof(key));
    for (int i = 0; i < 4; i++) {
        m[40 + i] = uint8_t(isn >> (8 * i));
        m[44 + i] = uint8_t(low >> (8 * i));
    }
    return m;
}

// Low bits by the layout documented at the top of bpf/cookie.h.
uint32_t layout_low_bits(uint32_t slot, uint32_t wscale, bool ts, bool sack, uint32_t mss_index)
{
    return slot << 8 | wscale << 4 | uint32_t(ts) << 3 | uint32_t(sack) << 2 | mss_index;
}

TEST(SipHash, OpenSslHarnessMatchesThePaperVector)
{
    // SipHash paper, appendix A: key 00..0f, message 00..0e.
    uint8_t msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = uint8_t(i);
    EXPECT_EQ(openssl_siphash(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, msg, sizeof(msg)),
              0xa129ca6149be45e5ull);
}

TEST(SipHash, MatchesOpenSslOnRandomKeysAndMessages)
{
    std::mt19937_64 rng(20240601);
    for (int n = 0; n < 5000; n++) {
        const uint64_t k0 = rng(), k1 = rng();
        Message bytes;
        for (uint8_t& b : bytes)
            b = uint8_t(rng());
        __u64 words[LB_COOKIE_WORDS];
        for (int i = 0; i < LB_COOKIE_WORDS; i++)
            words[i] = le64(&bytes[8 * i]);
        ASSERT_EQ(lb_siphash(k0, k1, words), openssl_siphash(k0, k1, bytes.data(), bytes.size()))
            << "case " << n;
    }
}

TEST(SipHash, EdgeKeysAndMessagesMatchOpenSsl)
{
    const uint64_t edges[] = {0, ~0ull, 1, 1ull << 63, 0x0706050403020100ull};
    for (uint64_t k0 : edges)
        for (uint64_t k1 : edges)
            for (uint8_t fill : {0x00, 0xff, 0x80, 0x01}) {
                Message bytes;
                bytes.fill(fill);
                __u64 words[LB_COOKIE_WORDS];
                for (int i = 0; i < LB_COOKIE_WORDS; i++)
                    words[i] = le64(&bytes[8 * i]);
                EXPECT_EQ(lb_siphash(k0, k1, words),
                          openssl_siphash(k0, k1, bytes.data(), bytes.size()))
                    << std::hex << k0 << " " << k1 << " fill " << int(fill);
            }
}

TEST(CookieHash, IsTheTopOfSipHashOverTheDocumentedMessage)
{
    std::mt19937_64 rng(7);
    for (int n = 0; n < 2000; n++) {
        const uint8_t family = n % 2 ? LB_FAMILY_IPV4 : LB_FAMILY_IPV6;
        const lb_cookie_key k = random_cookie_key(rng);
        const lb_flow_key key = random_flow_key(rng, family);
        const uint32_t isn = uint32_t(rng()), low = uint32_t(rng()) & 0x3ff;
        const Message m = cookie_message(key, isn, low);
        const uint32_t top = uint32_t(openssl_siphash(k.k0, k.k1, m.data(), m.size()) >> 32);
        ASSERT_EQ(lb_cookie_hash(&k, &key, isn, low), top) << "case " << n;
        ASSERT_EQ(lb_cookie_make(&k, &key, isn, low), (top & 0xfffffc00u) | low) << "case " << n;
    }
}

TEST(CookieMss, TableAndBuckets)
{
    EXPECT_EQ(lb_cookie_mss_value(0), 536);
    EXPECT_EQ(lb_cookie_mss_value(1), 1220);
    EXPECT_EQ(lb_cookie_mss_value(2), 1440);
    EXPECT_EQ(lb_cookie_mss_value(3), 1460);
    // The client's MSS, the index the cookie keeps, and the MSS the serving
    // node will use. Below 536 rounds up to 536, as Linux's own syncookies
    // (msstab[0]) do: 536 is every IPv4 host's minimum reassembly size.
    const struct {
        uint16_t client;
        uint32_t index;
        uint16_t used;
    } cases[] = {{0, 0, 536},       {88, 0, 536},      {535, 0, 536},   {536, 0, 536},
                 {1219, 0, 536},    {1220, 1, 1220},   {1439, 1, 1220}, {1440, 2, 1440},
                 {1459, 2, 1440},   {1460, 3, 1460},   {9000, 3, 1460}, {65535, 3, 1460}};
    for (const auto& c : cases) {
        EXPECT_EQ(lb_cookie_mss_index(c.client), c.index) << "MSS " << c.client;
        EXPECT_EQ(lb_cookie_mss_value(lb_cookie_mss_index(c.client)), c.used) << "MSS " << c.client;
        if (c.client >= 536) {
            EXPECT_LE(c.used, c.client) << "never more than the client accepts";
        }
    }
}

TEST(CookieLowBits, FollowTheDocumentedLayout)
{
    for (uint32_t slot = 0; slot < 8; slot++)
        for (uint32_t ws = 0; ws < 256; ws++)
            for (int flags = 0; flags < 4; flags++) {
                lb_syn_options o{};
                o.mss = 1440;
                o.wscale = uint8_t(ws);
                o.ts_ok = flags & 1;
                o.sack_ok = (flags >> 1) & 1;
                // A scale above 14 cannot be carried: it reads as "none"
                // (the XDP option parser clamps it to 14 before).
                const uint32_t carried = ws <= 14 ? ws : LB_COOKIE_NO_WSCALE;
                ASSERT_EQ(lb_cookie_low_bits(slot, &o),
                          layout_low_bits(slot & 3, carried, o.ts_ok, o.sack_ok, 2))
                    << "slot " << slot << " ws " << ws << " flags " << flags;
            }
}

TEST(Cookie, RoundTripsEveryOptionCombination)
{
    std::mt19937_64 rng(11);
    const uint16_t mss_values[] = {535, 536, 1219, 1220, 1439, 1440, 1459, 1460, 9000};
    int checked = 0;
    for (uint32_t slot = 0; slot < LB_COOKIE_SLOTS; slot++)
        for (uint32_t ws = 0; ws <= LB_COOKIE_NO_WSCALE; ws++)
            for (int flags = 0; flags < 4; flags++)
                for (uint16_t mss : mss_values) {
                    const lb_cookie_key k = random_cookie_key(rng);
                    const lb_flow_key key =
                        random_flow_key(rng, checked % 2 ? LB_FAMILY_IPV4 : LB_FAMILY_IPV6);
                    const uint32_t isn = uint32_t(rng());
                    lb_syn_options in{};
                    in.mss = mss;
                    in.wscale = uint8_t(ws);
                    in.ts_ok = flags & 1;
                    in.sack_ok = (flags >> 1) & 1;
                    const uint32_t low = lb_cookie_low_bits(slot, &in);
                    const uint32_t cookie = lb_cookie_make(&k, &key, isn, low);
                    SCOPED_TRACE(testing::Message() << "slot " << slot << " ws " << ws
                                                    << " flags " << flags << " mss " << mss);
                    ASSERT_EQ(cookie & 0x3ffu, low);
                    ASSERT_EQ(lb_cookie_valid(&k, &key, isn, cookie), 1);
                    ASSERT_EQ(lb_cookie_slot(cookie), slot);
                    lb_syn_options out{};
                    lb_cookie_options(cookie, &out);
                    EXPECT_EQ(out.mss, lb_cookie_mss_value(lb_cookie_mss_index(mss)));
                    EXPECT_EQ(out.wscale, ws);
                    EXPECT_EQ(out.ts_ok, in.ts_ok);
                    EXPECT_EQ(out.sack_ok, in.sack_ok);
                    checked++;
                }
    EXPECT_EQ(checked, 4 * 16 * 4 * 9);
}

TEST(Cookie, IsDeterministicAndSpreads)
{
    std::mt19937_64 rng(3);
    const lb_cookie_key k = random_cookie_key(rng);
    const lb_flow_key key = random_flow_key(rng, LB_FAMILY_IPV4);
    std::set<uint32_t> hashes;
    for (uint32_t isn = 0; isn < 4096; isn++) {
        const uint32_t c = lb_cookie_make(&k, &key, isn, 0x1a3);
        ASSERT_EQ(c, lb_cookie_make(&k, &key, isn, 0x1a3));
        hashes.insert(c & LB_COOKIE_HASH_MASK);
    }
    // 4096 draws from 2^22 values: about two collisions expected.
    EXPECT_GE(hashes.size(), 4080u);
}

// Every single-bit change of what the cookie covers, or of the cookie
// itself, or another key, makes it invalid. A 22-bit hash lets a random
// change pass with probability 2^-22; over these ~80,000 trials about
// 0.02 accidental passes are expected, so the fixed seeds must give none.
class CookieTamper : public ::testing::Test {
protected:
    struct Case {
        lb_cookie_key k;
        lb_flow_key key;
        uint32_t isn;
        uint32_t cookie;
    };

    std::vector<Case> cases(int n, uint64_t seed)
    {
        std::mt19937_64 rng(seed);
        std::vector<Case> out;
        for (int i = 0; i < n; i++) {
            Case c{random_cookie_key(rng),
                   random_flow_key(rng, i % 2 ? LB_FAMILY_IPV4 : LB_FAMILY_IPV6),
                   uint32_t(rng()), 0};
            lb_syn_options o{};
            o.mss = uint16_t(536 + rng() % 1000);
            o.wscale = uint8_t(rng() % 16);
            o.ts_ok = rng() & 1;
            o.sack_ok = rng() & 1;
            c.cookie = lb_cookie_make(&c.k, &c.key, c.isn, lb_cookie_low_bits(rng() % 4, &o));
            EXPECT_TRUE(lb_cookie_valid(&c.k, &c.key, c.isn, c.cookie));
            out.push_back(c);
        }
        return out;
    }
};

TEST_F(CookieTamper, EveryCookieBitFlipIsInvalid)
{
    int trials = 0, passed = 0;
    for (const Case& c : cases(200, 101))
        for (int bit = 0; bit < 32; bit++, trials++)
            passed += lb_cookie_valid(&c.k, &c.key, c.isn, c.cookie ^ (1u << bit));
    EXPECT_EQ(trials, 6400);
    EXPECT_EQ(passed, 0) << "accidental collisions in " << trials << " flips";
}

TEST_F(CookieTamper, EveryIsnBitFlipIsInvalid)
{
    int trials = 0, passed = 0;
    for (const Case& c : cases(200, 102))
        for (int bit = 0; bit < 32; bit++, trials++)
            passed += lb_cookie_valid(&c.k, &c.key, c.isn ^ (1u << bit), c.cookie);
    EXPECT_EQ(passed, 0) << "accidental collisions in " << trials << " flips";
}

TEST_F(CookieTamper, EveryFlowKeyBitFlipIsInvalid)
{
    // Field by field: the client and service addresses (IPv4: the first
    // word only; the rest of the union is zero there), ports, family,
    // protocol.
    struct Field {
        const char* name;
        size_t offset, size;
    };
    const Field v4_fields[] = {{"saddr", offsetof(lb_flow_key, saddr), 4},
                               {"daddr", offsetof(lb_flow_key, daddr), 4},
                               {"sport", offsetof(lb_flow_key, sport), 2},
                               {"dport", offsetof(lb_flow_key, dport), 2},
                               {"family", offsetof(lb_flow_key, family), 1},
                               {"protocol", offsetof(lb_flow_key, protocol), 1}};
    const Field v6_fields[] = {{"saddr", offsetof(lb_flow_key, saddr), 16},
                               {"daddr", offsetof(lb_flow_key, daddr), 16},
                               {"sport", offsetof(lb_flow_key, sport), 2},
                               {"dport", offsetof(lb_flow_key, dport), 2},
                               {"family", offsetof(lb_flow_key, family), 1},
                               {"protocol", offsetof(lb_flow_key, protocol), 1}};
    int trials = 0, passed = 0;
    for (const Case& c : cases(100, 103)) {
        const bool v4 = c.key.family == LB_FAMILY_IPV4;
        for (const Field& f : v4 ? std::vector<Field>(std::begin(v4_fields), std::end(v4_fields))
                                 : std::vector<Field>(std::begin(v6_fields), std::end(v6_fields)))
            for (size_t bit = 0; bit < f.size * 8; bit++, trials++) {
                lb_flow_key other = c.key;
                reinterpret_cast<uint8_t*>(&other)[f.offset + bit / 8] ^= uint8_t(1u << (bit % 8));
                const int ok = lb_cookie_valid(&c.k, &other, c.isn, c.cookie);
                passed += ok;
                EXPECT_EQ(ok, 0) << f.name << " bit " << bit;
            }
    }
    EXPECT_EQ(passed, 0) << "accidental collisions in " << trials << " flips";
    EXPECT_EQ(trials, 50 * (4 + 4 + 2 + 2 + 1 + 1) * 8 + 50 * (16 + 16 + 2 + 2 + 1 + 1) * 8);
}

TEST_F(CookieTamper, SwappedPortsOrAddressesAreInvalid)
{
    // The reverse direction is another flow.
    int passed = 0;
    for (const Case& c : cases(500, 104)) {
        lb_flow_key swapped = c.key;
        std::swap(swapped.sport, swapped.dport);
        passed += lb_cookie_valid(&c.k, &swapped, c.isn, c.cookie);
        swapped = c.key;
        std::swap(swapped.saddr, swapped.daddr);
        passed += lb_cookie_valid(&c.k, &swapped, c.isn, c.cookie);
    }
    EXPECT_EQ(passed, 0);
}

TEST_F(CookieTamper, AnotherKeyIsInvalid)
{
    std::mt19937_64 rng(105);
    int trials = 0, passed = 0;
    for (const Case& c : cases(200, 106)) {
        for (int bit = 0; bit < 64; bit++, trials += 2) {
            lb_cookie_key k = c.k;
            k.k0 ^= 1ull << bit;
            passed += lb_cookie_valid(&k, &c.key, c.isn, c.cookie);
            k = c.k;
            k.k1 ^= 1ull << bit;
            passed += lb_cookie_valid(&k, &c.key, c.isn, c.cookie);
        }
        const lb_cookie_key other = random_cookie_key(rng);
        passed += lb_cookie_valid(&other, &c.key, c.isn, c.cookie);
        trials++;
    }
    EXPECT_EQ(passed, 0) << "accidental collisions in " << trials << " trials";
}

TEST_F(CookieTamper, LowBitsCannotBeRewritten)
{
    // A client (or anyone) claiming other options, another MSS or another
    // epoch slot with the same hash bits: every other low-bit value fails.
    int trials = 0, passed = 0;
    for (const Case& c : cases(20, 107))
        for (uint32_t low = 0; low < 0x400; low++) {
            if (low == (c.cookie & 0x3ffu))
                continue;
            passed += lb_cookie_valid(&c.k, &c.key, c.isn, (c.cookie & LB_COOKIE_HASH_MASK) | low);
            trials++;
        }
    EXPECT_EQ(trials, 20 * 1023);
    EXPECT_EQ(passed, 0) << "accidental collisions in " << trials << " rewrites";
}

TEST(Cookie, KeyEpochAndValidFieldsDoNotEnterTheHash)
{
    // Only k0/k1 key the hash: the epoch and valid fields are bookkeeping
    // that the programs check before (lb_cookie_of_segment).
    std::mt19937_64 rng(9);
    lb_cookie_key k = random_cookie_key(rng);
    const lb_flow_key key = random_flow_key(rng, LB_FAMILY_IPV6);
    const uint32_t cookie = lb_cookie_make(&k, &key, 1234, 0x2f3);
    k.epoch = 99;
    k.valid = 0;
    EXPECT_EQ(lb_cookie_make(&k, &key, 1234, 0x2f3), cookie);
}

} // namespace
