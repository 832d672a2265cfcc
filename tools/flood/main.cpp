// peerlb-flood: spoofed TCP floods for the test bed. Crafted Ethernet +
// IPv4/IPv6 + TCP frames (tools/flood/frame.h) go out of one interface
// through AF_PACKET sockets (PACKET_QDISC_BYPASS, sendmmsg batches), to one
// destination MAC, address and port, from source addresses drawn from a
// prefix and random source ports.
//
//   peerlb-flood --iface eth0 --dst-mac 02:77:00:00:00:01 --dst 10.77.0.111
//       --sources 198.18.0.0/15 --pattern syn|handshake|ack|rst
//       (--count TUPLES | --duration S) [--rate PPS] [--dport 80]
//       [--threads N] [--batch 64] [--seed 1] [--src-mac MAC] [--json]
//
// It stops after --count tuples (packets: x3 for handshake) or --duration
// seconds, whichever comes first, and prints the packets sent, the time and
// the rate; --json prints one JSON object instead. It refuses to run in the
// machine's initial network namespace, or where it cannot tell: floods
// belong in a namespace of a test bed. --allow-root-netns overrides that.
#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <sched.h>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tools/flood/frame.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

using namespace peerlb;
using namespace peerlb::flood;

namespace {

constexpr unsigned kMaxBatch = 1024;
// No frame accepted by the interface for this long: give up.
constexpr double kStallSeconds = 2.0;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

double now_s()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

void sleep_until(double t)
{
    const double wait = t - now_s();
    if (wait <= 0)
        return;
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(wait);
    ts.tv_nsec = static_cast<long>((wait - double(ts.tv_sec)) * 1e9);
    nanosleep(&ts, nullptr);
}

// The initial network namespace's inode number, fixed since Linux 6.18
// (NET_NS_INIT_INO of <linux/nsfs.h>); no other namespace can have it, as
// the others are numbered from 0xF0000000 up.
constexpr ino_t kInitNetNsIno = 0xEFFFFFF9;

enum class Netns { initial, other, unknown };

// Whether this process runs in the machine's initial network namespace: by
// the fixed inode number, else against PID 1's namespace (which a sandbox
// may not let us read), else a namespace named by `ip netns add`
// (/run/netns) is not the initial one.
Netns which_netns()
{
    struct stat self{}, other{};
    if (stat("/proc/self/ns/net", &self) != 0)
        return Netns::unknown;
    if (self.st_ino == kInitNetNsIno)
        return Netns::initial;
    if (stat("/proc/1/ns/net", &other) == 0)
        return self.st_dev == other.st_dev && self.st_ino == other.st_ino ? Netns::initial : Netns::other;
    if (DIR* dir = opendir("/run/netns")) {
        bool named = false;
        while (dirent* e = readdir(dir)) {
            const std::string path = std::string("/run/netns/") + e->d_name;
            if (e->d_name[0] != '.' && stat(path.c_str(), &other) == 0 && other.st_dev == self.st_dev &&
                other.st_ino == self.st_ino)
                named = true;
        }
        closedir(dir);
        if (named)
            return Netns::other;
    }
    return Netns::unknown;
}

// The interface's tx_dropped counter (getifaddrs reads this namespace's
// interfaces, whatever /sys shows).
std::optional<uint64_t> tx_dropped(const std::string& iface)
{
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0)
        return std::nullopt;
    std::optional<uint64_t> found;
    for (ifaddrs* a = list; a; a = a->ifa_next)
        if (a->ifa_addr && a->ifa_addr->sa_family == AF_PACKET && a->ifa_data && iface == a->ifa_name)
            found = static_cast<const rtnl_link_stats*>(a->ifa_data)->tx_dropped;
    freeifaddrs(list);
    return found;
}

struct Options {
    std::string iface;
    std::string dst_mac;
    std::string src_mac;
    std::string dst;
    uint16_t dport = 80;
    std::string sources;
    std::string pattern;
    uint64_t count = 0;
    double duration = 0;
    double rate = 0;
    unsigned threads = 1;
    unsigned batch = 64;
    uint64_t seed = 1;
    bool qdisc_bypass = true;
    bool allow_root_netns = false;
    bool json = false;
};

struct Result {
    uint64_t packets = 0;
    uint64_t tuples = 0;
    uint64_t waits = 0; // sendmmsg refused for a full queue (ENOBUFS/EAGAIN), retried
    std::string error;
};

// One sender: its own socket and flood (seed), `tuples` tuples (0: no
// limit) at `rate` packets per second (0: no limit) until `deadline`.
class Sender {
public:
    Sender(const Options& opt, const Target& target, int ifindex, uint64_t seed)
        : opt_(opt), flood_(parse_pattern(opt.pattern), target, seed), frames_(kMaxBatch)
    {
        // Protocol 0: the socket receives nothing, it only sends.
        sock_ = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
        if (!sock_)
            throw SystemError("AF_PACKET socket", errno);
        sockaddr_ll bind_to{};
        bind_to.sll_family = AF_PACKET;
        bind_to.sll_ifindex = ifindex;
        if (bind(sock_.get(), reinterpret_cast<sockaddr*>(&bind_to), sizeof(bind_to)) != 0)
            throw SystemError(fmt::format("bind to {}", opt.iface), errno);
        int one = 1;
        if (opt.qdisc_bypass &&
            setsockopt(sock_.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) != 0)
            throw SystemError("PACKET_QDISC_BYPASS", errno);
        // Room for a few batches in flight.
        int sndbuf = 4 << 20;
        setsockopt(sock_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));

