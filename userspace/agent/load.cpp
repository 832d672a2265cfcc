// The load meter's sources: five of the local load, and the EWMA smoother
// (DESIGN.md section 3).
#include "load.h"
#include "sock_diag.h"

extern "C" {
#include "../../bpf/decision.h"
}

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <set>
#include <tuple>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <span>
#include <string_view>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"
#include "io_util.h"

extern char** environ;

namespace peerlb {

namespace {

constexpr uint32_t kFullBp = 10000;
// A file or command output longer than this is not a number.
constexpr size_t kMaxText = 4096;
constexpr int kExecTimeoutMs = 1000;

using io_util::Clock;
using io_util::ms_until;
using io_util::quote;

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// A decimal number 0..100 ("42", " 7.5\n") in basis points; `what` names
// where it came from in the error.
uint32_t parse_percent(std::string_view text, const std::string& what)
{
    std::string_view s = text;
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);

    // Strictly [+-]digits[.digits] (or .digits): no exponents, hex, inf, nan.
    size_t i = 0;
    bool negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    double value = 0;
    size_t digits = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++, digits++)
        value = value * 10 + (s[i] - '0');
    if (i < s.size() && s[i] == '.') {
        double scale = 0.1;
        for (i++; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++, digits++, scale /= 10)
            value += (s[i] - '0') * scale;
    }
    if (digits == 0 || i != s.size())
        throw Error(fmt::format("{}: {} is not a number 0..100", what, quote(text)));
    if (negative)
        value = -value;
    if (value < 0 || value > 100)
        throw Error(fmt::format("{}: {} is out of range 0..100", what, quote(text)));
    return std::min(kFullBp, uint32_t(std::lround(value * 100)));
}

// The whole of a small file (procfs, cgroupfs, the load file).
std::string read_small_file(const std::string& path)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw SystemError("open " + path, errno);
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw SystemError("read " + path, errno);
        }
        if (n == 0)
            break;
        text.append(buf, size_t(n));
        if (text.size() > 1024 * 1024)
            throw Error(fmt::format("{}: too large", path));
    }
    return text;
}

bool parse_u64(std::string_view word, uint64_t& out)
{
    if (word.empty() || word.size() > 19)
        return false;
    uint64_t v = 0;
    for (char c : word) {
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + uint64_t(c - '0');
    }
    out = v;
    return true;
}

std::vector<std::string_view> split_words(std::string_view line)
{
    std::vector<std::string_view> words;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_space(line[i]))
            i++;
        size_t start = i;
        while (i < line.size() && !is_space(line[i]))
            i++;
        if (i > start)
            words.push_back(line.substr(start, i - start));
    }
    return words;
}

uint32_t clamp_bp(double bp)
{
    if (!(bp > 0))
        return 0;
    if (bp >= kFullBp)
        return kFullBp;
    return uint32_t(std::lround(bp));
}

// ---- connections --------------------------------------------------------

class ConnectionsSource : public LoadSourceReader {
public:
    ConnectionsSource(std::vector<uint16_t> ports, uint32_t capacity)
        : ports_(std::move(ports)), capacity_(std::max<uint32_t>(capacity, 1)),
          filter_(local_port_filter(ports_))
    {
    }

    uint32_t read_bp(uint64_t) override
    {
        uint64_t count = 0;
        auto on_our_port = [&](const inet_diag_msg& m) {
            // The kernel filtered already; check again on the local port
            // (idiag_sport; idiag_dport is the peer's).
            if (std::find(ports_.begin(), ports_.end(), ntohs(m.id.idiag_sport)) != ports_.end())
                count++;
        };
        diag_.established(AF_INET, filter_, on_our_port);
        diag_.established(AF_INET6, filter_, on_our_port);
        return uint32_t(std::min<uint64_t>(kFullBp, count * kFullBp / capacity_));
    }

    std::string describe() const override
    {
        std::string ports;
        for (uint16_t p : ports_) {
            // Appended piece by piece: GCC 12 at -O3 sees a false -Wrestrict
            // overlap in `const char* + std::string&&`.
            if (!ports.empty())
                ports += ',';
            ports += std::to_string(p);
        }
        return fmt::format("connections (established TCP on port {}) / capacity {}", ports, capacity_);
    }

private:
    std::vector<uint16_t> ports_;
    uint32_t capacity_;
    std::vector<inet_diag_bc_op> filter_;
    SockDiag diag_;
};

