// Heartbeat datagrams: encoding, authentication, rejection of anything
// altered or malformed, and the replay guard.
#include "userspace/agent/heartbeat.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "userspace/dataplane/error.h"

namespace peerlb {
namespace {

using Bytes = std::vector<uint8_t>;

const Bytes kKey = {'c', 'l', 'u', 's', 't', 'e', 'r', '-', 's', 'e', 'c', 'r', 'e', 't', '-', 'k', 'e', 'y'};
const Bytes kOtherKey = {'c', 'l', 'u', 's', 't', 'e', 'r', '-', 's', 'e', 'c', 'r', 'e', 't', '-', 'k', 'e', 'Y'};

constexpr size_t kHeader = 8;
constexpr size_t kTag = 32;

Heartbeat ipv4_heartbeat(size_t services = 0)
{
    Heartbeat hb;
    hb.node_id = "node-a";
    hb.incarnation = 1'700'000'000'123'456'789ULL;
    hb.sequence = 42;
    hb.sent_unix_ms = 1'700'000'000'123ULL;
    hb.interval_ms = 500;
    hb.node_address = parse_ip("10.0.0.1");
    hb.mac = {0x02, 0x00, 0x5e, 0x10, 0x20, 0x30};
    for (size_t i = 0; i < services; i++)
        hb.services.push_back(parse_ip("192.0.2." + std::to_string(10 + i)));
    hb.load_bp = 4321;
    hb.state = AnnouncedState::alive;
    hb.kept_per_s = 0; // as a hand-crafted datagram without the optional TLVs decodes
    hb.forwarded_per_s = 0;
    return hb;
}

Heartbeat ipv6_heartbeat(size_t services = 0)
{
    Heartbeat hb;
    hb.node_id = "node-b.example";
    hb.incarnation = 0xfedcba9876543210ULL; // every byte different: catches byte order slips
    hb.sequence = 0x0102030405060708ULL;
    hb.sent_unix_ms = 1'700'000'500'000ULL;
    hb.interval_ms = 0x01020304;
    hb.node_address = parse_ip("fd00::1:2:3:4");
    hb.mac = {0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    for (size_t i = 0; i < services; i++)
        hb.services.push_back(i % 2 ? parse_ip("192.0.2." + std::to_string(i))
                                    : parse_ip("2001:db8:5::" + std::to_string(i + 1)));
    hb.load_bp = 10000;
    hb.state = AnnouncedState::unroutable;
    hb.kept_per_s = 0x11223344;
    hb.forwarded_per_s = 77;
    return hb;
}

Bytes hmac_of(const Bytes& key, const uint8_t* data, size_t len)
{
    Bytes out(EVP_MAX_MD_SIZE);
    unsigned int n = 0;
    EXPECT_NE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, len, out.data(), &n), nullptr);
    out.resize(n);
    return out;
}

// --- crafting datagrams by hand -------------------------------------------
// Independent of the encoder: TLV type numbers as documented in heartbeat.cpp.

enum : uint8_t {
    T_ID = 1, T_INCARNATION = 2, T_SEQUENCE = 3, T_SENT = 4, T_INTERVAL = 5,
    T_ADDRESS = 6, T_MAC = 7, T_SERVICE = 8, T_LOAD = 9, T_STATE = 10,
    T_KEPT = 11, T_FORWARDED = 12, // optional
};

struct Tlv {
    uint8_t type;
    Bytes value;
};

Bytes be(uint64_t v, int n)
{
    Bytes b;
    for (int i = n - 1; i >= 0; i--)
        b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return b;
}

Bytes str(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes body_of(const std::vector<Tlv>& tlvs)
{
    Bytes body;
    for (const Tlv& t : tlvs) {
        body.push_back(t.type);
        Bytes len = be(t.value.size(), 2);
        body.insert(body.end(), len.begin(), len.end());
        body.insert(body.end(), t.value.begin(), t.value.end());
    }
    return body;
}

// Header + body + a correct HMAC under kKey.
Bytes sign(const Bytes& body)
{
    Bytes d = {'P', 'L', 'B', 'H', 1, 0};
    Bytes len = be(body.size(), 2);
    d.insert(d.end(), len.begin(), len.end());
    d.insert(d.end(), body.begin(), body.end());
    Bytes tag = hmac_of(kKey, d.data(), d.size());
    d.insert(d.end(), tag.begin(), tag.end());
    return d;
}

// The fields of ipv4_heartbeat(2) as TLVs, in a different order than the
// encoder writes them.
std::vector<Tlv> complete_tlvs()
{
    return {
        {T_STATE, {1}},
        {T_LOAD, be(4321, 2)},
        {T_ID, str("node-a")},
        {T_SEQUENCE, be(42, 8)},
        {T_INCARNATION, be(1'700'000'000'123'456'789ULL, 8)},
        {T_SENT, be(1'700'000'000'123ULL, 8)},
        {T_INTERVAL, be(500, 4)},
        {T_ADDRESS, {4, 10, 0, 0, 1}},
        {T_MAC, {0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}},
        {T_SERVICE, {4, 192, 0, 2, 10}},
        {T_SERVICE, {4, 192, 0, 2, 11}},
    };
}

DropReason decode_reason(const Bytes& d) { return decode_heartbeat(d, kKey).reason; }

std::vector<Tlv> with(std::vector<Tlv> tlvs, uint8_t type, Bytes value)
{
    for (Tlv& t : tlvs)
        if (t.type == type)
            t.value = std::move(value);
    return tlvs;
}

// --- round trips and layout -----------------------------------------------

TEST(HeartbeatCodec, RoundTripIpv4NoServices)
{
    const Heartbeat hb = ipv4_heartbeat(0);
    const Decoded d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb, hb);
    EXPECT_TRUE(d.hb.services.empty());
}

TEST(HeartbeatCodec, RoundTripIpv4SeveralServices)
{
    const Heartbeat hb = ipv4_heartbeat(5);
    const Decoded d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb, hb);
    ASSERT_EQ(d.hb.services.size(), 5u);
    EXPECT_EQ(format_ip(d.hb.services[4]), "192.0.2.14");
    EXPECT_EQ(format_ip(d.hb.node_address), "10.0.0.1");
}

