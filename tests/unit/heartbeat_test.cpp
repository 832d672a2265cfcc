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
    T_CLAIM = 13,                  // optional, repeated
    T_TO = 14, T_SERVICE_ADDRESS = 15, T_FLOW = 16, // flow announcements
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

// Header + body + a correct HMAC under kKey; kind 'H': a heartbeat, 'F': a
// flow announcement.
Bytes sign(const Bytes& body, uint8_t kind = 'H')
{
    Bytes d = {'P', 'L', 'B', kind, 1, 0};
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
    const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, hb);
    EXPECT_TRUE(d.message.services.empty());
}

TEST(HeartbeatCodec, RoundTripIpv4SeveralServices)
{
    const Heartbeat hb = ipv4_heartbeat(5);
    const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, hb);
    ASSERT_EQ(d.message.services.size(), 5u);
    EXPECT_EQ(format_ip(d.message.services[4]), "192.0.2.14");
    EXPECT_EQ(format_ip(d.message.node_address), "10.0.0.1");
}

TEST(HeartbeatCodec, RoundTripIpv6NoServices)
{
    const Heartbeat hb = ipv6_heartbeat(0);
    const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, hb);
}

TEST(HeartbeatCodec, RoundTripIpv6MixedServicesAndEveryState)
{
    for (AnnouncedState s : {AnnouncedState::alive, AnnouncedState::unroutable, AnnouncedState::leaving}) {
        Heartbeat hb = ipv6_heartbeat(7);
        hb.state = s;
        const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
        ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
        EXPECT_EQ(d.message, hb);
        EXPECT_EQ(format_ip(d.message.node_address), "fd00::1:2:3:4");
        EXPECT_EQ(format_ip(d.message.services[0]), "2001:db8:5::1");
        EXPECT_EQ(format_ip(d.message.services[1]), "192.0.2.1");
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
    const Decoded<Heartbeat> out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, hb);
}

TEST(HeartbeatCodec, DecodedFieldsDifferWhenInputDiffers)
{
    // operator== is what the round trips rely on: make sure it can say no.
    Heartbeat a = ipv4_heartbeat(2), b = a;
    b.services[1] = parse_ip("192.0.2.99");
    EXPECT_NE(decode_heartbeat(encode_heartbeat(a, kKey), kKey).message, b);
    b = a;
    b.mac[5] ^= 1;
    EXPECT_NE(decode_heartbeat(encode_heartbeat(a, kKey), kKey).message, b);
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
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(complete_tlvs())), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, ipv4_heartbeat(2));
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
              DropReason::bad_id);
    EXPECT_EQ(decode_reason(sign(body_of(with(complete_tlvs(), T_ID, {})))), DropReason::bad_id);
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(with(complete_tlvs(), T_ID, str(std::string(32, 'x'))))), kKey);
    EXPECT_EQ(d.reason, DropReason::none);
    EXPECT_EQ(d.message.node_id, std::string(32, 'x'));
}

TEST(HeartbeatMalformed, UnknownTlvTypeIsSkipped)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.insert(tlvs.begin() + 3, Tlv{0xc8, Bytes(40, 0xab)});
    tlvs.push_back(Tlv{0x7f, {}});
    tlvs.push_back(Tlv{0, {1, 2, 3}}); // reserved type 0: skipped too
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, ipv4_heartbeat(2));
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
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message.kept_per_s, 1234u);
    EXPECT_EQ(d.message.forwarded_per_s, 0x01020304u);
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
    EXPECT_STREQ(drop_reason_name(DropReason::bad_id), "bad_id");
}

// --- claims (takeover) in heartbeats -----------------------------------------

Heartbeat with_claims(Heartbeat hb, size_t claims)
{
    for (size_t i = 0; i < claims; i++)
        hb.claims.push_back(i % 2 ? parse_ip("198.51.100." + std::to_string(i))
                                  : parse_ip("2001:db8:c::" + std::to_string(i + 1)));
    return hb;
}

TEST(HeartbeatCodec, RoundTripClaims)
{
    for (size_t n : {size_t{1}, size_t{2}, size_t{7}}) {
        const Heartbeat hb = with_claims(ipv6_heartbeat(3), n);
        const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
        ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
        EXPECT_EQ(d.message, hb);
        // Claims stay claims, services stay services.
        EXPECT_EQ(d.message.services.size(), 3u);
        ASSERT_EQ(d.message.claims.size(), n);
        EXPECT_EQ(format_ip(d.message.claims[0]), "2001:db8:c::1");
        if (n > 1) {
            EXPECT_EQ(format_ip(d.message.claims[1]), "198.51.100.1");
        }
    }
    // Claims but no services.
    const Heartbeat hb = with_claims(ipv4_heartbeat(0), 2);
    const Decoded<Heartbeat> d = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, hb);
    EXPECT_TRUE(d.message.services.empty());
}

TEST(HeartbeatCodec, RoundTripMaxClaims)
{
    Heartbeat hb = ipv4_heartbeat(kMaxOwnedServices);
    for (size_t i = 0; i < kMaxOwnedServices; i++)
        hb.claims.push_back(parse_ip("203.0.113." + std::to_string(i)));
    const Bytes d = encode_heartbeat(hb, kKey);
    EXPECT_LE(d.size(), kMaxHeartbeatSize);
    const Decoded<Heartbeat> out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, hb);
}