// ---- inflight -----------------------------------------------------------

// The data plane counts (inflight.bpf.h); this reads the count, and once a
// second checks it against the socket table: connections open before their
// service address was added, or still open when it was removed, are not in
// the tracepoint's count (their start or end went uncounted).
class InflightSource : public LoadSourceReader {
public:
    InflightSource(const Maps& maps, std::vector<uint16_t> ports, uint32_t capacity)
        : maps_(maps), ports_(std::move(ports)), capacity_(std::max<uint32_t>(capacity, 1)),
          filter_(local_port_filter(ports_))
    {
    }

    uint32_t read_bp(uint64_t now_ns) override
    {
        if (now_ns - last_check_ns_ >= kCheckPeriodNs) {
            last_check_ns_ = now_ns;
            check_against_sockets();
        }
        return inflight_load_bp(maps_, capacity_);
    }

    std::string describe() const override
    {
        return fmt::format("inflight (connections on the services, counted by the data plane) / "
                           "capacity {}",
                           capacity_);
    }

private:
    static constexpr uint64_t kCheckPeriodNs = 1'000'000'000;

    void check_against_sockets()
    {
        std::set<std::tuple<uint8_t, std::array<uint32_t, 4>, uint16_t>> services;
        for (const auto& [key, svc] : maps_.services()) {
            std::array<uint32_t, 4> a{};
            std::copy(std::begin(key.addr.v6), std::end(key.addr.v6), a.begin());
            services.emplace(key.family, a, key.port);
        }
        int64_t sockets = 0;
        auto on_service = [&](const inet_diag_msg& m) {
            std::array<uint32_t, 4> a{};
            uint8_t family = m.idiag_family == AF_INET ? LB_FAMILY_IPV4 : LB_FAMILY_IPV6;
            if (family == LB_FAMILY_IPV4) {
                a[0] = m.id.idiag_src[0];
            } else if (m.id.idiag_src[0] == 0 && m.id.idiag_src[1] == 0 &&
                       m.id.idiag_src[2] == htonl(0xffff)) {
                family = LB_FAMILY_IPV4; // ::ffff:a.b.c.d, as the tracepoint sees it
                a[0] = m.id.idiag_src[3];
            } else {
                std::copy(std::begin(m.id.idiag_src), std::end(m.id.idiag_src), a.begin());
            }
            sockets += services.count({family, a, m.id.idiag_sport});
        };
        const uint64_t before = maps_.inflight_changes();
        diag_.established(AF_INET, filter_, on_service);
        diag_.established(AF_INET6, filter_, on_service);
        const uint64_t after = maps_.inflight_changes();
        const int64_t counted = maps_.inflight_counted();
        const int64_t correction = maps_.inflight_correction();
        if (auto fixed = reconciler_.reconcile(before, after, counted, sockets, correction)) {
            spdlog::info("inflight: the data plane counted {} connections, the socket table has {}: "
                         "corrected by {}",
                         counted + correction, sockets, *fixed - correction);
            // Written by this thread only: the tracepoint keeps its own entry.
            const_cast<Maps&>(maps_).set_inflight_correction(*fixed);
        }
    }

    const Maps& maps_;
    std::vector<uint16_t> ports_;
    uint32_t capacity_;
    std::vector<inet_diag_bc_op> filter_;
    SockDiag diag_;
    InflightReconciler reconciler_;
    uint64_t last_check_ns_ = 0;
};

// ---- cpu ----------------------------------------------------------------

class CpuSource : public LoadSourceReader {
public:
    uint32_t read_bp(uint64_t) override
    {
        std::string text = read_small_file("/proc/stat");
        std::string_view line(text);
        line = line.substr(0, line.find('\n'));
        auto words = split_words(line);
        if (words.size() < 5 || words[0] != "cpu")
            throw Error(fmt::format("/proc/stat: unexpected first line {}", quote(line)));
        // user nice system idle iowait irq softirq steal (guest time is
        // already part of user and nice).
        uint64_t total = 0, idle = 0;
        for (size_t i = 1; i < words.size() && i <= 8; i++) {
            uint64_t v;
            if (!parse_u64(words[i], v))
                throw Error(fmt::format("/proc/stat: unexpected first line {}", quote(line)));
            total += v;
            if (i == 4 || i == 5)
                idle += v;
        }
        uint64_t busy = total - idle;
        if (primed_ && total > total_ && busy >= busy_) {
            uint64_t dt = total - total_;
            last_bp_ = clamp_bp(double(busy - busy_) * kFullBp / double(dt));
        }
        primed_ = true;
        total_ = total;
        busy_ = busy;
        return last_bp_;
    }

