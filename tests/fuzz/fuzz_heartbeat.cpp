// libFuzzer target: the heartbeat / flow announcement / pin announcement /
// table chunk decoders (decode_heartbeat, decode_announcement, decode_pin,
// decode_table_chunk, datagram_kind in userspace/agent/heartbeat.h), under
// the fixed key of fuzz_common.h.
//
// Input: a mode byte, then the payload. Only the low two bits of the mode
// byte count:
//   0  raw     the payload is the datagram as received (mostly stops at
//              the HMAC: what an attacker without the key can reach)
//   1  signed  the payload is a datagram without its tag; the harness
//              appends HMAC-SHA256(key, payload), so header checks and the
//              TLV parser behind the MAC are explored
//   2  framed  the payload is a heartbeat body (TLVs); the harness writes
//              the header ("PLBH", version 1, flags 0, body_len) and the tag
//   3  framed  the same for a flow announcement ("PLBF")
// Pin announcements ("PLBP") and table chunks ("PLBT") are reached through
// modes 0 and 1 (their seeds are written in both). Modes 1..3 are harness-only ways past the MAC; they change nothing in
// what the decoders are given to check.
//
// Properties (a violation aborts, libFuzzer keeps the input):
//   - no crash, no sanitizer report, no exception escaping a decoder
//   - a datagram taken (reason none) has the magic of its kind
//   - it does not verify under another key
//   - round trip: what decodes as valid re-encodes (encode_heartbeat /
//     encode_announcement / encode_pin / encode_table_chunk) without an error, and the encoding decodes to an
//     equal struct; encoding that again gives the same bytes. A datagram
//     larger than kMaxHeartbeatSize (the agent never decodes one) may fail
//     to re-encode, being over the size limit.
//
// Seeds: PEERLB_FUZZ_WRITE_SEEDS=DIR fuzz_heartbeat -runs=0 writes valid
// heartbeats and announcements in every mode into DIR (tools/fuzz.sh does,
// into its build directory; corpus/heartbeat/ holds a checked-in copy).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/dataplane/error.h"

namespace peerlb::fuzz {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kHeaderSize = 8;
constexpr size_t kTagSize = 32;

enum Mode : uint8_t { kRaw = 0, kSigned = 1, kFramedHeartbeat = 2, kFramedAnnouncement = 3 };

const uint8_t kOtherKeyBytes[] = {'p', 'e', 'e', 'r', 'l', 'b', '-', 'f', 'u', 'z', 'z', '-',
                                  'c', 'l', 'u', 's', 't', 'e', 'r', '-', 'k', 'e', 'y', '?'};

void append_tag(Bytes& datagram)
{
    std::array<uint8_t, EVP_MAX_MD_SIZE> tag{};
    unsigned int len = 0;
    static const uint8_t empty = 0;
    if (!HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
              datagram.empty() ? &empty : datagram.data(), datagram.size(), tag.data(), &len) ||
        len != kTagSize)
        fail("harness HMAC-SHA256 failed", "");
    datagram.insert(datagram.end(), tag.begin(), tag.begin() + len);
}