TEST(HeartbeatCodec, ClaimsAreTlv13)
{
    const Heartbeat hb = with_claims(ipv4_heartbeat(1), 2);
    const Bytes d = encode_heartbeat(hb, kKey);
    std::vector<Bytes> claims;
    for (size_t pos = kHeader; pos + 3 <= d.size() - kTag;) {
        const size_t len = (size_t{d[pos + 1]} << 8) | d[pos + 2];
        if (d[pos] == T_CLAIM)
            claims.emplace_back(d.begin() + pos + 3, d.begin() + pos + 3 + len);
        pos += 3 + len;
    }
    ASSERT_EQ(claims.size(), 2u);
    EXPECT_EQ(claims[0], (Bytes{6, 0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
    EXPECT_EQ(claims[1], (Bytes{4, 198, 51, 100, 1}));
}

TEST(HeartbeatMalformed, ClaimsOptionalAndHandCrafted)
{
    // A datagram of before claims existed: no claim TLV, empty claims.
    const Decoded<Heartbeat> old = decode_heartbeat(sign(body_of(complete_tlvs())), kKey);
    ASSERT_EQ(old.reason, DropReason::none) << drop_reason_name(old.reason);
    EXPECT_TRUE(old.message.claims.empty());

    std::vector<Tlv> tlvs = complete_tlvs();
    tlvs.insert(tlvs.begin() + 2, Tlv{T_CLAIM, {4, 198, 51, 100, 7}});
    tlvs.push_back(Tlv{T_CLAIM, {6, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}});
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    ASSERT_EQ(d.message.claims.size(), 2u);
    EXPECT_EQ(format_ip(d.message.claims[0]), "198.51.100.7");
    EXPECT_EQ(format_ip(d.message.claims[1]), "fd00::9");
    EXPECT_EQ(d.message.services, ipv4_heartbeat(2).services);
}

TEST(HeartbeatMalformed, TooManyClaims)
{
    std::vector<Tlv> tlvs = complete_tlvs();
    for (size_t i = 0; i < kMaxOwnedServices; i++)
        tlvs.push_back(Tlv{T_CLAIM, {4, 203, 0, 113, static_cast<uint8_t>(i)}});
    const Decoded<Heartbeat> full = decode_heartbeat(sign(body_of(tlvs)), kKey);
    ASSERT_EQ(full.reason, DropReason::none) << drop_reason_name(full.reason);
    EXPECT_EQ(full.message.claims.size(), kMaxOwnedServices);
    tlvs.push_back(Tlv{T_CLAIM, {4, 203, 0, 113, 200}}); // the 33rd
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

TEST(HeartbeatMalformed, BadClaimAddress)
{
    for (const Bytes& bad : {Bytes{5, 198, 51, 100, 1}, Bytes{4, 198, 51, 100}, Bytes{6, 198, 51, 100, 1},
                             Bytes{4, 198, 51, 100, 1, 0}, Bytes{}}) {
        std::vector<Tlv> tlvs = complete_tlvs();
        tlvs.push_back(Tlv{T_CLAIM, bad});
        EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed) << bad.size() << " bytes";
    }
}

TEST(HeartbeatEncode, RefusesTooManyOrBadClaims)
{
    Heartbeat hb = ipv4_heartbeat();
    for (size_t i = 0; i <= kMaxOwnedServices; i++)
        hb.claims.push_back(parse_ip("203.0.113." + std::to_string(i)));
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.claims.pop_back();
    EXPECT_NO_THROW(encode_heartbeat(hb, kKey));
    hb.claims[3].family = 0;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

TEST(HeartbeatEncode, CapacityFieldsRoundTripAndAreOptional)
{
    Heartbeat hb = ipv6_heartbeat(0);
    hb.load_bp = 10000;
    hb.load_bp_exact = 15000; // 150 %: past full
    hb.conn_cost_bp = 1250;
    hb.weight = 300;
    hb.standby = true;
    const Decoded<Heartbeat> out = decode_heartbeat(encode_heartbeat(hb, kKey), kKey);
    ASSERT_EQ(out.reason, DropReason::none);
    EXPECT_EQ(out.message, hb);
    // A past-full load that is not past full, or out of range: refused.
    hb.load_bp_exact = 9000;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.load_bp_exact = kMaxLoadExactBp + 1;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.load_bp_exact = 0;
    hb.weight = 0;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

TEST(HeartbeatEncode, EveryFieldAtItsLimitFitsInOneDatagram)
{
    // A 32-byte id, IPv6 everywhere, 31 services and 31 claims, the largest
    // rates and capacity fields: whatever the config and the takeover allow can be sent, and what
    // is sent decodes to the same heartbeat (the fuzzer found the limits
    // exceeding the datagram size once).
    Heartbeat hb = ipv6_heartbeat(0);
    hb.node_id = std::string(32, 'n');
    hb.kept_per_s = hb.forwarded_per_s = UINT32_MAX;
    hb.load_bp = 10000;
    hb.conn_cost_bp = 10000;
    hb.weight = 10000;
    hb.standby = true;
    hb.load_bp_exact = kMaxLoadExactBp;
    hb.shared = hb.draining = true;
    hb.table_version = UINT64_MAX;
    hb.second_hop_permille = 1000;
    for (size_t i = 0; i < kMaxOwnedServices; i++)
        hb.services.push_back(parse_ip("2001:db8:5::" + std::to_string(i + 1)));
    for (size_t i = 0; i < kMaxClaims; i++)
        hb.claims.push_back(parse_ip("2001:db8:c::" + std::to_string(i + 1)));
    const Bytes d = encode_heartbeat(hb, kKey);
    // 40 framing + 150 fixed TLVs + 16 shared-address TLVs + 62 x 20 address TLVs
    EXPECT_EQ(d.size(), 1446u);
    EXPECT_LE(d.size(), kMaxHeartbeatSize);
    const Decoded<Heartbeat> out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, hb);

    hb.claims.push_back(parse_ip("2001:db8:c::ffff"));
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

TEST(HeartbeatEncode, SharedAddressFieldsRoundTripAndAreOptional)
{
    Heartbeat hb = ipv4_heartbeat(1);
    hb.shared = true;
    hb.draining = true;
    hb.table_version = 0x0102030405060708ULL;
    hb.second_hop_permille = 37;
    const Bytes d = encode_heartbeat(hb, kKey);
    const Decoded<Heartbeat> out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, hb);
    // The version is TLV 26, big-endian; second hops TLV 27.
    const Bytes version = {26, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_NE(std::search(d.begin(), d.end(), version.begin(), version.end()), d.end());
    const Bytes hops = {27, 0, 2, 0, 37};
    EXPECT_NE(std::search(d.begin(), d.end(), hops.begin(), hops.end()), d.end());

    // Only the ones a sender sets are written: the others cost nothing.
    EXPECT_EQ(encode_heartbeat(ipv4_heartbeat(1), kKey).size() + 11 + 5, d.size());

    // Absent (an older sender): no table, not draining, no second hops.
    const Decoded<Heartbeat> old = decode_heartbeat(sign(body_of(complete_tlvs())), kKey);
    ASSERT_EQ(old.reason, DropReason::none);
    EXPECT_FALSE(old.message.shared || old.message.draining);
    EXPECT_EQ(old.message.table_version, 0u);
    EXPECT_EQ(old.message.second_hop_permille, 0u);
}

TEST(HeartbeatMalformed, SharedAddressFlagsAndTlvs)
{
    // Node flags: bit 1 shared, bit 2 draining; unknown bits are ignored.
    auto flags = [](uint8_t f) {
        std::vector<Tlv> tlvs = complete_tlvs();
        tlvs.push_back({24, {f}});
        return decode_heartbeat(sign(body_of(tlvs)), kKey);
    };
    EXPECT_TRUE(flags(2).message.shared);
    EXPECT_FALSE(flags(2).message.draining);
    EXPECT_TRUE(flags(4).message.draining);
    EXPECT_FALSE(flags(4).message.shared);
    const Decoded<Heartbeat> all = flags(0xff);
    ASSERT_EQ(all.reason, DropReason::none);
    EXPECT_TRUE(all.message.standby && all.message.shared && all.message.draining);

    auto with_tlv = [](uint8_t type, Bytes value) {
        std::vector<Tlv> tlvs = complete_tlvs();
        tlvs.push_back({type, std::move(value)});
        return decode_reason(sign(body_of(tlvs)));
    };
    EXPECT_EQ(with_tlv(26, be(1, 8)), DropReason::none);
    EXPECT_EQ(with_tlv(26, be(0, 8)), DropReason::malformed) << "version 0 is sent as no TLV";
    EXPECT_EQ(with_tlv(26, be(1, 4)), DropReason::malformed);
    EXPECT_EQ(with_tlv(27, be(1000, 2)), DropReason::none);
    EXPECT_EQ(with_tlv(27, be(1001, 2)), DropReason::malformed);
    EXPECT_EQ(with_tlv(27, be(0, 2)), DropReason::malformed);
    std::vector<Tlv> twice = complete_tlvs();
    twice.push_back({26, be(1, 8)});
    twice.push_back({26, be(2, 8)});
    EXPECT_EQ(decode_reason(sign(body_of(twice))), DropReason::malformed);

    Heartbeat hb = ipv4_heartbeat();
    hb.second_hop_permille = 1001;
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

// The silent peers (deaths confirmed by peers): flag bit 3 says the sender
// lists them, TLV 34 names each (at most kMaxSilentPeers, each once); a
// heartbeat without them (an older sender) lists nothing.
TEST(HeartbeatEncode, SilentPeersRoundTripAndAreOptional)
{
    Heartbeat hb = ipv4_heartbeat(1);
    hb.lists_silent = true;
    hb.silent = {"node-c", "node-d.example"};
    const Bytes d = encode_heartbeat(hb, kKey);
    const Decoded<Heartbeat> out = decode_heartbeat(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, hb);
    const Bytes first = {34, 0, 6, 'n', 'o', 'd', 'e', '-', 'c'};
    EXPECT_NE(std::search(d.begin(), d.end(), first.begin(), first.end()), d.end());
    EXPECT_EQ(encode_heartbeat(ipv4_heartbeat(1), kKey).size() + 9 + 17, d.size());

    // Listing nobody costs nothing but the flag bit.
    hb.silent.clear();
    EXPECT_EQ(encode_heartbeat(hb, kKey).size(), encode_heartbeat(ipv4_heartbeat(1), kKey).size());
    EXPECT_TRUE(decode_heartbeat(encode_heartbeat(hb, kKey), kKey).message.lists_silent);

    const Decoded<Heartbeat> old = decode_heartbeat(sign(body_of(complete_tlvs())), kKey);
    ASSERT_EQ(old.reason, DropReason::none);
    EXPECT_FALSE(old.message.lists_silent);
    EXPECT_TRUE(old.message.silent.empty());

    hb.silent = {"node-c", "node-c"};
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.silent = {std::string(33, 'x')};
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.silent.clear();
    for (size_t i = 0; i <= kMaxSilentPeers; i++)
        hb.silent.push_back("p" + std::to_string(i));
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.silent.pop_back();
    EXPECT_EQ(decode_heartbeat(encode_heartbeat(hb, kKey), kKey).message.silent.size(), kMaxSilentPeers);
}

TEST(HeartbeatMalformed, SilentPeerTlvs)
{
    auto decode_with = [](std::vector<Tlv> extra) {
        std::vector<Tlv> tlvs = complete_tlvs();
        tlvs.insert(tlvs.end(), extra.begin(), extra.end());
        return decode_heartbeat(sign(body_of(tlvs)), kKey);
    };
    const Decoded<Heartbeat> two = decode_with({{24, {8}}, {34, str("b")}, {34, str("a")}});
    ASSERT_EQ(two.reason, DropReason::none);
    EXPECT_TRUE(two.message.lists_silent);
    EXPECT_EQ(two.message.silent, (std::vector<std::string>{"b", "a"})); // in the order sent
    EXPECT_EQ(decode_with({{34, str("a")}, {34, str("a")}}).reason, DropReason::malformed) << "named twice";
    EXPECT_EQ(decode_with({{34, {}}}).reason, DropReason::bad_id);
    EXPECT_EQ(decode_with({{34, str(std::string(33, 'x'))}}).reason, DropReason::bad_id);
    EXPECT_EQ(decode_with({{34, {'a', 0x01}}}).reason, DropReason::bad_id);
    std::vector<Tlv> many;
    for (size_t i = 0; i < kMaxSilentPeers; i++)
        many.push_back({34, str("p" + std::to_string(i))});
    EXPECT_EQ(decode_with(many).reason, DropReason::none);
    many.push_back({34, str("one-more")});
    EXPECT_EQ(decode_with(many).reason, DropReason::malformed) << "more than kMaxSilentPeers";
}

// fill_silent_peers: in turn from `start`, as many as fit in the datagram.
TEST(HeartbeatEncode, FillSilentPeersRotatesAndFits)
{
    std::vector<std::string> ids;
    for (int i = 0; i < 5; i++)
        ids.push_back("peer-" + std::to_string(i));
    Heartbeat hb = ipv4_heartbeat(1);
    EXPECT_EQ(fill_silent_peers(hb, ids, 3), 5u);
    EXPECT_EQ(hb.silent, (std::vector<std::string>{"peer-3", "peer-4", "peer-0", "peer-1", "peer-2"}));
    EXPECT_EQ(fill_silent_peers(hb, ids, 0), 0u) << "each id once";
    Heartbeat none = ipv4_heartbeat(1);
    EXPECT_EQ(fill_silent_peers(none, {}, 7), 0u);
    EXPECT_TRUE(none.silent.empty());

    // More than kMaxSilentPeers: that many; the next call goes on from there.
    ids.clear();
    for (size_t i = 0; i < 2 * kMaxSilentPeers + 10; i++)
        ids.push_back("p" + std::to_string(1000 + i));
    Heartbeat first = ipv4_heartbeat(1);
    const size_t n = fill_silent_peers(first, ids, 0);
    EXPECT_EQ(n, kMaxSilentPeers);
    Heartbeat second = ipv4_heartbeat(1);
    fill_silent_peers(second, ids, n);
    EXPECT_EQ(second.silent.front(), ids[n]);

    // Long ids fill the datagram before the count does; what is filled is sent.
    ids.clear();
    for (size_t i = 0; i < kMaxSilentPeers; i++)
        ids.push_back(std::string(30, 'a') + std::to_string(10 + i));
    Heartbeat full = ipv6_heartbeat(20);
    const size_t fitted = fill_silent_peers(full, ids, 0);
    EXPECT_GT(fitted, 0u);
    EXPECT_LT(fitted, kMaxSilentPeers);
    const Bytes d = encode_heartbeat(full, kKey);
    EXPECT_LE(d.size(), kMaxHeartbeatSize);
    EXPECT_GT(d.size() + 35, kMaxHeartbeatSize) << "room for one more was left";
    EXPECT_EQ(decode_heartbeat(d, kKey).message, full);
}

// --- table chunks --------------------------------------------------------------

TableChunk table_chunk(uint32_t total_len, uint16_t index)
{
    TableChunk c;
    c.node_id = "node-a";
    c.incarnation = 0x1112131415161718ULL;
    c.sequence = 99;
    c.sent_unix_ms = 1'700'000'000'555ULL;
    c.version = 0x2122232425262728ULL;
    c.author = "coordinator";
    c.total_len = total_len;
    c.count = static_cast<uint16_t>(table_chunk_count(total_len));
    c.index = index;
    const size_t offset = size_t(index) * kTableChunkBytes;
    const size_t len = std::min(kTableChunkBytes, total_len - offset);
    for (size_t i = 0; i < len; i++)
        c.bytes.push_back(static_cast<uint8_t>(offset + i));
    return c;
}

TEST(TableChunkCodec, RoundTripFullAndLastChunks)
{
    const uint32_t total = 3 * kTableChunkBytes + 7;
    for (uint16_t index = 0; index < 4; index++) {
        const TableChunk c = table_chunk(total, index);
        EXPECT_EQ(c.bytes.size(), index < 3 ? kTableChunkBytes : 7u);
        const Bytes d = encode_table_chunk(c, kKey);
        EXPECT_EQ(datagram_kind(d), DatagramKind::table);
        EXPECT_EQ(std::string(d.begin(), d.begin() + 4), "PLBT");
        EXPECT_LE(d.size(), kMaxHeartbeatSize);
        const Decoded<TableChunk> out = decode_table_chunk(d, kKey);
        ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
        EXPECT_EQ(out.message, c);
        EXPECT_EQ(decode_heartbeat(d, kKey).reason, DropReason::bad_magic);
        EXPECT_EQ(decode_pin(d, kKey).reason, DropReason::bad_magic);
    }
    // A one-byte table, and the largest chunk with the longest ids.
    EXPECT_EQ(decode_table_chunk(encode_table_chunk(table_chunk(1, 0), kKey), kKey).reason, DropReason::none);
    TableChunk big = table_chunk(kMaxTableBytes, 0);
    big.node_id = big.author = std::string(32, 'n');
    big.incarnation = big.sequence = big.sent_unix_ms = UINT64_MAX;
    EXPECT_LE(encode_table_chunk(big, kKey).size(), kMaxHeartbeatSize);
    TableChunk last = table_chunk(kMaxTableBytes, uint16_t(table_chunk_count(kMaxTableBytes) - 1));
    EXPECT_EQ(decode_table_chunk(encode_table_chunk(last, kKey), kKey).message, last);
}

TEST(TableChunkEncode, RefusesChunksThatDisagreeWithTheirTable)
{
    TableChunk c = table_chunk(2 * kTableChunkBytes, 1);
    EXPECT_NO_THROW(encode_table_chunk(c, kKey));
    c.index = 2; // past the count
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(2 * kTableChunkBytes, 1);
    c.count = 3; // not ceil(total / chunk)
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(2 * kTableChunkBytes, 1);
    c.bytes.pop_back(); // shorter than its place says
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(2 * kTableChunkBytes, 1);
    c.version = 0;
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(2 * kTableChunkBytes, 1);
    c.author = "";
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(0, 0);
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
    c = table_chunk(kMaxTableBytes + 1, 0);
    EXPECT_THROW(encode_table_chunk(c, kKey), Error);
}

// A chunk's TLVs by hand (types 1..4, 28..33), consistent unless changed.
std::vector<Tlv> chunk_tlvs(uint32_t total, uint16_t index, uint16_t count, size_t len)
{
    return {
        {1, str("node-a")}, {2, be(1, 8)}, {3, be(2, 8)}, {4, be(3, 8)},
        {28, be(5, 8)},     {29, str("s1")}, {30, be(index, 2)}, {31, be(count, 2)},
        {32, be(total, 4)}, {33, Bytes(len, 0xab)},
    };
}

TEST(TableChunkMalformed, HandCraftedChunksAreCheckedAgainstTheirTable)
{
    auto reason = [](const std::vector<Tlv>& tlvs) { return decode_table_chunk(sign(body_of(tlvs), 'T'), kKey).reason; };
    const uint32_t total = kTableChunkBytes + 10;
    EXPECT_EQ(reason(chunk_tlvs(total, 0, 2, kTableChunkBytes)), DropReason::none);
    EXPECT_EQ(reason(chunk_tlvs(total, 1, 2, 10)), DropReason::none);
    EXPECT_EQ(reason(chunk_tlvs(total, 1, 2, 11)), DropReason::malformed) << "longer than the rest";
    EXPECT_EQ(reason(chunk_tlvs(total, 0, 2, 10)), DropReason::malformed) << "a short chunk before the last";
    EXPECT_EQ(reason(chunk_tlvs(total, 2, 2, 10)), DropReason::malformed) << "index past the count";
    EXPECT_EQ(reason(chunk_tlvs(total, 0, 3, kTableChunkBytes)), DropReason::malformed) << "count";
    EXPECT_EQ(reason(chunk_tlvs(0, 0, 0, 0)), DropReason::malformed) << "empty table";
    EXPECT_EQ(reason(chunk_tlvs(uint32_t(kMaxTableBytes) + 1, 0, uint16_t(table_chunk_count(kMaxTableBytes + 1)),
                                kTableChunkBytes)),
              DropReason::malformed)
        << "over the size limit";
    for (uint8_t missing : {1, 2, 3, 4, 28, 29, 30, 31, 32, 33}) {
        std::vector<Tlv> tlvs = chunk_tlvs(total, 1, 2, 10);
        std::erase_if(tlvs, [&](const Tlv& t) { return t.type == missing; });
        EXPECT_EQ(reason(tlvs), DropReason::malformed) << "without type " << int(missing);
    }
    std::vector<Tlv> bad_author = chunk_tlvs(total, 1, 2, 10);
    bad_author[5].value = {'a', 0};
    EXPECT_EQ(reason(bad_author), DropReason::bad_id);
    std::vector<Tlv> unknown = chunk_tlvs(total, 1, 2, 10);
    unknown.push_back({200, {1, 2, 3}});
    EXPECT_EQ(reason(unknown), DropReason::none) << "unknown types are skipped";
}

TEST(TableChunkReject, WrongKeyBitFlipsAndTruncations)
{
    const Bytes good = encode_table_chunk(table_chunk(100, 0), kKey);
    EXPECT_EQ(decode_table_chunk(good, kOtherKey).reason, DropReason::bad_mac);
    for (size_t bit = 0; bit < good.size() * 8; bit++) {
        Bytes d = good;
        d[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        const Decoded<TableChunk> out = decode_table_chunk(d, kKey);
        EXPECT_NE(out.reason, DropReason::none) << "bit " << bit;
        EXPECT_EQ(out.message, TableChunk{}) << "a refused chunk leaves nothing set";
    }
    for (size_t n = 0; n < good.size(); n++)
        EXPECT_NE(decode_table_chunk(Bytes(good.begin(), good.begin() + n), kKey).reason, DropReason::none);
}

// --- flow announcements -------------------------------------------------------

FlowAnnouncement announcement(uint8_t family, size_t flows)
{
    FlowAnnouncement a;
    a.node_id = "node-c";
    a.incarnation = 0x0a0b0c0d0e0f1011ULL;
    a.sequence = 0x8877665544332211ULL;
    a.sent_unix_ms = 1'700'000'900'000ULL;
    a.to = "node-a";
    a.service_address = family == LB_FAMILY_IPV4 ? parse_ip("192.0.2.80") : parse_ip("2001:db8:80::1");
    for (size_t i = 0; i < flows; i++) {
        FlowAnnouncement::Flow f;
        f.client = family == LB_FAMILY_IPV4 ? parse_ip("198.51.100." + std::to_string(i + 1))
                                            : parse_ip("2001:db8:c1:ffff:ffff:ffff:ffff:" + std::to_string(i + 1));
        f.client_port = static_cast<uint16_t>(0xfff0 - i);
        f.service_port = i % 2 ? 443 : 80;
        a.flows.push_back(f);
    }
    return a;
}

// announcement(LB_FAMILY_IPV4, 2) as TLVs, in another order than the encoder's.
std::vector<Tlv> complete_announcement_tlvs()
{
    return {
        {T_FLOW, {4, 198, 51, 100, 1, 0xff, 0xf0, 0, 80}},
        {T_TO, str("node-a")},
        {T_SENT, be(1'700'000'900'000ULL, 8)},
        {T_SERVICE_ADDRESS, {4, 192, 0, 2, 80}},
        {T_ID, str("node-c")},
        {T_SEQUENCE, be(0x8877665544332211ULL, 8)},
        {T_INCARNATION, be(0x0a0b0c0d0e0f1011ULL, 8)},
        {T_FLOW, {4, 198, 51, 100, 2, 0xff, 0xef, 0x01, 0xbb}},
    };
}

DropReason announcement_reason(const Bytes& d) { return decode_announcement(d, kKey).reason; }

TEST(AnnounceCodec, RoundTripIpv4AndIpv6With0And1And50Flows)
{
    for (uint8_t family : {uint8_t{LB_FAMILY_IPV4}, uint8_t{LB_FAMILY_IPV6}}) {
        for (size_t n : {size_t{0}, size_t{1}, size_t{50}}) {
            const FlowAnnouncement a = announcement(family, n);
            const Bytes d = encode_announcement(a, kKey);
            EXPECT_LE(d.size(), kMaxHeartbeatSize);
            const Decoded<FlowAnnouncement> out = decode_announcement(d, kKey);
            ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason) << " family "
                                                    << int(family) << ", " << n << " flows";
            EXPECT_EQ(out.message, a);
            ASSERT_EQ(out.message.flows.size(), n);
            if (n) {
                EXPECT_EQ(out.message.flows[0].client_port, 0xfff0);
                EXPECT_EQ(out.message.flows[0].service_port, 80);
                EXPECT_EQ(format_ip(out.message.flows[0].client),
                          family == LB_FAMILY_IPV4 ? "198.51.100.1" : "2001:db8:c1:ffff:ffff:ffff:ffff:1");
            }
        }
    }
}

TEST(AnnounceCodec, FullAnnouncementFitsInOneDatagram)
{
    FlowAnnouncement a = announcement(LB_FAMILY_IPV6, kMaxFlowsPerAnnouncement);
    a.node_id = std::string(32, 'n');
    a.to = std::string(32, 't');
    a.service_address = parse_ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    a.incarnation = a.sequence = a.sent_unix_ms = UINT64_MAX;
    for (auto& f : a.flows)
        f.client_port = f.service_port = UINT16_MAX;
    ASSERT_GE(kMaxFlowsPerAnnouncement, 50u);
    const Bytes d = encode_announcement(a, kKey);
    EXPECT_LE(d.size(), kMaxHeartbeatSize);
    const Decoded<FlowAnnouncement> out = decode_announcement(d, kKey);
    ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
    EXPECT_EQ(out.message, a);
}

TEST(AnnounceCodec, HeaderAndHmac)
{
    const Bytes d = encode_announcement(announcement(LB_FAMILY_IPV6, 3), kKey);
    ASSERT_GE(d.size(), kHeader + kTag);
    EXPECT_EQ(Bytes(d.begin(), d.begin() + 6), (Bytes{'P', 'L', 'B', 'F', 1, 0}));
    EXPECT_EQ((size_t{d[6]} << 8) | d[7], d.size() - kHeader - kTag);
    const Bytes expect = hmac_of(kKey, d.data(), d.size() - kTag);
    EXPECT_TRUE(std::equal(expect.begin(), expect.end(), d.end() - kTag));
}

TEST(AnnounceCodec, FlowTlvLayout)
{
    // Both flows and every field, found by type in the encoder's output.
    const Bytes d = encode_announcement(announcement(LB_FAMILY_IPV4, 2), kKey);
    std::vector<Bytes> flows;
    Bytes to, service;
    for (size_t pos = kHeader; pos + 3 <= d.size() - kTag;) {
        const size_t len = (size_t{d[pos + 1]} << 8) | d[pos + 2];
        const Bytes value(d.begin() + pos + 3, d.begin() + pos + 3 + len);
        if (d[pos] == T_FLOW)
            flows.push_back(value);
        else if (d[pos] == T_TO)
            to = value;
        else if (d[pos] == T_SERVICE_ADDRESS)
            service = value;
        pos += 3 + len;
    }
    EXPECT_EQ(to, str("node-a"));
    EXPECT_EQ(service, (Bytes{4, 192, 0, 2, 80}));
    ASSERT_EQ(flows.size(), 2u);
    EXPECT_EQ(flows[0], (Bytes{4, 198, 51, 100, 1, 0xff, 0xf0, 0, 80}));
    EXPECT_EQ(flows[1], (Bytes{4, 198, 51, 100, 2, 0xff, 0xef, 0x01, 0xbb}));
}

TEST(AnnounceCodec, DecodedDiffersWhenInputDiffers)
{
    const FlowAnnouncement a = announcement(LB_FAMILY_IPV4, 2);
    const FlowAnnouncement got = decode_announcement(encode_announcement(a, kKey), kKey).message;
    FlowAnnouncement b = a;
    b.flows[1].service_port = 8443;
    EXPECT_NE(got, b);
    b = a;
    b.to = "node-b";
    EXPECT_NE(got, b);
    b = a;
    b.flows.pop_back();
    EXPECT_NE(got, b);
}

TEST(AnnounceReject, WrongKeyIsBadMac)
{
    const Bytes d = encode_announcement(announcement(LB_FAMILY_IPV6, 2), kKey);
    EXPECT_EQ(decode_announcement(d, kOtherKey).reason, DropReason::bad_mac);
    EXPECT_EQ(decode_announcement(d, Bytes{}).reason, DropReason::bad_mac);
    EXPECT_EQ(decode_announcement(d, kKey).reason, DropReason::none);
}

TEST(AnnounceReject, EverySingleBitFlip)
{
    const Bytes good = encode_announcement(announcement(LB_FAMILY_IPV6, 3), kKey);
    for (size_t byte = 0; byte < good.size(); byte++) {
        for (int bit = 0; bit < 8; bit++) {
            Bytes d = good;
            d[byte] ^= static_cast<uint8_t>(1u << bit);
            const DropReason r = announcement_reason(d);
            ASSERT_NE(r, DropReason::none) << "byte " << byte << " bit " << bit;
            if (byte < 5) // magic, version
                EXPECT_EQ(r, DropReason::bad_magic) << "byte " << byte << " bit " << bit;
            else if (byte == 6 || byte == 7) // body_len
                EXPECT_EQ(r, DropReason::truncated) << "byte " << byte << " bit " << bit;
            else // flags, body, tag
                EXPECT_EQ(r, DropReason::bad_mac) << "byte " << byte << " bit " << bit;
        }
    }
}

TEST(AnnounceReject, EveryTruncation)
{
    const Bytes good = encode_announcement(announcement(LB_FAMILY_IPV4, 2), kKey);
    for (size_t n = 0; n < good.size(); n++) {
        const Bytes d(good.begin(), good.begin() + n);
        const DropReason r = announcement_reason(d);
        EXPECT_NE(r, DropReason::none) << "length " << n;
        EXPECT_TRUE(r == DropReason::truncated || r == DropReason::bad_magic || r == DropReason::bad_mac)
            << "length " << n << ": " << drop_reason_name(r);
    }
}

TEST(AnnounceReject, RandomGarbageNeverAccepted)
{
    std::mt19937 rng(20240607);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<size_t> length(0, 300);
    for (int i = 0; i < 2000; i++) {
        Bytes d(length(rng));
        for (auto& b : d)
            b = static_cast<uint8_t>(byte(rng));
        if (i % 2 && d.size() >= kHeader + kTag) {
            const size_t body_len = d.size() - kHeader - kTag;
            const Bytes h = {'P', 'L', 'B', 'F', 1, 0, static_cast<uint8_t>(body_len >> 8),
                             static_cast<uint8_t>(body_len)};
            std::copy(h.begin(), h.end(), d.begin());
        }
        ASSERT_NE(announcement_reason(d), DropReason::none) << "datagram " << i;
    }
}

TEST(AnnounceMalformed, HandCraftedCompleteDatagramIsAccepted)
{
    const Decoded<FlowAnnouncement> d = decode_announcement(sign(body_of(complete_announcement_tlvs()), 'F'), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, announcement(LB_FAMILY_IPV4, 2));
}

TEST(AnnounceMalformed, EachRequiredTlvMissing)
{
    for (uint8_t missing : {T_ID, T_INCARNATION, T_SEQUENCE, T_SENT, T_TO, T_SERVICE_ADDRESS}) {
        std::vector<Tlv> tlvs = complete_announcement_tlvs();
        std::erase_if(tlvs, [&](const Tlv& t) { return t.type == missing; });
        EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed)
            << "without type " << int(missing);
    }
    // Flows may be absent.
    std::vector<Tlv> tlvs = complete_announcement_tlvs();
    std::erase_if(tlvs, [](const Tlv& t) { return t.type == T_FLOW; });
    const Decoded<FlowAnnouncement> d = decode_announcement(sign(body_of(tlvs), 'F'), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, announcement(LB_FAMILY_IPV4, 0));
}

TEST(AnnounceMalformed, FlowFamilyMismatch)
{
    // An IPv6 flow on an IPv4 service address, before or after the address.
    const Bytes v6_flow = {6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x9c, 0x40, 0, 80};
    std::vector<Tlv> tlvs = complete_announcement_tlvs();
    tlvs.push_back(Tlv{T_FLOW, v6_flow});
    EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed);
    tlvs = complete_announcement_tlvs();
    tlvs.insert(tlvs.begin(), Tlv{T_FLOW, v6_flow});
    EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed);

    // IPv4 flows (the complete set's) on an IPv6 service address.
    tlvs = with(complete_announcement_tlvs(), T_SERVICE_ADDRESS,
                {6, 0x20, 0x01, 0x0d, 0xb8, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed);
    // Without the flows, that IPv6 service address is fine: the family check is what failed.
    std::erase_if(tlvs, [](const Tlv& t) { return t.type == T_FLOW; });
    tlvs.push_back(Tlv{T_FLOW, v6_flow});
    const Decoded<FlowAnnouncement> d = decode_announcement(sign(body_of(tlvs), 'F'), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    ASSERT_EQ(d.message.flows.size(), 1u);
    EXPECT_EQ(format_ip(d.message.flows[0].client), "2001:db8::1");
    EXPECT_EQ(d.message.flows[0].client_port, 40000);
}

TEST(AnnounceMalformed, BadFlowTlv)
{
    for (const Bytes& bad : {
             Bytes{4, 198, 51, 100, 3, 0xff, 0xf0, 0},          // a port byte short
             Bytes{4, 198, 51, 100, 3, 0xff, 0xf0, 0, 80, 0},   // a byte too many
             Bytes{5, 198, 51, 100, 3, 0xff, 0xf0, 0, 80},      // no such family
             Bytes{6, 198, 51, 100, 3, 0xff, 0xf0, 0, 80},      // IPv6 with 4 address bytes
             Bytes{0, 80, 0, 80},                               // ports only
             Bytes{},
         }) {
        std::vector<Tlv> tlvs = complete_announcement_tlvs();
        tlvs.push_back(Tlv{T_FLOW, bad});
        EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed) << bad.size() << " bytes";
    }
}

TEST(AnnounceMalformed, BadFieldValues)
{
    const auto reason = [](const std::vector<Tlv>& tlvs) { return announcement_reason(sign(body_of(tlvs), 'F')); };
    // Ids out of range are told apart (NodeIdValidation below).
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_TO, {})), DropReason::bad_id);
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_TO, str(std::string(33, 't')))), DropReason::bad_id);
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_ID, {})), DropReason::bad_id);
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_SEQUENCE, be(1, 4))), DropReason::malformed);
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_SERVICE_ADDRESS, {4, 192, 0, 2})), DropReason::malformed);
    EXPECT_EQ(reason(with(complete_announcement_tlvs(), T_SERVICE_ADDRESS, {0, 192, 0, 2, 80})),
              DropReason::malformed);
    const Decoded<FlowAnnouncement> d =
        decode_announcement(sign(body_of(with(complete_announcement_tlvs(), T_TO, str(std::string(32, 't')))), 'F'),
                            kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message.to, std::string(32, 't'));
}