    std::string describe() const override { return "cpu (/proc/stat)"; }

private:
    bool primed_ = false;
    uint64_t total_ = 0, busy_ = 0;
    uint32_t last_bp_ = 0;
};

// ---- cgroup -------------------------------------------------------------

class CgroupSource : public LoadSourceReader {
public:
    explicit CgroupSource(std::string dir) : dir_(std::move(dir))
    {
        while (dir_.size() > 1 && dir_.back() == '/')
            dir_.pop_back();
    }

    uint32_t read_bp(uint64_t now_ns) override
    {
        uint64_t usage = usage_usec();
        double cpus = quota_cpus();
        if (primed_ && now_ns > last_ns_ && usage >= usage_) {
            double used_ns = double(usage - usage_) * 1000.0;
            double wall_ns = double(now_ns - last_ns_);
            last_bp_ = clamp_bp(used_ns / wall_ns / cpus * kFullBp);
        }
        primed_ = true;
        usage_ = usage;
        last_ns_ = now_ns;
        return last_bp_;
    }

    std::string describe() const override { return "cgroup " + dir_; }

private:
    uint64_t usage_usec() const
    {
        std::string path = dir_ + "/cpu.stat";
        std::string text = read_small_file(path);
        std::string_view rest(text);
        while (!rest.empty()) {
            size_t nl = rest.find('\n');
            std::string_view line = rest.substr(0, nl);
            rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
            auto words = split_words(line);
            if (words.size() == 2 && words[0] == "usage_usec") {
                uint64_t v;
                if (!parse_u64(words[1], v))
                    throw Error(fmt::format("{}: bad usage_usec {}", path, quote(words[1])));
                return v;
            }
        }
        throw Error(fmt::format("{}: no usage_usec line", path));
    }

    // The CPUs the cgroup may use: QUOTA/PERIOD, or all online CPUs.
    double quota_cpus() const
    {
        std::string path = dir_ + "/cpu.max";
        std::string text = read_small_file(path);
        auto words = split_words(text);
        uint64_t quota = 0, period = 0;
        if (words.size() != 2 || !parse_u64(words[1], period) || period == 0 ||
            (words[0] != "max" && (!parse_u64(words[0], quota) || quota == 0)))
            throw Error(fmt::format("{}: {} is not \"QUOTA PERIOD\" or \"max PERIOD\"", path, quote(text)));
        if (words[0] == "max") {
            long n = ::sysconf(_SC_NPROCESSORS_ONLN);
            return n > 0 ? double(n) : 1.0;
        }
        return double(quota) / double(period);
    }

    std::string dir_;
    bool primed_ = false;
    uint64_t usage_ = 0, last_ns_ = 0;
    uint32_t last_bp_ = 0;
};

// ---- file ---------------------------------------------------------------

class FileSource : public LoadSourceReader {
public:
    explicit FileSource(std::string path) : path_(std::move(path)) {}

    uint32_t read_bp(uint64_t) override
    {
        std::string text = read_small_file(path_);
        if (text.size() > kMaxText)
            throw Error(fmt::format("{}: {} is not a number 0..100", path_, quote(text)));
        return parse_percent(text, path_);
    }

    std::string describe() const override { return "file " + path_; }

private:
    std::string path_;
};

// ---- exec ---------------------------------------------------------------

class SpawnActions {
public:
    SpawnActions() { posix_spawn_file_actions_init(&a_); }
    ~SpawnActions() { posix_spawn_file_actions_destroy(&a_); }
    posix_spawn_file_actions_t* get() { return &a_; }

private:
    posix_spawn_file_actions_t a_;
};

class SpawnAttr {
public:
    SpawnAttr() { posix_spawnattr_init(&a_); }
    ~SpawnAttr() { posix_spawnattr_destroy(&a_); }
    posix_spawnattr_t* get() { return &a_; }

private:
    posix_spawnattr_t a_;
};

