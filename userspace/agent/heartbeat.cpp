// Heartbeat encoding, decoding and replay protection (see heartbeat.h for
// the datagram layout).
#include "heartbeat.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "../dataplane/error.h"

namespace peerlb {

namespace {

// TLV types of the body. 0 is reserved (never sent). Types a receiver does
// not know are skipped, so a later version can add fields; a known type
// whose length does not fit its value makes the datagram malformed.
// Every known type but `service` appears at most once (a repeat is malformed).
// Types 1..10 are required, 8 (service) may appear 0..32 times, 11 and 12
// are optional.
enum TlvType : uint8_t {
    kTlvNodeId = 1,       // 1..32 bytes of id, no terminator
    kTlvIncarnation = 2,  // u64
    kTlvSequence = 3,     // u64
    kTlvSentUnixMs = 4,   // u64
    kTlvIntervalMs = 5,   // u32, > 0
    kTlvNodeAddress = 6,  // family u8 (4 or 6) + 4 or 16 address bytes
    kTlvMac = 7,          // 6 bytes
    kTlvService = 8,      // family u8 + 4 or 16 bytes; one TLV per address
    kTlvLoadBp = 9,       // u16, 0..10000
    kTlvState = 10,       // u8, AnnouncedState (1..3)
    // Optional (absent: 0), for `peerlb top`:
    kTlvKeptPerS = 11,      // u32, new connections the sender kept per second
    kTlvForwardedPerS = 12, // u32, new connections it handed to peers per second
    kTlvLastKnown = kTlvForwardedPerS,
};

constexpr uint8_t kMagic[4] = {'P', 'L', 'B', 'H'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 8; // magic 4, version 1, flags 1, body_len 2
constexpr size_t kMacSize = 32;   // HMAC-SHA256
constexpr size_t kTlvHeaderSize = 3;
constexpr size_t kMaxNodeIdLen = 32;
constexpr uint16_t kMaxLoadBp = 10000;

// --- writing ---------------------------------------------------------------

void put_u8(std::vector<uint8_t>& out, uint8_t v) { out.push_back(v); }

void put_u16(std::vector<uint8_t>& out, uint16_t v)
{
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}

void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

size_t address_len(uint8_t family) { return family == LB_FAMILY_IPV4 ? 4 : 16; }

// The address in network order: lb_addr already holds it that way, so its
// bytes are copied as they lie in memory.
void put_address_bytes(std::vector<uint8_t>& out, const IpAddress& ip)
{
    uint8_t bytes[16];
    std::memcpy(bytes, &ip.addr, sizeof(bytes));
    out.insert(out.end(), bytes, bytes + address_len(ip.family));
}

void put_tlv(std::vector<uint8_t>& out, uint8_t type, std::span<const uint8_t> value)
{
    put_u8(out, type);
    put_u16(out, static_cast<uint16_t>(value.size()));
    out.insert(out.end(), value.begin(), value.end());
}

void put_tlv_uint(std::vector<uint8_t>& out, uint8_t type, uint64_t v, int bytes)
{
    std::vector<uint8_t> value;
    put_be(value, v, bytes);
    put_tlv(out, type, value);
}

void put_tlv_address(std::vector<uint8_t>& out, uint8_t type, const IpAddress& ip)
{
    std::vector<uint8_t> value;
    put_u8(value, ip.family);
    put_address_bytes(value, ip);
    put_tlv(out, type, value);
}

bool valid_family(uint8_t family) { return family == LB_FAMILY_IPV4 || family == LB_FAMILY_IPV6; }

bool valid_state(uint8_t state)
{
    return state >= static_cast<uint8_t>(AnnouncedState::alive) &&
           state <= static_cast<uint8_t>(AnnouncedState::leaving);
}

// HMAC-SHA256 of data under key; false if OpenSSL fails.
bool hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data,
                 std::array<uint8_t, kMacSize>& tag)
{
    static const uint8_t empty = 0; // OpenSSL wants a pointer even for an empty key
    unsigned int len = 0;
    const uint8_t* k = key.empty() ? &empty : key.data();
    const uint8_t* d = data.empty() ? &empty : data.data();
    if (!HMAC(EVP_sha256(), k, static_cast<int>(key.size()), d, data.size(), tag.data(), &len))
        return false;
    return len == kMacSize;
}

// --- reading ---------------------------------------------------------------

uint64_t get_be(std::span<const uint8_t> bytes)
{
    uint64_t v = 0;
    for (uint8_t b : bytes)
        v = (v << 8) | b;
    return v;
}

std::optional<IpAddress> get_address(std::span<const uint8_t> value)
{
    if (value.empty() || !valid_family(value[0]))
        return std::nullopt;
    IpAddress ip;
    ip.family = value[0];
    const size_t len = address_len(ip.family);
    if (value.size() != 1 + len)
        return std::nullopt;
    uint8_t bytes[16] = {};
    std::memcpy(bytes, value.data() + 1, len);
    std::memcpy(&ip.addr, bytes, sizeof(bytes));
    return ip;
}

// Parses an authenticated body; false on anything malformed.
bool parse_body(std::span<const uint8_t> body, Heartbeat& hb)
{
    bool have[256] = {};
    size_t pos = 0;
    while (pos < body.size()) {
        if (body.size() - pos < kTlvHeaderSize)
            return false; // a TLV header cut by the end of the body
        const uint8_t type = body[pos];
        const size_t len = (size_t{body[pos + 1]} << 8) | body[pos + 2];
        pos += kTlvHeaderSize;
        if (body.size() - pos < len)
            return false; // a value running past the end of the body
        const std::span<const uint8_t> value = body.subspan(pos, len);
        pos += len;

        if (type != kTlvService) {
            if (have[type] && type >= kTlvNodeId && type <= kTlvLastKnown)
                return false; // a known single-valued field given twice
            have[type] = true;
        }
        switch (type) {
        case kTlvNodeId:
            if (value.empty() || value.size() > kMaxNodeIdLen)
                return false;
            hb.node_id.assign(value.begin(), value.end());
            break;
        case kTlvIncarnation:
        case kTlvSequence:
        case kTlvSentUnixMs: {
            if (value.size() != 8)
                return false;
            uint64_t& field = type == kTlvIncarnation ? hb.incarnation
                              : type == kTlvSequence  ? hb.sequence
                                                      : hb.sent_unix_ms;
            field = get_be(value);
            break;
        }
        case kTlvIntervalMs:
            if (value.size() != 4)
                return false;
            hb.interval_ms = static_cast<uint32_t>(get_be(value));
            if (hb.interval_ms == 0)
                return false;
            break;
        case kTlvNodeAddress: {
            auto ip = get_address(value);
            if (!ip)
                return false;
            hb.node_address = *ip;
            break;
        }
        case kTlvMac:
            if (value.size() != hb.mac.size())
                return false;
            std::copy(value.begin(), value.end(), hb.mac.begin());
            break;
        case kTlvService: {
            if (hb.services.size() >= kMaxOwnedServices)
                return false;
            auto ip = get_address(value);
            if (!ip)
                return false;
            hb.services.push_back(*ip);
            break;
        }
        case kTlvLoadBp:
            if (value.size() != 2)
                return false;
            hb.load_bp = static_cast<uint16_t>(get_be(value));
            if (hb.load_bp > kMaxLoadBp)
                return false;
            break;
        case kTlvState:
            if (value.size() != 1 || !valid_state(value[0]))
                return false;
            hb.state = static_cast<AnnouncedState>(value[0]);
            break;
        case kTlvKeptPerS:
        case kTlvForwardedPerS:
            if (value.size() != 4)
                return false;
            (type == kTlvKeptPerS ? hb.kept_per_s : hb.forwarded_per_s) = static_cast<uint32_t>(get_be(value));
            break;
        default:
            break; // unknown (or reserved 0): skipped
        }
    }
    for (uint8_t required : {kTlvNodeId, kTlvIncarnation, kTlvSequence, kTlvSentUnixMs, kTlvIntervalMs,
                             kTlvNodeAddress, kTlvMac, kTlvLoadBp, kTlvState})
        if (!have[required])
            return false;
    return true;
}

} // namespace

const char* drop_reason_name(DropReason r)
{
    switch (r) {
    case DropReason::none: return "none";
    case DropReason::truncated: return "truncated";
    case DropReason::bad_magic: return "bad_magic";
    case DropReason::bad_mac: return "bad_mac";
    case DropReason::malformed: return "malformed";
    case DropReason::own_id: return "own_id";
    case DropReason::replayed: return "replayed";
    case DropReason::stale: return "stale";
    }
    return "unknown";
}

std::vector<uint8_t> encode_heartbeat(const Heartbeat& hb, std::span<const uint8_t> key)
{
    if (hb.node_id.empty() || hb.node_id.size() > kMaxNodeIdLen)
        throw Error("heartbeat: node id must be 1.." + std::to_string(kMaxNodeIdLen) + " bytes, not " +
                    std::to_string(hb.node_id.size()));
    if (hb.services.size() > kMaxOwnedServices)
        throw Error("heartbeat: " + std::to_string(hb.services.size()) + " service addresses, at most " +
                    std::to_string(kMaxOwnedServices));
    if (hb.load_bp > kMaxLoadBp)
        throw Error("heartbeat: load " + std::to_string(hb.load_bp) + " over " + std::to_string(kMaxLoadBp));
    if (hb.interval_ms == 0)
        throw Error("heartbeat: interval_ms must be > 0");
    if (!valid_family(hb.node_address.family))
        throw Error("heartbeat: node address has no IPv4/IPv6 family");
    for (const IpAddress& s : hb.services)
        if (!valid_family(s.family))
            throw Error("heartbeat: a service address has no IPv4/IPv6 family");
    if (!valid_state(static_cast<uint8_t>(hb.state)))
        throw Error("heartbeat: unknown announced state " + std::to_string(static_cast<int>(hb.state)));

    std::vector<uint8_t> body;
    put_tlv(body, kTlvNodeId,
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(hb.node_id.data()), hb.node_id.size()));
    put_tlv_uint(body, kTlvIncarnation, hb.incarnation, 8);
    put_tlv_uint(body, kTlvSequence, hb.sequence, 8);
    put_tlv_uint(body, kTlvSentUnixMs, hb.sent_unix_ms, 8);
    put_tlv_uint(body, kTlvIntervalMs, hb.interval_ms, 4);
    put_tlv_address(body, kTlvNodeAddress, hb.node_address);
    put_tlv(body, kTlvMac, hb.mac);
    for (const IpAddress& s : hb.services)
        put_tlv_address(body, kTlvService, s);
    put_tlv_uint(body, kTlvLoadBp, hb.load_bp, 2);
    put_tlv_uint(body, kTlvState, static_cast<uint8_t>(hb.state), 1);
    put_tlv_uint(body, kTlvKeptPerS, hb.kept_per_s, 4);
    put_tlv_uint(body, kTlvForwardedPerS, hb.forwarded_per_s, 4);