TEST(AnnounceMalformed, RepeatedSingleField)
{
    for (const Tlv& again : {Tlv{T_TO, str("node-b")}, Tlv{T_SERVICE_ADDRESS, {4, 192, 0, 2, 81}},
                             Tlv{T_ID, str("node-c")}, Tlv{T_SENT, be(1, 8)}}) {
        std::vector<Tlv> tlvs = complete_announcement_tlvs();
        tlvs.push_back(again);
        EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed) << int(again.type);
    }
}

TEST(AnnounceMalformed, TooManyFlows)
{
    std::vector<Tlv> tlvs = complete_announcement_tlvs();
    std::erase_if(tlvs, [](const Tlv& t) { return t.type == T_FLOW; });
    for (size_t i = 0; i < kMaxFlowsPerAnnouncement; i++)
        tlvs.push_back(Tlv{T_FLOW, {4, 198, 51, 100, static_cast<uint8_t>(i), 0x9c, 0x40, 0, 80}});
    const Decoded<FlowAnnouncement> full = decode_announcement(sign(body_of(tlvs), 'F'), kKey);
    ASSERT_EQ(full.reason, DropReason::none) << drop_reason_name(full.reason);
    EXPECT_EQ(full.message.flows.size(), kMaxFlowsPerAnnouncement);
    tlvs.push_back(Tlv{T_FLOW, {4, 198, 51, 100, 250, 0x9c, 0x40, 0, 80}});
    EXPECT_EQ(announcement_reason(sign(body_of(tlvs), 'F')), DropReason::malformed);
}

