// peerlb-heartbeat-flood: the heartbeats of many nodes at once, properly
// signed, for one real agent to take (issue 17: the fan-in of 1000 senders
// at 2 per second each must cost the agent at most 10 % of one core).
//
//   peerlb-heartbeat-flood --to ADDR:PORT --key FILE [--iface IFACE]
//       [--senders N] [--rate PER_S] [--seconds S] [--id-prefix P]
//       [--first-address A] [--summary]
//
// Sender i (0..N-1) is node "<P>-<i>" at node address A + i, with its own
// MAC; it sends R heartbeats a second (its announced interval is 1000/R ms),
// with a sequence that grows by one each time, the wall clock as send time
// and a load that drifts a little from one heartbeat to the next. The
// senders take turns evenly over each period: one datagram every
// 1 / (N x R) s, to ADDR (the cluster's group, or an agent's unicast
// address; IFACE is the interface for a group). The incarnation is the
// start time in ms, so a restarted generator is a restart of every sender
// (its sequences start again and are still taken).
//
// Runs for S seconds (0: until SIGTERM or SIGINT). --summary prints one
// JSON object at the end: {"senders", "rate", "sent", "send_failed",
// "seconds", "per_s", "late_ms_max"} (late_ms_max: the furthest behind its
// schedule a datagram went out). N = 0 sends nothing and only waits: the
// idle baseline of a benchmark. Exit code 0; bad arguments 2; a setup that
// cannot work (key, socket, interface) 1.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "userspace/agent/config.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"
#include "userspace/dataplane/net.h"

using namespace peerlb;

namespace {

uint64_t clock_ns(clockid_t clock)
{
    timespec ts{};
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// The socket address of ADDR:PORT (IPv4 or [IPv6]:PORT).
struct Destination {
    sockaddr_storage addr{};
    socklen_t len = 0;
    IpAddress ip;
};

Destination parse_destination(const std::string& text)
{
    const auto colon = text.rfind(':');
    if (colon == std::string::npos)
        throw Error("--to needs ADDR:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const int port = std::stoi(text.substr(colon + 1));
    if (port < 1 || port > 65535)
        throw Error("--to: port out of range");
    Destination d;
    d.ip = parse_ip(host);
    if (d.ip.family == LB_FAMILY_IPV4) {
        auto* in = reinterpret_cast<sockaddr_in*>(&d.addr);
        in->sin_family = AF_INET;
        in->sin_port = htons(uint16_t(port));
        in->sin_addr.s_addr = d.ip.addr.v4;
        d.len = sizeof(sockaddr_in);
    } else {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&d.addr);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(uint16_t(port));
        std::memcpy(&in6->sin6_addr, d.ip.addr.v6, 16);
        d.len = sizeof(sockaddr_in6);
    }
    return d;
}

bool is_multicast(const IpAddress& ip)
{
    if (ip.family == LB_FAMILY_IPV4)
        return (ntohl(ip.addr.v4) >> 28) == 0xe;
    return ip.addr.v6[0] == 0xff;
}

// A UDP socket to dst; for a group, out of iface and never looped back.
Fd open_socket(const Destination& dst, const std::string& iface)
{
    const bool v6 = dst.ip.family == LB_FAMILY_IPV6;
    Fd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        throw SystemError("socket", errno);
    // Room for the bursts that catch up after a stall of this process.
    const int sndbuf = 4 << 20;
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (!is_multicast(dst.ip))
        return fd;
    if (iface.empty())
        throw Error("--to is a group: --iface names the interface to send it out of");
    const int ifindex = int(if_nametoindex(iface.c_str()));
    if (!ifindex)
        throw Error("interface '" + iface + "' does not exist");
    const int zero = 0;
    int rc;
    if (v6) {
        rc = setsockopt(fd.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) ||
             setsockopt(fd.get(), IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero, sizeof(zero));
    } else {
        ip_mreqn mreq{};
        mreq.imr_ifindex = ifindex;
        rc = setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq)) ||
             setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero));
    }
    if (rc)
        throw SystemError("multicast options on " + iface, errno);
    return fd;
}

// Node address `first` + i (IPv4: the last 32 bits; IPv6: the last 32 bits).
IpAddress nth_address(const IpAddress& first, uint32_t i)
{
    IpAddress a = first;
    if (a.family == LB_FAMILY_IPV4) {
        a.addr.v4 = htonl(ntohl(a.addr.v4) + i);
        return a;
    }
    uint32_t low;
    std::memcpy(&low, a.addr.v6 + 12, 4);
    low = htonl(ntohl(low) + i);
    std::memcpy(a.addr.v6 + 12, &low, 4);
    return a;
}