Bytes frame(const char* magic, std::span<const uint8_t> body)
{
    if (body.size() > 0xffff)
        body = body.first(0xffff);
    Bytes out(magic, magic + 4);
    out.push_back(1); // version
    out.push_back(0); // flags
    out.push_back(static_cast<uint8_t>(body.size() >> 8));
    out.push_back(static_cast<uint8_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    append_tag(out);
    return out;
}

// The datagram the decoders get for one fuzz input.
Bytes datagram_of(const uint8_t* data, size_t size)
{
    if (size == 0)
        return {};
    const std::span<const uint8_t> payload(data + 1, size - 1);
    switch (data[0] & 3) {
    case kRaw: return Bytes(payload.begin(), payload.end());
    case kSigned: {
        Bytes out(payload.begin(), payload.end());
        append_tag(out);
        return out;
    }
    case kFramedHeartbeat: return frame("PLBH", payload);
    default: return frame("PLBF", payload);
    }
}

std::string describe(const Heartbeat& hb)
{
    std::string s = "id=" + hb.node_id + " inc=" + std::to_string(hb.incarnation) +
                    " seq=" + std::to_string(hb.sequence) + " sent=" + std::to_string(hb.sent_unix_ms) +
                    " interval=" + std::to_string(hb.interval_ms) + " addr=" + format_ip(hb.node_address) +
                    " services=" + std::to_string(hb.services.size()) +
                    " claims=" + std::to_string(hb.claims.size()) + " load=" + std::to_string(hb.load_bp) +
                    " state=" + std::to_string(static_cast<int>(hb.state)) +
                    " kept=" + std::to_string(hb.kept_per_s) + " fwd=" + std::to_string(hb.forwarded_per_s) +
                    " lists_silent=" + std::to_string(hb.lists_silent) + " silent=" + std::to_string(hb.silent.size());
    return s;
}

std::string describe(const FlowAnnouncement& a)
{
    return "id=" + a.node_id + " inc=" + std::to_string(a.incarnation) + " seq=" + std::to_string(a.sequence) +
           " sent=" + std::to_string(a.sent_unix_ms) + " to=" + a.to +
           " service=" + format_ip(a.service_address) + " flows=" + std::to_string(a.flows.size());
}

std::string describe(const PinAnnouncement& a)
{
    return "id=" + a.node_id + " inc=" + std::to_string(a.incarnation) + " seq=" + std::to_string(a.sequence) +
           " sent=" + std::to_string(a.sent_unix_ms) + " pinned=" + std::to_string(a.pinned) +
           " client=" + format_ip(a.client) + " serving=" + a.serving + " rule=" + std::to_string(a.rule) +
           " ttl=" + std::to_string(a.ttl_ms);
}

std::string describe(const TableChunk& c)
{
    return "id=" + c.node_id + " inc=" + std::to_string(c.incarnation) + " seq=" + std::to_string(c.sequence) +
           " sent=" + std::to_string(c.sent_unix_ms) + " version=" + std::to_string(c.version) +
           " author=" + c.author + " chunk=" + std::to_string(c.index) + "/" + std::to_string(c.count) +
           " total=" + std::to_string(c.total_len) + " bytes=" + std::to_string(c.bytes.size());
}

// A refused datagram leaves the message as default-constructed. Not
// `== Heartbeat{}`: a default IpAddress has only 4 of its 16 address bytes
// initialized (tests/fuzz/README.md, known findings), and family 0
// compares all 16.
bool untouched(const IpAddress& ip) { return ip.family == 0; }
bool untouched(const Heartbeat& hb)
{
    const Heartbeat empty;
    return hb.node_id.empty() && hb.incarnation == 0 && hb.sequence == 0 && hb.sent_unix_ms == 0 &&
           hb.interval_ms == 0 && untouched(hb.node_address) && hb.mac == empty.mac && hb.services.empty() &&
           hb.claims.empty() && hb.load_bp == 0 && hb.state == empty.state && hb.kept_per_s == 0 &&
           hb.forwarded_per_s == 0 && !hb.lists_silent && hb.silent.empty();
}
bool untouched(const PinAnnouncement& a)
{
    return a.node_id.empty() && a.incarnation == 0 && a.sequence == 0 && a.sent_unix_ms == 0 && a.pinned &&
           untouched(a.client) && a.serving.empty() && a.rule == 0 && a.ttl_ms == 0;
}
bool untouched(const TableChunk& c) { return c == TableChunk{}; }
bool untouched(const FlowAnnouncement& a)
{
    return a.node_id.empty() && a.incarnation == 0 && a.sequence == 0 && a.sent_unix_ms == 0 && a.to.empty() &&
           untouched(a.service_address) && a.flows.empty();
}

// decode(datagram) gave `message` (reason none): it must come back the same
// through encode and decode.
template <class Message, class Encode, class Decode>
void check_round_trip(const char* kind, const Bytes& datagram, const Message& message, Encode encode,
                      Decode decode)
{
    Bytes again;
    try {
        again = encode(message);
    } catch (const Error& e) {
        if (datagram.size() > kMaxHeartbeatSize)
            return; // over the size limit as received already: refusing it is fair
        fail((std::string(kind) + ": a datagram the decoder takes does not re-encode").c_str(),
             std::string("encoder: ") + e.what() + "\ndecoded: " + describe(message) +
                 "\ndatagram (" + std::to_string(datagram.size()) + " bytes): " + hex(datagram));
    }
    const auto [reason, decoded] = decode(again);
    FUZZ_CHECK(reason == DropReason::none,
               std::string(kind) + ": re-encoded datagram refused as " + drop_reason_name(reason) +
                   "\ndecoded: " + describe(message) + "\nre-encoded: " + hex(again));
    FUZZ_CHECK(decoded == message, std::string(kind) + ": round trip changed the message\nfirst:  " +
                                       describe(message) + "\nsecond: " + describe(decoded) +
                                       "\ndatagram: " + hex(datagram));
    FUZZ_CHECK(encode(decoded) == again, std::string(kind) + ": encoding is not deterministic");
}

void check(const Bytes& datagram)
{
    const std::span<const uint8_t> other_key(kOtherKeyBytes);
    const DatagramKind kind = datagram_kind(datagram);

    const Decoded<Heartbeat> hb = decode_heartbeat(datagram, kKey);
    if (hb.reason == DropReason::none) {
        FUZZ_CHECK(kind == DatagramKind::heartbeat, "heartbeat taken without the heartbeat magic: " + hex(datagram));
        FUZZ_CHECK(decode_heartbeat(datagram, other_key).reason == DropReason::bad_mac,
                   "heartbeat taken under another key: " + hex(datagram));
        check_round_trip(
            "heartbeat", datagram, hb.message, [](const Heartbeat& m) { return encode_heartbeat(m, kKey); },
            [](const Bytes& d) {
                Decoded<Heartbeat> r = decode_heartbeat(d, kKey);
                return std::pair(r.reason, r.message);
            });
    } else {
        FUZZ_CHECK(untouched(hb.message), std::string("a refused heartbeat (") + drop_reason_name(hb.reason) +
                                         ") left fields set: " + describe(hb.message) + "\ndatagram: " + hex(datagram));
    }

    const Decoded<PinAnnouncement> pin = decode_pin(datagram, kKey);
    if (pin.reason == DropReason::none) {
        FUZZ_CHECK(kind == DatagramKind::pin, "pin taken without the pin magic: " + hex(datagram));
        FUZZ_CHECK(decode_pin(datagram, other_key).reason == DropReason::bad_mac,
                   "pin taken under another key: " + hex(datagram));
        check_round_trip(
            "pin", datagram, pin.message, [](const PinAnnouncement& m) { return encode_pin(m, kKey); },
            [](const Bytes& d) {
                Decoded<PinAnnouncement> r = decode_pin(d, kKey);
                return std::pair(r.reason, r.message);
            });
    } else {
        FUZZ_CHECK(untouched(pin.message), std::string("a refused pin (") + drop_reason_name(pin.reason) +
                                           ") left fields set: " + describe(pin.message) + "\ndatagram: " + hex(datagram));
    }

    const Decoded<TableChunk> chunk = decode_table_chunk(datagram, kKey);
    if (chunk.reason == DropReason::none) {
        FUZZ_CHECK(kind == DatagramKind::table, "table chunk taken without the table magic: " + hex(datagram));
        FUZZ_CHECK(decode_table_chunk(datagram, other_key).reason == DropReason::bad_mac,
                   "table chunk taken under another key: " + hex(datagram));
        FUZZ_CHECK(chunk.message.bytes.size() <= kTableChunkBytes && chunk.message.total_len <= kMaxTableBytes &&
                       chunk.message.index < chunk.message.count,
                   "table chunk taken with fields that disagree: " + describe(chunk.message));
        check_round_trip(
            "table chunk", datagram, chunk.message,
            [](const TableChunk& m) { return encode_table_chunk(m, kKey); },
            [](const Bytes& d) {
                Decoded<TableChunk> r = decode_table_chunk(d, kKey);
                return std::pair(r.reason, r.message);
            });
    } else {
        FUZZ_CHECK(untouched(chunk.message), std::string("a refused table chunk (") +
                                                 drop_reason_name(chunk.reason) + ") left fields set: " +
                                                 describe(chunk.message) + "\ndatagram: " + hex(datagram));
    }

    const Decoded<FlowAnnouncement> an = decode_announcement(datagram, kKey);
    if (an.reason == DropReason::none) {
        FUZZ_CHECK(kind == DatagramKind::announcement,
                   "announcement taken without the announcement magic: " + hex(datagram));
        FUZZ_CHECK(decode_announcement(datagram, other_key).reason == DropReason::bad_mac,
                   "announcement taken under another key: " + hex(datagram));
        check_round_trip(
            "announcement", datagram, an.message,
            [](const FlowAnnouncement& m) { return encode_announcement(m, kKey); },
            [](const Bytes& d) {
                Decoded<FlowAnnouncement> r = decode_announcement(d, kKey);
                return std::pair(r.reason, r.message);
            });
    } else {
        FUZZ_CHECK(untouched(an.message), std::string("a refused announcement (") + drop_reason_name(an.reason) +
                                                   ") left fields set: " + describe(an.message) +
                                                   "\ndatagram: " + hex(datagram));
    }
}

// --- seeds -------------------------------------------------------------------

IpAddress ip(const char* text) { return parse_ip(text); }

std::vector<std::pair<std::string, Heartbeat>> seed_heartbeats()
{
    std::vector<std::pair<std::string, Heartbeat>> out;
    Heartbeat hb;
    hb.node_id = "s1";
    hb.incarnation = 1'700'000'000'000'000'000ULL;
    hb.sequence = 1;
    hb.sent_unix_ms = 1'700'000'000'000ULL;
    hb.interval_ms = 500;
    hb.node_address = ip("10.0.0.11");
    hb.mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x11};
    out.emplace_back("hb-v4-minimal", hb);

    hb.node_id = "node-2.example";
    hb.services = {ip("10.0.0.111"), ip("10.0.0.112"), ip("10.0.0.113")};
    hb.claims = {ip("10.0.0.111"), ip("10.0.0.121")};
    hb.load_bp = 4321;
    hb.state = AnnouncedState::unroutable;
    hb.kept_per_s = 1200;
    hb.forwarded_per_s = 300;
    out.emplace_back("hb-v4-services-claims", hb);

    Heartbeat v6 = hb;
    v6.node_address = ip("fd00::11");
    v6.services = {ip("fd00::111"), ip("2001:db8::1"), ip("192.0.2.1")};
    v6.claims = {ip("fd00::111")};
    v6.state = AnnouncedState::leaving;
    v6.load_bp = 10000;
    out.emplace_back("hb-v6-mixed-leaving", v6);

    Heartbeat max = hb;
    max.node_id = std::string(32, 'z');
    max.incarnation = max.sequence = max.sent_unix_ms = UINT64_MAX;
    max.interval_ms = max.kept_per_s = max.forwarded_per_s = UINT32_MAX;
    max.services.clear();
    max.claims.clear();
    for (int i = 0; i < static_cast<int>(kMaxOwnedServices); i++) {
        max.services.push_back(ip(("198.51.100." + std::to_string(i)).c_str()));
        max.claims.push_back(ip(("203.0.113." + std::to_string(i)).c_str()));
    }
    max.load_bp = 10000;
    out.emplace_back("hb-v4-limits", max);

    Heartbeat silent = hb;
    silent.node_id = "s3";
    silent.lists_silent = true;
    silent.silent = {"s1", "node-2.example", std::string(32, 'q')};
    out.emplace_back("hb-v4-silent", silent);
    return out;
}