TEST(AnnounceMalformed, UnknownTlvTypeIsSkipped)
{
    // Heartbeat-only types mean nothing in an announcement: skipped like any unknown one.
    std::vector<Tlv> tlvs = complete_announcement_tlvs();
    tlvs.insert(tlvs.begin() + 1, Tlv{0xc8, Bytes(40, 0xab)});
    tlvs.push_back(Tlv{T_INTERVAL, be(0, 4)});
    tlvs.push_back(Tlv{T_CLAIM, {}});
    tlvs.push_back(Tlv{0, {1}});
    const Decoded<FlowAnnouncement> d = decode_announcement(sign(body_of(tlvs), 'F'), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message, announcement(LB_FAMILY_IPV4, 2));
    // A TLV cut by the end of the body is not skipped.
    Bytes body = body_of(complete_announcement_tlvs());
    body.insert(body.end(), {0xc8, 0x00, 0x05, 1});
    EXPECT_EQ(announcement_reason(sign(body, 'F')), DropReason::malformed);
}

TEST(AnnounceEncode, RefusesOutOfRange)
{
    FlowAnnouncement a = announcement(LB_FAMILY_IPV4, kMaxFlowsPerAnnouncement + 1);
    EXPECT_THROW(encode_announcement(a, kKey), Error);
    a.flows.pop_back();
    EXPECT_NO_THROW(encode_announcement(a, kKey));

    a = announcement(LB_FAMILY_IPV4, 2);
    a.flows[1].client = parse_ip("2001:db8::1");
    EXPECT_THROW(encode_announcement(a, kKey), Error);

    a = announcement(LB_FAMILY_IPV4, 1);
    a.to = "";
    EXPECT_THROW(encode_announcement(a, kKey), Error);
    a.to = std::string(33, 't');
    EXPECT_THROW(encode_announcement(a, kKey), Error);

    a = announcement(LB_FAMILY_IPV4, 1);
    a.node_id = "";
    EXPECT_THROW(encode_announcement(a, kKey), Error);
    a.node_id = std::string(33, 'n');
    EXPECT_THROW(encode_announcement(a, kKey), Error);

    a = announcement(LB_FAMILY_IPV4, 0);
    a.service_address = IpAddress{};
    EXPECT_THROW(encode_announcement(a, kKey), Error);
}

