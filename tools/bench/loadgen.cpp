// peerlb-bench-loadgen: an open-loop HTTP load generator. Requests arrive as
// a Poisson process at a fixed rate whatever the servers do, one TCP
// connection each, and their latency runs from the *scheduled* arrival, so a
// client that falls behind does not hide the queueing it caused
// (no coordinated omission).
//
//   peerlb-bench-loadgen --rate 200 --duration 10 [--warmup 2]
//       --target 10.0.0.1:80:80 --target [fd00::2]:80:20 [--path /]
//       [--timeout-ms 5000] [--seed 1] [--log FILE] [--max-inflight 20000]
//       [--burst-on-ms 500 --burst-off-ms 500]
//
// Bursts: arrivals come only during "on" periods (the first starts with the
// run), as a Poisson process at rate x (on + off) / on, so the mean rate is
// still --rate; "off" periods have none.
//
// Prints one JSON object on stdout; --log writes one CSV line per measured
// request: sched_unix_ms,target_index,latency_us,ok,server
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

using namespace peerlb;

namespace {

// Enough of a response for its status line, headers and a short body; the
// rest is read and dropped.
constexpr size_t kMaxKeep = 16 * 1024;
constexpr int kReservedFds = 64;

int64_t now_ns(clockid_t clock = CLOCK_MONOTONIC)
{
    timespec ts{};
    clock_gettime(clock, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

union SockAddr {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
};

struct Target {
    std::string text;
    SockAddr addr{};
    socklen_t len = 0;
    double weight = 0;
};

// ADDR:PORT:WEIGHT, with [ADDR] for IPv6.
Target parse_target(const std::string& text)
{
    auto bad = [&](std::string_view why) {
        return Error(fmt::format("--target {}: {} (want ADDR:PORT:WEIGHT, [ADDR]:PORT:WEIGHT for IPv6)",
                                 text, why));
    };
    Target t;
    t.text = text;
    std::string host, rest;
    if (text.starts_with("[")) {
        size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            throw bad("unclosed [");
        host = text.substr(1, close - 1);
        rest = text.substr(close + 2);
    } else {
        size_t colon = text.find(':');
        if (colon == std::string::npos)
            throw bad("no port");
        host = text.substr(0, colon);
        rest = text.substr(colon + 1);
    }
    size_t colon = rest.find(':');
    if (colon == std::string::npos)
        throw bad("no weight");
    const std::string port_text = rest.substr(0, colon), weight_text = rest.substr(colon + 1);

    unsigned long port = 0;
    size_t used = 0;
    try {
        port = std::stoul(port_text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != port_text.size() || port_text.empty() || port == 0 || port > 65535)
        throw bad("bad port");
    try {
        t.weight = std::stod(weight_text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != weight_text.size() || weight_text.empty() || !(t.weight > 0) || !std::isfinite(t.weight))
        throw bad("weight must be a positive number");

    if (inet_pton(AF_INET, host.c_str(), &t.addr.v4.sin_addr) == 1) {
        t.addr.v4.sin_family = AF_INET;
        t.addr.v4.sin_port = htons(static_cast<uint16_t>(port));
        t.len = sizeof(t.addr.v4);
    } else if (inet_pton(AF_INET6, host.c_str(), &t.addr.v6.sin6_addr) == 1) {
        t.addr.v6.sin6_family = AF_INET6;
        t.addr.v6.sin6_port = htons(static_cast<uint16_t>(port));
        t.len = sizeof(t.addr.v6);
    } else {
        throw bad(fmt::format("'{}' is not an IPv4 or IPv6 literal", host));
    }
    return t;
}

// splitmix64: the same arrivals for a seed on every platform and libstdc++
// (the std:: distributions are implementation-defined).
class Random {
public:
    explicit Random(uint64_t seed) : state_(seed) {}
    uint64_t next()
    {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1).
    double unit() { return double(next() >> 11) * 0x1.0p-53; }

private:
    uint64_t state_;
};

enum class Failure { none, timeout, connect_error, reset, bad_status, over_inflight };

std::string_view failure_name(Failure f)
{
    switch (f) {
    case Failure::none: return "none";
    case Failure::timeout: return "timeout";
    case Failure::connect_error: return "connect_error";
    case Failure::reset: return "reset";
    case Failure::bad_status: return "bad_status";
    case Failure::over_inflight: return "over_inflight";
    }
    return "?";
}

struct Outcome {
    Failure failure = Failure::none;
    std::string server;
};

// Status 200 and, if a Content-Length came, the whole body.
Outcome judge(const std::string& resp, uint64_t total_bytes)
{
    Outcome o;
    if (total_bytes == 0) {
        o.failure = Failure::reset; // closed without a word
        return o;
    }
    size_t head_end = resp.find("\r\n\r\n");
    if (head_end == std::string::npos || !resp.starts_with("HTTP/1.")) {
        o.failure = Failure::bad_status;
        return o;
    }
    std::string_view head(resp.data(), head_end);
    // "HTTP/1.x 200 OK": the code is the second word.
    std::string_view status = head.substr(0, head.find("\r\n"));
    size_t sp = status.find(' ');
    std::string_view code = sp == std::string_view::npos ? "" : status.substr(sp + 1, 4);
    if (code != "200" && code != "200 ")
        o.failure = Failure::bad_status;

    std::optional<uint64_t> content_length;
    size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos) {
        size_t next = head.find("\r\n", pos + 2);
        std::string_view line = head.substr(pos + 2, next == std::string_view::npos ? next : next - pos - 2);
        pos = next;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            continue;
        std::string name(line.substr(0, colon));
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
            value.remove_suffix(1);
        if (name == "x-server")
            o.server = value;
        else if (name == "content-length")
            content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
    }
    const uint64_t body_bytes = total_bytes - (head_end + 4);
    if (content_length && body_bytes < *content_length && o.failure == Failure::none)
        o.failure = Failure::bad_status; // cut short
    if (o.server.empty()) {
        std::string_view body(resp);
        body.remove_prefix(head_end + 4);
        o.server = body.substr(0, body.find('\n'));
    }
    // Names go into CSV and JSON keys: keep them to one plain field.
    std::replace_if(o.server.begin(), o.server.end(),
                    [](char c) { return c == ',' || c == '\r' || static_cast<unsigned char>(c) < 0x20; },
                    '_');
    return o;
}

struct Options {
    double rate = 0;
    double duration = 0;
    double warmup = 2;
    std::vector<std::string> targets;
    std::string path = "/";
    unsigned timeout_ms = 5000;
    uint64_t seed = 1;
    std::string log;
    unsigned max_inflight = 20000;
    unsigned burst_on_ms = 0, burst_off_ms = 0; // both 0: no bursts
};

struct Request {
    int fd = -1;
    uint32_t gen = 0;
    uint32_t target = 0;
    int64_t sched_ns = 0;
    bool measured = false;
    bool connected = false;
    size_t sent = 0;
    uint64_t received = 0;
    std::string resp;
};

struct TargetStats {
    uint64_t completed = 0, failed = 0;
    std::vector<int64_t> latencies_us;
};

double percentile_ms(std::vector<int64_t>& sorted_us, double q)
{
    if (sorted_us.empty())
        return 0;
    size_t i = static_cast<size_t>(std::ceil(q * double(sorted_us.size())));
    i = std::clamp<size_t>(i, 1, sorted_us.size()) - 1;
    return double(sorted_us[i]) / 1000.0;
}

class LoadGen {
public:
    LoadGen(const Options& opt, std::vector<Target> targets)
        : opt_(opt), targets_(std::move(targets)), random_(opt.seed), stats_(targets_.size())
    {
        epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_)
            throw SystemError("epoll_create1", errno);
        for (const Target& t : targets_)
            total_weight_ += t.weight;
        if (opt.burst_on_ms && opt.burst_off_ms) {
            burst_on_ns_ = int64_t(opt.burst_on_ms) * 1'000'000;
            burst_period_ns_ = burst_on_ns_ + int64_t(opt.burst_off_ms) * 1'000'000;
            arrival_rate_ = opt.rate * double(burst_period_ns_) / double(burst_on_ns_);
        } else {
            arrival_rate_ = opt.rate;
        }
        for (const Target& t : targets_)
            requests_.push_back(fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n"
                                            "User-Agent: peerlb-bench-loadgen\r\nConnection: close\r\n\r\n",
                                            opt.path, host_header(t)));
        if (!opt.log.empty()) {
            log_ = std::fopen(opt.log.c_str(), "we");
            if (!log_)
                throw SystemError(fmt::format("open {}", opt.log), errno);
            std::setvbuf(log_, nullptr, _IOFBF, 1 << 20);
        }
    }

    LoadGen(const LoadGen&) = delete;
    LoadGen& operator=(const LoadGen&) = delete;
    ~LoadGen()
    {
        for (Request& r : slots_)
            if (r.fd >= 0)
                ::close(r.fd);
        if (log_)
            std::fclose(log_);
    }

    nlohmann::json run()
    {
        // A short lead so the first arrivals are not already late.
        start_ns_ = now_ns() + 10'000'000;
        realtime_offset_ns_ = now_ns(CLOCK_REALTIME) - now_ns();
        measure_from_ns_ = start_ns_ + int64_t(opt_.warmup * 1e9);
        measure_until_ns_ = measure_from_ns_ + int64_t(opt_.duration * 1e9);
        next_arrival_ns_ = next_arrival();

        epoll_event events[512];
        for (;;) {
            int64_t now = now_ns();
            while (next_arrival_ns_ < measure_until_ns_ && next_arrival_ns_ <= now) {
                launch(next_arrival_ns_, now);
                next_arrival_ns_ = next_arrival();
            }
            expire(now);
            const bool arriving = next_arrival_ns_ < measure_until_ns_;
            if (!arriving && inflight_ == 0)
                break;

            int64_t wake = arriving ? next_arrival_ns_ : INT64_MAX;
            if (!timeouts_.empty())
                wake = std::min(wake, timeouts_.front().deadline_ns);
            int64_t wait = std::max<int64_t>(0, wake - now);
            timespec ts{wait / 1'000'000'000, wait % 1'000'000'000};
            int n = ::epoll_pwait2(epoll_.get(), events, 512, wake == INT64_MAX ? nullptr : &ts, nullptr);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw SystemError("epoll_pwait2", errno);
            for (int i = 0; i < n; i++)
                on_event(events[i].data.u64, events[i].events);
        }
        return report();
    }

private:
    struct Timeout {
        int64_t deadline_ns;
        uint32_t slot, gen;
    };

    static std::string host_header(const Target& t)
    {
        char text[INET6_ADDRSTRLEN] = {};
        if (t.addr.sa.sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &t.addr.v6.sin6_addr, text, sizeof(text));
            return fmt::format("[{}]:{}", text, ntohs(t.addr.v6.sin6_port));
        }
        inet_ntop(AF_INET, &t.addr.v4.sin_addr, text, sizeof(text));
        return fmt::format("{}:{}", text, ntohs(t.addr.v4.sin_port));
    }

    int64_t interarrival_ns()
    {
        // Exponential gaps make a Poisson process; 1 - u is in (0, 1].
        return int64_t(-std::log(1.0 - random_.unit()) / arrival_rate_ * 1e9);
    }

    // The next arrival's time. The gaps run on a clock that only moves
    // during "on" periods (all the time without bursts), mapped onto real
    // time: "on" time t falls t / on periods later, off periods skipped.
    int64_t next_arrival()
    {
        on_clock_ns_ += interarrival_ns();
        if (!burst_period_ns_)
            return start_ns_ + on_clock_ns_;
        return start_ns_ + on_clock_ns_ / burst_on_ns_ * burst_period_ns_ + on_clock_ns_ % burst_on_ns_;
    }

    uint32_t pick_target()
    {
        double x = random_.unit() * total_weight_;
        for (uint32_t i = 0; i + 1 < targets_.size(); i++) {
            if (x < targets_[i].weight)
                return i;
            x -= targets_[i].weight;
        }
        return static_cast<uint32_t>(targets_.size() - 1);
    }

    void launch(int64_t sched_ns, int64_t now)
    {
        // Drawn for every arrival, so the targets of a seed do not depend on
        // how the run went.
        const uint32_t target = pick_target();
        const bool measured = sched_ns >= measure_from_ns_;
        if (measured) {
            scheduled_++;
            lag_us_.push_back((now - sched_ns) / 1000);
        }
        if (inflight_ >= opt_.max_inflight) {
            finish_unstarted(target, sched_ns, measured, now, Failure::over_inflight);
            return;
        }
        const Target& t = targets_[target];
        int fd = ::socket(t.addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            finish_unstarted(target, sched_ns, measured, now, Failure::connect_error);
            return;
        }
        int rc = ::connect(fd, &t.addr.sa, t.len);
        if (rc < 0 && errno != EINPROGRESS) {
            ::close(fd);
            finish_unstarted(target, sched_ns, measured, now, Failure::connect_error);
            return;
        }

        uint32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else {
            slot = static_cast<uint32_t>(slots_.size());
            slots_.emplace_back();
        }
        Request& r = slots_[slot];
        r.fd = fd;
        r.gen++;
        r.target = target;
        r.sched_ns = sched_ns;
        r.measured = measured;
        r.connected = false;
        r.sent = 0;
        r.received = 0;
        r.resp.clear();

        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = (uint64_t(r.gen) << 32) | slot;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev)) {
            release(slot);
            finish_unstarted(target, sched_ns, measured, now, Failure::connect_error);
            return;
        }
        inflight_++;
        // Timeouts run from the schedule too, so deadlines come in launch order.
        timeouts_.push_back({sched_ns + int64_t(opt_.timeout_ms) * 1'000'000, slot, r.gen});
    }

    void release(uint32_t slot)
    {
        Request& r = slots_[slot];
        ::close(r.fd);
        r.fd = -1;
        r.resp.clear();
        r.resp.shrink_to_fit();
        free_.push_back(slot);
    }

    void on_event(uint64_t data, uint32_t events)
    {
        const uint32_t slot = static_cast<uint32_t>(data), gen = static_cast<uint32_t>(data >> 32);
        if (slot >= slots_.size() || slots_[slot].gen != gen || slots_[slot].fd < 0)
            return;
        Request& r = slots_[slot];

        if (!r.connected) {
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(r.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err || (events & (EPOLLERR | EPOLLHUP))) {
                finish(slot, Failure::connect_error);
                return;
            }
            r.connected = true;
        }
        const std::string& request = requests_[r.target];
        if (r.sent < request.size()) {
            ssize_t n = ::send(r.fd, request.data() + r.sent, request.size() - r.sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                finish(slot, Failure::reset);
                return;
            }
            if (n > 0)
                r.sent += static_cast<size_t>(n);
            if (r.sent == request.size()) {
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.u64 = data;
                ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, r.fd, &ev);
            }
            if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
        }

        char buf[16384];
        for (;;) {
            ssize_t n = ::recv(r.fd, buf, sizeof(buf), 0);
            if (n > 0) {
                r.received += static_cast<uint64_t>(n);
                if (r.resp.size() < kMaxKeep)
                    r.resp.append(buf, std::min<size_t>(static_cast<size_t>(n), kMaxKeep - r.resp.size()));
                continue;
            }
            if (n == 0) {
                Outcome o = judge(r.resp, r.received);
                finish(slot, o.failure, o.server);
                return;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            finish(slot, Failure::reset);
            return;
        }
    }

    void expire(int64_t now)
    {
        while (!timeouts_.empty() && timeouts_.front().deadline_ns <= now) {
            Timeout t = timeouts_.front();
            timeouts_.pop_front();
            if (slots_[t.slot].gen == t.gen && slots_[t.slot].fd >= 0)
                finish(t.slot, Failure::timeout);
        }
    }

    void finish(uint32_t slot, Failure failure, const std::string& server = {})
    {
        const Request& r = slots_[slot];
        const int64_t now = now_ns();
        if (failure == Failure::none && now >= measure_from_ns_ && now < measure_until_ns_)
            window_completed_++;
        record(r.target, r.sched_ns, r.measured, now, failure, server);
        release(slot);
        inflight_--;
    }

    void finish_unstarted(uint32_t target, int64_t sched_ns, bool measured, int64_t now, Failure failure)
    {
        record(target, sched_ns, measured, now, failure, {});
    }

    void record(uint32_t target, int64_t sched_ns, bool measured, int64_t done_ns, Failure failure,
                const std::string& server)
    {
        if (!measured)
            return;
        const int64_t latency_us = (done_ns - sched_ns) / 1000;
        TargetStats& ts = stats_[target];
        if (failure == Failure::none) {
            ts.completed++;
            ts.latencies_us.push_back(latency_us);
            latencies_us_.push_back(latency_us);
            per_server_[server]++;
        } else {
            ts.failed++;
            failures_[failure_name(failure)]++;
        }
        if (log_)
            std::fprintf(log_, "%lld,%u,%lld,%d,%s\n",
                         static_cast<long long>((sched_ns + realtime_offset_ns_) / 1'000'000), target,
                         static_cast<long long>(latency_us), failure == Failure::none ? 1 : 0,
                         server.c_str());
    }

    nlohmann::json report()
    {
        using nlohmann::json;
        uint64_t completed = 0, failed = 0;
        json per_target = json::array();
        for (size_t i = 0; i < stats_.size(); i++) {
            TargetStats& ts = stats_[i];
            completed += ts.completed;
            failed += ts.failed;
            std::sort(ts.latencies_us.begin(), ts.latencies_us.end());
            per_target.push_back({{"target", targets_[i].text},
                                  {"completed", ts.completed},
                                  {"failed", ts.failed},
                                  {"p99_ms", percentile_ms(ts.latencies_us, 0.99)}});
        }
        std::sort(latencies_us_.begin(), latencies_us_.end());
        double sum = 0;
        for (int64_t l : latencies_us_)
            sum += double(l);
        json failures = json::object();
        for (Failure f : {Failure::timeout, Failure::connect_error, Failure::reset, Failure::bad_status,
                          Failure::over_inflight})
            failures[std::string(failure_name(f))] = 0;
        for (const auto& [name, n] : failures_)
            failures[std::string(name)] = n;
        json servers = json::object();
        for (const auto& [name, n] : per_server_)
            servers[name] = n;
        std::sort(lag_us_.begin(), lag_us_.end());

        return {
            {"offered_rate", opt_.rate},
            {"arrival_rate", arrival_rate_}, // while arriving: --rate, or the burst rate
            {"burst_on_ms", opt_.burst_on_ms},
            {"burst_off_ms", opt_.burst_off_ms},
            {"duration_s", opt_.duration},
            {"warmup_s", opt_.warmup},
            {"scheduled", scheduled_},
            {"completed", completed},
            {"failed", failed},
            {"failures", failures},
            {"completed_rate", double(completed) / opt_.duration},
            // Responses received during the window, whenever scheduled: under
            // overload, completed_rate also counts the backlog served after
            // the window, this is the servers' throughput.
            {"window_completed_rate", double(window_completed_) / opt_.duration},
            {"latency_ms",
             {{"p50", percentile_ms(latencies_us_, 0.50)},
              {"p90", percentile_ms(latencies_us_, 0.90)},
              {"p99", percentile_ms(latencies_us_, 0.99)},
              {"p999", percentile_ms(latencies_us_, 0.999)},
              {"max", latencies_us_.empty() ? 0.0 : double(latencies_us_.back()) / 1000.0},
              {"mean", latencies_us_.empty() ? 0.0 : sum / double(latencies_us_.size()) / 1000.0}}},
            // How late the client itself sent: large values mean the client
            // was saturated (latencies stay honest, the offered load less so).
            {"send_lag_ms",
             {{"p99", percentile_ms(lag_us_, 0.99)},
              {"max", lag_us_.empty() ? 0.0 : double(lag_us_.back()) / 1000.0}}},
            {"per_target", per_target},
            {"per_server", servers},
        };
    }

    const Options& opt_;
    std::vector<Target> targets_;
    Random random_;
    double total_weight_ = 0;
    double arrival_rate_ = 0;
    int64_t burst_on_ns_ = 0, burst_period_ns_ = 0; // 0: no bursts
    int64_t on_clock_ns_ = 0;
    std::vector<std::string> requests_; // per target: the Host differs
    Fd epoll_;
    std::FILE* log_ = nullptr;

    int64_t start_ns_ = 0, realtime_offset_ns_ = 0, measure_from_ns_ = 0, measure_until_ns_ = 0;
    int64_t next_arrival_ns_ = 0;

    std::vector<Request> slots_;
    std::vector<uint32_t> free_;
    std::deque<Timeout> timeouts_;
    unsigned inflight_ = 0;

    uint64_t scheduled_ = 0, window_completed_ = 0;
    std::vector<TargetStats> stats_;
    std::vector<int64_t> latencies_us_, lag_us_;
    std::map<std::string_view, uint64_t> failures_;
    std::map<std::string, uint64_t> per_server_;
};

