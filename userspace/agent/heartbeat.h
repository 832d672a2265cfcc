// Heartbeat datagrams (DESIGN.md section 3): what a node tells its peers
// every interval, authenticated with HMAC-SHA256 under the cluster key and
// replay-protected by (incarnation, sequence); a wall-clock window guards
// only the first datagram of an incarnation (ReplayGuard).
//
// Wire format, all integers big-endian:
//   magic "PLBH" | version u8 (1) | flags u8 (0) | body_len u16
//   body (body_len bytes): a sequence of TLVs (type u8, length u16, value);
//     unknown types are skipped so later versions can add fields
//   hmac[32] = HMAC-SHA256(key, everything before it)
// A datagram is at most kMaxHeartbeatSize bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../dataplane/net.h"

namespace peerlb {

// 1500-byte Ethernet MTU less IPv6 (40) and UDP (8) headers: one datagram is
// never fragmented on a standard LAN, whichever family carries it. A
// heartbeat at every field's limit (a 32-byte id, 31 IPv6 services and 31
// IPv6 claims, every optional field) fits: heartbeat.cpp checks it at
// compile time.
inline constexpr size_t kMaxHeartbeatSize = 1452;
inline constexpr size_t kMaxNodeIdLen = 32;
// Service addresses a node owns by configuration, and addresses it holds at
// once (its own and a dead peer's): compute_owners never gives a node more.
// 31, not 32: the capacity fields (weight, cost of a connection) took the
// room of one address in each list.
inline constexpr size_t kMaxOwnedServices = 31;
inline constexpr size_t kMaxClaims = 31;
inline constexpr uint32_t kMaxLoadExactBp = 1'000'000; // 100 x full
// Silent peers one heartbeat names at most (Heartbeat::silent); fewer when
// the datagram has no room for them.
inline constexpr size_t kMaxSilentPeers = 64;

enum class AnnouncedState : uint8_t { alive = 1, unroutable = 2, leaving = 3 };

struct Heartbeat {
    std::string node_id;      // 1..32 bytes
    uint64_t incarnation = 0; // grows on every agent start (persisted: incarnation.h)
    uint64_t sequence = 0;    // grows with every datagram of one incarnation
    uint64_t sent_unix_ms = 0;
    uint32_t interval_ms = 0; // the sender's period: receivers judge its silence by it
    IpAddress node_address;
    Mac mac{};
    std::vector<IpAddress> services; // service addresses the sender owns by configuration
    std::vector<IpAddress> claims;   // service addresses it holds now, own ones included
    uint16_t load_bp = 0;     // 0..10000
    // The load when past 100 % (inflight: open connections over capacity),
    // up to kMaxLoadExactBp; 0: not past it (load_bp is the load).
    uint32_t load_bp_exact = 0;
    AnnouncedState state = AnnouncedState::alive;
    uint32_t kept_per_s = 0;      // new connections the sender kept, per second
    uint32_t forwarded_per_s = 0; // and handed to peers (shown by `peerlb top`)
    // Capacity (DESIGN.md section 2): the load one connection adds to the
    // sender (100 % / its capacity; 0: not announced), its weight in
    // hundredths (1.0 = 100), and whether it is a standby node.
    uint32_t conn_cost_bp = 0;
    uint16_t weight = 100;
    bool standby = false;
    // Shared service addresses (DESIGN.md section 5b): whether the sender
    // serves them (it gets buckets), the bucket table version it applied
    // (0: none yet), whether it drains (`peerlb drain`: its buckets move
    // away), and the share of its shared packets that took a second hop
    // along a chain, in permille (`peerlb buckets`).
    bool shared = false;
    bool draining = false;
    uint64_t table_version = 0;
    uint16_t second_hop_permille = 0;
    // Deaths confirmed by peers (membership.h): whether the sender lists
    // the peers it has not heard for 2 periods or more (older agents do
    // not: their silence about a peer means nothing), and those it names
    // in this heartbeat. A sender with more than fit names the others in
    // its next heartbeats (fill_silent_peers).
    bool lists_silent = false;
    std::vector<std::string> silent; // node ids, each at most once