// --- telling the kinds apart ------------------------------------------------

TEST(DatagramKinds, OfEncodedDatagrams)
{
    EXPECT_EQ(datagram_kind(encode_heartbeat(ipv4_heartbeat(1), kKey)), DatagramKind::heartbeat);
    EXPECT_EQ(datagram_kind(encode_heartbeat(with_claims(ipv6_heartbeat(1), 2), kKey)), DatagramKind::heartbeat);
    EXPECT_EQ(datagram_kind(encode_announcement(announcement(LB_FAMILY_IPV4, 0), kKey)), DatagramKind::announcement);
    EXPECT_EQ(datagram_kind(encode_announcement(announcement(LB_FAMILY_IPV6, 50), kKey)),
              DatagramKind::announcement);
}

TEST(DatagramKinds, OnlyTheMagicCounts)
{
    EXPECT_EQ(datagram_kind(Bytes{'P', 'L', 'B', 'H'}), DatagramKind::heartbeat);
    EXPECT_EQ(datagram_kind(Bytes{'P', 'L', 'B', 'F'}), DatagramKind::announcement);
    EXPECT_EQ(datagram_kind(Bytes{'P', 'L', 'B', 'F', 9, 9}), DatagramKind::announcement);
}

TEST(DatagramKinds, GarbageAndShort)
{
    EXPECT_EQ(datagram_kind(Bytes{}), DatagramKind::unknown);
    EXPECT_EQ(datagram_kind(Bytes{'P', 'L', 'B'}), DatagramKind::unknown);
    EXPECT_EQ(datagram_kind(Bytes{'P', 'L', 'B', 'X', 1, 0, 0, 0}), DatagramKind::unknown);
    EXPECT_EQ(datagram_kind(Bytes{'p', 'l', 'b', 'h', 1, 0, 0, 0}), DatagramKind::unknown);
    EXPECT_EQ(datagram_kind(Bytes{'X', 'P', 'L', 'B', 'H'}), DatagramKind::unknown);
    EXPECT_EQ(datagram_kind(Bytes(100, 0)), DatagramKind::unknown);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int i = 0; i < 1000; i++) {
        Bytes d(1 + i % 64);
        for (auto& b : d)
            b = static_cast<uint8_t>(byte(rng));
        d[0] = 'Q'; // keeps the magic away by construction
        EXPECT_EQ(datagram_kind(d), DatagramKind::unknown);
    }
}