std::vector<std::pair<std::string, FlowAnnouncement>> seed_announcements()
{
    std::vector<std::pair<std::string, FlowAnnouncement>> out;
    FlowAnnouncement a;
    a.node_id = "s2";
    a.incarnation = 1'700'000'000'000'000'001ULL;
    a.sequence = 7;
    a.sent_unix_ms = 1'700'000'000'100ULL;
    a.to = "s1";
    a.service_address = ip("10.0.0.111");
    out.emplace_back("an-v4-empty", a);

    for (int i = 0; i < 3; i++)
        a.flows.push_back({ip(("192.0.2." + std::to_string(10 + i)).c_str()),
                           static_cast<uint16_t>(40000 + i), 80});
    out.emplace_back("an-v4-flows", a);

    FlowAnnouncement v6 = a;
    v6.service_address = ip("fd00::111");
    v6.flows.clear();
    for (int i = 0; i < static_cast<int>(kMaxFlowsPerAnnouncement); i++)
        v6.flows.push_back({ip(("2001:db8::" + std::to_string(i + 1)).c_str()),
                            static_cast<uint16_t>(50000 + i), 443});
    v6.node_id = std::string(32, 'n');
    v6.to = std::string(32, 't');
    out.emplace_back("an-v6-limits", v6);
    return out;
}

