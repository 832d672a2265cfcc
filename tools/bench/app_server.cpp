// peerlb-bench-app: an HTTP/1.1 server of known capacity, to measure how well
// the cluster balances. Each of W workers holds a request for a fixed service
// time (a sleep, so the capacity is W/S requests per second whatever the
// shared CPU does); /health is answered at once, outside the queue.
//
//   peerlb-bench-app --port 80 --workers 4 --service-ms 10 --name s1
//                    [--stats FILE [--stats-interval-ms 100]]
//                    [--load-file FILE [--load-interval-ms 5]]
//
// The stats file gets one line per interval:
//   unix_ms inflight busy queued completed_total
// inflight: connections accepted and not yet answered (still reading, queued
// or served); busy: workers serving; queued: full requests waiting for one.
// The load file (for the agent's `load.source = "file"`: an application that
// publishes its own load) holds inflight / workers in %, at most 100,
// replaced whole (rename) so that a reader never sees half a number.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

using namespace peerlb;

namespace {

constexpr size_t kMaxHeader = 8192;
constexpr size_t kMaxRequestLine = 2048;
constexpr int kBacklog = 4096;
constexpr int kSendTimeoutMs = 1000;

int64_t clock_ms(clockid_t clock)
{
    timespec ts{};
    clock_gettime(clock, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

struct Counters {
    std::atomic<int64_t> inflight{0};
    std::atomic<int64_t> busy{0};
    std::atomic<int64_t> queued{0};
    std::atomic<uint64_t> completed{0};
};

// Full requests waiting for a worker; the queue owns the fds it holds.
class WorkQueue {
public:
    explicit WorkQueue(Counters& counters) : counters_(counters) {}

    void push(int fd)
    {
        {
            std::lock_guard lock(mu_);
            fds_.push_back(fd);
            counters_.queued++;
        }
        cv_.notify_one();
    }

    // The next request, now counted busy; nullopt once stopped.
    std::optional<int> pop()
    {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopped_ || !fds_.empty(); });
        if (stopped_)
            return std::nullopt;
        int fd = fds_.front();
        fds_.pop_front();
        counters_.queued--;
        counters_.busy++;
        return fd;
    }

    // Wakes the workers; returns the requests nobody will serve.
    std::deque<int> stop()
    {
        std::deque<int> left;
        {
            std::lock_guard lock(mu_);
            stopped_ = true;
            left.swap(fds_);
            counters_.queued -= static_cast<int64_t>(left.size());
        }
        cv_.notify_all();
        return left;
    }

private:
    Counters& counters_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<int> fds_;
    bool stopped_ = false;
};

// The responses are a few hundred bytes and the socket's send buffer is
// empty, so this practically never waits; the poll only bounds a stuck peer.
void send_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, kSendTimeoutMs) > 0)
                continue;
        }
        return; // reset, gone or stuck: the client loses its answer, we don't care
    }
}

std::string response(const std::string& name)
{
    std::string body = name + "\n";
    return fmt::format("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
                       "X-Server: {}\r\nConnection: close\r\n\r\n{}",
                       body.size(), name, body);
}

// The request target of "METHOD SP TARGET SP HTTP/1.x"; nullopt for anything else.
std::optional<std::string_view> request_target(std::string_view head)
{
    std::string_view line = head.substr(0, head.find("\r\n"));
    size_t sp1 = line.find(' ');
    if (sp1 == 0 || sp1 == std::string_view::npos || sp1 > 16)
        return std::nullopt;
    for (char c : line.substr(0, sp1))
        if (c < 'A' || c > 'Z')
            return std::nullopt;
    size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos)
        return std::nullopt;
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (target.empty() || target[0] != '/' || (version != "HTTP/1.1" && version != "HTTP/1.0"))
        return std::nullopt;
    return target;
}

// False once the bytes so far cannot begin a request, so that garbage is
// dropped at once rather than after the read timeout.
bool plausible_start(std::string_view head)
{
    size_t eol = head.find("\r\n");
    if (eol != std::string_view::npos)
        return request_target(head).has_value();
    if (head.size() > kMaxRequestLine)
        return false;
    for (char c : head.substr(0, head.find(' ')))
        if (c < 'A' || c > 'Z')
            return false;
    return true;
}

