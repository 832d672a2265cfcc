// Sends hostile heartbeats to a group, for the namespace tests. Only the
// agents' drop counters and peer tables should notice.
//
//   forge_heartbeat --to 239.7.7.7:7946 --iface eth0 --kind KIND
//                   [--key FILE] [--id ID] [--count N] [--rate PER_S]
//                   [--max-seconds S] [--receivers s1,s2,s3] [--summary]
//
// Kinds (those marked * need the real --key; those marked + first capture
// real heartbeats from the group on --iface, and keep capturing):
//   wrong-key   correctly framed, signed with a key that is not the cluster's
//   garbage     random bytes, random length (alias: random)
//   stale     * an hour in the past, signed with the real key
//   future    * an hour in the future, signed with the real key
//   malformed * correctly framed and signed with the real key, broken body
//   truncated + a real heartbeat cut short
//   bit-flip  + a real heartbeat with one bit flipped
//   replay    + a real heartbeat sent again, unchanged
//   mix       * all of the above in turn (the + kinds included)
//   duplicate * a valid, current heartbeat with --id itself, from node address
//               10.77.0.250, incarnation 1, sequence 1, 2...: a second node
//               configured with that id (the agents must report it; a real
//               node with that id, further along, keeps its peer entry)
//
// With --summary it prints one JSON object: what was sent, how fast, and
// for each of --receivers the drop reasons its agent should count, derived
// from how each datagram was built (not from the agent's decoder):
//   {"sent": N, "seconds": S, "per_s": R, "kinds": {KIND: N, ...},
//    "expect": {"s1": {"truncated": N, "bad_magic": N, ...}, ...}}
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "userspace/agent/config.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"
#include "userspace/dataplane/net.h"

using namespace peerlb;

namespace {

// Framing constants of the wire format (heartbeat.h), restated here so that
// the expected drop reasons do not come from the code under test.
constexpr size_t kHeader = 8; // magic 4, version 1, flags 1, body_len 2
constexpr size_t kTag = 32;   // HMAC-SHA256

uint64_t unix_ms_now()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

bool is_peerlb_magic(const std::vector<uint8_t>& d)
{
    return d.size() >= 4 && d[0] == 'P' && d[1] == 'L' && d[2] == 'B' && (d[3] == 'H' || d[3] == 'F');
}

// The node id TLV (type 1) of a real heartbeat, read by hand; "" if absent.
std::string sender_id(const std::vector<uint8_t>& d)
{
    size_t pos = kHeader;
    const size_t end = d.size() >= kTag ? d.size() - kTag : 0;
    while (pos + 3 <= end) {
        const uint8_t type = d[pos];
        const size_t len = (size_t{d[pos + 1]} << 8) | d[pos + 2];
        pos += 3;
        if (pos + len > end)
            break;
        if (type == 1)
            return std::string(d.begin() + long(pos), d.begin() + long(pos + len));
        pos += len;
    }
    return "";
}

// Header + body + HMAC-SHA256 under key, built by hand.
std::vector<uint8_t> frame_and_sign(const std::vector<uint8_t>& body, const std::vector<uint8_t>& key)
{
    std::vector<uint8_t> out(kHeader + body.size() + kTag);
    const uint8_t header[kHeader] = {'P', 'L', 'B', 'H', 1, 0, uint8_t(body.size() >> 8), uint8_t(body.size())};
    std::copy(header, header + kHeader, out.begin());
    std::copy(body.begin(), body.end(), out.begin() + kHeader);
    uint8_t tag[kTag];
    unsigned len = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), out.data(), kHeader + body.size(), tag, &len);
    std::copy(tag, tag + kTag, out.end() - kTag);
    return out;
}

void tlv(std::vector<uint8_t>& body, uint8_t type, std::vector<uint8_t> value, size_t claimed_len)
{
    body.push_back(type);
    body.push_back(uint8_t(claimed_len >> 8));
    body.push_back(uint8_t(claimed_len));
    body.insert(body.end(), value.begin(), value.end());
}

