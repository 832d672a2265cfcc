// peerlb-holdconns: holds N keep-alive HTTP connections through a cluster and
// shows whether any is lost while the cluster moves things around (issue 16:
// no connection lost with >= 10 000 open, >= 99.9 % of new ones answered).
//
//   peerlb-holdconns --target ADDR[:PORT] --connections N [--open-rate R]
//       [--request-every-ms MS] [--new-rate R] [--timeout-ms T]
//       [--status FILE] [--source-addresses A1,A2,...]
//
// Keep-alive connections open at most --open-rate a second and each asks
// "GET /" every ~MS (jittered +-50 %), reading the whole answer. One that
// gets a RST, an EOF, an error or no answer within --timeout-ms is lost and
// not reopened; one whose answers come from two X-Server names counts once
// in server_changed. A connect that fails while opening is counted
// (open_failed) and tried again. Meanwhile short connections open at
// --new-rate, one request each, closed by us after the answer.
//
// Runs until SIGTERM or SIGINT; SIGUSR1 writes a snapshot. The status file
// (JSON, replaced whole by rename) is written every second, at each snapshot
// and at exit; the final one goes to stdout too. Exit code 0 whatever was
// lost: the caller judges from the JSON. Bad arguments: 2; a setup that
// cannot work (file descriptors, source addresses, status file): 1.
//
// The JSON: open, opening, queued (waiting for their turn to open), opened
// (at least once), target (N), all_open (opened == N) and all_open_s;
// open_failed{,_by_reason} (connect, timeout) and last_open_error; lost,
// lost_by_reason (reset, eof, timeout, error), lost_per_server;
// server_changed (connections); requests_ok (2xx-3xx answers of the
// keep-alive connections), requests_bad_status, requests_per_s (the last
// ~5 s), slowest_answer_ms; new_started, new_answered (any whole answer),
// new_failed{,_by_reason} (connect, reset, eof, timeout, error),
// new_bad_status, new_per_server; per_server (connections by the X-Server
// of their first answer, lost ones included); elapsed_s, cpu_s, cpu_percent
// (the last ~5 s, of one core), max_rss_mib, snapshots, final.
//
// Single-threaded: one epoll, non-blocking sockets, each connection with
// exactly one pending deadline (connect, answer or next request) in an
// indexed min-heap.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

using namespace peerlb;