    bool operator==(const Heartbeat&) const = default;
};

// Appends to hb.silent the ids of `ids` from index `start` on (modulo its
// size, wrapping around), as many as fit in the datagram with everything
// else hb carries, at most kMaxSilentPeers in all; returns how many. The
// caller moves `start` on by that much for the next heartbeat, so that
// every id is named in turn.
size_t fill_silent_peers(Heartbeat& hb, const std::vector<std::string>& ids, size_t start);

// Sent to the new holder of a service address when the address moves
// (takeover, give-back): the connections on it that the sender serves, so
// the holder forwards their packets instead of resetting them. Same framing
// and key as heartbeats, magic "PLBF"; several datagrams when they do not
// fit in one.
struct FlowAnnouncement {
    std::string node_id;      // the sender, which serves these flows
    uint64_t incarnation = 0;
    uint64_t sequence = 0;    // the sender's heartbeat sequence space
    uint64_t sent_unix_ms = 0;
    std::string to;           // node id of the address's new holder
    IpAddress service_address;
    struct Flow {
        IpAddress client;
        uint16_t client_port = 0; // host order
        uint16_t service_port = 0;
        bool operator==(const Flow&) const = default;
    };
    std::vector<Flow> flows;

    bool operator==(const FlowAnnouncement&) const = default;
};

// A stateful URI rule pinned a client to a node, or the pin ended (its exit
// request): told to every peer at once so that the client's next
// connection goes to that node whichever node receives it. Same framing and
// key as heartbeats, magic "PLBP".
struct PinAnnouncement {
    std::string node_id;      // the sender, whose data plane saw the request
    uint64_t incarnation = 0;
    uint64_t sequence = 0;    // the sender's heartbeat sequence space
    uint64_t sent_unix_ms = 0;
    bool pinned = true;       // false: the pin ended
    IpAddress client;
    std::string serving;      // node id the client is pinned to
    uint8_t rule = 0;         // index of the stateful rule
    uint32_t ttl_ms = 0;      // how long the pin lasts from now (pinned only)

    bool operator==(const PinAnnouncement&) const = default;
};

// Flows per datagram so that one fits in kMaxHeartbeatSize.
inline constexpr size_t kMaxFlowsPerAnnouncement = 50;

// One chunk of an encoded bucket table (bucket_table.h's encode_table),
// sent by the coordinator to every peer: the table is cut into chunks of
// kTableChunkBytes (the last one shorter), index 0 .. count - 1, so that
// each fits in one datagram. Same framing and key as heartbeats, magic
// "PLBT". A receiver checks that the chunk's place and size agree with
// total_len before it keeps a byte.
struct TableChunk {
    std::string node_id;      // the sender (the coordinator, or a peer helping it catch up)
    uint64_t incarnation = 0;
    uint64_t sequence = 0;    // the sender's heartbeat sequence space
    uint64_t sent_unix_ms = 0;
    uint64_t version = 0;     // the table's version (>= 1)
    std::string author;       // node id of the coordinator that made it
    uint16_t index = 0;       // this chunk's place, < count
    uint16_t count = 0;       // chunks of the table: ceil(total_len / kTableChunkBytes)
    uint32_t total_len = 0;   // bytes of the encoded table, 1..kMaxTableBytes
    std::vector<uint8_t> bytes;