// A body that authenticates but must not parse: a few different ways.
std::vector<uint8_t> malformed_body(unsigned variant)
{
    std::vector<uint8_t> body;
    switch (variant % 4) {
    case 0: // an empty node id
        tlv(body, 1, {}, 0);
        break;
    case 1: // a TLV whose value runs past the end of the body
        tlv(body, 1, {'x'}, 40);
        break;
    case 2: // load over 10000, and every other required field missing
        tlv(body, 1, {'s', '2'}, 2);
        tlv(body, 9, {0x4e, 0x20}, 2);
        break;
    default: // nothing at all
        break;
    }
    return body;
}

struct Capture {
    Fd fd;
    std::map<std::string, std::vector<uint8_t>> latest; // by sender id
    std::vector<std::string> ids;                        // senders, in order seen

    void drain()
    {
        uint8_t buf[2048];
        while (true) {
            ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
            if (n <= 0)
                return;
            std::vector<uint8_t> d(buf, buf + n);
            if (d.size() < kHeader + kTag || d[3] != 'H' || !is_peerlb_magic(d))
                continue;
            std::string id = sender_id(d);
            if (id.empty())
                continue;
            if (!latest.count(id))
                ids.push_back(id);
            latest[id] = std::move(d);
        }
    }
};

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"forge_heartbeat: hostile heartbeats for tests"};
    std::string to, iface, kind, key_file, id = "intruder", receivers_text;
    long count = 10;
    double rate = 0, max_seconds = 0;
    bool summary = false;
    app.add_option("--to", to, "IPv4 group:port")->required();
    app.add_option("--iface", iface)->required();
    app.add_option("--kind", kind)
        ->required()
        ->check(CLI::IsMember({"wrong-key", "garbage", "random", "stale", "future", "malformed",
                               "truncated", "bit-flip", "replay", "mix", "members", "duplicate"}));
    app.add_option("--key", key_file, "the cluster key (stale, future, malformed, mix, members, duplicate)");
    app.add_option("--id", id, "node id of forged heartbeats (default intruder; mix: cycles)");
    app.add_option("--count", count)->check(CLI::Range(1l, 10'000'000l));
    app.add_option("--rate", rate, "datagrams per second (0: as fast as possible)")
        ->check(CLI::Range(0.0, 1e7));
    app.add_option("--max-seconds", max_seconds, "stop after this long even if fewer were sent")
        ->check(CLI::Range(0.0, 3600.0));
    app.add_option("--receivers", receivers_text, "comma-separated ids of the agents listening");
    app.add_flag("--summary", summary, "print a JSON summary with the expected drops");
    CLI11_PARSE(app, argc, argv);

    const std::vector<std::string> all_kinds = {"garbage", "truncated", "bit-flip", "replay",
                                                "wrong-key", "future", "stale", "malformed"};
    // members: valid heartbeats, each from a new node (<id>-<i>, its own
    // address), as a key holder or a churn of node addresses would send.
    const bool needs_key = kind == "stale" || kind == "future" || kind == "malformed" ||
                           kind == "mix" || kind == "members" || kind == "duplicate";
    const bool needs_capture = kind == "truncated" || kind == "bit-flip" || kind == "replay" || kind == "mix";
    if (needs_key && key_file.empty()) {
        std::cerr << "forge_heartbeat: --kind " << kind << " needs --key\n";
        return 2;
    }
    std::vector<std::string> receivers;
    {
        std::stringstream ss(receivers_text);
        std::string r;
        while (std::getline(ss, r, ','))
            if (!r.empty())
                receivers.push_back(r);
    }

    try {
        auto colon = to.rfind(':');
        if (colon == std::string::npos)
            throw peerlb::Error("--to needs group:port");
        IpAddress group = parse_ip(to.substr(0, colon));
        const uint16_t port = static_cast<uint16_t>(std::stoi(to.substr(colon + 1)));
        const std::vector<uint8_t> wrong_key(32, 0x5a); // not the cluster's
        std::vector<uint8_t> key = wrong_key;
        if (!key_file.empty())
            key = load_key(key_file);
        const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
        if (!ifindex)
            throw peerlb::Error("interface '" + iface + "' does not exist");

        Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ip_mreqn mreq{};
        mreq.imr_ifindex = ifindex;
        const int zero = 0;
        if (!fd || setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq)) ||
            setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero))) {
            perror("forge_heartbeat: socket");
            return 1;
        }
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(port);
        dst.sin_addr.s_addr = group.addr.v4;

        Capture cap;
        if (needs_capture) {
            cap.fd = Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            const int one = 1;
            ip_mreqn join{};
            join.imr_multiaddr.s_addr = group.addr.v4;
            join.imr_ifindex = ifindex;
            if (!cap.fd || setsockopt(cap.fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
                ::bind(cap.fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) ||
                setsockopt(cap.fd.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof(join))) {
                perror("forge_heartbeat: capture socket");
                return 1;
            }
            // Real heartbeats to work from: one of every receiver's if named.
            const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
            while (std::chrono::steady_clock::now() < until) {
                cap.drain();
                bool all = !cap.ids.empty();
                for (const auto& r : receivers)
                    all = all && cap.latest.count(r);
                if (all)
                    break;
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            if (cap.ids.empty())
                throw peerlb::Error("no real heartbeat heard on " + iface + " within 3 s");
        }

        std::mt19937 rng(1234);
        std::map<std::string, long> kinds;
        std::map<std::string, std::map<std::string, long>> expect;
        for (const auto& r : receivers)
            for (const char* reason : {"truncated", "bad_magic", "bad_mac", "malformed", "own_id",
                                       "replayed", "stale"})
                expect[r][reason] = 0;
        auto expect_all = [&](const char* reason) {
            for (auto& [r, e] : expect)
                e[reason]++;
        };
        // own_id at the receiver whose id it carries, `otherwise` at the rest.
        auto expect_by_id = [&](const std::string& carried, const char* otherwise) {
            for (auto& [r, e] : expect)
                e[r == carried ? "own_id" : otherwise]++;
        };
        // Forged ids in turn: an outsider, then each receiver (a peer's
        // identity is the valuable one to steal).
        std::vector<std::string> forged_ids = {id};
        forged_ids.insert(forged_ids.end(), receivers.begin(), receivers.end());

        // OpenSSL initialises itself at the first HMAC (milliseconds): done
        // before the clock starts, or the pacing would catch up in a burst.
        {
            Heartbeat warm;
            warm.node_id = id;
            warm.interval_ms = 100;
            warm.node_address = parse_ip("10.77.0.250");
            (void)encode_heartbeat(warm, key);
            (void)frame_and_sign({}, key);
        }
        // A full queue (ENOBUFS) is waited out: every datagram counted was sent.
        auto send_one = [&](const std::vector<uint8_t>& d) {
            for (int attempt = 0; attempt < 100; attempt++) {
                if (sendto(fd.get(), d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&dst),
                           sizeof(dst)) >= 0)
                    return true;
                if (errno != ENOBUFS && errno != EAGAIN)
                    return false;
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            return false;
        };
        const auto start = std::chrono::steady_clock::now();
        long sent = 0;
        for (long i = 0; i < count; i++) {
            if (rate > 0) {
                const auto due = start + std::chrono::nanoseconds(long(double(i) * 1e9 / rate));
                std::this_thread::sleep_until(due);
            }
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (max_seconds > 0 && elapsed > max_seconds)
                break;
            if (needs_capture && i % 64 == 0)
                cap.drain();
            const std::string k = kind == "mix" ? all_kinds[size_t(i) % all_kinds.size()]
                                  : kind == "random" ? "garbage"
                                                     : kind;
            const std::string& forged_id = kind == "mix" ? forged_ids[size_t(i / long(all_kinds.size())) % forged_ids.size()] : id;
            std::vector<uint8_t> datagram;
            if (k == "garbage") {
                datagram.resize(1 + rng() % 1400);
                for (auto& b : datagram)
                    b = static_cast<uint8_t>(rng());
                if (is_peerlb_magic(datagram))
                    datagram[0] = 'Q';
                expect_all(datagram.size() < kHeader + kTag ? "truncated" : "bad_magic");
            } else if (k == "truncated" || k == "bit-flip" || k == "replay") {
                const std::string& from = cap.ids[rng() % cap.ids.size()];
                datagram = cap.latest[from];
                if (k == "truncated") {
                    datagram.resize(1 + rng() % (datagram.size() - 1));
                    expect_all("truncated");
                } else if (k == "bit-flip") {
                    const size_t pos = rng() % datagram.size();
                    datagram[pos] ^= uint8_t(1u << (rng() % 8));
                    // magic and version | flags (signed) | body_len | body and tag
                    expect_all(pos < 5 ? "bad_magic" : pos == 5 ? "bad_mac" : pos < kHeader ? "truncated" : "bad_mac");
                } else {
                    expect_by_id(from, "replayed");
                }
            } else if (k == "members") {
                Heartbeat hb;
                hb.node_id = id + "-" + std::to_string(i);
                hb.incarnation = 1;
                hb.sequence = 1;
                hb.interval_ms = 100;
                hb.sent_unix_ms = unix_ms_now();
                hb.node_address.family = LB_FAMILY_IPV4;
                hb.node_address.addr.v4 = htonl(0x0a4d0100u + uint32_t(i)); // 10.77.1.0 + i
                hb.mac = {0x02, 0x66, 0x66, 0x66, uint8_t(i >> 8), uint8_t(i)};
                hb.load_bp = 9900; // never a candidate: the test's traffic is not theirs
                datagram = encode_heartbeat(hb, key);
            } else if (k == "duplicate") {
                Heartbeat hb;
                hb.node_id = id;
                hb.incarnation = 1; // never above the real node's: its entry stays
                hb.sequence = 1 + uint64_t(i);
                hb.interval_ms = 100;
                hb.sent_unix_ms = unix_ms_now();
                hb.node_address = parse_ip("10.77.0.250");
                hb.mac = {0x02, 0x66, 0x66, 0x66, 0x66, 0x67};
                hb.load_bp = 9900;
                datagram = encode_heartbeat(hb, key);
                expect_by_id(id, "replayed");
            } else if (k == "malformed") {
                datagram = frame_and_sign(malformed_body(unsigned(rng())), key);
                expect_all("malformed");
            } else {
                Heartbeat hb;
                hb.node_id = forged_id;
                hb.incarnation = ~0ull - 1; // would outrank any real incarnation
                hb.sequence = 1000 + uint64_t(i);
                hb.interval_ms = 100;
                const uint64_t now_ms = unix_ms_now();
                hb.sent_unix_ms = k == "stale" ? now_ms - 3'600'000 : k == "future" ? now_ms + 3'600'000 : now_ms;
                hb.node_address = parse_ip("10.77.0.250");
                hb.mac = {0x02, 0x66, 0x66, 0x66, 0x66, 0x66};
                hb.load_bp = 0; // the most attractive peer there could be
                datagram = encode_heartbeat(hb, k == "wrong-key" ? wrong_key : key);
                if (k == "wrong-key")
                    expect_all("bad_mac");
                else
                    expect_by_id(forged_id, "stale");
            }
            if (!send_one(datagram)) {
                perror("forge_heartbeat: sendto");
                return 1;
            }
            kinds[k]++;
            sent++;
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (summary) {
            nlohmann::json out = {{"sent", sent},
                                  {"seconds", seconds},
                                  {"per_s", seconds > 0 ? double(sent) / seconds : 0.0},
                                  {"kinds", kinds},
                                  {"expect", expect},
                                  {"captured_from", cap.ids}};
            std::cout << out.dump() << "\n";
        }
    } catch (const std::exception& e) {
        std::cerr << "forge_heartbeat: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