class ExecSource : public LoadSourceReader {
public:
    explicit ExecSource(std::string command) : command_(std::move(command)) {}

    uint32_t read_bp(uint64_t) override
    {
        std::string what = "load command " + quote(command_);
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0)
            throw SystemError(what + ": pipe", errno);
        Fd out(p[0]), in(p[1]);

        SpawnActions actions;
        int rc = posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (rc == 0)
            rc = posix_spawn_file_actions_adddup2(actions.get(), in.get(), STDOUT_FILENO);
        SpawnAttr attr;
        // Its own process group, so that a timeout kills whatever it started.
        if (rc == 0)
            rc = posix_spawnattr_setpgroup(attr.get(), 0);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        if (rc == 0)
            rc = posix_spawnattr_setsigmask(attr.get(), &none);
        if (rc == 0)
            rc = posix_spawnattr_setsigdefault(attr.get(), &all);
        if (rc == 0)
            rc = posix_spawnattr_setflags(attr.get(),
                                          POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (rc != 0)
            throw SystemError(what + ": posix_spawn setup", rc);

        const char* argv[] = {"/bin/sh", "-c", command_.c_str(), nullptr};
        pid_t pid;
        rc = posix_spawn(&pid, "/bin/sh", actions.get(), attr.get(), const_cast<char* const*>(argv), environ);
        if (rc != 0)
            throw SystemError(what + ": posix_spawn /bin/sh", rc);
        in.reset();
        Child child(pid);

        // A pidfd says when the child exits; the pipe when it closes its
        // output. A background job may keep the pipe open after the shell
        // exits: the output then is what the pipe holds at that point.
        Fd pidfd(int(::syscall(SYS_pidfd_open, pid, 0)));
        auto deadline = Clock::now() + std::chrono::milliseconds(kExecTimeoutMs);
        std::string output;
        bool eof = false, exited = false, too_long = false;
        while (!exited || !eof) {
            pollfd fds[2];
            nfds_t n = 0;
            if (!eof)
                fds[n++] = {out.get(), POLLIN, 0};
            int pid_slot = -1;
            if (!exited && pidfd) {
                pid_slot = int(n);
                fds[n++] = {pidfd.get(), POLLIN, 0};
            }
            int timeout = ms_until(deadline);
            if (timeout == 0)
                break;
            if (!pidfd && !exited)
                timeout = std::min(timeout, 10); // no pidfd: poll waitpid
            int r = ::poll(fds, n, timeout);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                throw SystemError(what + ": poll", errno);
            }
            if (!eof && fds[0].revents) {
                char buf[1024];
                ssize_t got = ::read(out.get(), buf, sizeof(buf));
                if (got < 0 && errno != EINTR && errno != EAGAIN)
                    throw SystemError(what + ": read", errno);
                if (got == 0)
                    eof = true;
                if (got > 0) {
                    if (output.size() + size_t(got) > kMaxText)
                        too_long = true;
                    else
                        output.append(buf, size_t(got));
                }
            }
            if (!exited && (pid_slot < 0 || fds[pid_slot].revents) && child.try_reap())
                exited = true;
            if (exited && !eof) {
                drain(out.get(), output, too_long);
                eof = true;
            }
        }
        if (!exited) {
            child.kill_and_reap();
            throw Error(fmt::format("{}: timed out after {} ms", what, kExecTimeoutMs));
        }
        int status = child.status();
        if (WIFSIGNALED(status))
            throw Error(fmt::format("{}: killed by signal {}", what, WTERMSIG(status)));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            throw Error(fmt::format("{}: exited with status {}", what, WEXITSTATUS(status)));
        if (too_long)
            throw Error(fmt::format("{}: output longer than {} bytes", what, kMaxText));
        return parse_percent(output, what);
    }

    std::string describe() const override { return "exec " + quote(command_); }