// Each request holds one fd: ask for max-inflight plus a margin, beyond the
// hard limit if privileged; returns the limit obtained.
rlim_t raise_fd_limit(rlim_t want)
{
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim))
        return 1024;
    rlimit more{std::max(want, lim.rlim_max), std::max(want, lim.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &more) == 0)
        return more.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
    return lim.rlim_cur;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-bench-loadgen: open-loop (Poisson) HTTP load, latency from the schedule"};
    Options opt;
    app.add_option("--rate", opt.rate, "requests per second")->required();
    app.add_option("--duration", opt.duration, "seconds measured")->required();
    app.add_option("--warmup", opt.warmup, "seconds of requests sent first, not counted")
        ->capture_default_str();
    app.add_option("--target", opt.targets, "ADDR:PORT:WEIGHT or [ADDR6]:PORT:WEIGHT (repeatable)")
        ->required();
    app.add_option("--path", opt.path, "request path")->capture_default_str();
    app.add_option("--timeout-ms", opt.timeout_ms, "from the scheduled arrival")
        ->capture_default_str()
        ->check(CLI::Range(1u, 3'600'000u));
    app.add_option("--seed", opt.seed, "arrivals and target choices")->capture_default_str();
    app.add_option("--log", opt.log, "CSV: sched_unix_ms,target_index,latency_us,ok,server");
    app.add_option("--max-inflight", opt.max_inflight, "arrivals beyond it fail")
        ->capture_default_str()
        ->check(CLI::Range(1u, 10'000'000u));
    app.add_option("--burst-on-ms", opt.burst_on_ms,
                   "bursts: arrivals only during ON ms at rate x (ON + OFF) / ON, then none for OFF ms")
        ->check(CLI::Range(0u, 3'600'000u));
    app.add_option("--burst-off-ms", opt.burst_off_ms, "bursts: the pause between two (see --burst-on-ms)")
        ->check(CLI::Range(0u, 3'600'000u));

    std::vector<Target> targets;
    try {
        app.parse(argc, argv);
        if (!(opt.rate > 0) || !std::isfinite(opt.rate))
            throw Error(fmt::format("--rate {}: must be a positive number", opt.rate));
        if (!(opt.duration > 0) || !std::isfinite(opt.duration))
            throw Error(fmt::format("--duration {}: must be a positive number", opt.duration));
        if (!(opt.warmup >= 0) || !std::isfinite(opt.warmup))
            throw Error(fmt::format("--warmup {}: must be zero or more", opt.warmup));
        if (opt.path.empty() || opt.path[0] != '/' ||
            opt.path.find_first_of(" \r\n") != std::string::npos)
            throw Error(fmt::format("--path '{}': must start with / and hold no space", opt.path));
        if ((opt.burst_on_ms == 0) != (opt.burst_off_ms == 0))
            throw Error("--burst-on-ms and --burst-off-ms go together (both above 0)");
        if (opt.rate * opt.duration > 1e9)
            throw Error("--rate x --duration is over a billion requests");
        for (const std::string& t : opt.targets)
            targets.push_back(parse_target(t));
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "peerlb-bench-loadgen: " << e.what() << "\n";
        return 2;
    } catch (const Error& e) {
        std::cerr << "peerlb-bench-loadgen: " << e.what() << "\n";
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    // Default slack (50 us) would delay every timed wake-up.
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    const rlim_t fds = raise_fd_limit(rlim_t(opt.max_inflight) + kReservedFds);
    if (fds < rlim_t(opt.max_inflight) + kReservedFds) {
        // Fail arrivals as over_inflight rather than as EMFILE connect errors.
        opt.max_inflight = fds > rlim_t(2 * kReservedFds) ? unsigned(fds - kReservedFds) : unsigned(fds / 2);
        std::cerr << fmt::format("peerlb-bench-loadgen: only {} file descriptors, --max-inflight {}\n",
                                 fds, opt.max_inflight);
    }

    try {
        LoadGen gen(opt, std::move(targets));
        nlohmann::json result = gen.run();
        std::cout << result.dump() << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "peerlb-bench-loadgen: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