TEST(HeartbeatCodec, RoundTripIpv6NoServices)
{
    const Heartbeat hb = ipv6_heartbeat(0);
    const Decoded d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb, hb);
}

TEST(HeartbeatCodec, RoundTripIpv6MixedServicesAndEveryState)
{
    for (AnnouncedState s : {AnnouncedState::alive, AnnouncedState::unroutable, AnnouncedState::leaving}) {
        Heartbeat hb = ipv6_heartbeat(7);
        hb.state = s;
        const Decoded d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
        ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
        EXPECT_EQ(d.hb, hb);
        EXPECT_EQ(format_ip(d.hb.node_address), "fd00::1:2:3:4");
        EXPECT_EQ(format_ip(d.hb.services[0]), "2001:db8:5::1");
        EXPECT_EQ(format_ip(d.hb.services[1]), "192.0.2.1");
    }
}

TEST(HeartbeatCodec, RoundTripLimits)
{
    Heartbeat hb = ipv6_heartbeat(kMaxOwnedServices);
    for (auto& s : hb.services)
        s = parse_ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
    hb.node_id = std::string(32, 'z');
    hb.load_bp = 10000;
    hb.incarnation = hb.sequence = hb.sent_unix_ms = UINT64_MAX;
    hb.interval_ms = UINT32_MAX;
    hb.kept_per_s = hb.forwarded_per_s = UINT32_MAX;
    const Bytes d = encode_heartbeat(hb, kKey);
    EXPECT_LE(d.size(), kMaxHeartbeatSize);
    const Decoded out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.hb, hb);
}

TEST(HeartbeatCodec, DecodedFieldsDifferWhenInputDiffers)
{
    // operator== is what the round trips rely on: make sure it can say no.
    Heartbeat a = ipv4_heartbeat(2), b = a;
    b.services[1] = parse_ip("192.0.2.99");
    EXPECT_NE(decode_heartbeat(encode_heartbeat(a, kKey), kKey).hb, b);
    b = a;
    b.mac[5] ^= 1;
    EXPECT_NE(decode_heartbeat(encode_heartbeat(a, kKey), kKey).hb, b);
}