TEST(DatagramCrossKind, AnnouncementIsNeverAHeartbeat)
{
    for (size_t n : {size_t{0}, size_t{2}}) {
        const Bytes d = encode_announcement(announcement(LB_FAMILY_IPV4, n), kKey);
        EXPECT_EQ(decode_heartbeat(d, kKey).reason, DropReason::bad_magic);
    }
}

TEST(DatagramCrossKind, HeartbeatIsNeverAnAnnouncement)
{
    for (const Heartbeat& hb : {ipv4_heartbeat(0), with_claims(ipv6_heartbeat(2), 2)}) {
        const Bytes d = encode_heartbeat(hb, kKey);
        EXPECT_EQ(decode_announcement(d, kKey).reason, DropReason::bad_magic);
    }
}

TEST(DatagramCrossKind, OneKindsBodyUnderTheOthersMagicIsMalformed)
{
    // Even signed under the right key with the other magic, a body of the
    // wrong kind lacks required fields.
    EXPECT_EQ(announcement_reason(sign(body_of(complete_tlvs()), 'F')), DropReason::malformed);
    EXPECT_EQ(decode_reason(sign(body_of(complete_announcement_tlvs()), 'H')), DropReason::malformed);
}

// --- replay guard ------------------------------------------------------------

// The receiver's clocks: monotonic (ages what the guard remembers) and wall
// (the window of a first datagram). They start at unrelated values; a step
// of the wall clock moves only the wall clock.
constexpr uint64_t kNow = 1'700'000'000'000ULL; // wall clock, unix ms
constexpr uint64_t kMono = 5'000'000;           // monotonic ms (uptime)
constexpr uint64_t kWindow = 30'000;
constexpr uint64_t kHour = 3'600'000;

Heartbeat at(const std::string& id, uint64_t incarnation, uint64_t sequence, uint64_t sent = kNow)
{
    Heartbeat hb = ipv4_heartbeat();
    hb.node_id = id;
    hb.incarnation = incarnation;
    hb.sequence = sequence;
    hb.sent_unix_ms = sent;
    return hb;
}

// Both clocks `elapsed` ms after the start (no step).
DropReason check_after(ReplayGuard& g, const Heartbeat& hb, uint64_t elapsed = 0)
{
    return g.check(hb, kMono + elapsed, kNow + elapsed);
}

TEST(ReplayGuard, SameDatagramTwice)
{
    ReplayGuard g(kWindow);
    const Bytes d = encode_heartbeat(at("a", 100, 7), kKey);
    const Decoded<Heartbeat> first = decode_heartbeat(d, kKey), second = decode_heartbeat(d, kKey);
    ASSERT_EQ(first.reason, DropReason::none);
    EXPECT_EQ(check_after(g, first.message), DropReason::none);
    EXPECT_EQ(check_after(g, second.message, 10), DropReason::replayed);
}

TEST(ReplayGuard, OlderSequenceReplayedNewerAccepted)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 100, 10)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 9)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 100, 1)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 100, 11)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 1000)), DropReason::none); // gaps are fine (lost datagrams)
    EXPECT_EQ(check_after(g, at("a", 100, 999)), DropReason::replayed);
}

TEST(ReplayGuard, NewIncarnationRestartsSequence)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 100, 500)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 200, 1)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 200, 1)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 200, 2)), DropReason::none);
}

TEST(ReplayGuard, OldIncarnationAfterNewerIsReplayed)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 200, 1)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 501)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 100, UINT64_MAX)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 200, 2)), DropReason::none);
}

// A node restarted with a lower incarnation (its state directory lost) is
// refused while its last accepted datagram is within the window (a replay
// would look the same), taken again after that, not never.
TEST(ReplayGuard, LowerIncarnationTakenAgainAfterAWindowOfSilence)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 200, 7, kNow)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 1, kNow + 1000), 1000), DropReason::replayed);
    const uint64_t later = kWindow + 1;
    EXPECT_EQ(check_after(g, at("a", 100, 1, kNow + later), later), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 1, kNow + later), later), DropReason::replayed);
}