        dest_.sll_family = AF_PACKET;
        dest_.sll_ifindex = ifindex;
        dest_.sll_protocol = htons(target.dst.family == LB_FAMILY_IPV4 ? kEthTypeIpv4 : kEthTypeIpv6);
        dest_.sll_halen = 6;
        std::memcpy(dest_.sll_addr, target.dst_mac.data(), 6);
        for (unsigned i = 0; i < kMaxBatch; i++) {
            iov_[i].iov_base = frames_[i].data();
            msgs_[i].msg_hdr.msg_name = &dest_;
            msgs_[i].msg_hdr.msg_namelen = sizeof(dest_);
            msgs_[i].msg_hdr.msg_iov = &iov_[i];
            msgs_[i].msg_hdr.msg_iovlen = 1;
        }
    }

    Result run(uint64_t tuples, double rate, double start, double deadline)
    {
        Result r;
        const uint64_t per_tuple = packets_per_tuple(parse_pattern(opt_.pattern));
        const uint64_t packets = tuples ? tuples * per_tuple : UINT64_MAX;
        try {
            while (!g_stop && r.packets < packets) {
                const double now = now_s();
                if (now >= deadline)
                    break;
                if (rate > 0)
                    sleep_until(start + double(r.packets) / rate);
                const unsigned n = static_cast<unsigned>(std::min<uint64_t>(opt_.batch, packets - r.packets));
                for (unsigned i = 0; i < n; i++)
                    iov_[i].iov_len = flood_.next(frames_[i]);
                send_all(n, r);
                r.packets += n;
            }
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        r.tuples = (r.packets + per_tuple - 1) / per_tuple;
        return r;
    }

private:
    // Sends msgs_[0..n), retrying what a full queue refused.
    void send_all(unsigned n, Result& r)
    {
        unsigned done = 0;
        double stalled_since = 0;
        while (done < n) {
            const int sent = sendmmsg(sock_.get(), msgs_ + done, n - done, 0);
            if (sent > 0) {
                done += static_cast<unsigned>(sent);
                stalled_since = 0;
                continue;
            }
            if (sent < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
                throw SystemError(fmt::format("sendmmsg on {}", opt_.iface), errno);
            r.waits++;
            const double now = now_s();
            if (stalled_since == 0)
                stalled_since = now;
            else if (now - stalled_since > kStallSeconds)
                throw Error(fmt::format("{} accepted no frame for {} s", opt_.iface, kStallSeconds));
            sched_yield();
        }
    }

    const Options& opt_;
    Flood flood_;
    Fd sock_;
    sockaddr_ll dest_{};
    std::vector<std::array<uint8_t, kMaxFrameLen>> frames_;
    iovec iov_[kMaxBatch]{};
    mmsghdr msgs_[kMaxBatch]{};
};

nlohmann::json run(const Options& opt)
{
    if (!opt.allow_root_netns) {
        const Netns netns = which_netns();
        if (netns == Netns::initial)
            throw Error("refusing to flood from the machine's initial network namespace: run it in a "
                        "test bed's namespace (ip netns exec NS ...), or pass --allow-root-netns");
        if (netns == Netns::unknown)
            throw Error("cannot tell whether this is the machine's initial network namespace (run it in "
                        "one made by `ip netns add`), refusing; --allow-root-netns overrides");
    }
    const unsigned ifindex = if_nametoindex(opt.iface.c_str());
    if (!ifindex)
        throw SystemError(fmt::format("interface {}", opt.iface), errno);

    Target target;
    target.dst_mac = parse_mac(opt.dst_mac);
    target.src_mac = opt.src_mac.empty() ? interface_mac(opt.iface) : parse_mac(opt.src_mac);
    target.dst = parse_ip(opt.dst);
    target.dport = opt.dport;
    target.sources = parse_prefix(opt.sources);
    const Pattern pattern = parse_pattern(opt.pattern);

    std::vector<std::unique_ptr<Sender>> senders;
    for (unsigned t = 0; t < opt.threads; t++)
        senders.push_back(std::make_unique<Sender>(opt, target, static_cast<int>(ifindex),
                                                   opt.seed * 1000003 + t));

    const std::optional<uint64_t> dropped_before = tx_dropped(opt.iface);
    std::vector<Result> results(opt.threads);
    const double start = now_s();
    const double deadline = opt.duration > 0 ? start + opt.duration : INFINITY;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < opt.threads; t++) {
        // The tuples and the rate shared out; the first threads take the rest.
        const uint64_t tuples = opt.count ? opt.count / opt.threads + (t < opt.count % opt.threads) : 0;
        if (opt.count && !tuples)
            continue;
        threads.emplace_back([&, t, tuples] {
            results[t] = senders[t]->run(tuples, opt.rate / opt.threads, start, deadline);
        });
    }
    for (std::thread& th : threads)
        th.join();
    const double seconds = now_s() - start;
    const std::optional<uint64_t> dropped_after = tx_dropped(opt.iface);

    Result all;
    for (const Result& r : results) {
        all.packets += r.packets;
        all.tuples += r.tuples;
        all.waits += r.waits;
        if (all.error.empty())
            all.error = r.error;
    }
    if (!all.error.empty())
        throw Error(fmt::format("after {} packets: {}", all.packets, all.error));
    nlohmann::json out = {
        {"pattern", pattern_name(pattern)},
        {"interface", opt.iface},
        {"destination", fmt::format("{}:{}", format_ip(target.dst), target.dport)},
        {"sources", format_prefix(target.sources)},
        {"threads", opt.threads},
        {"packets", all.packets},
        {"tuples", all.tuples},
        {"seconds", seconds},
        {"pps", seconds > 0 ? double(all.packets) / seconds : 0.0},
        {"queue_full_waits", all.waits},
        {"interrupted", g_stop.load()},
    };
    if (dropped_before && dropped_after)
        out["interface_tx_dropped"] = *dropped_after - *dropped_before;
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-flood: spoofed TCP floods (syn, handshake, ack, rst) for the test bed"};
    Options opt;
    app.add_option("--iface", opt.iface, "interface to send on")->required();
    app.add_option("--dst-mac", opt.dst_mac, "destination MAC (the target's, or its next hop's)")->required();
    app.add_option("--dst", opt.dst, "destination IPv4 or IPv6 address")->required();
    app.add_option("--dport", opt.dport, "destination port")->capture_default_str()->check(CLI::Range(1, 65535));
    app.add_option("--sources", opt.sources, "prefix the source addresses are drawn from, e.g. 198.18.0.0/15")
        ->required();
    app.add_option("--pattern", opt.pattern, "syn | handshake (SYN, ACK, ACK per tuple) | ack | rst")
        ->required()
        ->check(CLI::IsMember({"syn", "handshake", "ack", "rst"}));
    auto* count = app.add_option("--count", opt.count, "tuples to send (handshake: 3 packets each)")
                      ->check(CLI::Range(uint64_t(1), uint64_t(1'000'000'000)));
    auto* duration = app.add_option("--duration", opt.duration, "seconds to send for at most")
                         ->check(CLI::Range(0.001, 3600.0));
    app.add_option("--rate", opt.rate, "packets per second at most (0: as fast as the interface takes)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1e9));
    app.add_option("--threads", opt.threads, "senders, each with its own socket")
        ->capture_default_str()
        ->check(CLI::Range(1u, 64u));
    app.add_option("--batch", opt.batch, "frames per sendmmsg")
        ->capture_default_str()
        ->check(CLI::Range(1u, kMaxBatch));
    app.add_option("--seed", opt.seed, "source addresses, ports and sequence numbers")->capture_default_str();
    app.add_option("--src-mac", opt.src_mac, "source MAC (default: the interface's)");
    app.add_flag("!--no-qdisc-bypass", opt.qdisc_bypass, "send through the interface's qdisc");
    app.add_flag("--allow-root-netns", opt.allow_root_netns,
                 "allow running in the machine's initial network namespace");
    app.add_flag("--json", opt.json, "print the result as one JSON object");

    try {
        app.parse(argc, argv);
        if (!*count && !*duration)
            throw Error("give --count or --duration (or both: whichever ends first)");
        // Batches no longer than ~10 ms of the rate, so pacing stays smooth.
        if (opt.rate > 0)
            opt.batch = std::max(1u, std::min(opt.batch, static_cast<unsigned>(opt.rate / 100)));
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "peerlb-flood: " << e.what() << "\n";
        return 2;
    } catch (const Error& e) {
        std::cerr << "peerlb-flood: " << e.what() << "\n";
        return 2;
    }

    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    try {
        const nlohmann::json r = run(opt);
        if (opt.json) {
            std::cout << r.dump() << std::endl;
        } else {
            std::cout << fmt::format(
                "peerlb-flood: {} to {} on {}: {} packets ({} tuples) in {:.3f} s: {:.0f} packets/s "
                "({} thread(s), {} waits on a full queue{})\n",
                r["pattern"].get<std::string>(), r["destination"].get<std::string>(), opt.iface,
                r["packets"].get<uint64_t>(), r["tuples"].get<uint64_t>(), r["seconds"].get<double>(),
                r["pps"].get<double>(), opt.threads, r["queue_full_waits"].get<uint64_t>(),
                r.contains("interface_tx_dropped")
                    ? fmt::format(", {} dropped by {}", r["interface_tx_dropped"].get<uint64_t>(), opt.iface)
                    : "");
        }
    } catch (const std::exception& e) {
        std::cerr << "peerlb-flood: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