TEST(HeartbeatCodec, HeaderBytes)
{
    const Bytes d = encode_heartbeat(ipv4_heartbeat(3), kKey);
    ASSERT_GE(d.size(), kHeader + kTag);
    EXPECT_EQ(d[0], 'P');
    EXPECT_EQ(d[1], 'L');
    EXPECT_EQ(d[2], 'B');
    EXPECT_EQ(d[3], 'H');
    EXPECT_EQ(d[4], 1);  // version
    EXPECT_EQ(d[5], 0);  // flags
    const size_t body_len = (size_t{d[6]} << 8) | d[7];
    EXPECT_EQ(body_len, d.size() - kHeader - kTag);
    // The body starts with a TLV: type, then a big-endian length within the body.
    const size_t first_len = (size_t{d[kHeader + 1]} << 8) | d[kHeader + 2];
    EXPECT_LE(3 + first_len, body_len);
}

TEST(HeartbeatCodec, HmacMatchesIndependentHmacSha256)
{
    for (const Heartbeat& hb : {ipv4_heartbeat(0), ipv6_heartbeat(4)}) {
        const Bytes d = encode_heartbeat(hb, kKey);
        ASSERT_GT(d.size(), kTag);
        const Bytes expect = hmac_of(kKey, d.data(), d.size() - kTag);
        ASSERT_EQ(expect.size(), kTag);
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(), d.end() - kTag));
        const Bytes other = hmac_of(kOtherKey, d.data(), d.size() - kTag);
        EXPECT_FALSE(std::equal(other.begin(), other.end(), d.end() - kTag));
    }
}

TEST(HeartbeatCodec, BigEndianIntegers)
{
    // Find the sequence TLV in an encoded datagram and read it by hand.
    const Heartbeat hb = ipv6_heartbeat(0);
    const Bytes d = encode_heartbeat(hb, kKey);
    const size_t end = d.size() - kTag;
    bool found = false;
    for (size_t pos = kHeader; pos + 3 <= end;) {
        const uint8_t type = d[pos];
        const size_t len = (size_t{d[pos + 1]} << 8) | d[pos + 2];
        if (type == T_SEQUENCE) {
            ASSERT_EQ(len, 8u);
            EXPECT_EQ(Bytes(d.begin() + pos + 3, d.begin() + pos + 11), be(0x0102030405060708ULL, 8));
            found = true;
        }
        pos += 3 + len;
    }
    EXPECT_TRUE(found);
}

// --- what is not accepted --------------------------------------------------

TEST(HeartbeatReject, WrongKeyIsBadMac)
{
    const Bytes d = encode_heartbeat(ipv4_heartbeat(2), kKey);
    EXPECT_EQ(decode_heartbeat(d, kOtherKey).reason, DropReason::bad_mac);
    EXPECT_EQ(decode_heartbeat(d, Bytes{}).reason, DropReason::bad_mac);
    EXPECT_EQ(decode_heartbeat(d, kKey).reason, DropReason::none);
}

TEST(HeartbeatReject, EverySingleBitFlip)
{
    const Bytes good = encode_heartbeat(ipv6_heartbeat(3), kKey);
    for (size_t byte = 0; byte < good.size(); byte++) {
        for (int bit = 0; bit < 8; bit++) {
            Bytes d = good;
            d[byte] ^= static_cast<uint8_t>(1u << bit);
            const DropReason r = decode_reason(d);
            if (byte < 5) // magic, version
                EXPECT_EQ(r, DropReason::bad_magic) << "byte " << byte << " bit " << bit;
            else if (byte == 6 || byte == 7) // body_len
                EXPECT_EQ(r, DropReason::truncated) << "byte " << byte << " bit " << bit;
            else // flags, body, tag
                EXPECT_EQ(r, DropReason::bad_mac) << "byte " << byte << " bit " << bit;
        }
    }
}

TEST(HeartbeatReject, EveryTruncation)
{
    const Bytes good = encode_heartbeat(ipv4_heartbeat(2), kKey);
    for (size_t n = 0; n < good.size(); n++) {
        const Bytes d(good.begin(), good.begin() + n);
        const DropReason r = decode_reason(d);
        EXPECT_NE(r, DropReason::none) << "length " << n;
        EXPECT_TRUE(r == DropReason::truncated || r == DropReason::bad_magic || r == DropReason::bad_mac)
            << "length " << n << ": " << drop_reason_name(r);
    }
}

