// Heartbeat and flow announcement encoding and decoding, and replay
// protection (see heartbeat.h for the datagram layout).
//
// Both message kinds share everything but their magic and their TLVs: the
// framing (header, body_len, HMAC) is in seal() / open(), TLVs are written
// with put_tlv*() and read with walk_tlvs(), and the fields both carry
// (node id, incarnation, sequence, sent time) have one encoder and decoder.
#include "heartbeat.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <type_traits>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {

namespace {

// TLV types of the bodies, one numbering for both kinds: a number means the
// same thing wherever it appears. 0 is reserved (never sent). Types a
// receiver does not know for the kind it decodes are skipped, so a later
// version can add fields; a known type whose length does not fit its value
// makes the datagram malformed. Every known type that is not repeated
// appears at most once (a repeat is malformed).
//
// Heartbeat ("PLBH"): types 1..10 are required; 8 (service) and 13 (claim)
// may appear 0..kMaxOwnedServices and 0..kMaxClaims times, 34 (silent
// peer) 0..kMaxSilentPeers times; 11, 12 and 22..27 are optional.
// Flow announcement ("PLBF"): 1..4, 14 and 15 are required; 16 (flow) may
// appear 0..kMaxFlowsPerAnnouncement times.
// Table chunk ("PLBT"): 1..4 and 28..33 are required.
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
    // Optional, repeated (absent: no claims):
    kTlvClaim = 13,         // family u8 + 4 or 16 bytes; one TLV per claimed address
    // Flow announcement only:
    kTlvTo = 14,             // 1..32 bytes: node id of the address's new holder
    kTlvServiceAddress = 15, // family u8 + 4 or 16 bytes
    kTlvFlow = 16,           // family u8 + 4 or 16 client address bytes + client_port u16
                             // + service_port u16; family = the service address's
    // Pin announcement only (all required):
    kTlvPinOp = 17,          // u8: 1 pinned, 2 ended
    kTlvPinClient = 18,      // family u8 + 4 or 16 bytes
    kTlvPinServing = 19,     // 1..32 bytes: node id the client is pinned to
    kTlvPinRule = 20,        // u8: rule index
    kTlvPinTtlMs = 21,       // u32
    // Heartbeat, optional (capacity, DESIGN.md section 2):
    kTlvConnCostBp = 22,     // u32, 1..10000: load one connection adds (absent: 0, unknown)
    kTlvWeight = 23,         // u16, 1..10000: relative capacity in hundredths (absent: 100)
    kTlvNodeFlags = 24,      // u8: bit 0 standby (absent: 0)
    kTlvLoadExactBp = 25,    // u32, 10001..kMaxLoadExactBp: the load when past 100 % (absent: 0)
    // Heartbeat, optional (shared addresses, DESIGN.md section 5b):
    kTlvTableVersion = 26,   // u64, >= 1: the bucket table version applied (absent: 0, none)
    kTlvSecondHop = 27,      // u16, 1..1000: permille of shared packets sent on a second hop (absent: 0)
    // Table chunk only (all required):
    kTlvChunkVersion = 28,   // u64, >= 1
    kTlvChunkAuthor = 29,    // 1..32 bytes: node id of the table's author
    kTlvChunkIndex = 30,     // u16, < count
    kTlvChunkCount = 31,     // u16, = ceil(total / kTableChunkBytes)
    kTlvChunkTotal = 32,     // u32, 1..kMaxTableBytes
    kTlvChunkBytes = 33,     // kTableChunkBytes bytes, the last chunk the rest
    // Heartbeat, optional, repeated (deaths confirmed by peers, membership.h):
    kTlvSilentPeer = 34,     // 1..32 bytes: id of a peer not heard for 2 periods; each id once
};