namespace {

constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: peerlb\r\n\r\n";
constexpr int kReservedFds = 64;       // epoll, signalfd, stdio, the status file
constexpr size_t kMaxHead = 16 * 1024; // status line and headers of one answer
constexpr size_t kMaxLine = 4 * 1024;  // a chunk-size or trailer line
constexpr size_t kBodyKept = 64;       // the body's start, for a server name
constexpr size_t kMaxServerName = 64;
constexpr size_t kMaxServers = 1024; // distinct names; the rest are "(other)"
constexpr uint64_t kSignalTag = std::numeric_limits<uint64_t>::max();
constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kCatchUpNs = 10'000'000; // pacing after a stall: 10 ms worth at most
constexpr int64_t kRateWindowNs = 5 * kSecond;

int64_t now_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * kSecond + ts.tv_nsec;
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

bool icontains(std::string_view hay, std::string_view needle)
{
    for (size_t i = 0; i + needle.size() <= hay.size(); i++)
        if (iequals(hay.substr(i, needle.size()), needle))
            return true;
    return false;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

union SockAddr {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
};

struct Endpoint {
    SockAddr addr{};
    socklen_t len = 0;
    int family() const { return addr.sa.sa_family; }
};

// An IPv4 or IPv6 literal; false if it is neither.
bool parse_ip(const std::string& host, uint16_t port, Endpoint& ep)
{
    ep = {};
    if (inet_pton(AF_INET, host.c_str(), &ep.addr.v4.sin_addr) == 1) {
        ep.addr.v4.sin_family = AF_INET;
        ep.addr.v4.sin_port = htons(port);
        ep.len = sizeof(ep.addr.v4);
        return true;
    }
    if (inet_pton(AF_INET6, host.c_str(), &ep.addr.v6.sin6_addr) == 1) {
        ep.addr.v6.sin6_family = AF_INET6;
        ep.addr.v6.sin6_port = htons(port);
        ep.len = sizeof(ep.addr.v6);
        return true;
    }
    return false;
}

// ADDR[:PORT], [ADDR6][:PORT] or a bare ADDR6; port 80 by default.
Endpoint parse_target(const std::string& text)
{
    auto bad = [&](std::string_view why) {
        return Error(fmt::format("--target {}: {} (want ADDR[:PORT], [ADDR6][:PORT])", text, why));
    };
    std::string host = text, port_text;
    if (text.starts_with("[")) {
        const size_t close = text.find(']');
        if (close == std::string::npos)
            throw bad("unclosed [");
        host = text.substr(1, close - 1);
        const std::string rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':')
                throw bad("text after ]");
            port_text = rest.substr(1);
            if (port_text.empty())
                throw bad("empty port");
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        const size_t colon = text.find(':');
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (port_text.empty())
            throw bad("empty port");
    }
    unsigned long port = 80;
    if (!port_text.empty()) {
        size_t used = 0;
        try {
            port = std::stoul(port_text, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != port_text.size() || port == 0 || port > 65535)
            throw bad(fmt::format("bad port '{}'", port_text));
    }
    Endpoint ep;
    if (!parse_ip(host, static_cast<uint16_t>(port), ep))
        throw bad(fmt::format("'{}' is not an IPv4 or IPv6 literal", host));
    return ep;
}

// splitmix64: the request jitter, the same for a run on every platform.
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

// Reads one HTTP/1.x answer from a byte stream, in any pieces: status line
// and headers (Content-Length, chunked, X-Server, Connection), then a body
// delimited by its length, by chunks or by the end of the stream. Keeps only
// the head and the body's first bytes.
class AnswerReader {
public:
    enum class Step { more, done, bad };

    void reset()
    {
        phase_ = Phase::head;
        head_.clear();
        line_.clear();
        body_start_.clear();
        status_ = 0;
        server_.clear();
        close_ = false;
        remaining_ = 0;
    }

    // Takes the stream's next bytes. done: an answer ended, with the first
    // `used` bytes of data (the rest belongs to whatever follows).
    Step feed(std::string_view data, size_t& used)
    {
        used = 0;
        while (used < data.size()) {
            const std::string_view rest = data.substr(used);
            switch (phase_) {
            case Phase::head: {
                const size_t from = head_.size() >= 3 ? head_.size() - 3 : 0;
                head_.append(rest);
                const size_t end = head_.find("\r\n\r\n", from);
                if (end == std::string::npos) {
                    used = data.size();
                    if (head_.size() > kMaxHead)
                        return Step::bad;
                    continue;
                }
                const size_t extra = head_.size() - (end + 4);
                used = data.size() - extra;
                head_.resize(end + 4);
                if (!parse_head())
                    return Step::bad;
                if (phase_ == Phase::done)
                    return Step::done;
                continue;
            }
            case Phase::length:
            case Phase::chunk_data: {
                const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
                keep_body(rest.substr(0, take));
                used += take;
                remaining_ -= take;
                if (remaining_ == 0) {
                    if (phase_ == Phase::length) {
                        phase_ = Phase::done;
                        return Step::done;
                    }
                    phase_ = Phase::chunk_end;
                }
                continue;
            }
            case Phase::until_close:
                keep_body(rest);
                used = data.size();
                continue;
            case Phase::chunk_size:
            case Phase::chunk_end:
            case Phase::trailer: {
                const size_t nl = rest.find('\n');
                line_.append(rest.substr(0, nl == std::string_view::npos ? rest.size() : nl));
                if (line_.size() > kMaxLine)
                    return Step::bad;
                if (nl == std::string_view::npos) {
                    used = data.size();
                    continue;
                }
                used += nl + 1;
                const std::string_view line = trim(line_);
                if (phase_ == Phase::chunk_size) {
                    const std::string_view hex = trim(line.substr(0, line.find(';')));
                    uint64_t size = 0;
                    if (hex.empty() || hex.size() > 15)
                        return Step::bad;
                    for (char c : hex) {
                        const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                                      : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                                              : -1;
                        if (d < 0)
                            return Step::bad;
                        size = size * 16 + uint64_t(d);
                    }
                    remaining_ = size;
                    phase_ = size ? Phase::chunk_data : Phase::trailer;
                } else if (phase_ == Phase::chunk_end) {
                    if (!line.empty())
                        return Step::bad;
                    phase_ = Phase::chunk_size;
                } else if (line.empty()) {
                    line_.clear();
                    phase_ = Phase::done;
                    return Step::done;
                }
                line_.clear();
                continue;
            }
            case Phase::done:
                return Step::bad; // bytes after an answer nobody has taken
            }
        }
        return Step::more;
    }

    // The stream ended: done if the body ran until the end, bad if an
    // answer was cut short, more if no answer had begun.
    Step eof()
    {
        if (phase_ == Phase::until_close) {
            phase_ = Phase::done;
            return Step::done;
        }
        return phase_ == Phase::head && head_.empty() ? Step::more : Step::bad;
    }

    bool started() const { return phase_ != Phase::head || !head_.empty(); }
    int status() const { return status_; }
    bool close() const { return close_; }

    // X-Server, else the body's first line (the test servers answer "sN\n").
    std::string server() const
    {
        std::string name = server_;
        if (name.empty())
            name = std::string(trim(std::string_view(body_start_).substr(0, body_start_.find('\n'))));
        if (name.size() > kMaxServerName)
            name.resize(kMaxServerName);
        for (char& c : name)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                c = '_';
        return name.empty() ? "?" : name;
    }

private:
    enum class Phase { head, length, chunk_size, chunk_data, chunk_end, trailer, until_close, done };

    void keep_body(std::string_view bytes)
    {
        if (body_start_.size() < kBodyKept)
            body_start_.append(bytes.substr(0, kBodyKept - body_start_.size()));
    }

    bool parse_head()
    {
        const std::string_view head(head_);
        size_t eol = head.find("\r\n");
        const std::string_view status_line = head.substr(0, eol);
        // "HTTP/1.1 200 OK"
        if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") || status_line[8] != ' ')
            return false;
        status_ = 0;
        for (char c : status_line.substr(9, 3)) {
            if (!std::isdigit(static_cast<unsigned char>(c)))
                return false;
            status_ = status_ * 10 + (c - '0');
        }
        const bool http10 = status_line[7] == '0';
        bool chunked = false, has_length = false, keep_alive = false;
        uint64_t length = 0;
        while (eol + 2 < head.size()) {
            const size_t next = head.find("\r\n", eol + 2);
            const std::string_view line = head.substr(eol + 2, next - eol - 2);
            eol = next;
            if (line.empty())
                break;
            const size_t colon = line.find(':');
            if (colon == std::string_view::npos)
                return false;
            const std::string_view name = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
            if (iequals(name, "content-length")) {
                if (value.empty() || value.size() > 18 ||
                    !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
                    return false;
                const uint64_t n = std::strtoull(std::string(value).c_str(), nullptr, 10);
                if (has_length && n != length)
                    return false;
                has_length = true;
                length = n;
            } else if (iequals(name, "transfer-encoding")) {
                chunked = chunked || icontains(value, "chunked");
            } else if (iequals(name, "x-server")) {
                server_ = value;
            } else if (iequals(name, "connection")) {
                close_ = close_ || icontains(value, "close");
                keep_alive = keep_alive || icontains(value, "keep-alive");
            }
        }
        if (http10 && !keep_alive)
            close_ = true;
        if (status_ >= 100 && status_ < 200) {
            // An interim answer: the real one follows.
            reset();
            return true;
        }
        head_.clear();
        if (status_ == 204 || status_ == 304)
            phase_ = Phase::done;
        else if (chunked)
            phase_ = Phase::chunk_size;
        else if (has_length) {
            remaining_ = length;
            phase_ = length ? Phase::length : Phase::done;
        } else
            phase_ = Phase::until_close;
        return true;
    }

    Phase phase_ = Phase::head;
    std::string head_, line_, body_start_;
    int status_ = 0;
    std::string server_;
    bool close_ = false;
    uint64_t remaining_ = 0;
};

// A min-heap of deadlines with at most one per id, moved or dropped in
// O(log n): every connection has exactly one pending deadline.
class TimerHeap {
public:
    bool empty() const { return heap_.empty(); }
    int64_t next_deadline() const { return heap_.front().deadline; }
    uint32_t next_id() const { return heap_.front().id; }

    void set(uint32_t id, int64_t deadline)
    {
        if (id >= pos_.size())
            pos_.resize(size_t(id) + 1, kNone);
        if (pos_[id] == kNone) {
            pos_[id] = static_cast<uint32_t>(heap_.size());
            heap_.push_back({deadline, id});
        } else {
            heap_[pos_[id]].deadline = deadline;
        }
        fix(pos_[id]);
    }

    void erase(uint32_t id)
    {
        if (id >= pos_.size() || pos_[id] == kNone)
            return;
        const uint32_t i = pos_[id];
        pos_[id] = kNone;
        if (i + 1 == heap_.size()) {
            heap_.pop_back();
            return;
        }
        heap_[i] = heap_.back();
        heap_.pop_back();
        pos_[heap_[i].id] = i;
        fix(i);
    }

private:
    static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
    struct Entry {
        int64_t deadline;
        uint32_t id;
    };

    void place(uint32_t i, Entry e)
    {
        heap_[i] = e;
        pos_[e.id] = i;
    }

    void fix(uint32_t i)
    {
        const Entry e = heap_[i];
        while (i > 0 && e.deadline < heap_[(i - 1) / 2].deadline) {
            place(i, heap_[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
        for (;;) {
            size_t child = 2 * size_t(i) + 1;
            if (child >= heap_.size())
                break;
            if (child + 1 < heap_.size() && heap_[child + 1].deadline < heap_[child].deadline)
                child++;
            if (heap_[child].deadline >= e.deadline)
                break;
            place(i, heap_[child]);
            i = static_cast<uint32_t>(child);
        }
        place(i, e);
    }

    std::vector<Entry> heap_;
    std::vector<uint32_t> pos_;
};

// Why a connection ended badly. Lost keep-alive connections: reset, eof,
// timeout, error; failed opens: connect, timeout; new connections: all.
enum class Reason : uint8_t { connect, reset, eof, timeout, error, count };
constexpr std::array<const char*, size_t(Reason::count)> kReasonNames = {"connect", "reset", "eof", "timeout",
                                                                         "error"};
using ReasonCounts = std::array<uint64_t, size_t(Reason::count)>;

Reason reason_of(int err)
{
    return err == ECONNRESET || err == EPIPE || err == ECONNABORTED ? Reason::reset : Reason::error;
}

nlohmann::json reason_json(const ReasonCounts& counts, std::initializer_list<Reason> keys)
{
    nlohmann::json j = nlohmann::json::object();
    for (Reason r : keys)
        j[kReasonNames[size_t(r)]] = counts[size_t(r)];
    return j;
}

struct Options {
    std::string target;
    unsigned connections = 0;
    double open_rate = 2000;
    unsigned request_every_ms = 1000;
    double new_rate = 20;
    unsigned timeout_ms = 10000;
    std::string status;
    std::vector<std::string> sources;
};

enum class Kind : uint8_t { keep, brief };
// free: a lost keep-alive slot (never reopened) or an unused short one;
// queued: a keep-alive slot waiting for its turn to (re)open; sending and
// waiting: a request out; resting: between two requests.
enum class State : uint8_t { free, queued, connecting, sending, waiting, resting };

struct Conn {
    int fd = -1;
    uint32_t gen = 0; // in the epoll tag: events of a closed socket are dropped
    Kind kind = Kind::keep;
    State state = State::free;
    bool want_out = false; // EPOLLOUT asked (a partial send)
    bool changed = false;  // server_changed counted
    uint16_t server = kNoServer;
    uint32_t sent = 0;
    int64_t asked_ns = 0;
    AnswerReader reader;

    static constexpr uint16_t kNoServer = std::numeric_limits<uint16_t>::max();
};

class HoldConns {
public:
    HoldConns(const Options& opt, Endpoint target, std::vector<Endpoint> sources, size_t brief_cap)
        : opt_(opt), target_(target), sources_(std::move(sources)), brief_cap_(brief_cap), random_(1)
    {
        epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_)
            throw SystemError("epoll_create1", errno);
        sigset_t mask;
        sigemptyset(&mask);
        for (int s : {SIGTERM, SIGINT, SIGUSR1})
            sigaddset(&mask, s);
        signals_ = Fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!signals_)
            throw SystemError("signalfd", errno);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kSignalTag;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev))
            throw SystemError("epoll_ctl signalfd", errno);

        conns_.resize(opt.connections);
        for (uint32_t id = 0; id < opt.connections; id++) {
            conns_[id].state = State::queued;
            open_queue_.push_back(id);
        }
        open_interval_ns_ = std::max<int64_t>(1, int64_t(1e9 / opt.open_rate));
        new_interval_ns_ = opt.new_rate > 0 ? std::max<int64_t>(1, int64_t(1e9 / opt.new_rate)) : 0;
        timeout_ns_ = int64_t(opt.timeout_ms) * 1'000'000;
        char text[INET6_ADDRSTRLEN] = {};
        if (target_.family() == AF_INET6) {
            inet_ntop(AF_INET6, &target_.addr.v6.sin6_addr, text, sizeof(text));
            address_ = fmt::format("[{}]:{}", text, ntohs(target_.addr.v6.sin6_port));
        } else {
            inet_ntop(AF_INET, &target_.addr.v4.sin_addr, text, sizeof(text));
            address_ = fmt::format("{}:{}", text, ntohs(target_.addr.v4.sin_port));
        }
    }

    HoldConns(const HoldConns&) = delete;
    HoldConns& operator=(const HoldConns&) = delete;
    ~HoldConns()
    {
        for (Conn& c : conns_)
            if (c.fd >= 0)
                ::close(c.fd);
    }

    nlohmann::json run()
    {
        start_ns_ = now_ns();
        next_open_ns_ = start_ns_;
        next_new_ns_ = start_ns_ + new_interval_ns_;
        next_tick_ns_ = start_ns_ + kSecond;
        samples_.push_back({start_ns_, 0, cpu_s()});
        write_status(status(start_ns_, false), true);

        epoll_event events[1024];
        while (!stop_) {
            int64_t now = now_ns();
            open_due(now);
            new_due(now);
            expire(now);
            if (now >= next_tick_ns_) {
                tick(now);
                while (next_tick_ns_ <= now)
                    next_tick_ns_ += kSecond;
            }

            int64_t wake = next_tick_ns_;
            if (!open_queue_.empty())
                wake = std::min(wake, next_open_ns_);
            if (new_interval_ns_)
                wake = std::min(wake, next_new_ns_);
            if (!timers_.empty())
                wake = std::min(wake, timers_.next_deadline());
            const int64_t wait = std::max<int64_t>(0, wake - now_ns());
            const timespec ts{wait / kSecond, wait % kSecond};
            const int n = ::epoll_pwait2(epoll_.get(), events, std::size(events), &ts, nullptr);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw SystemError("epoll_pwait2", errno);
            now = now_ns();
            for (int i = 0; i < n; i++) {
                if (events[i].data.u64 == kSignalTag)
                    on_signals(now);
                else
                    on_event(events[i].data.u64, events[i].events, now);
            }
        }
        const int64_t end = now_ns();
        nlohmann::json final_status = status(end, true);
        write_status(final_status, false);
        return final_status;
    }

private:
    struct Sample {
        int64_t ns;
        uint64_t requests_ok;
        double cpu_s;
    };

    static double cpu_s()
    {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    }

    static double max_rss_mib()
    {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        return double(ru.ru_maxrss) / 1024.0; // KiB on Linux
    }

    uint16_t server_id(const std::string& name)
    {
        auto it = server_ids_.find(name);
        if (it != server_ids_.end())
            return it->second;
        if (server_names_.size() + 1 >= kMaxServers && name != "(other)")
            return server_id("(other)");
        const uint16_t id = static_cast<uint16_t>(server_names_.size());
        server_names_.push_back(name);
        server_ids_.emplace(name, id);
        first_answers_.push_back(0);
        lost_per_server_.push_back(0);
        new_per_server_.push_back(0);
        return id;
    }

    // Opens keep-alive connections from the queue, --open-rate at most.
    void open_due(int64_t now)
    {
        if (open_queue_.empty())
            return;
        next_open_ns_ = std::max(next_open_ns_, now - kCatchUpNs);
        while (!open_queue_.empty() && next_open_ns_ <= now) {
            const uint32_t id = open_queue_.front();
            open_queue_.pop_front();
            next_open_ns_ += open_interval_ns_;
            Conn& c = conns_[id];
            const int err = connect_socket(c);
            if (err) {
                // Nothing open to lose: counted, and its turn comes again.
                open_failed_[size_t(Reason::connect)]++;
                last_open_error_ = err;
                c.state = State::queued;
                open_queue_.push_back(id);
                continue;
            }
            c.state = State::connecting;
            opening_++;
            timers_.set(id, now + timeout_ns_);
        }
    }

    // Starts short connections, --new-rate.
    void new_due(int64_t now)
    {
        if (!new_interval_ns_)
            return;
        next_new_ns_ = std::max(next_new_ns_, now - kCatchUpNs);
        while (next_new_ns_ <= now) {
            next_new_ns_ += new_interval_ns_;
            new_started_++;
            if (brief_inflight_ >= brief_cap_) {
                new_failed_[size_t(Reason::error)]++;
                continue;
            }
            uint32_t id;
            if (!brief_free_.empty()) {
                id = brief_free_.back();
                brief_free_.pop_back();
            } else {
                id = static_cast<uint32_t>(conns_.size());
                conns_.emplace_back();
            }
            Conn& c = conns_[id];
            c.kind = Kind::brief;
            if (connect_socket(c)) {
                new_failed_[size_t(Reason::connect)]++;
                c.state = State::free;
                brief_free_.push_back(id);
                continue;
            }
            c.state = State::connecting;
            brief_inflight_++;
            timers_.set(id, now + timeout_ns_);
        }
    }

    // A non-blocking connect from the next source address, registered with
    // epoll; 0 or the errno of the step that failed (nothing left open).
    int connect_socket(Conn& c)
    {
        const uint32_t id = static_cast<uint32_t>(&c - conns_.data());
        const int fd = ::socket(target_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return errno;
        auto fail = [&] {
            const int err = errno;
            ::close(fd);
            return err;
        };
        if (!sources_.empty()) {
            const Endpoint& src = sources_[next_source_];
            next_source_ = (next_source_ + 1) % sources_.size();
            // The port is chosen at connect(), for the whole 4-tuple: the
            // same local port serves many destinations and addresses.
            const int one = 1;
            ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
            if (::bind(fd, &src.addr.sa, src.len))
                return fail();
        }
        if (::connect(fd, &target_.addr.sa, target_.len) && errno != EINPROGRESS)
            return fail();
        c.fd = fd;
        c.gen++;
        c.want_out = false;
        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = (uint64_t(c.gen) << 32) | id;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev)) {
            c.fd = -1;
            return fail();
        }
        return 0;
    }

    void expire(int64_t now)
    {
        while (!timers_.empty() && timers_.next_deadline() <= now) {
            const uint32_t id = timers_.next_id();
            timers_.erase(id);
            Conn& c = conns_[id];
            if (c.state == State::resting)
                send_request(id, now);
            else if (c.fd >= 0)
                end(id, Reason::timeout);
        }
    }

    void on_signals(int64_t now)
    {
        signalfd_siginfo si{};
        while (::read(signals_.get(), &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo == SIGUSR1) {
                snapshots_++;
                nlohmann::json snap = status(now, false);
                if (opt_.status.empty())
                    std::cerr << snap.dump() << std::endl;
                else
                    write_status(snap, false);
            } else {
                stop_ = true;
            }
        }
    }

    void on_event(uint64_t tag, uint32_t events, int64_t now)
    {
        const uint32_t id = static_cast<uint32_t>(tag), gen = static_cast<uint32_t>(tag >> 32);
        if (id >= conns_.size() || conns_[id].gen != gen || conns_[id].fd < 0)
            return;
        Conn& c = conns_[id];
        if (c.state == State::connecting) {
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            int err = 0;
            socklen_t len = sizeof(err);
            if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len))
                err = errno;
            if (err || (events & (EPOLLERR | EPOLLHUP))) {
                end(id, Reason::connect, err ? err : ECONNRESET);
                return;
            }
            connected(id, now);
            return;
        }
        if ((events & EPOLLOUT) && c.state == State::sending) {
            send_more(id, now);
            if (conns_[id].fd < 0)
                return;
        }
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            receive(id, now);
    }

    void connected(uint32_t id, int64_t now)
    {
        Conn& c = conns_[id];
        if (c.kind == Kind::keep) {
            opening_--;
            open_++;
            opened_++;
            if (opened_ == opt_.connections)
                all_open_ns_ = now;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = (uint64_t(c.gen) << 32) | id;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd, &ev)) {
            end(id, Reason::error);
            return;
        }
        send_request(id, now);
    }

    void send_request(uint32_t id, int64_t now)
    {
        Conn& c = conns_[id];
        c.sent = 0;
        c.asked_ns = now;
        c.reader.reset();
        c.state = State::sending;
        timers_.set(id, now + timeout_ns_);
        send_more(id, now);
    }

    void send_more(uint32_t id, int64_t /*now*/)
    {
        Conn& c = conns_[id];
        while (c.sent < kRequest.size()) {
            const ssize_t n = ::send(c.fd, kRequest.data() + c.sent, kRequest.size() - c.sent, MSG_NOSIGNAL);
            if (n > 0) {
                c.sent += static_cast<uint32_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN) {
                if (!c.want_out)
                    set_out(id, true);
                return;
            }
            end(id, n < 0 ? reason_of(errno) : Reason::error);
            return;
        }
        if (c.state == State::sending)
            c.state = State::waiting;
        if (c.want_out)
            set_out(id, false);
    }

    void set_out(uint32_t id, bool on)
    {
        Conn& c = conns_[id];
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
        ev.data.u64 = (uint64_t(c.gen) << 32) | id;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd, &ev)) {
            end(id, Reason::error);
            return;
        }
        c.want_out = on;
    }

    void receive(uint32_t id, int64_t now)
    {
        char buf[16384];
        for (;;) {
            Conn& c = conns_[id];
            const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
            if (n > 0) {
                std::string_view data(buf, static_cast<size_t>(n));
                while (!data.empty()) {
                    // Only one request is ever out: bytes with none are wrong.
                    if (conns_[id].state != State::waiting && conns_[id].state != State::sending) {
                        end(id, Reason::error);
                        return;
                    }
                    size_t used = 0;
                    const AnswerReader::Step step = conns_[id].reader.feed(data, used);
                    if (step == AnswerReader::Step::bad) {
                        end(id, Reason::error);
                        return;
                    }
                    if (step == AnswerReader::Step::more)
                        break;
                    data.remove_prefix(used);
                    answered(id, now);
                    if (conns_[id].fd < 0)
                        return;
                }
                // Level-triggered: a short read emptied the socket, and an
                // EOF behind the data comes as the next event.
                if (static_cast<size_t>(n) < sizeof(buf))
                    return;
                continue;
            }
            if (n == 0) {
                if (c.state == State::waiting || c.state == State::sending) {
                    const AnswerReader::Step step = c.reader.eof();
                    if (step == AnswerReader::Step::done) {
                        answered(id, now); // a body that ran until the end
                        if (conns_[id].fd < 0)
                            return;
                    } else if (step == AnswerReader::Step::bad) {
                        end(id, Reason::error);
                        return;
                    }
                }
                end(id, Reason::eof);
                return;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            end(id, reason_of(errno));
            return;
        }
    }

    void answered(uint32_t id, int64_t now)
    {
        Conn& c = conns_[id];
        const int64_t took = now - c.asked_ns;
        slowest_answer_ns_ = std::max(slowest_answer_ns_, took);
        const bool ok = c.reader.status() >= 200 && c.reader.status() < 400;
        const uint16_t server = server_id(c.reader.server());
        if (c.kind == Kind::brief) {
            new_answered_++;
            if (!ok)
                new_bad_status_++;
            new_per_server_[server]++;
            close_conn(id);
            c.state = State::free;
            brief_inflight_--;
            brief_free_.push_back(id);
            return;
        }
        (ok ? requests_ok_ : requests_bad_status_)++;
        if (c.server == Conn::kNoServer) {
            c.server = server;
            first_answers_[server]++;
        } else if (server != c.server && !c.changed) {
            c.changed = true;
            server_changed_++;
        }
        c.state = State::resting;
        // +-50 % around --request-every-ms.
        const double every_ns = double(opt_.request_every_ms) * 1e6;
        timers_.set(id, now + std::max<int64_t>(1, int64_t(every_ns * (0.5 + random_.unit()))));
    }

    // A connection ends badly: a failed open is queued again, an open
    // keep-alive connection is lost for good, a short one failed. err: the
    // connect's errno, if that is what failed.
    void end(uint32_t id, Reason why, int err = 0)
    {
        Conn& c = conns_[id];
        const State was = c.state;
        close_conn(id);
        if (c.kind == Kind::brief) {
            new_failed_[size_t(why)]++;
            c.state = State::free;
            brief_inflight_--;
            brief_free_.push_back(id);
            return;
        }
        if (was == State::connecting) {
            opening_--;
            open_failed_[size_t(why == Reason::timeout ? Reason::timeout : Reason::connect)]++;
            last_open_error_ = why == Reason::timeout ? ETIMEDOUT : err;
            c.state = State::queued;
            open_queue_.push_back(id);
            return;
        }
        open_--;
        lost_[size_t(why == Reason::connect ? Reason::error : why)]++;
        if (c.server != Conn::kNoServer)
            lost_per_server_[c.server]++;
        c.state = State::free;
    }

    void close_conn(uint32_t id)
    {
        Conn& c = conns_[id];
        timers_.erase(id);
        ::close(c.fd); // also leaves the epoll set
        c.fd = -1;
        c.reader.reset();
    }

    void tick(int64_t now)
    {
        samples_.push_back({now, requests_ok_, cpu_s()});
        while (samples_.size() > 2 && samples_[1].ns <= now - kRateWindowNs)
            samples_.pop_front();
        if (!opt_.status.empty())
            write_status(status(now, false), false);
    }

    nlohmann::json status(int64_t now, bool final_status) const
    {
        using nlohmann::json;
        uint64_t lost = 0, open_failed = 0, new_failed = 0;
        for (size_t r = 0; r < size_t(Reason::count); r++) {
            lost += lost_[r];
            open_failed += open_failed_[r];
            new_failed += new_failed_[r];
        }
        json per_server = json::object(), lost_per_server = json::object(), new_per_server = json::object();
        for (size_t s = 0; s < server_names_.size(); s++) {
            if (first_answers_[s])
                per_server[server_names_[s]] = first_answers_[s];
            if (lost_per_server_[s])
                lost_per_server[server_names_[s]] = lost_per_server_[s];
            if (new_per_server_[s])
                new_per_server[server_names_[s]] = new_per_server_[s];
        }
        // Rates over the last seconds (the samples of the ticks).
        double rps = 0, cpu_percent = 0;
        const Sample& from = samples_.front();
        const double span_s = double(now - from.ns) / 1e9;
        const double cpu = cpu_s();
        if (span_s > 0.2) {
            rps = double(requests_ok_ - from.requests_ok) / span_s;
            cpu_percent = 100.0 * (cpu - from.cpu_s) / span_s;
        }
        auto round3 = [](double x) { return std::round(x * 1000) / 1000; };
        return {
            {"address", address_},
            {"target", opt_.connections},
            {"open", open_},
            {"opening", opening_},
            {"queued", open_queue_.size()},
            {"opened", opened_},
            {"all_open", opened_ == opt_.connections},
            {"all_open_s", all_open_ns_ ? json(round3(double(all_open_ns_ - start_ns_) / 1e9)) : json(nullptr)},
            {"open_failed", open_failed},
            {"open_failed_by_reason", reason_json(open_failed_, {Reason::connect, Reason::timeout})},
            {"lost", lost},
            {"lost_by_reason", reason_json(lost_, {Reason::reset, Reason::eof, Reason::timeout, Reason::error})},
            {"lost_per_server", lost_per_server},
            {"server_changed", server_changed_},
            {"requests_ok", requests_ok_},
            {"requests_bad_status", requests_bad_status_},
            {"requests_per_s", std::round(rps * 10) / 10},
            {"slowest_answer_ms", round3(double(slowest_answer_ns_) / 1e6)},
            {"new_started", new_started_},
            {"new_answered", new_answered_},
            {"new_failed", new_failed},
            {"new_failed_by_reason", reason_json(new_failed_, {Reason::connect, Reason::reset, Reason::eof,
                                                               Reason::timeout, Reason::error})},
            {"new_bad_status", new_bad_status_},
            {"new_per_server", new_per_server},
            {"per_server", per_server},
            {"elapsed_s", round3(double(now - start_ns_) / 1e9)},
            {"cpu_s", round3(cpu)},
            {"cpu_percent", std::round(cpu_percent * 10) / 10},
            {"max_rss_mib", std::round(max_rss_mib() * 10) / 10},
            {"snapshots", snapshots_},
            {"last_open_error", last_open_error_ ? json(std::strerror(last_open_error_)) : json(nullptr)},
            {"final", final_status},
        };
    }

    // The whole file or nothing, by rename. The first write must work (it
    // proves the path); later failures are reported once and the run goes on.
    void write_status(const nlohmann::json& j, bool must)
    {
        if (opt_.status.empty())
            return;
        const std::string tmp = fmt::format("{}.tmp.{}", opt_.status, ::getpid());
        const std::string text = j.dump() + "\n";
        int err = 0;
        std::FILE* f = std::fopen(tmp.c_str(), "we");
        if (!f) {
            err = errno;
        } else {
            if (std::fwrite(text.data(), 1, text.size(), f) != text.size())
                err = errno ? errno : EIO;
            if (std::fclose(f) && !err)
                err = errno;
            if (!err && std::rename(tmp.c_str(), opt_.status.c_str()))
                err = errno;
            if (err)
                std::remove(tmp.c_str());
        }
        if (!err)
            return;
        if (must)
            throw SystemError(fmt::format("write --status {}", opt_.status), err);
        if (!status_error_reported_)
            std::cerr << fmt::format("peerlb-holdconns: write --status {}: {} (going on)\n", opt_.status,
                                     std::strerror(err));
        status_error_reported_ = true;
    }

    const Options& opt_;
    const Endpoint target_;
    const std::vector<Endpoint> sources_;
    const size_t brief_cap_;
    std::string address_;
    Random random_;
    Fd epoll_, signals_;
    bool stop_ = false;

    std::vector<Conn> conns_; // keep-alive ones first, [0, N); short ones after
    TimerHeap timers_;
    std::deque<uint32_t> open_queue_;
    std::vector<uint32_t> brief_free_;
    size_t next_source_ = 0;
    int64_t open_interval_ns_ = 0, new_interval_ns_ = 0, timeout_ns_ = 0;
    int64_t start_ns_ = 0, next_open_ns_ = 0, next_new_ns_ = 0, next_tick_ns_ = 0;
    std::deque<Sample> samples_;

    std::vector<std::string> server_names_;
    std::unordered_map<std::string, uint16_t> server_ids_;
    std::vector<uint64_t> first_answers_, lost_per_server_, new_per_server_;

    uint64_t open_ = 0, opening_ = 0, opened_ = 0;
    int64_t all_open_ns_ = 0;
    int last_open_error_ = 0; // of a keep-alive connection's open
    ReasonCounts open_failed_{}, lost_{}, new_failed_{};
    uint64_t server_changed_ = 0, requests_ok_ = 0, requests_bad_status_ = 0;
    int64_t slowest_answer_ns_ = 0;
    uint64_t new_started_ = 0, new_answered_ = 0, new_bad_status_ = 0;
    size_t brief_inflight_ = 0;
    uint64_t snapshots_ = 0;
    bool status_error_reported_ = false;
};