std::vector<std::pair<std::string, PinAnnouncement>> seed_pins()
{
    std::vector<std::pair<std::string, PinAnnouncement>> out;
    PinAnnouncement p;
    p.node_id = "s1";
    p.incarnation = 1'700'000'000'000'000'002ULL;
    p.sequence = 9;
    p.sent_unix_ms = 1'700'000'000'200ULL;
    p.client = ip("192.0.2.77");
    p.serving = "s2";
    p.rule = 0;
    p.ttl_ms = 600'000;
    out.emplace_back("pin-v4", p);
    PinAnnouncement v6 = p;
    v6.pinned = false;
    v6.client = ip("2001:db8::77");
    v6.serving = std::string(32, 's');
    v6.rule = 15;
    v6.ttl_ms = 0;
    out.emplace_back("pin-v6-ended", v6);
    return out;
}

std::vector<std::pair<std::string, TableChunk>> seed_table_chunks()
{
    std::vector<std::pair<std::string, TableChunk>> out;
    TableChunk c;
    c.node_id = "s1";
    c.incarnation = 1'700'000'000'000'000'003ULL;
    c.sequence = 11;
    c.sent_unix_ms = 1'700'000'000'300ULL;
    c.version = 42;
    c.author = "s1";
    c.total_len = uint32_t(kTableChunkBytes + 17);
    c.count = 2;
    c.index = 1;
    c.bytes.assign(17, 0x5c);
    out.emplace_back("table-last", c);
    TableChunk full = c;
    full.index = 0;
    full.bytes.assign(kTableChunkBytes, 0xa3);
    full.author = std::string(32, 'a');
    out.emplace_back("table-full", full);
    return out;
}