TEST(HeartbeatReject, AppendedBytes)
{
    const Bytes good = encode_heartbeat(ipv4_heartbeat(2), kKey);
    for (uint8_t extra : {0x00, 0xff}) {
        Bytes d = good;
        d.push_back(extra);
        EXPECT_EQ(decode_reason(d), DropReason::truncated);
    }
    // Appended and body_len bumped to cover it: the HMAC no longer verifies.
    Bytes d = good;
    d.insert(d.end() - kTag, 0x00);
    const size_t body_len = ((size_t{d[6]} << 8) | d[7]) + 1;
    d[6] = static_cast<uint8_t>(body_len >> 8);
    d[7] = static_cast<uint8_t>(body_len);
    EXPECT_EQ(decode_reason(d), DropReason::bad_mac);
}

TEST(HeartbeatReject, RandomGarbageNeverAccepted)
{
    std::mt19937 rng(20240521);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<size_t> length(0, 300);
    std::set<DropReason> seen;
    for (int i = 0; i < 4000; i++) {
        Bytes d(length(rng));
        for (auto& b : d)
            b = static_cast<uint8_t>(byte(rng));
        // Half of them get a valid header so they reach the HMAC check.
        if (i % 2 && d.size() >= kHeader + kTag) {
            const size_t body_len = d.size() - kHeader - kTag;
            const Bytes h = {'P', 'L', 'B', 'H', 1, 0, static_cast<uint8_t>(body_len >> 8),
                             static_cast<uint8_t>(body_len)};
            std::copy(h.begin(), h.end(), d.begin());
        }
        const DropReason r = decode_reason(d);
        ASSERT_NE(r, DropReason::none) << "datagram " << i;
        seen.insert(r);
    }
    EXPECT_TRUE(seen.count(DropReason::truncated));
    EXPECT_TRUE(seen.count(DropReason::bad_magic));
    EXPECT_TRUE(seen.count(DropReason::bad_mac));
}

// --- correctly signed, but malformed ---------------------------------------

TEST(HeartbeatMalformed, HandCraftedCompleteDatagramIsAccepted)
{
    // The baseline for the tests below: the crafting itself is right.
    const Decoded d = decode_heartbeat(sign(body_of(complete_tlvs())), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb, ipv4_heartbeat(2));
}

TEST(HeartbeatMalformed, EachRequiredTlvMissing)
{
    for (uint8_t missing : {T_ID, T_INCARNATION, T_SEQUENCE, T_SENT, T_INTERVAL, T_ADDRESS, T_MAC, T_LOAD, T_STATE}) {
        std::vector<Tlv> tlvs = complete_tlvs();
        std::erase_if(tlvs, [&](const Tlv& t) { return t.type == missing; });
        EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed) << "without type " << int(missing);
    }
    // Services are optional.
    std::vector<Tlv> tlvs = complete_tlvs();
    std::erase_if(tlvs, [](const Tlv& t) { return t.type == T_SERVICE; });
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::none);
}

TEST(HeartbeatMalformed, TlvRunningPastTheEnd)
{
    Bytes body = body_of(complete_tlvs());
    // A last TLV that claims 10 bytes and has 2.
    body.insert(body.end(), {T_STATE, 0x00, 0x0a, 1, 1});
    EXPECT_EQ(decode_reason(sign(body)), DropReason::malformed);
    // A last TLV whose header itself is cut.
    Bytes body2 = body_of(complete_tlvs());
    body2.insert(body2.end(), {0x63, 0x00});
    EXPECT_EQ(decode_reason(sign(body2)), DropReason::malformed);
    // An unknown type running past the end is no better.
    Bytes body3 = body_of(complete_tlvs());
    body3.insert(body3.end(), {0xc8, 0xff, 0xff, 0});
    EXPECT_EQ(decode_reason(sign(body3)), DropReason::malformed);
}

TEST(HeartbeatMalformed, LoadOverTenThousand)
{
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_LOAD, be(10001, 2))))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_LOAD, be(10000, 2))))), DropReason::none);
}