// Sets the soft limit to `want` file descriptors, the hard one too if it is
// lower (privileged); throws if the system will not allow it.
void raise_fd_limit(rlim_t want)
{
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim))
        throw SystemError("getrlimit RLIMIT_NOFILE", errno);
    if (lim.rlim_cur >= want)
        return;
    rlimit more{want, std::max(want, lim.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &more) == 0)
        return;
    const int err = errno;
    throw Error(fmt::format("needs {} file descriptors, RLIMIT_NOFILE is {} (hard {}) and cannot be raised: {} "
                            "(raise it with ulimit -n, run privileged, or check fs.nr_open)",
                            want, lim.rlim_cur, lim.rlim_max, std::strerror(err)));
}

// Each source must be an address of this host, of the target's family.
std::vector<Endpoint> parse_sources(const std::vector<std::string>& texts, int family)
{
    std::vector<Endpoint> sources;
    for (const std::string& text : texts) {
        Endpoint ep;
        if (!parse_ip(text, 0, ep))
            throw Error(fmt::format("--source-addresses: '{}' is not an IPv4 or IPv6 literal", text));
        if (ep.family() != family)
            throw Error(fmt::format("--source-addresses: '{}' is not of the target's address family", text));
        sources.push_back(ep);
    }
    return sources;
}