struct Sender {
    Heartbeat hb;
    int load_bp; // drifts by a few tenths of a percent each heartbeat
};

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-heartbeat-flood: signed heartbeats from many senders, for the fan-in benchmark"};
    std::string to, iface, key_file, id_prefix = "hb", first_text = "10.80.0.1";
    uint32_t senders = 1000;
    double rate = 2, seconds = 0;
    bool summary = false;
    app.add_option("--to", to, "group or agent address, ADDR:PORT")->required();
    app.add_option("--key", key_file, "the cluster key file")->required();
    app.add_option("--iface", iface, "interface for a group");
    app.add_option("--senders", senders, "nodes to send as (0: send nothing)")->check(CLI::Range(0u, 65535u));
    app.add_option("--rate", rate, "heartbeats a second per sender")->check(CLI::Range(0.1, 1000.0));
    app.add_option("--seconds", seconds, "stop after this long (0: at SIGTERM or SIGINT)")
        ->check(CLI::Range(0.0, 86400.0));
    app.add_option("--id-prefix", id_prefix, "node ids are PREFIX-0 .. PREFIX-(N-1)");
    app.add_option("--first-address", first_text, "node address of sender 0; the next ones follow");
    app.add_flag("--summary", summary, "print a JSON summary at the end");
    CLI11_PARSE(app, argc, argv);

    // SIGTERM and SIGINT end the waits below (sigtimedwait), not the process.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

    uint64_t sent = 0, send_failed = 0, late_ns_max = 0;
    double elapsed_s = 0;
    try {
        const Destination dst = parse_destination(to);
        const std::vector<uint8_t> key = load_key(key_file);
        const IpAddress first = parse_ip(first_text);
        const Fd fd = open_socket(dst, iface);

        const uint32_t interval_ms = std::max<uint32_t>(1, uint32_t(std::lround(1000.0 / rate)));
        const uint64_t incarnation = clock_ns(CLOCK_REALTIME) / 1'000'000;
        std::mt19937 rng(12345);
        std::vector<Sender> nodes(senders);
        for (uint32_t i = 0; i < senders; i++) {
            Heartbeat& hb = nodes[i].hb;
            hb.node_id = id_prefix + "-" + std::to_string(i);
            hb.incarnation = incarnation;
            hb.interval_ms = interval_ms;
            hb.node_address = nth_address(first, i);
            hb.mac = {0x02, 0x68, 0x62, uint8_t(i >> 16), uint8_t(i >> 8), uint8_t(i)};
            nodes[i].load_bp = 2000 + int(rng() % 6000);
            (void)encode_heartbeat(hb, key); // every field valid before the clock starts
        }

        // Datagram j goes out at start + j x gap, from sender j mod N.
        const double gap_ns = senders ? 1e9 / (rate * senders) : 0;
        const uint64_t start = clock_ns(CLOCK_MONOTONIC);
        const uint64_t end = seconds > 0 ? start + uint64_t(seconds * 1e9) : UINT64_MAX;
        std::uniform_int_distribution<int> drift(-30, 30);
        // Waits until `until` (at most a day at a time); false: a stop signal came.
        auto wait_until = [&](uint64_t until) {
            for (uint64_t now = clock_ns(CLOCK_MONOTONIC); now < until; now = clock_ns(CLOCK_MONOTONIC)) {
                const uint64_t wait = std::min<uint64_t>(until - now, 86'400'000'000'000ull);
                const timespec ts{time_t(wait / 1'000'000'000ull), long(wait % 1'000'000'000ull)};
                if (sigtimedwait(&stop_signals, nullptr, &ts) > 0)
                    return false;
            }
            return true;
        };
        if (!senders)
            (void)wait_until(end);
        for (uint64_t j = 0; senders; j++) {
            const uint64_t due = start + uint64_t(double(j) * gap_ns);
            if (due >= end)
                break;
            const uint64_t now = clock_ns(CLOCK_MONOTONIC);
            if (now < due) {
                if (!wait_until(due))
                    break;
            } else {
                late_ns_max = std::max(late_ns_max, now - due);
                // Behind schedule there is no wait: a signal is noticed here.
                const timespec zero{};
                if (sigtimedwait(&stop_signals, nullptr, &zero) > 0)
                    break;
            }
            Sender& s = nodes[j % senders];
            s.load_bp = std::clamp(s.load_bp + drift(rng), 500, 9500);
            s.hb.load_bp = uint16_t(s.load_bp);
            s.hb.sequence++;
            s.hb.sent_unix_ms = clock_ns(CLOCK_REALTIME) / 1'000'000;
            const auto datagram = encode_heartbeat(s.hb, key);
            if (::sendto(fd.get(), datagram.data(), datagram.size(), 0,
                         reinterpret_cast<const sockaddr*>(&dst.addr), dst.len) < 0)
                send_failed++;
            else
                sent++;
        }
        elapsed_s = double(clock_ns(CLOCK_MONOTONIC) - start) / 1e9;
    } catch (const std::exception& e) {
        std::cerr << "peerlb-heartbeat-flood: " << e.what() << "\n";
        return 1;
    }
    if (summary)
        std::cout << nlohmann::json{{"senders", senders},
                                    {"rate", rate},
                                    {"sent", sent},
                                    {"send_failed", send_failed},
                                    {"seconds", elapsed_s},
                                    {"per_s", elapsed_s > 0 ? double(sent) / elapsed_s : 0.0},
                                    {"late_ms_max", double(late_ns_max) / 1e6}}
                         .dump()
                  << "\n";
    return 0;
}