bool is_health(std::string_view target)
{
    return target == "/health" || target.starts_with("/health?");
}

struct Options {
    uint16_t port = 80;
    unsigned workers = 4;
    unsigned service_ms = 10;
    std::string name = "app";
    std::string stats;
    unsigned stats_interval_ms = 100;
    unsigned read_timeout_ms = 10000;
    std::string load_file;
    unsigned load_interval_ms = 5;
};

// Publishes the load until `stop`: inflight over the workers, in %.
void publish_load(const Options& opt, const Counters& counters, const std::atomic<bool>& stop)
{
    const std::string tmp = opt.load_file + ".tmp";
    while (!stop) {
        const int64_t inflight = std::max<int64_t>(0, counters.inflight.load());
        const int64_t pct = std::min<int64_t>(100, inflight * 100 / opt.workers);
        if (std::FILE* f = std::fopen(tmp.c_str(), "we")) {
            std::fprintf(f, "%lld\n", static_cast<long long>(pct));
            std::fclose(f);
            std::rename(tmp.c_str(), opt.load_file.c_str());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(opt.load_interval_ms));
    }
}

void worker(WorkQueue& queue, Counters& counters, const std::string& reply, unsigned service_ms)
{
    // Default slack (50 us) would add to every service time.
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    while (auto fd = queue.pop()) {
        timespec until{};
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += service_ms / 1000;
        until.tv_nsec += long(service_ms % 1000) * 1'000'000;
        if (until.tv_nsec >= 1'000'000'000) {
            until.tv_sec++;
            until.tv_nsec -= 1'000'000'000;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
        }
        send_all(*fd, reply);
        ::close(*fd);
        counters.completed++;
        counters.busy--;
        counters.inflight--;
    }
}

Fd listen_on(int family, uint16_t port)
{
    Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        throw SystemError(family == AF_INET6 ? "IPv6 socket" : "IPv4 socket", errno);
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc;
    if (family == AF_INET6) {
        // Its own socket for [::], so that 0.0.0.0 can bind the same port.
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_any;
        rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
    }
    if (rc)
        throw SystemError(fmt::format("bind {}:{}", family == AF_INET6 ? "[::]" : "0.0.0.0", port),
                          errno);
    if (::listen(fd.get(), kBacklog))
        throw SystemError("listen", errno);
    return fd;
}

class Server {
public:
    Server(const Options& opt, Counters& counters, WorkQueue& queue)
        : opt_(opt), counters_(counters), queue_(queue), health_reply_(response(opt.name))
    {
        epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_)
            throw SystemError("epoll_create1", errno);