// What was captured before a sender fell silent is stale by its send time
// once the sender is forgotten: forgetting opens no replay.
TEST(ReplayGuard, ForgottenSenderCannotBeReplayed)
{
    ReplayGuard g(kWindow);
    const Heartbeat captured = at("a", 100, 7, kNow);
    EXPECT_EQ(check_after(g, captured), DropReason::none);
    Heartbeat next = captured;
    next.sequence = 8;
    EXPECT_EQ(check_after(g, next, kWindow + 1), DropReason::stale);
}

// The receiver's wall clock stepped an hour either way: a known
// incarnation's next sequence is still taken (the peer stays alive), and
// what was taken is still a replay.
TEST(ReplayGuard, ReceiverWallClockSteppedAnHourKeepsAKnownIncarnation)
{
    for (const int64_t step : {int64_t(kHour), -int64_t(kHour)}) {
        SCOPED_TRACE(step);
        ReplayGuard g(kWindow);
        EXPECT_EQ(g.check(at("a", 100, 7, kNow), kMono, kNow), DropReason::none);
        const uint64_t stepped = kNow + 500 + uint64_t(step);
        EXPECT_EQ(g.check(at("a", 100, 8, kNow + 500), kMono + 500, stepped), DropReason::none);
        EXPECT_EQ(g.check(at("a", 100, 9, kNow + 1000), kMono + 1000, stepped + 500), DropReason::none);
        EXPECT_EQ(g.check(at("a", 100, 9, kNow + 1000), kMono + 1010, stepped + 510), DropReason::replayed);
        EXPECT_EQ(g.check(at("a", 100, 7, kNow), kMono + 1020, stepped + 520), DropReason::replayed);
        // And on and on: the step aged nothing out.
        for (uint64_t i = 1; i <= 100; i++)
            EXPECT_EQ(g.check(at("a", 100, 9 + i, kNow + 1000 + i * 500), kMono + 1000 + i * 500,
                              stepped + 500 + i * 500),
                      DropReason::none);
    }
}

// The sender's wall clock stepped: its send times jump, its sequence does
// not; it is taken.
TEST(ReplayGuard, SenderWallClockSteppedAnHourKeepsAKnownIncarnation)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 100, 7, kNow)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 8, kNow + kHour), 500), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 9, kNow - kHour), 1000), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 9, kNow + 1500), 1500), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("a", 100, 10, 0), 2000), DropReason::none);
}

// The window guards the first datagram of an incarnation not known here,
// and tells how far off the sender's clock is.
TEST(ReplayGuard, FirstDatagramOfAnUnknownIncarnationOutsideTheWindowIsStale)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 1, 1, kNow + kHour)), DropReason::stale);
    EXPECT_EQ(g.last_stale_skew_ms(), int64_t(kHour));
    EXPECT_EQ(check_after(g, at("b", 1, 1, kNow - kHour)), DropReason::stale);
    EXPECT_EQ(g.last_stale_skew_ms(), -int64_t(kHour));
    EXPECT_EQ(g.remembered(), 0u);
    // A new incarnation of a known sender: the same rule, the old one kept.
    EXPECT_EQ(check_after(g, at("c", 1, 5)), DropReason::none);
    EXPECT_EQ(check_after(g, at("c", 2, 1, kNow - kHour), 100), DropReason::stale);
    EXPECT_EQ(check_after(g, at("c", 1, 6), 200), DropReason::none);
    EXPECT_EQ(check_after(g, at("c", 2, 1, kNow + 300), 300), DropReason::none);
    // The receiver's own clock stepped: a first datagram with a true time is
    // refused too (its skew is logged; the clocks must agree to join).
    EXPECT_EQ(g.check(at("d", 1, 1, kNow), kMono, kNow + kHour), DropReason::stale);
    EXPECT_EQ(g.last_stale_skew_ms(), -int64_t(kHour));
    EXPECT_EQ(g.check(at("e", 1, 1, 0), kMono, UINT64_MAX), DropReason::stale);
    EXPECT_EQ(g.last_stale_skew_ms(), -INT64_MAX); // saturated, not wrapped
}

// Silence ages a sender out on the monotonic clock: a wall clock stepped
// forward ages nothing (or the sender's next heartbeat would be judged by
// the window, and refused), nor does one stepped back keep a sender.
TEST(ReplayGuard, AgingFollowsTheMonotonicClockOnly)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 100, 7, kNow), kMono, kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 8, kNow + 100), kMono + 100, kNow + 2 * kHour), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 8, kNow + 100), kMono + 200, kNow - 2 * kHour), DropReason::replayed);
    // After a window of monotonic silence, the wall clock back where it
    // started: a capture from before the silence is judged by its send time.
    Heartbeat captured = at("a", 100, 9, kNow - 2 * kWindow);
    EXPECT_EQ(g.check(captured, kMono + 100 + kWindow + 1, kNow), DropReason::stale);
}

// A wall clock that went back forgets nothing: a datagram from before the
// step is still a replay.
TEST(ReplayGuard, ClockGoingBackForgetsNothing)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(g.check(at("a", 100, 7, kNow), kMono, kNow), DropReason::none);
    EXPECT_EQ(g.check(at("a", 100, 7, kNow), kMono + 10, kNow - 5000), DropReason::replayed);
}

// Forged ids fill the table for one window only.
TEST(ReplayGuard, SendersAgeOutOfTheTable)
{
    ReplayGuard g(kWindow);
    for (int i = 0; i < 2000; i++)
        EXPECT_EQ(check_after(g, at("id" + std::to_string(i), 1, 1, kNow)), DropReason::none);
    EXPECT_EQ(g.remembered(), 2000u);
    const uint64_t later = kWindow + 1;
    for (int i = 0; i < 1024; i++) // sweeps run every 1024 checks
        check_after(g, at("fresh", 1, uint64_t(i) + 1, kNow + later), later);
    EXPECT_EQ(g.remembered(), 1u);
}

TEST(ReplayGuard, OutsideWindowPastAndFutureIsStale)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 1, 1, kNow - kWindow - 1)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("b", 1, 2, kNow + kWindow + 1)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("c", 1, 3, 0)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("d", 1, 4, UINT64_MAX)), DropReason::stale);
    // The window's edges are inside it.
    EXPECT_EQ(check_after(g, at("e", 1, 5, kNow - kWindow)), DropReason::none);
    EXPECT_EQ(check_after(g, at("f", 1, 6, kNow + kWindow)), DropReason::none);
}

TEST(ReplayGuard, RecordsOnlyWhatItAccepts)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 1, 5)), DropReason::none);
    // A stale datagram of a newer incarnation must not advance the record.
    EXPECT_EQ(check_after(g, at("a", 9, 1, kNow + 2 * kWindow)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("a", 1, 6)), DropReason::none);
    // A stale first datagram of an unknown id records nothing either.
    EXPECT_EQ(check_after(g, at("b", 5, 100, 0)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("b", 5, 1)), DropReason::none);
}

TEST(ReplayGuard, PerIdIndependence)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 100, 10)), DropReason::none);
    EXPECT_EQ(check_after(g, at("b", 100, 10)), DropReason::none);
    EXPECT_EQ(check_after(g, at("b", 1, 1)), DropReason::replayed);
    EXPECT_EQ(check_after(g, at("c", 1, 1)), DropReason::none);
    EXPECT_EQ(check_after(g, at("a", 100, 11)), DropReason::none);
    EXPECT_EQ(check_after(g, at("b", 100, 11)), DropReason::none);
    EXPECT_EQ(check_after(g, at("c", 1, 1)), DropReason::replayed);
}

TEST(ReplayGuard, SetWindow)
{
    ReplayGuard g(kWindow);
    EXPECT_EQ(check_after(g, at("a", 1, 1, kNow - 5000)), DropReason::none);
    g.set_window(1000);
    EXPECT_EQ(g.window_ms(), 1000u);
    EXPECT_EQ(check_after(g, at("b", 1, 1, kNow - 5000)), DropReason::stale);
    EXPECT_EQ(check_after(g, at("b", 1, 2, kNow - 1000)), DropReason::none);
    // A known incarnation is not judged by the window at all.
    EXPECT_EQ(check_after(g, at("a", 1, 2, kNow - 5000)), DropReason::none);
}

// --- pin announcements (stateful URI rules) ----------------------------------