TEST(HeartbeatMalformed, NodeIdLength)
{
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ID, str(std::string(33, 'x')))))),
              DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ID, {})))), DropReason::malformed);
    const Decoded d = decode_heartbeat(sign(body_of(with(complete_tlvs(), T_ID, str(std::string(32, 'x'))))), kKey);
    EXPECT_EQ(d.reason, DropReason::none);
    EXPECT_EQ(d.hb.node_id, std::string(32, 'x'));
}

TEST(HeartbeatMalformed, UnknownTlvTypeIsSkipped)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.insert(tlvs.begin() + 3, Tlv{0xc8, Bytes(40, 0xab)});
    tlvs.push_back(Tlv{0x7f, {}});
    tlvs.push_back(Tlv{0, {1, 2, 3}}); // reserved type 0: skipped too
    const Decoded d = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb, ipv4_heartbeat(2));
}

TEST(HeartbeatMalformed, BadFamilyOrAddressLength)
{
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ADDRESS, {5, 10, 0, 0, 1})))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ADDRESS, {4, 10, 0, 0})))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ADDRESS, {6, 10, 0, 0, 1})))), DropReason::malformed);
    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.push_back(Tlv{T_SERVICE, {0, 192, 0, 2, 12}});
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

TEST(HeartbeatMalformed, WrongLengthForType)
{
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_SEQUENCE, be(42, 4))))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_INTERVAL, be(500, 8))))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_MAC, Bytes(5, 1))))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_LOAD, be(1, 3))))), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_STATE, {1, 0})))), DropReason::malformed);
}

TEST(HeartbeatMalformed, StateAndIntervalOutOfRange)
{
    for (uint8_t s : {0, 4, 255})
        EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_STATE, {s})))), DropReason::malformed) << int(s);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_INTERVAL, be(0, 4))))), DropReason::malformed);
}

TEST(HeartbeatMalformed, TooManyServices)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    std::erase_if(tlvs, [](const Tlv& t) { return t.type == T_SERVICE; });
    for (size_t i = 0; i < kMaxOwnedServices; i++)
        tlvs.push_back(Tlv{T_SERVICE, {4, 192, 0, 2, static_cast<uint8_t>(i)}});
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::none);
    tlvs.push_back(Tlv{T_SERVICE, {4, 192, 0, 2, 200}});
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

TEST(HeartbeatMalformed, OptionalRateTlvs)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.push_back(Tlv{T_KEPT, be(1234, 4)});
    tlvs.push_back(Tlv{T_FORWARDED, be(0x01020304, 4)});
    const Decoded d = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.hb.kept_per_s, 1234u);
    EXPECT_EQ(d.hb.forwarded_per_s, 0x01020304u);
    // Wrong length, or given twice: malformed.
    EXPECT_EQ(decode_reason(sign(body_of(with(tlvs, T_KEPT, be(1, 2))))), DropReason::malformed);
    tlvs.push_back(Tlv{T_FORWARDED, be(5, 4)});
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

TEST(HeartbeatMalformed, RepeatedSingleField)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.push_back(Tlv{T_SEQUENCE, be(43, 8)});
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

// --- the encoder's own checks ----------------------------------------------

TEST(HeartbeatEncode, RefusesOutOfRange)
{
    Heartbeat hb = ipv4_heartbeat(1);
    hb.node_id = std::string(33, 'x');
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.node_id = "";
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);

    hb = ipv4_heartbeat(kMaxOwnedServices + 1);
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb = ipv4_heartbeat(kMaxOwnedServices);
    EXPECT_NO_THROW(encode_heartbeat(hb, kKey));

    hb = ipv4_heartbeat();
    hb.load_bp = 10001;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.load_bp = 10000;
    EXPECT_NO_THROW(encode_heartbeat(hb, kKey));

    hb = ipv4_heartbeat();
    hb.interval_ms = 0;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);

    hb = ipv4_heartbeat();
    hb.node_address = IpAddress{};
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);

    hb = ipv4_heartbeat(1);
    hb.services[0].family = 5;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);

    hb = ipv4_heartbeat();
    hb.state = static_cast<AnnouncedState>(7);
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