private:
    // The spawned shell: reaped on every path out of read_bp().
    class Child {
    public:
        explicit Child(pid_t pid) : pid_(pid) {}
        Child(const Child&) = delete;
        Child& operator=(const Child&) = delete;
        ~Child()
        {
            if (pid_ > 0)
                kill_and_reap();
        }
        bool try_reap()
        {
            int st = 0;
            pid_t r;
            do
                r = ::waitpid(pid_, &st, WNOHANG);
            while (r < 0 && errno == EINTR);
            if (r == 0)
                return false;
            // r < 0: ECHILD, someone else (SIGCHLD ignored) took it.
            status_ = r == pid_ ? st : 0;
            pid_ = -1;
            return true;
        }
        void kill_and_reap()
        {
            // The group first (the shell's own children), then the shell.
            ::kill(-pid_, SIGKILL);
            ::kill(pid_, SIGKILL);
            int st = 0;
            pid_t r;
            do
                r = ::waitpid(pid_, &st, 0);
            while (r < 0 && errno == EINTR);
            status_ = st;
            pid_ = -1;
        }
        int status() const { return status_; }

    private:
        pid_t pid_;
        int status_ = 0;
    };

    static void drain(int fd, std::string& output, bool& too_long)
    {
        for (;;) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP)))
                return;
            char buf[1024];
            ssize_t got = ::read(fd, buf, sizeof(buf));
            if (got <= 0)
                return;
            if (output.size() + size_t(got) > kMaxText)
                too_long = true;
            else
                output.append(buf, size_t(got));
        }
    }

    std::string command_;
};

} // namespace

uint32_t inflight_load_exact_bp(const Maps& maps, uint32_t capacity, uint32_t ceiling_bp)
{
    // The same arithmetic as the XDP decision's.
    return std::min(ceiling_bp, lb_inflight_load(maps.inflight_counted() +
                                                     maps.inflight_correction(),
                                                 capacity));
}

uint32_t inflight_load_bp(const Maps& maps, uint32_t capacity)
{
    return inflight_load_exact_bp(maps, capacity, kFullBp);
}

std::optional<int64_t> InflightReconciler::reconcile(uint64_t changes_before,
                                                     uint64_t changes_after, int64_t counted,
                                                     int64_t sockets, int64_t correction)
{
    if (changes_before != changes_after)
        return std::nullopt; // not comparable: the next still walk decides
    if (counted + correction == sockets) {
        suspicious_ = 0;
        return std::nullopt;
    }
    if (++suspicious_ < 2)
        return std::nullopt;
    suspicious_ = 0;
    return sockets - counted;
}

std::unique_ptr<LoadSourceReader> make_load_source(const Config& cfg, const Maps* maps)
{
    std::vector<uint16_t> ports;
    for (const auto& s : cfg.services)
        if (std::find(ports.begin(), ports.end(), s.port) == ports.end())
            ports.push_back(s.port);
    switch (cfg.source) {
    case LoadSource::inflight:
        if (!maps)
            throw Error("load source inflight: no data plane");
        if (ports.empty())
            throw Error("load source inflight: no [[service]] ports");
        return std::make_unique<InflightSource>(*maps, std::move(ports), cfg.capacity);
    case LoadSource::connections:
        if (ports.empty())
            throw Error("load source connections: no [[service]] ports");
        return std::make_unique<ConnectionsSource>(std::move(ports), cfg.capacity);
    case LoadSource::cpu:
        return std::make_unique<CpuSource>();
    case LoadSource::cgroup:
        if (cfg.cgroup.empty())
            throw Error("load source cgroup: no cgroup directory");
        return std::make_unique<CgroupSource>(cfg.cgroup);
    case LoadSource::file:
        if (cfg.load_file.empty())
            throw Error("load source file: no file");
        return std::make_unique<FileSource>(cfg.load_file);
    case LoadSource::exec:
        if (cfg.load_command.empty())
            throw Error("load source exec: no command");
        return std::make_unique<ExecSource>(cfg.load_command);
    }
    throw Error("unknown load source");
}

uint32_t LoadSmoother::update(uint32_t raw_bp, uint64_t now_ns)
{
    double raw = std::min(raw_bp, kFullBp);
    if (tau_ns_ == 0 || !primed_) {
        value_ = raw;
    } else {
        uint64_t dt = now_ns > last_ns_ ? now_ns - last_ns_ : 0;
        double alpha = 1.0 - std::exp(-double(dt) / double(tau_ns_));
        value_ += alpha * (raw - value_);
    }
    primed_ = true;
    if (now_ns > last_ns_ || tau_ns_ == 0)
        last_ns_ = now_ns;
    return value();
}

} // namespace peerlb