using Magic = std::array<uint8_t, 4>;
constexpr Magic kHeartbeatMagic = {'P', 'L', 'B', 'H'};
constexpr Magic kAnnouncementMagic = {'P', 'L', 'B', 'F'};
constexpr Magic kPinMagic = {'P', 'L', 'B', 'P'};
constexpr Magic kTableMagic = {'P', 'L', 'B', 'T'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 8; // magic 4, version 1, flags 1, body_len 2
constexpr size_t kMacSize = 32;   // HMAC-SHA256
constexpr size_t kTlvHeaderSize = 3;
constexpr size_t kPortsSize = 4; // client_port u16 + service_port u16 of a flow
constexpr uint16_t kMaxLoadBp = 10000;
constexpr uint16_t kMaxWeight = 10000; // weight 100.0
constexpr uint8_t kFlagStandby = 1 << 0;
// Bits a receiver that does not know them ignores: optional like TLVs.
constexpr uint8_t kFlagShared = 1 << 1;   // serves the shared addresses
constexpr uint8_t kFlagDraining = 1 << 2; // `peerlb drain`: give its buckets away
constexpr uint8_t kFlagListsSilent = 1 << 3; // names its silent peers (TLV 34)
constexpr uint16_t kMaxPermille = 1000;

// The largest heartbeat: every field at its limit, every address IPv6.
constexpr size_t kIpv6AddressValue = 1 + 16;
constexpr size_t kWorstHeartbeat =
    kHeaderSize + kMacSize +
    (kTlvHeaderSize + kMaxNodeIdLen) + 3 * (kTlvHeaderSize + 8) /* incarnation, sequence, sent */ +
    (kTlvHeaderSize + 4) /* interval */ + (kTlvHeaderSize + kIpv6AddressValue) /* node address */ +
    (kTlvHeaderSize + 6) /* mac */ + (kMaxOwnedServices + kMaxClaims) * (kTlvHeaderSize + kIpv6AddressValue) +
    (kTlvHeaderSize + 2) /* load */ + (kTlvHeaderSize + 1) /* state */ + 2 * (kTlvHeaderSize + 4) /* rates */ +
    (kTlvHeaderSize + 4) /* conn cost */ + (kTlvHeaderSize + 2) /* weight */ + (kTlvHeaderSize + 1) /* flags */ +
    (kTlvHeaderSize + 4) /* exact load */ + (kTlvHeaderSize + 8) /* table version */ +
    (kTlvHeaderSize + 2) /* second hops */;
static_assert(kWorstHeartbeat <= kMaxHeartbeatSize,
              "a heartbeat at the field limits must fit in one datagram");

// The largest table chunk: a full one, 32-byte ids.
constexpr size_t kWorstTableChunk =
    kHeaderSize + kMacSize + (kTlvHeaderSize + kMaxNodeIdLen) + 3 * (kTlvHeaderSize + 8) +
    (kTlvHeaderSize + 8) /* version */ + (kTlvHeaderSize + kMaxNodeIdLen) /* author */ +
    2 * (kTlvHeaderSize + 2) /* index, count */ + (kTlvHeaderSize + 4) /* total */ +
    (kTlvHeaderSize + kTableChunkBytes);
static_assert(kWorstTableChunk <= kMaxHeartbeatSize, "a table chunk must fit in one datagram");
static_assert(table_chunk_count(kMaxTableBytes) <= UINT16_MAX, "chunk indexes are u16");

bool valid_family(uint8_t family) { return family == LB_FAMILY_IPV4 || family == LB_FAMILY_IPV6; }

size_t address_len(uint8_t family) { return family == LB_FAMILY_IPV4 ? 4 : 16; }

bool valid_state(uint8_t state)
{
    return state >= static_cast<uint8_t>(AnnouncedState::alive) &&
           state <= static_cast<uint8_t>(AnnouncedState::leaving);
}

bool has_magic(std::span<const uint8_t> datagram, const Magic& magic)
{
    return datagram.size() >= magic.size() && std::equal(magic.begin(), magic.end(), datagram.begin());
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

// --- writing ---------------------------------------------------------------

void put_u8(std::vector<uint8_t>& out, uint8_t v) { out.push_back(v); }

void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Family, then the address in network order: lb_addr already holds it that
// way, so its bytes are copied as they lie in memory.
void put_address(std::vector<uint8_t>& out, const IpAddress& ip)
{
    put_u8(out, ip.family);
    uint8_t bytes[16];
    std::memcpy(bytes, &ip.addr, sizeof(bytes));
    out.insert(out.end(), bytes, bytes + address_len(ip.family));
}

void put_tlv(std::vector<uint8_t>& out, uint8_t type, std::span<const uint8_t> value)
{
    put_u8(out, type);
    put_be(out, value.size(), 2);
    out.insert(out.end(), value.begin(), value.end());
}

void put_tlv_string(std::vector<uint8_t>& out, uint8_t type, const std::string& s)
{
    put_tlv(out, type, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
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
    put_address(value, ip);
    put_tlv(out, type, value);
}

void check_node_id(const char* what, const char* field, const std::string& id)
{
    if (!valid_node_id(id))
        throw Error(std::string(what) + ": " + field + " must be 1.." + std::to_string(kMaxNodeIdLen) +
                    " bytes of printable UTF-8, not " + std::to_string(id.size()) + " bytes");
}

void check_addresses(const char* what, const char* field, const std::vector<IpAddress>& list,
                     size_t limit)
{
    if (list.size() > limit)
        throw Error(std::string(what) + ": " + std::to_string(list.size()) + " " + field + ", at most " +
                    std::to_string(limit));
    for (const IpAddress& ip : list)
        if (!valid_family(ip.family))
            throw Error(std::string(what) + ": one of the " + field + " has no IPv4/IPv6 family");
}

// The fields every kind starts with: who sends, and where in its sequence.
template <class Message>
void put_identity(std::vector<uint8_t>& body, const Message& m)
{
    put_tlv_string(body, kTlvNodeId, m.node_id);
    put_tlv_uint(body, kTlvIncarnation, m.incarnation, 8);
    put_tlv_uint(body, kTlvSequence, m.sequence, 8);
    put_tlv_uint(body, kTlvSentUnixMs, m.sent_unix_ms, 8);
}

// Header + body + HMAC; throws Error if it would exceed kMaxHeartbeatSize.
std::vector<uint8_t> seal(const Magic& magic, const std::vector<uint8_t>& body, std::span<const uint8_t> key,
                          const char* what)
{
    const size_t total = kHeaderSize + body.size() + kMacSize;
    if (total > kMaxHeartbeatSize)
        throw Error(std::string(what) + ": " + std::to_string(total) + " bytes, over the limit of " +
                    std::to_string(kMaxHeartbeatSize));

    std::vector<uint8_t> out(magic.begin(), magic.end());
    out.reserve(total);
    put_u8(out, kVersion);
    put_u8(out, 0); // flags
    put_be(out, body.size(), 2);
    out.insert(out.end(), body.begin(), body.end());

    std::array<uint8_t, kMacSize> tag;
    if (!hmac_sha256(key, out, tag))
        throw Error(std::string(what) + ": HMAC-SHA256 failed");
    out.insert(out.end(), tag.begin(), tag.end());
    return out;
}

// --- reading ---------------------------------------------------------------

// Checks length, magic, version, body_len and the HMAC (constant time), in
// that order; on none, `body` is the authenticated body.
DropReason open(std::span<const uint8_t> datagram, const Magic& magic, std::span<const uint8_t> key,
                std::span<const uint8_t>& body)
{
    if (datagram.size() < kHeaderSize + kMacSize)
        return DropReason::truncated;
    if (!has_magic(datagram, magic) || datagram[4] != kVersion)
        return DropReason::bad_magic;
    // flags (datagram[5]) are covered by the HMAC; version 1 defines none and ignores them.
    const size_t body_len = (size_t{datagram[6]} << 8) | datagram[7];
    if (body_len != datagram.size() - kHeaderSize - kMacSize)
        return DropReason::truncated;

    const std::span<const uint8_t> signed_part = datagram.first(kHeaderSize + body_len);
    const std::span<const uint8_t> received_tag = datagram.last(kMacSize);
    std::array<uint8_t, kMacSize> tag;
    if (!hmac_sha256(key, signed_part, tag) || CRYPTO_memcmp(tag.data(), received_tag.data(), kMacSize) != 0)
        return DropReason::bad_mac;
    body = datagram.subspan(kHeaderSize, body_len);
    return DropReason::none;
}

// Calls on_tlv(type, value) for every TLV of the body in order; false if a
// TLV is cut by the end of the body or on_tlv returns false.
template <class OnTlv>
bool walk_tlvs(std::span<const uint8_t> body, OnTlv&& on_tlv)
{
    size_t pos = 0;
    while (pos < body.size()) {
        if (body.size() - pos < kTlvHeaderSize)
            return false; // a TLV header cut by the end of the body
        const uint8_t type = body[pos];
        const size_t len = (size_t{body[pos + 1]} << 8) | body[pos + 2];
        pos += kTlvHeaderSize;
        if (body.size() - pos < len)
            return false; // a value running past the end of the body
        if (!on_tlv(type, body.subspan(pos, len)))
            return false;
        pos += len;
    }
    return true;
}

// Which single-valued TLVs a body has given so far.
class SeenTypes {
public:
    // false if `type` was seen before (a repeat: malformed).
    bool first(uint8_t type)
    {
        if (seen_[type])
            return false;
        seen_[type] = true;
        return true;
    }
    bool all(std::initializer_list<uint8_t> types) const
    {
        return std::all_of(types.begin(), types.end(), [this](uint8_t t) { return seen_[t]; });
    }

private:
    std::array<bool, 256> seen_{};
};

uint64_t get_be(std::span<const uint8_t> bytes)
{
    uint64_t v = 0;
    for (uint8_t b : bytes)
        v = (v << 8) | b;
    return v;
}

// An unsigned integer of exactly `bytes` bytes.
template <class T>
bool get_uint(std::span<const uint8_t> value, size_t bytes, T& out)
{
    static_assert(std::is_unsigned_v<T>);
    if (value.size() != bytes || bytes > sizeof(T))
        return false;
    out = static_cast<T>(get_be(value));
    return true;
}

// Any bytes: whether they make an id is judged once the body is parsed
// (valid_ids), so that a bad id is told apart from a malformed datagram.
bool get_node_id(std::span<const uint8_t> value, std::string& out)
{
    out.assign(value.begin(), value.end());
    return true;
}

bool valid_ids(const Heartbeat& hb)
{
    return valid_node_id(hb.node_id) &&
           std::all_of(hb.silent.begin(), hb.silent.end(), [](const std::string& id) { return valid_node_id(id); });
}
bool valid_ids(const FlowAnnouncement& a) { return valid_node_id(a.node_id) && valid_node_id(a.to); }
bool valid_ids(const PinAnnouncement& p) { return valid_node_id(p.node_id) && valid_node_id(p.serving); }
bool valid_ids(const TableChunk& c) { return valid_node_id(c.node_id) && valid_node_id(c.author); }

// Family u8 + 4 or 16 bytes, exactly.
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

// One more address of a repeated address TLV, at most `limit` of them.
bool add_address(std::span<const uint8_t> value, std::vector<IpAddress>& list, size_t limit)
{
    if (list.size() >= limit)
        return false;
    auto ip = get_address(value);
    if (!ip)
        return false;
    list.push_back(*ip);
    return true;
}

// A TLV of the fields put_identity() writes; false if it is a repeat or
// does not fit. Only for the types 1..4.
template <class Message>
bool get_identity(uint8_t type, std::span<const uint8_t> value, SeenTypes& seen, Message& m)
{
    if (!seen.first(type))
        return false;
    switch (type) {
    case kTlvNodeId: return get_node_id(value, m.node_id);
    case kTlvIncarnation: return get_uint(value, 8, m.incarnation);
    case kTlvSequence: return get_uint(value, 8, m.sequence);
    case kTlvSentUnixMs: return get_uint(value, 8, m.sent_unix_ms);
    default: return false;
    }
}

// Parses an authenticated heartbeat body; false on anything malformed.
bool parse_heartbeat(std::span<const uint8_t> body, Heartbeat& hb)
{
    SeenTypes seen;
    const bool ok = walk_tlvs(body, [&](uint8_t type, std::span<const uint8_t> value) {
        switch (type) {
        case kTlvNodeId:
        case kTlvIncarnation:
        case kTlvSequence:
        case kTlvSentUnixMs:
            return get_identity(type, value, seen, hb);
        case kTlvService:
            return add_address(value, hb.services, kMaxOwnedServices);
        case kTlvClaim:
            return add_address(value, hb.claims, kMaxClaims);
        case kTlvIntervalMs:
            return seen.first(type) && get_uint(value, 4, hb.interval_ms) && hb.interval_ms > 0;
        case kTlvNodeAddress: {
            auto ip = get_address(value);
            if (!seen.first(type) || !ip)
                return false;
            hb.node_address = *ip;
            return true;
        }
        case kTlvMac:
            if (!seen.first(type) || value.size() != hb.mac.size())
                return false;
            std::copy(value.begin(), value.end(), hb.mac.begin());
            return true;
        case kTlvLoadBp:
            return seen.first(type) && get_uint(value, 2, hb.load_bp) && hb.load_bp <= kMaxLoadBp;
        case kTlvState:
            if (!seen.first(type) || value.size() != 1 || !valid_state(value[0]))
                return false;
            hb.state = static_cast<AnnouncedState>(value[0]);
            return true;
        case kTlvKeptPerS:
            return seen.first(type) && get_uint(value, 4, hb.kept_per_s);
        case kTlvForwardedPerS:
            return seen.first(type) && get_uint(value, 4, hb.forwarded_per_s);
        case kTlvConnCostBp:
            return seen.first(type) && get_uint(value, 4, hb.conn_cost_bp) && hb.conn_cost_bp >= 1 &&
                   hb.conn_cost_bp <= kMaxLoadBp;
        case kTlvWeight:
            return seen.first(type) && get_uint(value, 2, hb.weight) && hb.weight >= 1 &&
                   hb.weight <= kMaxWeight;
        case kTlvLoadExactBp:
            return seen.first(type) && get_uint(value, 4, hb.load_bp_exact) &&
                   hb.load_bp_exact > kMaxLoadBp && hb.load_bp_exact <= kMaxLoadExactBp;
        case kTlvNodeFlags: {
            uint8_t flags = 0;
            if (!seen.first(type) || !get_uint(value, 1, flags))
                return false;
            hb.standby = flags & kFlagStandby;
            hb.shared = flags & kFlagShared;
            hb.draining = flags & kFlagDraining;
            hb.lists_silent = flags & kFlagListsSilent;
            return true;
        }
        case kTlvSilentPeer: {
            // Bounded, and each id once: a receiver counts each naming as
            // one peer's word.
            if (hb.silent.size() >= kMaxSilentPeers)
                return false;
            const std::string_view id(reinterpret_cast<const char*>(value.data()), value.size());
            if (std::find(hb.silent.begin(), hb.silent.end(), id) != hb.silent.end())
                return false;
            hb.silent.emplace_back(id);
            return true;
        }
        case kTlvTableVersion:
            return seen.first(type) && get_uint(value, 8, hb.table_version) && hb.table_version >= 1;
        case kTlvSecondHop:
            return seen.first(type) && get_uint(value, 2, hb.second_hop_permille) &&
                   hb.second_hop_permille >= 1 && hb.second_hop_permille <= kMaxPermille;
        default:
            return true; // unknown (or reserved 0): skipped
        }
    });
    return ok && seen.all({kTlvNodeId, kTlvIncarnation, kTlvSequence, kTlvSentUnixMs, kTlvIntervalMs,
                           kTlvNodeAddress, kTlvMac, kTlvLoadBp, kTlvState});
}

// Parses an authenticated flow announcement body; false on anything malformed.
bool parse_announcement(std::span<const uint8_t> body, FlowAnnouncement& a)
{
    SeenTypes seen;
    // Flows are checked against the service address's family once both are read.
    std::vector<uint8_t> flow_families;
    const bool ok = walk_tlvs(body, [&](uint8_t type, std::span<const uint8_t> value) {
        switch (type) {
        case kTlvNodeId:
        case kTlvIncarnation:
        case kTlvSequence:
        case kTlvSentUnixMs:
            return get_identity(type, value, seen, a);
        case kTlvTo:
            return seen.first(type) && get_node_id(value, a.to);
        case kTlvServiceAddress: {
            auto ip = get_address(value);
            if (!seen.first(type) || !ip)
                return false;
            a.service_address = *ip;
            return true;
        }
        case kTlvFlow: {
            if (a.flows.size() >= kMaxFlowsPerAnnouncement || value.size() < kPortsSize)
                return false;
            auto client = get_address(value.first(value.size() - kPortsSize));
            if (!client)
                return false;
            const std::span<const uint8_t> ports = value.last(kPortsSize);
            FlowAnnouncement::Flow flow;
            flow.client = *client;
            flow.client_port = static_cast<uint16_t>(get_be(ports.first(2)));
            flow.service_port = static_cast<uint16_t>(get_be(ports.last(2)));
            a.flows.push_back(flow);
            return true;
        }
        default:
            return true; // unknown here (or reserved 0): skipped
        }
    });
    if (!ok || !seen.all({kTlvNodeId, kTlvIncarnation, kTlvSequence, kTlvSentUnixMs, kTlvTo, kTlvServiceAddress}))
        return false;
    return std::all_of(a.flows.begin(), a.flows.end(), [&](const FlowAnnouncement::Flow& f) {
        return f.client.family == a.service_address.family;
    });
}

// open() then parse(); the message is left empty unless it is taken.
template <class Message, class Parse>
DropReason decode_as(std::span<const uint8_t> datagram, const Magic& magic, std::span<const uint8_t> key,
                     Parse parse, Message& out)
{
    std::span<const uint8_t> body;
    if (const DropReason r = open(datagram, magic, key, body); r != DropReason::none)
        return r;
    Message m;
    if (!parse(body, m))
        return DropReason::malformed;
    if (!valid_ids(m))
        return DropReason::bad_id;
    out = std::move(m);
    return DropReason::none;
}

} // namespace

bool valid_node_id(std::string_view id)
{
    if (id.empty() || id.size() > kMaxNodeIdLen)
        return false;
    size_t i = 0;
    while (i < id.size()) {
        const auto lead = static_cast<uint8_t>(id[i]);
        uint32_t cp;
        size_t len;
        if (lead < 0x80) {
            cp = lead;
            len = 1;
        } else if ((lead & 0xe0) == 0xc0) {
            cp = lead & 0x1f;
            len = 2;
        } else if ((lead & 0xf0) == 0xe0) {
            cp = lead & 0x0f;
            len = 3;
        } else if ((lead & 0xf8) == 0xf0) {
            cp = lead & 0x07;
            len = 4;
        } else {
            return false; // a continuation byte or 0xf8..0xff where a character starts
        }
        if (id.size() - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            const auto c = static_cast<uint8_t>(id[i + k]);
            if ((c & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (c & 0x3f);
        }
        // Overlong forms, UTF-16 surrogates and beyond U+10FFFF are not UTF-8.
        static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMinForLength[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return false; // C0, DEL and C1 control characters
        i += len;
    }
    return true;
}

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
    case DropReason::bad_id: return "bad_id";
    }
    return "unknown";
}

namespace {

constexpr const char* kHeartbeatWhat = "heartbeat";

// A heartbeat's body (its TLVs); throws Error if a field is out of range.
std::vector<uint8_t> heartbeat_body(const Heartbeat& hb)
{
    constexpr const char* what = kHeartbeatWhat;
    check_node_id(what, "node id", hb.node_id);
    check_addresses(what, "service addresses", hb.services, kMaxOwnedServices);
    check_addresses(what, "claimed addresses", hb.claims, kMaxClaims);
    if (hb.load_bp > kMaxLoadBp)
        throw Error("heartbeat: load " + std::to_string(hb.load_bp) + " over " + std::to_string(kMaxLoadBp));
    if (hb.interval_ms == 0)
        throw Error("heartbeat: interval_ms must be > 0");
    if (hb.load_bp_exact && (hb.load_bp_exact <= kMaxLoadBp || hb.load_bp_exact > kMaxLoadExactBp))
        throw Error("heartbeat: load past 100 % of " + std::to_string(hb.load_bp_exact) +
                    " outside " + std::to_string(kMaxLoadBp + 1) + ".." +
                    std::to_string(kMaxLoadExactBp));
    if (hb.conn_cost_bp > kMaxLoadBp)
        throw Error("heartbeat: connection cost " + std::to_string(hb.conn_cost_bp) + " over " +
                    std::to_string(kMaxLoadBp));
    if (hb.weight < 1 || hb.weight > kMaxWeight)
        throw Error("heartbeat: weight " + std::to_string(hb.weight) + " outside 1.." +
                    std::to_string(kMaxWeight));
    if (!valid_family(hb.node_address.family))
        throw Error("heartbeat: node address has no IPv4/IPv6 family");
    if (!valid_state(static_cast<uint8_t>(hb.state)))
        throw Error("heartbeat: unknown announced state " + std::to_string(static_cast<int>(hb.state)));
    if (hb.second_hop_permille > kMaxPermille)
        throw Error("heartbeat: second hops " + std::to_string(hb.second_hop_permille) + " permille, over " +
                    std::to_string(kMaxPermille));
    if (hb.silent.size() > kMaxSilentPeers)
        throw Error("heartbeat: " + std::to_string(hb.silent.size()) + " silent peers, at most " +
                    std::to_string(kMaxSilentPeers));
    for (auto it = hb.silent.begin(); it != hb.silent.end(); ++it) {
        check_node_id(what, "silent peer id", *it);
        if (std::find(hb.silent.begin(), it, *it) != it)
            throw Error("heartbeat: silent peer " + *it + " named twice");
    }

    std::vector<uint8_t> body;
    put_identity(body, hb);
    put_tlv_uint(body, kTlvIntervalMs, hb.interval_ms, 4);
    put_tlv_address(body, kTlvNodeAddress, hb.node_address);
    put_tlv(body, kTlvMac, hb.mac);
    for (const IpAddress& s : hb.services)
        put_tlv_address(body, kTlvService, s);
    for (const IpAddress& c : hb.claims)
        put_tlv_address(body, kTlvClaim, c);
    put_tlv_uint(body, kTlvLoadBp, hb.load_bp, 2);
    put_tlv_uint(body, kTlvState, static_cast<uint8_t>(hb.state), 1);
    put_tlv_uint(body, kTlvKeptPerS, hb.kept_per_s, 4);
    put_tlv_uint(body, kTlvForwardedPerS, hb.forwarded_per_s, 4);
    if (hb.conn_cost_bp)
        put_tlv_uint(body, kTlvConnCostBp, hb.conn_cost_bp, 4);
    put_tlv_uint(body, kTlvWeight, hb.weight, 2);
    put_tlv_uint(body, kTlvNodeFlags,
                 (hb.standby ? kFlagStandby : 0) | (hb.shared ? kFlagShared : 0) |
                     (hb.draining ? kFlagDraining : 0) | (hb.lists_silent ? kFlagListsSilent : 0),
                 1);
    if (hb.load_bp_exact)
        put_tlv_uint(body, kTlvLoadExactBp, hb.load_bp_exact, 4);
    if (hb.table_version)
        put_tlv_uint(body, kTlvTableVersion, hb.table_version, 8);
    if (hb.second_hop_permille)
        put_tlv_uint(body, kTlvSecondHop, hb.second_hop_permille, 2);
    for (const std::string& id : hb.silent)
        put_tlv_string(body, kTlvSilentPeer, id);
    return body;
}

} // namespace

std::vector<uint8_t> encode_heartbeat(const Heartbeat& hb, std::span<const uint8_t> key)
{
    return seal(kHeartbeatMagic, heartbeat_body(hb), key, kHeartbeatWhat);
}

size_t fill_silent_peers(Heartbeat& hb, const std::vector<std::string>& ids, size_t start)
{
    size_t size = kHeaderSize + heartbeat_body(hb).size() + kMacSize;
    size_t added = 0;
    for (size_t k = 0; k < ids.size() && hb.silent.size() < kMaxSilentPeers; k++) {
        const std::string& id = ids[(start + k) % ids.size()];
        if (std::find(hb.silent.begin(), hb.silent.end(), id) != hb.silent.end())
            continue; // named already: each id once
        if (size + kTlvHeaderSize + id.size() > kMaxHeartbeatSize)
            break;
        size += kTlvHeaderSize + id.size();
        hb.silent.push_back(id);
        added++;
    }
    return added;
}


Decoded<Heartbeat> decode_heartbeat(std::span<const uint8_t> datagram, std::span<const uint8_t> key)
{
    Decoded<Heartbeat> d;
    d.reason = decode_as(datagram, kHeartbeatMagic, key, parse_heartbeat, d.message);
    return d;
}

std::vector<uint8_t> encode_announcement(const FlowAnnouncement& a, std::span<const uint8_t> key)
{
    constexpr const char* what = "flow announcement";
    check_node_id(what, "node id", a.node_id);
    check_node_id(what, "`to` node id", a.to);
    if (!valid_family(a.service_address.family))
        throw Error("flow announcement: service address has no IPv4/IPv6 family");
    if (a.flows.size() > kMaxFlowsPerAnnouncement)
        throw Error("flow announcement: " + std::to_string(a.flows.size()) + " flows, at most " +
                    std::to_string(kMaxFlowsPerAnnouncement));
    for (const FlowAnnouncement::Flow& f : a.flows)
        if (f.client.family != a.service_address.family)
            throw Error("flow announcement: a client address of another family than the service address " +
                        format_ip(a.service_address));

    std::vector<uint8_t> body;
    put_identity(body, a);
    put_tlv_string(body, kTlvTo, a.to);
    put_tlv_address(body, kTlvServiceAddress, a.service_address);
    for (const FlowAnnouncement::Flow& f : a.flows) {
        std::vector<uint8_t> value;
        put_address(value, f.client);
        put_be(value, f.client_port, 2);
        put_be(value, f.service_port, 2);
        put_tlv(body, kTlvFlow, value);
    }
    return seal(kAnnouncementMagic, body, key, what);
}

Decoded<FlowAnnouncement> decode_announcement(std::span<const uint8_t> datagram, std::span<const uint8_t> key)
{
    Decoded<FlowAnnouncement> d;
    d.reason = decode_as(datagram, kAnnouncementMagic, key, parse_announcement, d.message);
    return d;
}

namespace {

bool parse_pin(std::span<const uint8_t> body, PinAnnouncement& p)
{
    SeenTypes seen;
    const bool ok = walk_tlvs(body, [&](uint8_t type, std::span<const uint8_t> value) {
        switch (type) {
        case kTlvNodeId:
        case kTlvIncarnation:
        case kTlvSequence:
        case kTlvSentUnixMs:
            return get_identity(type, value, seen, p);
        case kTlvPinOp:
            if (!seen.first(type) || value.size() != 1 || (value[0] != 1 && value[0] != 2))
                return false;
            p.pinned = value[0] == 1;
            return true;
        case kTlvPinClient: {
            auto ip = get_address(value);
            if (!seen.first(type) || !ip)
                return false;
            p.client = *ip;
            return true;
        }
        case kTlvPinServing:
            return seen.first(type) && get_node_id(value, p.serving);
        case kTlvPinRule:
            return seen.first(type) && get_uint(value, 1, p.rule);
        case kTlvPinTtlMs:
            return seen.first(type) && get_uint(value, 4, p.ttl_ms);
        default:
            return true;
        }
    });
    return ok && seen.all({kTlvNodeId, kTlvIncarnation, kTlvSequence, kTlvSentUnixMs, kTlvPinOp,
                           kTlvPinClient, kTlvPinServing, kTlvPinRule, kTlvPinTtlMs});
}

} // namespace

std::vector<uint8_t> encode_pin(const PinAnnouncement& p, std::span<const uint8_t> key)
{
    constexpr const char* what = "pin announcement";
    check_node_id(what, "node id", p.node_id);
    check_node_id(what, "serving node id", p.serving);
    if (!valid_family(p.client.family))
        throw Error("pin announcement: client address has no IPv4/IPv6 family");
    std::vector<uint8_t> body;
    put_identity(body, p);
    put_tlv_uint(body, kTlvPinOp, p.pinned ? 1 : 2, 1);
    put_tlv_address(body, kTlvPinClient, p.client);
    put_tlv_string(body, kTlvPinServing, p.serving);
    put_tlv_uint(body, kTlvPinRule, p.rule, 1);
    put_tlv_uint(body, kTlvPinTtlMs, p.ttl_ms, 4);
    return seal(kPinMagic, body, key, what);
}

Decoded<PinAnnouncement> decode_pin(std::span<const uint8_t> datagram, std::span<const uint8_t> key)
{
    Decoded<PinAnnouncement> d;
    d.reason = decode_as(datagram, kPinMagic, key, parse_pin, d.message);
    return d;
}

namespace {

// What a chunk's fields must agree on, whether it is sent or received: its
// place in the table and its size follow from total_len.
bool consistent(const TableChunk& c)
{
    if (c.version == 0 || c.total_len == 0 || c.total_len > kMaxTableBytes)
        return false;
    if (c.count != table_chunk_count(c.total_len) || c.index >= c.count)
        return false;
    const size_t offset = size_t(c.index) * kTableChunkBytes;
    return c.bytes.size() == std::min(kTableChunkBytes, size_t(c.total_len) - offset);
}

bool parse_table_chunk(std::span<const uint8_t> body, TableChunk& c)
{
    SeenTypes seen;
    const bool ok = walk_tlvs(body, [&](uint8_t type, std::span<const uint8_t> value) {
        switch (type) {
        case kTlvNodeId:
        case kTlvIncarnation:
        case kTlvSequence:
        case kTlvSentUnixMs:
            return get_identity(type, value, seen, c);
        case kTlvChunkVersion:
            return seen.first(type) && get_uint(value, 8, c.version);
        case kTlvChunkAuthor:
            return seen.first(type) && get_node_id(value, c.author);
        case kTlvChunkIndex:
            return seen.first(type) && get_uint(value, 2, c.index);
        case kTlvChunkCount:
            return seen.first(type) && get_uint(value, 2, c.count);
        case kTlvChunkTotal:
            return seen.first(type) && get_uint(value, 4, c.total_len);
        case kTlvChunkBytes:
            if (!seen.first(type) || value.size() > kTableChunkBytes)
                return false;
            c.bytes.assign(value.begin(), value.end());
            return true;
        default:
            return true;
        }
    });
    return ok &&
           seen.all({kTlvNodeId, kTlvIncarnation, kTlvSequence, kTlvSentUnixMs, kTlvChunkVersion,
                     kTlvChunkAuthor, kTlvChunkIndex, kTlvChunkCount, kTlvChunkTotal, kTlvChunkBytes}) &&
           consistent(c);
}

} // namespace

std::vector<uint8_t> encode_table_chunk(const TableChunk& c, std::span<const uint8_t> key)
{
    constexpr const char* what = "table chunk";
    check_node_id(what, "node id", c.node_id);
    check_node_id(what, "author", c.author);
    if (!consistent(c))
        throw Error(fmt::format("table chunk: version {} chunk {} of {}, {} bytes of {}: fields that "
                                "do not agree (version >= 1, 1..{} bytes in chunks of {})",
                                c.version, c.index, c.count, c.bytes.size(), c.total_len, kMaxTableBytes,
                                kTableChunkBytes));
    std::vector<uint8_t> body;
    put_identity(body, c);
    put_tlv_uint(body, kTlvChunkVersion, c.version, 8);
    put_tlv_string(body, kTlvChunkAuthor, c.author);
    put_tlv_uint(body, kTlvChunkIndex, c.index, 2);
    put_tlv_uint(body, kTlvChunkCount, c.count, 2);
    put_tlv_uint(body, kTlvChunkTotal, c.total_len, 4);
    put_tlv(body, kTlvChunkBytes, c.bytes);
    return seal(kTableMagic, body, key, what);
}

Decoded<TableChunk> decode_table_chunk(std::span<const uint8_t> datagram, std::span<const uint8_t> key)
{
    Decoded<TableChunk> d;
    d.reason = decode_as(datagram, kTableMagic, key, parse_table_chunk, d.message);
    return d;
}

DatagramKind datagram_kind(std::span<const uint8_t> datagram)
{
    if (has_magic(datagram, kTableMagic))
        return DatagramKind::table;
    if (has_magic(datagram, kHeartbeatMagic))
        return DatagramKind::heartbeat;
    if (has_magic(datagram, kAnnouncementMagic))
        return DatagramKind::announcement;
    if (has_magic(datagram, kPinMagic))
        return DatagramKind::pin;
    return DatagramKind::unknown;
}

DropReason ReplayGuard::check(const std::string& node_id, uint64_t incarnation, uint64_t sequence,
                              uint64_t sent_unix_ms, uint64_t now_mono_ms, uint64_t now_unix_ms)
{
    if (++checks_ % 1024 == 0)
        forget_old(now_mono_ms);
    auto it = seen_.find(node_id);
    if (it != seen_.end() && !aged_out(it->second, now_mono_ms)) {
        Seen& s = it->second;
        if (incarnation < s.incarnation)
            return DropReason::replayed;
        if (incarnation == s.incarnation) {
            if (sequence <= s.sequence)
                return DropReason::replayed;
            s.sequence = sequence;
            s.accepted_mono_ms = now_mono_ms;
            return DropReason::none;
        }
    }

    // The first datagram of an incarnation not known here.
    constexpr uint64_t kMaxSkew = uint64_t(INT64_MAX);
    const bool ahead = sent_unix_ms > now_unix_ms;
    const uint64_t skew = ahead ? sent_unix_ms - now_unix_ms : now_unix_ms - sent_unix_ms;
    if (skew > window_ms_) {
        const auto magnitude = static_cast<int64_t>(std::min(skew, kMaxSkew));
        last_stale_skew_ms_ = ahead ? magnitude : -magnitude;
        return DropReason::stale;
    }
    seen_[node_id] = Seen{incarnation, sequence, now_mono_ms};
    return DropReason::none;
}

void ReplayGuard::forget_old(uint64_t now_mono_ms)
{
    std::erase_if(seen_, [&](const auto& entry) { return aged_out(entry.second, now_mono_ms); });
}

} // namespace peerlb