TEST(HeartbeatNames, DropReasons)
{
    EXPECT_STREQ(drop_reason_name(DropReason::none), "none");
    EXPECT_STREQ(drop_reason_name(DropReason::truncated), "truncated");
    EXPECT_STREQ(drop_reason_name(DropReason::bad_magic), "bad_magic");
    EXPECT_STREQ(drop_reason_name(DropReason::bad_mac), "bad_mac");
    EXPECT_STREQ(drop_reason_name(DropReason::malformed), "malformed");
    EXPECT_STREQ(drop_reason_name(DropReason::own_id), "own_id");
    EXPECT_STREQ(drop_reason_name(DropReason::replayed), "replayed");
    EXPECT_STREQ(drop_reason_name(DropReason::stale), "stale");
}

// --- replay guard ------------------------------------------------------------

constexpr uint64_t kNow = 1'700'000'000'000ULL;
constexpr uint64_t kWindow = 30'000;

Heartbeat at(const std::string& id, uint64_t incarnation, uint64_t sequence, uint64_t sent = kNow)
{
    Heartbeat hb = ipv4_heartbeat();
    hb.node_id = id;
    hb.incarnation = incarnation;
    hb.sequence = sequence;
    hb.sent_unix_ms = sent;
    return hb;
}

TEST(ReplayGuard, SameDatagramTwice)
{
    ReplayGuard g(kWindow);
    const Bytes d = encode_heartbeat(at("a", 100, 7), kKey);
    const Decoded first = decode_heartbeat(d, kKey), second = decode_heartbeat(d, kKey);
    ASSERT_EQ(first.reason, DropReason::none);
    EXPECT_EQ(g.check(first.hb, kNow), DropReason::none);
    EXPECT_EQ(g.check(second.hb, kNow + 10), DropReason::replayed);
}

TEST(ReplayGuard, OlderSequenceReplayedNewerAccepted)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 100, 10), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 9), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("a", 100, 1), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("a", 100, 11), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 1000), kNow), DropReason::none); // gaps are fine (lost datagrams)
    EXPECT_EQ(g.check(at("a", 100, 999), kNow), DropReason::replayed);
}

TEST(ReplayGuard, NewIncarnationRestartsSequence)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 100, 500), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 200, 1), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 200, 1), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("a", 200, 2), kNow), DropReason::none);
}

TEST(ReplayGuard, OldIncarnationAfterNewerIsReplayed)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 200, 1), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 501), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("a", 100, UINT64_MAX), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("a", 200, 2), kNow), DropReason::none);
}

TEST(ReplayGuard, OutsideWindowPastAndFutureIsStale)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 1, 1, kNow - kWindow - 1), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 2, kNow + kWindow + 1), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 3, 0), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 4, UINT64_MAX), kNow), DropReason::stale);
    // The window's edges are inside it.
    EXPECT_EQ(g.check(at("a", 1, 5, kNow - kWindow), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 1, 6, kNow + kWindow), kNow), DropReason::none);
}

TEST(ReplayGuard, RecordsOnlyWhatItAccepts)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 1, 5), kNow), DropReason::none);
    // A stale datagram with a high sequence must not advance the record.
    EXPECT_EQ(g.check(at("a", 1, 50, kNow - 2 * kWindow), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 6), kNow), DropReason::none);
    // Nor a stale one with a newer incarnation.
    EXPECT_EQ(g.check(at("a", 9, 1, kNow + 2 * kWindow), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 7), kNow), DropReason::none);
    // A stale first datagram of an unknown id records nothing either.
    EXPECT_EQ(g.check(at("b", 5, 100, 0), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("b", 5, 1), kNow), DropReason::none);
}

TEST(ReplayGuard, PerIdIndependence)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 100, 10), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("b", 100, 10), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("b", 1, 1), kNow), DropReason::replayed);
    EXPECT_EQ(g.check(at("c", 1, 1), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 11), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("b", 100, 11), kNow), DropReason::none);
    EXPECT_EQ(g.check(at("c", 1, 1), kNow), DropReason::replayed);
}

TEST(ReplayGuard, SetWindow)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 1, 1, kNow - 5000), kNow), DropReason::none);
    g.set_window(1000);
    EXPECT_EQ(g.check(at("a", 1, 2, kNow - 5000), kNow), DropReason::stale);
    EXPECT_EQ(g.check(at("a", 1, 3, kNow - 1000), kNow), DropReason::none);
}

} // namespace
} // namespace peerlb