    const size_t total = kHeaderSize + body.size() + kMacSize;
    if (total > kMaxHeartbeatSize)
        throw Error("heartbeat: " + std::to_string(total) + " bytes, over the limit of " +
                    std::to_string(kMaxHeartbeatSize));

    std::vector<uint8_t> out(std::begin(kMagic), std::end(kMagic));
    out.reserve(total);
    put_u8(out, kVersion);
    put_u8(out, 0); // flags
    put_u16(out, static_cast<uint16_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());

    std::array<uint8_t, kMacSize> tag;
    if (!hmac_sha256(key, out, tag))
        throw Error("heartbeat: HMAC-SHA256 failed");
    out.insert(out.end(), tag.begin(), tag.end());
    return out;
}

Decoded decode_heartbeat(std::span<const uint8_t> datagram, std::span<const uint8_t> key)
{
    Decoded d;
    if (datagram.size() < kHeaderSize + kMacSize) {
        d.reason = DropReason::truncated;
        return d;
    }
    if (std::memcmp(datagram.data(), kMagic, sizeof(kMagic)) != 0 || datagram[4] != kVersion) {
        d.reason = DropReason::bad_magic;
        return d;
    }
    // flags (datagram[5]) are covered by the HMAC; version 1 defines none and ignores them.
    const size_t body_len = (size_t{datagram[6]} << 8) | datagram[7];
    if (body_len != datagram.size() - kHeaderSize - kMacSize) {
        d.reason = DropReason::truncated;
        return d;
    }

    const std::span<const uint8_t> signed_part = datagram.first(kHeaderSize + body_len);
    const std::span<const uint8_t> received_tag = datagram.last(kMacSize);
    std::array<uint8_t, kMacSize> tag;
    if (!hmac_sha256(key, signed_part, tag) || CRYPTO_memcmp(tag.data(), received_tag.data(), kMacSize) != 0) {
        d.reason = DropReason::bad_mac;
        return d;
    }

    Heartbeat hb;
    if (!parse_body(datagram.subspan(kHeaderSize, body_len), hb)) {
        d.reason = DropReason::malformed;
        return d;
    }
    d.hb = std::move(hb);
    return d;
}

DropReason ReplayGuard::check(const Heartbeat& hb, uint64_t now_unix_ms)
{
    const uint64_t skew = hb.sent_unix_ms > now_unix_ms ? hb.sent_unix_ms - now_unix_ms : now_unix_ms - hb.sent_unix_ms;
    if (skew > window_ms_)
        return DropReason::stale;

    auto it = seen_.find(hb.node_id);
    if (it != seen_.end()) {
        const Seen& s = it->second;
        if (hb.incarnation < s.incarnation)
            return DropReason::replayed;
        if (hb.incarnation == s.incarnation && hb.sequence <= s.sequence)
            return DropReason::replayed;
        it->second = Seen{hb.incarnation, hb.sequence};
    } else {
        seen_.emplace(hb.node_id, Seen{hb.incarnation, hb.sequence});
    }
    return DropReason::none;
}

} // namespace peerlb