        listeners_.push_back(listen_on(AF_INET, opt.port));
        try {
            listeners_.push_back(listen_on(AF_INET6, opt.port));
        } catch (const SystemError& e) {
            // A host without IPv6 still serves IPv4.
            std::cerr << "peerlb-bench-app: no IPv6 listener: " << e.what() << "\n";
        }
        for (const Fd& l : listeners_)
            watch(l.get(), EPOLLIN);

        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGINT);
        signals_ = Fd(::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!signals_)
            throw SystemError("signalfd", errno);
        watch(signals_.get(), EPOLLIN);

        ticks_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
        if (!ticks_)
            throw SystemError("timerfd_create", errno);
        const long ns = long(opt.stats_interval_ms) * 1'000'000;
        itimerspec every{{ns / 1'000'000'000, ns % 1'000'000'000},
                         {ns / 1'000'000'000, ns % 1'000'000'000}};
        timerfd_settime(ticks_.get(), 0, &every, nullptr);
        watch(ticks_.get(), EPOLLIN);

        if (!opt.stats.empty()) {
            stats_ = std::fopen(opt.stats.c_str(), "ae");
            if (!stats_)
                throw SystemError(fmt::format("open {}", opt.stats), errno);
        }
        spare_ = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }

    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    ~Server()
    {
        for (auto& [fd, conn] : conns_)
            ::close(fd);
        counters_.inflight -= static_cast<int64_t>(conns_.size());
        if (stats_) {
            write_stats();
            std::fclose(stats_);
        }
    }

    // Until SIGTERM or SIGINT.
    void run()
    {
        epoll_event events[256];
        for (;;) {
            int n = ::epoll_wait(epoll_.get(), events, 256, -1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw SystemError("epoll_wait", errno);
            for (int i = 0; i < n; i++) {
                const int fd = events[i].data.fd;
                if (fd == signals_.get())
                    return;
                if (fd == ticks_.get())
                    tick();
                else if (is_listener(fd))
                    accept_all(fd);
                else
                    read_request(fd);
            }
        }
    }

private:
    struct Conn {
        std::string head;
        uint64_t id;
    };

    struct Deadline {
        int64_t at_ms;
        int fd;
        uint64_t id;
    };

    void watch(int fd, uint32_t events)
    {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev))
            throw SystemError("epoll_ctl add", errno);
    }

    bool is_listener(int fd) const
    {
        for (const Fd& l : listeners_)
            if (l.get() == fd)
                return true;
        return false;
    }

    void accept_all(int listener)
    {
        for (;;) {
            int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if ((errno == EMFILE || errno == ENFILE) && shed(listener))
                    continue;
                return; // EAGAIN, or out of memory: retried on the next event
            }
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev)) {
                ::close(fd);
                continue;
            }
            const uint64_t id = next_id_++;
            conns_[fd] = Conn{{}, id};
            deadlines_.push_back({clock_ms(CLOCK_MONOTONIC) + opt_.read_timeout_ms, fd, id});
            counters_.inflight++;
        }
    }

    // Out of fds: refuse one pending connection with the spare fd, else the
    // level-triggered listener would spin.
    bool shed(int listener)
    {
        if (!spare_)
            return false;
        spare_.reset();
        int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0)
            ::close(fd);
        spare_ = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!shed_warned_) {
            std::cerr << "peerlb-bench-app: out of file descriptors, refusing connections\n";
            shed_warned_ = true;
        }
        return fd >= 0;
    }

    void close_conn(int fd)
    {
        ::close(fd); // also leaves the epoll set
        conns_.erase(fd);
        counters_.inflight--;
    }

    void read_request(int fd)
    {
        auto it = conns_.find(fd);
        if (it == conns_.end())
            return;
        std::string& head = it->second.head;
        char buf[4096];
        for (;;) {
            const size_t room = kMaxHeader - head.size();
            ssize_t n = ::recv(fd, buf, std::min(room, sizeof(buf)), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return;
            if (n <= 0) {
                close_conn(fd); // reset, or closed before a whole request
                return;
            }
            const size_t from = head.size() >= 3 ? head.size() - 3 : 0;
            head.append(buf, static_cast<size_t>(n));
            if (head.find("\r\n\r\n", from) != std::string::npos)
                break;
            if (head.size() >= kMaxHeader || !plausible_start(head)) {
                close_conn(fd);
                return;
            }
        }

        auto target = request_target(head);
        if (!target) {
            close_conn(fd);
            return;
        }
        if (is_health(*target)) {
            send_all(fd, health_reply_);
            close_conn(fd);
            return;
        }
        // The worker owns it from now on.
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        conns_.erase(it);
        queue_.push(fd);
    }

    void tick()
    {
        uint64_t expirations;
        (void)!::read(ticks_.get(), &expirations, sizeof(expirations));
        // Deadlines are in accept order; entries of connections already
        // answered or queued (or of an fd reused since) are skipped.
        const int64_t now = clock_ms(CLOCK_MONOTONIC);
        while (!deadlines_.empty() && deadlines_.front().at_ms <= now) {
            Deadline d = deadlines_.front();
            deadlines_.pop_front();
            auto it = conns_.find(d.fd);
            if (it != conns_.end() && it->second.id == d.id)
                close_conn(d.fd);
        }
        if (stats_)
            write_stats();
    }

    void write_stats()
    {
        std::fprintf(stats_, "%lld %lld %lld %lld %llu\n",
                     static_cast<long long>(clock_ms(CLOCK_REALTIME)),
                     static_cast<long long>(counters_.inflight.load()),
                     static_cast<long long>(counters_.busy.load()),
                     static_cast<long long>(counters_.queued.load()),
                     static_cast<unsigned long long>(counters_.completed.load()));
        std::fflush(stats_);
    }

    const Options& opt_;
    Counters& counters_;
    WorkQueue& queue_;
    const std::string health_reply_;
    Fd epoll_, signals_, ticks_, spare_;
    std::vector<Fd> listeners_;
    std::unordered_map<int, Conn> conns_;
    std::deque<Deadline> deadlines_;
    uint64_t next_id_ = 0;
    std::FILE* stats_ = nullptr;
    bool shed_warned_ = false;
};