    bool operator==(const TableChunk&) const = default;
};
inline constexpr size_t kTableChunkBytes = 1200;
// An encoded table is at most this long (LB_MAX_BUCKETS buckets fit): a
// receiver never holds more per table it assembles.
inline constexpr size_t kMaxTableBytes = 4u << 20;
// Chunks of a table of total_len bytes.
inline constexpr size_t table_chunk_count(size_t total_len)
{
    return (total_len + kTableChunkBytes - 1) / kTableChunkBytes;
}

// Why a datagram was not taken; counted by the agent and in metrics.
enum class DropReason {
    none,
    truncated,      // shorter than header + hmac, or body_len does not match
    bad_magic,      // not a peerlb heartbeat, or another version
    bad_mac,        // HMAC does not verify under our key
    malformed,      // authenticated, but a TLV or field is missing, cut or out of range
    own_id,         // our own datagram looped back, or someone using our id
    replayed,       // sequence not newer for its incarnation, or an old incarnation
    stale,          // first datagram of an incarnation, sent_unix_ms outside the replay window
    bad_id,         // authenticated, but a node id is empty, too long, not UTF-8 or not printable
};
const char* drop_reason_name(DropReason r);
inline constexpr DropReason kAllDropReasons[] = {
    DropReason::truncated, DropReason::bad_magic, DropReason::bad_mac, DropReason::malformed,
    DropReason::own_id,    DropReason::replayed,  DropReason::stale,   DropReason::bad_id,
};

// 1..kMaxNodeIdLen bytes of valid UTF-8 without control characters: ids end
// up in logs, JSON (`peerlb peers`) and metrics labels, which a stray byte
// would break.
bool valid_node_id(std::string_view id);

// Encodes and signs; throws Error if a field is out of range (id length,
// too many services, load over 10000).
std::vector<uint8_t> encode_heartbeat(const Heartbeat& hb, std::span<const uint8_t> key);

// What a decoder returns, whatever the kind of datagram.
template <class Message>
struct Decoded {
    DropReason reason = DropReason::none; // none: message is valid and authenticated
    Message message;
};

// Encodes and signs; throws Error if a field is out of range or there are
// more than kMaxFlowsPerAnnouncement flows.
std::vector<uint8_t> encode_announcement(const FlowAnnouncement& a, std::span<const uint8_t> key);

Decoded<FlowAnnouncement> decode_announcement(std::span<const uint8_t> datagram,
                                        std::span<const uint8_t> key);

std::vector<uint8_t> encode_pin(const PinAnnouncement& p, std::span<const uint8_t> key);

Decoded<PinAnnouncement> decode_pin(std::span<const uint8_t> datagram, std::span<const uint8_t> key);

// Encodes and signs; throws Error if the chunk's fields do not agree (see
// TableChunk).
std::vector<uint8_t> encode_table_chunk(const TableChunk& c, std::span<const uint8_t> key);

Decoded<TableChunk> decode_table_chunk(std::span<const uint8_t> datagram, std::span<const uint8_t> key);


// What a datagram is, from its magic alone (before any authentication).
enum class DatagramKind { heartbeat, announcement, pin, table, unknown };
DatagramKind datagram_kind(std::span<const uint8_t> datagram);

// Verifies the HMAC (constant time) before looking at any field.
Decoded<Heartbeat> decode_heartbeat(std::span<const uint8_t> datagram, std::span<const uint8_t> key);

// Remembers, per node id, the newest (incarnation, sequence) taken, and
// drops what is not newer. Only monotonic facts judge a known incarnation:
// its next sequence is taken whatever its send time, so a wall clock
// stepped at the sender or here kills no peer. The wall-clock window
// guards the first datagram of an incarnation not known here (a new node,
// a restart, a sender forgotten after a window of silence): a capture from
// before that cannot be replayed. A sender whose incarnation grows (a
// restart) starts a new sequence.
class ReplayGuard {
public:
    explicit ReplayGuard(uint64_t window_ms) : window_ms_(window_ms) {}
    // none: accepted and recorded; replayed / stale: dropped, nothing recorded.
    // Any kind of datagram: it judges the sender's id, incarnation, sequence
    // and send time. now_mono_ms: this node's CLOCK_MONOTONIC (ages what is
    // remembered); now_unix_ms: its wall clock (the first datagram's window).
    template <class Message>
    DropReason check(const Message& m, uint64_t now_mono_ms, uint64_t now_unix_ms)
    {
        return check(m.node_id, m.incarnation, m.sequence, m.sent_unix_ms, now_mono_ms, now_unix_ms);
    }
    void set_window(uint64_t window_ms) { window_ms_ = window_ms; }
    uint64_t window_ms() const { return window_ms_; }
    // Senders remembered now (what a forger of ids can make it hold is
    // bounded by the ids it sent within one window).
    size_t remembered() const { return seen_.size(); }
    // The last datagram refused as stale: its send time minus this node's
    // wall clock (positive: the sender is ahead), for the log.
    int64_t last_stale_skew_ms() const { return last_stale_skew_ms_; }

private:
    DropReason check(const std::string& node_id, uint64_t incarnation, uint64_t sequence,
                     uint64_t sent_unix_ms, uint64_t now_mono_ms, uint64_t now_unix_ms);
    // Forgets senders not heard from for a window: whatever they sent before
    // is then judged as a first datagram, and refused as stale by its send
    // time. A node restarted with a lower incarnation (its state directory
    // lost) is taken again a window after its last accepted datagram.
    void forget_old(uint64_t now_mono_ms);
    struct Seen {
        uint64_t incarnation;
        uint64_t sequence;
        uint64_t accepted_mono_ms; // receiver's monotonic clock: a wall clock step ages nothing
    };
    bool aged_out(const Seen& s, uint64_t now_mono_ms) const
    {
        return now_mono_ms > s.accepted_mono_ms && now_mono_ms - s.accepted_mono_ms > window_ms_;
    }
    uint64_t window_ms_;
    std::unordered_map<std::string, Seen> seen_; // by node id
    uint64_t checks_ = 0;
    int64_t last_stale_skew_ms_ = 0;
};

} // namespace peerlb