PinAnnouncement pin_announcement(uint8_t family, bool pinned)
{
    PinAnnouncement p;
    p.node_id = "node-a";
    p.incarnation = 0x0102030405060708ULL;
    p.sequence = 77;
    p.sent_unix_ms = 1'700'000'123'000ULL;
    p.pinned = pinned;
    p.client = family == LB_FAMILY_IPV4 ? parse_ip("198.51.100.9") : parse_ip("2001:db8:c1::9");
    p.serving = std::string(32, 's');
    p.rule = 15;
    p.ttl_ms = pinned ? 600'000 : 0;
    return p;
}

TEST(PinCodec, RoundTripBothFamiliesAndOps)
{
    for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6})
        for (bool pinned : {true, false}) {
            const PinAnnouncement p = pin_announcement(family, pinned);
            const Bytes d = encode_pin(p, kKey);
            EXPECT_EQ(datagram_kind(d), DatagramKind::pin);
            EXPECT_EQ(std::string(d.begin(), d.begin() + 4), "PLBP");
            const Decoded<PinAnnouncement> out = decode_pin(d, kKey);
            ASSERT_EQ(out.reason, DropReason::none) << drop_reason_name(out.reason);
            EXPECT_EQ(out.message, p);
            // Another kind's decoder refuses it by its magic.
            EXPECT_EQ(decode_heartbeat(d, kKey).reason, DropReason::bad_magic);
            EXPECT_EQ(decode_announcement(d, kKey).reason, DropReason::bad_magic);
        }
}

TEST(PinReject, WrongKeyBitFlipsAndTruncations)
{
    const Bytes good = encode_pin(pin_announcement(LB_FAMILY_IPV6, true), kKey);
    const std::vector<uint8_t> other(32, 0x5a);
    EXPECT_EQ(decode_pin(good, other).reason, DropReason::bad_mac);
    for (size_t bit = 0; bit < good.size() * 8; bit++) {
        Bytes d = good;
        d[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        const Decoded<PinAnnouncement> out = decode_pin(d, kKey);
        EXPECT_NE(out.reason, DropReason::none) << "bit " << bit;
        EXPECT_EQ(out.message, PinAnnouncement{}) << "a refused pin leaves nothing set";
    }
    for (size_t n = 0; n < good.size(); n++)
        EXPECT_NE(decode_pin(Bytes(good.begin(), good.begin() + n), kKey).reason, DropReason::none)
            << "length " << n;
}

TEST(PinEncode, RefusesBadFields)
{
    PinAnnouncement p = pin_announcement(LB_FAMILY_IPV4, true);
    p.serving = "";
    EXPECT_THROW(encode_pin(p, kKey), Error);
    p = pin_announcement(LB_FAMILY_IPV4, true);
    p.node_id = std::string(33, 'n');
    EXPECT_THROW(encode_pin(p, kKey), Error);
    p = pin_announcement(LB_FAMILY_IPV4, true);
    p.client.family = 0;
    EXPECT_THROW(encode_pin(p, kKey), Error);
}

// --- node ids: validated at decode -----------------------------------------
// An id ends up in logs, `peerlb peers` JSON and metrics labels: a byte that
// is not UTF-8 made the JSON dump throw and the agent exit.

// Ids that are authenticated but must be refused, with why.
std::vector<std::pair<Bytes, const char*>> bad_ids()
{
    return {
        {{}, "empty"},
        {str(std::string(33, 'x')), "33 bytes"},
        {{'n', 0xff, 'd'}, "0xff is never UTF-8"},
        {{'n', 0x80}, "a lone continuation byte"},
        {{'n', 0xc3}, "a sequence cut by the end"},
        {{0xc0, 0xaf}, "overlong '/'"},
        {{0xe0, 0x80, 0xaf}, "overlong '/' in three bytes"},
        {{0xed, 0xa0, 0x80}, "a UTF-16 surrogate"},
        {{0xf4, 0x90, 0x80, 0x80}, "beyond U+10FFFF"},
        {{'a', '\n', 'b'}, "newline"},
        {{'a', 0, 'b'}, "NUL"},
        {{'a', 0x1b, '[', '2', 'J'}, "escape sequence"},
        {{'a', 0x7f}, "DEL"},
        {{'a', 0xc2, 0x85}, "C1 control NEL"},
    };
}

TEST(NodeIdValidation, ValidNodeId)
{
    EXPECT_TRUE(valid_node_id("node-a"));
    EXPECT_TRUE(valid_node_id(std::string(32, 'x')));
    EXPECT_TRUE(valid_node_id("n\xc3\xb6" "de \xe2\x82\xac \xf0\x9f\x98\x80")); // "nöde € 😀"
    for (const auto& [id, why] : bad_ids())
        EXPECT_FALSE(valid_node_id(std::string(id.begin(), id.end()))) << why;
}

TEST(NodeIdValidation, HeartbeatWithBadIdIsDroppedAsBadId)
{
    for (const auto& [id, why] : bad_ids()) {
        const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(with(complete_tlvs(), T_ID, id))), kKey);
        EXPECT_EQ(d.reason, DropReason::bad_id) << why << ": " << drop_reason_name(d.reason);
        EXPECT_EQ(d.message, Heartbeat{}) << why;
    }
    // Multi-byte UTF-8 is an id like any other.
    const Bytes utf8 = str("n\xc3\xb6" "de-\xe2\x82\xac");
    const Decoded<Heartbeat> d = decode_heartbeat(sign(body_of(with(complete_tlvs(), T_ID, utf8))), kKey);
    ASSERT_EQ(d.reason, DropReason::none) << drop_reason_name(d.reason);
    EXPECT_EQ(d.message.node_id, std::string(utf8.begin(), utf8.end()));
}

TEST(NodeIdValidation, MalformedBodyStaysMalformedWhateverTheId)
{
    // Structure first: a bad id in a body missing a required TLV is malformed.
    std::vector<Tlv> tlvs = with(complete_tlvs(), T_ID, {'a', 0xff});
    tlvs.erase(std::remove_if(tlvs.begin(), tlvs.end(), [](const Tlv& t) { return t.type == T_LOAD; }),
               tlvs.end());
    EXPECT_EQ(decode_reason(sign(body_of(tlvs))), DropReason::malformed);
}

TEST(NodeIdValidation, AnnouncementSenderAndToAreValidated)
{
    ASSERT_EQ(announcement_reason(sign(body_of(complete_announcement_tlvs()), 'F')), DropReason::none);
    for (uint8_t field : {uint8_t{T_ID}, uint8_t{T_TO}})
        for (const auto& [id, why] : bad_ids()) {
            const Decoded<FlowAnnouncement> d =
                decode_announcement(sign(body_of(with(complete_announcement_tlvs(), field, id)), 'F'), kKey);
            EXPECT_EQ(d.reason, DropReason::bad_id) << "type " << int(field) << ", " << why;
            EXPECT_EQ(d.message, FlowAnnouncement{});
        }
}

// A pin announcement by hand: TLV types 17..21 as documented in heartbeat.cpp.
std::vector<Tlv> complete_pin_tlvs()
{
    return {
        {T_ID, str("node-a")},
        {T_INCARNATION, be(5, 8)},
        {T_SEQUENCE, be(6, 8)},
        {T_SENT, be(1'700'000'000'000ULL, 8)},
        {17, {1}},                 // pinned
        {18, {4, 198, 51, 100, 9}}, // client
        {19, str("node-b")},       // serving
        {20, {3}},                 // rule
        {21, be(60'000, 4)},       // ttl
    };
}

TEST(NodeIdValidation, PinSenderAndServingAreValidated)
{
    ASSERT_EQ(decode_pin(sign(body_of(complete_pin_tlvs()), 'P'), kKey).reason, DropReason::none);
    for (uint8_t field : {uint8_t{T_ID}, uint8_t{19}})
        for (const auto& [id, why] : bad_ids()) {
            const Decoded<PinAnnouncement> d = decode_pin(sign(body_of(with(complete_pin_tlvs(), field, id)), 'P'), kKey);
            EXPECT_EQ(d.reason, DropReason::bad_id) << "type " << int(field) << ", " << why;
            EXPECT_EQ(d.message, PinAnnouncement{});
        }
}

TEST(NodeIdValidation, EncoderRefusesWhatTheDecoderWould)
{
    Heartbeat hb = ipv4_heartbeat();
    hb.node_id = "a\nb";
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
    hb.node_id = "a\xff";
    EXPECT_THROW(encode_heartbeat(hb, kKey), Error);
}

TEST(NodeIdValidation, BadIdIsAmongTheCountedReasons)
{
    EXPECT_NE(std::find(std::begin(kAllDropReasons), std::end(kAllDropReasons), DropReason::bad_id),
              std::end(kAllDropReasons));
}

} // namespace
} // namespace peerlb