void raise_fd_limit()
{
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-bench-app: HTTP server of known capacity (workers / service time)"};
    Options opt;
    app.add_option("--port", opt.port, "TCP port, on 0.0.0.0 and [::]")->capture_default_str();
    app.add_option("--workers", opt.workers, "requests served at once")
        ->capture_default_str()
        ->check(CLI::Range(1u, 4096u));
    app.add_option("--service-ms", opt.service_ms, "service time of every request")
        ->capture_default_str()
        ->check(CLI::Range(0u, 600'000u));
    app.add_option("--name", opt.name, "in every body and in X-Server")->capture_default_str();
    app.add_option("--stats", opt.stats, "append 'unix_ms inflight busy queued completed' lines");
    app.add_option("--stats-interval-ms", opt.stats_interval_ms)
        ->capture_default_str()
        ->check(CLI::Range(1u, 3'600'000u));
    app.add_option("--load-file", opt.load_file, "publish the load (inflight / workers, %) here");
    app.add_option("--load-interval-ms", opt.load_interval_ms)
        ->capture_default_str()
        ->check(CLI::Range(1u, 60'000u));
    app.add_option("--read-timeout-ms", opt.read_timeout_ms,
                   "close connections whose request is not whole by then")
        ->capture_default_str()
        ->check(CLI::Range(1u, 3'600'000u));
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "peerlb-bench-app: " << e.what() << "\n";
        return 2;
    }
    if (opt.name.empty() || opt.name.find_first_of("\r\n") != std::string::npos) {
        std::cerr << "peerlb-bench-app: --name must be one non-empty line\n";
        return 2;
    }

    // Blocked in every thread (workers inherit the mask), read via signalfd.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    try {
        Counters counters;
        WorkQueue queue(counters);
        Server server(opt, counters, queue);
        const std::string reply = response(opt.name);
        std::vector<std::thread> workers;
        for (unsigned i = 0; i < opt.workers; i++)
            workers.emplace_back(worker, std::ref(queue), std::ref(counters), std::cref(reply),
                                 opt.service_ms);
        std::atomic<bool> stop_publishing{false};
        std::jthread publisher;
        if (!opt.load_file.empty())
            publisher = std::jthread([&] { publish_load(opt, counters, stop_publishing); });
        struct StopPublishing {
            std::atomic<bool>& flag;
            ~StopPublishing() { flag = true; }
        } stop_on_exit{stop_publishing};
        std::cerr << fmt::format("peerlb-bench-app: {} on port {}, {} workers x {} ms ({:.0f} req/s)\n",
                                 opt.name, opt.port, opt.workers, opt.service_ms,
                                 opt.service_ms ? opt.workers * 1000.0 / opt.service_ms : 0.0);
        try {
            server.run();
        } catch (...) {
            for (int fd : queue.stop())
                ::close(fd);
            for (auto& t : workers)
                t.join();
            throw;
        }
        // Queued requests are dropped; those being served get their answer.
        for (int fd : queue.stop()) {
            ::close(fd);
            counters.inflight--;
        }
        for (auto& t : workers)
            t.join();
    } catch (const std::exception& e) {
        std::cerr << "peerlb-bench-app: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