void check_sources(const std::vector<Endpoint>& sources, const std::vector<std::string>& texts)
{
    for (size_t i = 0; i < sources.size(); i++) {
        Fd fd(::socket(sources[i].family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd)
            throw SystemError("socket", errno);
        const int one = 1;
        ::setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (::bind(fd.get(), &sources[i].addr.sa, sources[i].len))
            throw SystemError(fmt::format("--source-addresses: bind {}", texts[i]), errno);
    }
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-holdconns: holds N keep-alive HTTP connections and counts the ones lost"};
    Options opt;
    app.add_option("--target", opt.target, "ADDR[:PORT] or [ADDR6][:PORT] (port 80 by default)")->required();
    app.add_option("--connections", opt.connections, "keep-alive connections to hold")
        ->required()
        ->check(CLI::Range(1u, 1'000'000u));
    app.add_option("--open-rate", opt.open_rate, "keep-alive connections opened per second, at most")
        ->capture_default_str()
        ->check(CLI::Number)
        ->check(CLI::Range(0.1, 1e6));
    app.add_option("--request-every-ms", opt.request_every_ms, "each connection's request period, jittered +-50 %")
        ->capture_default_str()
        ->check(CLI::Range(1u, 3'600'000u));
    app.add_option("--new-rate", opt.new_rate, "short connections per second (one request each; 0: none)")
        ->capture_default_str()
        ->check(CLI::Number)
        ->check(CLI::Range(0.0, 1e5));
    app.add_option("--timeout-ms", opt.timeout_ms, "a connect or an answer slower than this fails")
        ->capture_default_str()
        ->check(CLI::Range(1u, 3'600'000u));
    app.add_option("--status", opt.status, "JSON status file, replaced every second, at SIGUSR1 and at exit");
    app.add_option("--source-addresses", opt.sources, "local addresses to bind, round robin (comma-separated)")
        ->delimiter(',');

    Endpoint target;
    std::vector<Endpoint> sources;
    try {
        app.parse(argc, argv);
        if (!std::isfinite(opt.open_rate) || !std::isfinite(opt.new_rate))
            throw Error("--open-rate and --new-rate must be finite");
        target = parse_target(opt.target);
        sources = parse_sources(opt.sources, target.family());
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "peerlb-holdconns: " << e.what() << "\n";
        return 2;
    } catch (const Error& e) {
        std::cerr << "peerlb-holdconns: " << e.what() << "\n";
        return 2;
    }

    // Before any thread or descriptor: the signals come through a signalfd.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGUSR1})
        sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Default slack (50 us) would delay the paced opens.
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    try {
        // A short connection lasts --timeout-ms at most, so at most this many
        // are open at once; more would be counted failed.
        const size_t brief_cap = size_t(std::ceil(opt.new_rate * opt.timeout_ms / 1000.0)) + 16;
        raise_fd_limit(rlim_t(opt.connections) + brief_cap + kReservedFds);
        check_sources(sources, opt.sources);
        HoldConns hold(opt, target, std::move(sources), brief_cap);
        nlohmann::json result = hold.run();
        std::cout << result.dump() << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "peerlb-holdconns: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