void write_file(const std::string& path, uint8_t mode, std::span<const uint8_t> payload)
{
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.put(static_cast<char>(mode));
    f.write(reinterpret_cast<const char*>(payload.data()), static_cast<std::streamsize>(payload.size()));
    if (!f)
        fail("cannot write seed", path);
}

// Each datagram in the four modes: raw, signed (tag left off), framed (body only).
void write_seed(const std::string& dir, const std::string& name, const Bytes& datagram, Mode framed)
{
    const std::span<const uint8_t> d(datagram);
    write_file(dir + "/" + name + ".raw", kRaw, d);
    write_file(dir + "/" + name + ".signed", kSigned, d.first(d.size() - kTagSize));
    write_file(dir + "/" + name + ".framed", framed, d.subspan(kHeaderSize, d.size() - kHeaderSize - kTagSize));
}

void write_seeds(const std::string& dir)
{
    for (const auto& [name, hb] : seed_heartbeats())
        write_seed(dir, name, encode_heartbeat(hb, kKey), kFramedHeartbeat);
    for (const auto& [name, a] : seed_announcements())
        write_seed(dir, name, encode_announcement(a, kKey), kFramedAnnouncement);
    auto write_unframed = [&](const std::string& name, const Bytes& d) { // no framed mode of their own
        write_file(dir + "/" + name + ".raw", kRaw, d);
        write_file(dir + "/" + name + ".signed", kSigned, std::span<const uint8_t>(d).first(d.size() - kTagSize));
    };
    for (const auto& [name, p] : seed_pins())
        write_unframed(name, encode_pin(p, kKey));
    for (const auto& [name, c] : seed_table_chunks())
        write_unframed(name, encode_table_chunk(c, kKey));
    std::fprintf(stderr, "fuzz_heartbeat: seeds written to %s\n", dir.c_str());
}

} // namespace
} // namespace peerlb::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    if (const char* dir = std::getenv("PEERLB_FUZZ_WRITE_SEEDS"))
        peerlb::fuzz::write_seeds(dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    peerlb::fuzz::check(peerlb::fuzz::datagram_of(data, size));
    return 0;
}
