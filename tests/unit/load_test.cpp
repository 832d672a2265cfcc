// The load meter: the five sources, the smoother and the health probe.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "userspace/agent/health.h"
#include "userspace/agent/load.h"
#include "userspace/agent/load_meter.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

namespace peerlb {
namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point start)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A fresh temporary directory, removed with its files.
class TempDir {
public:
    TempDir()
    {
        std::string tmpl = testing::TempDir() + "peerlb-load-XXXXXX";
        char* made = ::mkdtemp(tmpl.data());
        if (!made)
            throw std::runtime_error("mkdtemp failed");
        path_ = made;
    }
    ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    std::string write(const std::string& name, const std::string& text) const
    {
        std::ofstream(file(name), std::ios::trunc) << text;
        return file(name);
    }

private:
    std::string path_;
};

std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Config file_config(const std::string& path)
{
    Config cfg;
    cfg.source = LoadSource::file;
    cfg.load_file = path;
    return cfg;
}

Config exec_config(const std::string& command)
{
    Config cfg;
    cfg.source = LoadSource::exec;
    cfg.load_command = command;
    return cfg;
}

Config connections_config(std::vector<uint16_t> ports, uint32_t capacity)
{
    Config cfg;
    cfg.source = LoadSource::connections;
    cfg.capacity = capacity;
    for (uint16_t p : ports) {
        ServiceConfig s;
        s.port = p;
        cfg.services.push_back(s);
    }
    return cfg;
}

uint32_t read_file_bp(const TempDir& dir, const std::string& content)
{
    auto src = make_load_source(file_config(dir.write("load", content)));
    return src->read_bp(0);
}

std::string file_error(const TempDir& dir, const std::string& content)
{
    try {
        read_file_bp(dir, content);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// ---- file --------------------------------------------------------------

TEST(LoadFile, ParsesPercentages)
{
    TempDir dir;
    EXPECT_EQ(read_file_bp(dir, "42"), 4200u);
    EXPECT_EQ(read_file_bp(dir, " 7.5\n"), 750u);
    EXPECT_EQ(read_file_bp(dir, "100"), 10000u);
    EXPECT_EQ(read_file_bp(dir, "0"), 0u);
    EXPECT_EQ(read_file_bp(dir, "\t12.34 \r\n"), 1234u);
    EXPECT_EQ(read_file_bp(dir, "100.0"), 10000u);
    EXPECT_EQ(read_file_bp(dir, ".5"), 50u);
}

TEST(LoadFile, RejectsGarbageAndOutOfRange)
{
    TempDir dir;
    for (const char* bad : {"abc", "101", "-1", "", "  \n", "42abc", "4 2", "1e1", "0x10", "nan", "inf", "."}) {
        SCOPED_TRACE(bad);
        std::string what = file_error(dir, bad);
        EXPECT_NE(what, "(no error)");
        // The message names the file.
        EXPECT_NE(what.find(dir.file("load")), std::string::npos) << what;
    }
    EXPECT_NE(file_error(dir, "abc").find("'abc'"), std::string::npos) << file_error(dir, "abc");
    EXPECT_NE(file_error(dir, "101").find("range"), std::string::npos) << file_error(dir, "101");
}

TEST(LoadFile, MissingFileThrows)
{
    TempDir dir;
    auto src = make_load_source(file_config(dir.file("nope")));
    try {
        src->read_bp(0);
        FAIL() << "no error";
    } catch (const SystemError& e) {
        EXPECT_EQ(e.code(), ENOENT);
        EXPECT_NE(std::string(e.what()).find(dir.file("nope")), std::string::npos) << e.what();
    }
}

// ---- exec --------------------------------------------------------------

// No child of this process is left unreaped.
void expect_no_children()
{
    int st;
    errno = 0;
    EXPECT_EQ(::waitpid(-1, &st, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

TEST(LoadExec, ParsesOutput)
{
    EXPECT_EQ(make_load_source(exec_config("echo 33"))->read_bp(0), 3300u);
    EXPECT_EQ(make_load_source(exec_config("printf ' 12.5\\n'"))->read_bp(0), 1250u);
    // Reusable: each read runs the command again.
    auto src = make_load_source(exec_config("echo 7"));
    EXPECT_EQ(src->read_bp(0), 700u);
    EXPECT_EQ(src->read_bp(0), 700u);
    expect_no_children();
}

TEST(LoadExec, GarbageOutputThrows)
{
    auto src = make_load_source(exec_config("echo hello"));
    try {
        src->read_bp(0);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'hello\\n'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_load_source(exec_config("echo 150"))->read_bp(0), Error);
    EXPECT_THROW(make_load_source(exec_config("true"))->read_bp(0), Error);
    expect_no_children();
}

TEST(LoadExec, NonZeroExitThrows)
{
    auto src = make_load_source(exec_config("echo 10; exit 3"));
    try {
        src->read_bp(0);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("status 3"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_load_source(exec_config("exit 3"))->read_bp(0), Error);
    EXPECT_THROW(make_load_source(exec_config("kill -9 $$"))->read_bp(0), Error);
    expect_no_children();
}

bool process_gone(pid_t pid)
{
    if (::kill(pid, 0) < 0)
        return errno == ESRCH;
    // Still there as a zombie of someone else (init reaps it shortly).
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

TEST(LoadExec, TimeoutKillsAndReapsChild)
{
    TempDir dir;
    std::string pidfile = dir.file("pid");
    auto src = make_load_source(exec_config("echo $$ > " + pidfile + "; exec sleep 5"));
    auto start = Clock::now();
    try {
        src->read_bp(0);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
    }
    auto took = ms_since(start);
    EXPECT_GE(took, 900);
    EXPECT_LT(took, 2000);
    // The shell was our child and has been reaped: the pid is gone.
    pid_t pid = std::atoi(read_text(pidfile).c_str());
    ASSERT_GT(pid, 0);
    errno = 0;
    EXPECT_EQ(::kill(pid, 0), -1);
    EXPECT_EQ(errno, ESRCH);
    expect_no_children();
}

TEST(LoadExec, TimeoutKillsBackgroundJobs)
{
    // The shell waits for a background sleep that holds its stdout: both
    // must die at the timeout.
    TempDir dir;
    std::string pidfile = dir.file("pid");
    auto src = make_load_source(exec_config("sleep 5 & echo $! > " + pidfile + "; wait"));
    auto start = Clock::now();
    EXPECT_THROW(src->read_bp(0), Error);
    EXPECT_LT(ms_since(start), 2000);
    pid_t pid = std::atoi(read_text(pidfile).c_str());
    ASSERT_GT(pid, 0);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        gone = process_gone(pid);
        if (!gone)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(gone) << "background sleep " << pid << " survived";
    expect_no_children();
}

TEST(LoadExec, BackgroundJobHoldingPipeDoesNotDelay)
{
    // The shell prints and exits; a background job keeps the pipe open.
    auto src = make_load_source(exec_config("echo 25; sleep 3 >/dev/null 2>&1 & exit 0"));
    auto start = Clock::now();
    EXPECT_EQ(src->read_bp(0), 2500u);
    EXPECT_LT(ms_since(start), 900);
}

// ---- connections -------------------------------------------------------

// A listening socket on loopback with an ephemeral port.
struct Listener {
    Fd fd;
    uint16_t port = 0;
    int family = AF_INET;

    static bool open(Listener& l, int family)
    {
        l.family = family;
        l.fd = Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!l.fd)
            return false;
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
            sin->sin_family = AF_INET;
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof(*sin);
        } else {
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = in6addr_loopback;
            len = sizeof(*sin6);
        }
        if (::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0 || ::listen(l.fd.get(), 64) < 0)
            return false;
        len = sizeof(ss);
        ::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
        l.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        return true;
    }

    sockaddr_storage address() const
    {
        sockaddr_storage ss{};
        if (family == AF_INET) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
            sin->sin_family = AF_INET;
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            sin->sin_port = htons(port);
        } else {
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = in6addr_loopback;
            sin6->sin6_port = htons(port);
        }
        return ss;
    }

    // Connects n clients and accepts them: {client, server} pairs.
    void connect_clients(int n, std::vector<Fd>& clients, std::vector<Fd>& servers) const
    {
        sockaddr_storage ss = address();
        socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        for (int i = 0; i < n; i++) {
            Fd c(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
            ASSERT_TRUE(bool(c));
            ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
            Fd s(::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            ASSERT_TRUE(bool(s)) << std::strerror(errno);
            clients.push_back(std::move(c));
            servers.push_back(std::move(s));
        }
    }
};

TEST(LoadConnections, CountsServerSideOnly)
{
    Listener l;
    ASSERT_TRUE(Listener::open(l, AF_INET));
    auto src = make_load_source(connections_config({l.port}, 10));
    EXPECT_EQ(src->read_bp(0), 0u); // listening only

    std::vector<Fd> clients, servers;
    l.connect_clients(5, clients, servers);
    // 10 established sockets involve the port, but the 5 clients have it as
    // their remote port only.
    EXPECT_EQ(src->read_bp(0), 5u * 10000 / 10);

    servers[0].reset();
    servers[1].reset();
    EXPECT_EQ(src->read_bp(0), 3u * 10000 / 10);

    // Closing a client takes its server side out of ESTABLISHED too.
    clients[4].reset();
    EXPECT_EQ(src->read_bp(0), 2u * 10000 / 10);
}

TEST(LoadConnections, ClampsAtCapacity)
{
    Listener l;
    ASSERT_TRUE(Listener::open(l, AF_INET));
    std::vector<Fd> clients, servers;
    l.connect_clients(5, clients, servers);
    EXPECT_EQ(make_load_source(connections_config({l.port}, 3))->read_bp(0), 10000u);
    EXPECT_EQ(make_load_source(connections_config({l.port}, 10000))->read_bp(0), 5u);
    EXPECT_EQ(make_load_source(connections_config({l.port}, 7))->read_bp(0), 5u * 10000 / 7);
}

TEST(LoadConnections, PortWithoutConnectionsIsZero)
{
    Listener busy, idle;
    ASSERT_TRUE(Listener::open(busy, AF_INET));
    ASSERT_TRUE(Listener::open(idle, AF_INET));
    std::vector<Fd> clients, servers;
    busy.connect_clients(3, clients, servers);
    EXPECT_EQ(make_load_source(connections_config({idle.port}, 10))->read_bp(0), 0u);
    EXPECT_EQ(make_load_source(connections_config({busy.port}, 10))->read_bp(0), 3000u);
}

TEST(LoadConnections, CountsIpv6AndSeveralPorts)
{
    Listener v6, v4, other;
    if (!Listener::open(v6, AF_INET6))
        GTEST_SKIP() << "no IPv6 loopback";
    ASSERT_TRUE(Listener::open(v4, AF_INET));
    ASSERT_TRUE(Listener::open(other, AF_INET));
    std::vector<Fd> clients, servers;
    v6.connect_clients(4, clients, servers);
    v4.connect_clients(2, clients, servers);
    other.connect_clients(3, clients, servers);

    EXPECT_EQ(make_load_source(connections_config({v6.port}, 10))->read_bp(0), 4000u);
    auto both = make_load_source(connections_config({v4.port, v6.port}, 10000));
    EXPECT_EQ(both->read_bp(0), 6u);
    EXPECT_EQ(make_load_source(connections_config({v4.port, other.port, v6.port}, 10000))->read_bp(0), 9u);
    EXPECT_NE(both->describe().find(std::to_string(v6.port)), std::string::npos) << both->describe();
}

TEST(LoadConnections, ManyReadsOnOneSocket)
{
    Listener l;
    ASSERT_TRUE(Listener::open(l, AF_INET));
    std::vector<Fd> clients, servers;
    l.connect_clients(2, clients, servers);
    auto src = make_load_source(connections_config({l.port}, 10000));
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(src->read_bp(0), 2u) << "read " << i;
}

// ---- cpu ---------------------------------------------------------------

TEST(LoadCpu, SecondReadInRange)
{
    Config cfg;
    cfg.source = LoadSource::cpu;
    auto src = make_load_source(cfg);
    EXPECT_EQ(src->read_bp(0), 0u);
    // Burn a little CPU so that the counters move.
    auto until = Clock::now() + std::chrono::milliseconds(60);
    volatile uint64_t sink = 0;
    while (Clock::now() < until)
        sink = sink + 1;
    uint32_t bp = src->read_bp(0);
    EXPECT_LE(bp, 10000u);
    EXPECT_FALSE(src->describe().empty());
}

// ---- cgroup ------------------------------------------------------------

void write_usage(const TempDir& dir, uint64_t usage_usec)
{
    dir.write("cpu.stat", "usage_usec " + std::to_string(usage_usec) +
                              "\nuser_usec 1\nsystem_usec 2\nnr_periods 0\nnr_throttled 0\n");
}

TEST(LoadCgroup, UsageOverQuota)
{
    TempDir dir;
    dir.write("cpu.max", "50000 100000\n");
    write_usage(dir, 1'000'000);
    Config cfg;
    cfg.source = LoadSource::cgroup;
    cfg.cgroup = dir.path();
    auto src = make_load_source(cfg);
    const uint64_t s = 1'000'000'000;
    EXPECT_EQ(src->read_bp(10 * s), 0u);
    // 0.25 s of CPU in 1 s over 0.5 CPU.
    write_usage(dir, 1'250'000);
    EXPECT_EQ(src->read_bp(11 * s), 5000u);
    // 0.1 s in 0.5 s over 0.5 CPU.
    write_usage(dir, 1'350'000);
    EXPECT_EQ(src->read_bp(11 * s + s / 2), 4000u);
    // Over the quota: clamped.
    write_usage(dir, 3'350'000);
    EXPECT_EQ(src->read_bp(12 * s), 10000u);
    // Idle.
    EXPECT_EQ(src->read_bp(13 * s), 0u);
    // Two whole CPUs.
    dir.write("cpu.max", "200000 100000\n");
    write_usage(dir, 4'350'000);
    EXPECT_EQ(src->read_bp(14 * s), 5000u);
}

TEST(LoadCgroup, MaxMeansAllCpus)
{
    TempDir dir;
    dir.write("cpu.max", "max 100000\n");
    write_usage(dir, 0);
    Config cfg;
    cfg.source = LoadSource::cgroup;
    cfg.cgroup = dir.path();
    auto src = make_load_source(cfg);
    const uint64_t s = 1'000'000'000;
    EXPECT_EQ(src->read_bp(s), 0u);
    write_usage(dir, 1'000'000);
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    ASSERT_GT(cpus, 0);
    EXPECT_EQ(src->read_bp(2 * s), uint32_t(std::lround(10000.0 / double(cpus))));
}

TEST(LoadCgroup, BadFilesThrow)
{
    TempDir dir;
    Config cfg;
    cfg.source = LoadSource::cgroup;
    cfg.cgroup = dir.path();
    auto src = make_load_source(cfg);
    EXPECT_THROW(src->read_bp(1), SystemError); // no files
    write_usage(dir, 5);
    dir.write("cpu.max", "lots 100000\n");
    try {
        src->read_bp(1);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cpu.max"), std::string::npos) << e.what();
    }
    dir.write("cpu.max", "50000 0\n");
    EXPECT_THROW(src->read_bp(1), Error);
    dir.write("cpu.max", "50000 100000\n");
    dir.write("cpu.stat", "user_usec 1\n");
    EXPECT_THROW(src->read_bp(1), Error);
}

// ---- smoother ----------------------------------------------------------

TEST(LoadSmoother, TauZeroPassesRaw)
{
    LoadSmoother s(0);
    EXPECT_EQ(s.update(1234, 0), 1234u);
    EXPECT_EQ(s.update(10000, 1), 10000u);
    EXPECT_EQ(s.update(0, 2), 0u);
    EXPECT_EQ(s.value(), 0u);
}

TEST(LoadSmoother, FirstUpdatePrimes)
{
    LoadSmoother s(100);
    EXPECT_EQ(s.update(7000, 5'000'000), 7000u);
    EXPECT_EQ(s.value(), 7000u);
}

TEST(LoadSmoother, StepReaches63PercentAfterTau)
{
    LoadSmoother s(100);
    uint64_t now = 1'000'000'000;
    EXPECT_EQ(s.update(0, now), 0u);
    uint32_t prev = 0;
    for (int i = 0; i < 100; i++) {
        now += 1'000'000;
        uint32_t v = s.update(10000, now);
        EXPECT_GE(v, prev); // monotonic approach
        EXPECT_LE(v, 10000u);
        prev = v;
    }
    double expected = 10000.0 * (1.0 - std::exp(-1.0));
    EXPECT_NEAR(double(s.value()), expected, 100.0);
    // And onwards, towards the step without overshooting.
    for (int i = 0; i < 1000; i++) {
        now += 1'000'000;
        uint32_t v = s.update(10000, now);
        EXPECT_GE(v, prev);
        EXPECT_LE(v, 10000u);
        prev = v;
    }
    EXPECT_GE(prev, 9990u);
}

TEST(LoadSmoother, IndependentOfUpdateRate)
{
    LoadSmoother coarse(200), fine(200);
    coarse.update(10000, 0);
    fine.update(10000, 0);
    coarse.update(2000, 100'000'000);
    for (uint64_t t = 10'000'000; t <= 100'000'000; t += 10'000'000)
        fine.update(2000, t);
    EXPECT_NEAR(double(coarse.value()), double(fine.value()), 2.0);
    EXPECT_NEAR(double(coarse.value()), 2000 + 8000 * std::exp(-0.5), 2.0);
}

TEST(LoadSmoother, SetTau)
{
    LoadSmoother s(1000);
    s.update(0, 0);
    s.set_tau_ms(0);
    EXPECT_EQ(s.update(5000, 1), 5000u);
}

// ---- health probe ------------------------------------------------------

IpAddress loopback4()
{
    IpAddress a;
    a.family = LB_FAMILY_IPV4;
    a.addr.v4 = htonl(INADDR_LOOPBACK);
    return a;
}

IpAddress loopback6()
{
    IpAddress a;
    a.family = LB_FAMILY_IPV6;
    std::memcpy(a.addr.v6, &in6addr_loopback, 16);
    return a;
}

TEST(ProbeService, ListeningPortIsHealthy)
{
    Listener l;
    ASSERT_TRUE(Listener::open(l, AF_INET));
    std::string why = "stale";
    EXPECT_TRUE(probe_service(loopback4(), l.port, "", 500, why)) << why;
    EXPECT_EQ(why, "");
}

TEST(ProbeService, ListeningIpv6PortIsHealthy)
{
    Listener l;
    if (!Listener::open(l, AF_INET6))
        GTEST_SKIP() << "no IPv6 loopback";
    std::string why;
    EXPECT_TRUE(probe_service(loopback6(), l.port, "", 500, why)) << why;
}

TEST(ProbeService, ClosedPortIsRefused)
{
    uint16_t port;
    {
        Listener l;
        ASSERT_TRUE(Listener::open(l, AF_INET));
        port = l.port;
    }
    std::string why;
    EXPECT_FALSE(probe_service(loopback4(), port, "", 500, why));
    EXPECT_NE(why.find("refused"), std::string::npos) << why;
    EXPECT_NE(why.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << why;
}

// Answers each connection with the next of `replies` and closes it; keeps
// the requests it got.
class HttpResponder {
public:
    explicit HttpResponder(std::vector<std::string> replies) : replies_(std::move(replies))
    {
        if (!Listener::open(l_, AF_INET))
            throw std::runtime_error("listen failed");
        thread_ = std::thread([this] { run(); });
    }
    ~HttpResponder() { join(); }
    void join()
    {
        if (thread_.joinable())
            thread_.join();
    }
    uint16_t port() const { return l_.port; }
    std::vector<std::string> requests; // read after join()

private:
    void run()
    {
        for (const auto& reply : replies_) {
            Fd c(::accept4(l_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!c)
                return;
            std::string req;
            char buf[512];
            while (req.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::recv(c.get(), buf, sizeof(buf), 0);
                if (n <= 0)
                    break;
                req.append(buf, size_t(n));
            }
            requests.push_back(req);
            ::send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
        }
    }

    Listener l_;
    std::vector<std::string> replies_;
    std::thread thread_;
};

TEST(ProbeService, HttpStatusDecides)
{
    HttpResponder http({"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                        "HTTP/1.1 503 Service Unavailable\r\n\r\n", "HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n",
                        "garbage\r\n\r\n"});
    std::string why;
    EXPECT_TRUE(probe_service(loopback4(), http.port(), "/health", 1000, why)) << why;
    EXPECT_FALSE(probe_service(loopback4(), http.port(), "/health", 1000, why));
    EXPECT_NE(why.find("503"), std::string::npos) << why;
    EXPECT_TRUE(probe_service(loopback4(), http.port(), "/health", 1000, why)) << why;
    EXPECT_FALSE(probe_service(loopback4(), http.port(), "/health", 1000, why));
    EXPECT_NE(why.find("garbage"), std::string::npos) << why;
    http.join();
    const auto& requests = http.requests;
    ASSERT_EQ(requests.size(), 4u);
    EXPECT_EQ(requests[0].rfind("GET /health HTTP/1.0\r\n", 0), 0u) << requests[0];
    EXPECT_NE(requests[0].find("\r\nHost: 127.0.0.1"), std::string::npos) << requests[0];
    EXPECT_NE(requests[0].find("\r\nConnection: close\r\n\r\n"), std::string::npos) << requests[0];
}

TEST(ProbeService, SilentServerTimesOut)
{
    // The kernel completes the handshake from the backlog; nobody answers.
    Listener l;
    ASSERT_TRUE(Listener::open(l, AF_INET));
    std::string why;
    auto start = Clock::now();
    EXPECT_FALSE(probe_service(loopback4(), l.port, "/health", 300, why));
    auto took = ms_since(start);
    EXPECT_NE(why.find("timeout after 300 ms"), std::string::npos) << why;
    EXPECT_GE(took, 250);
    EXPECT_LT(took, 1000);
}

TEST(ProbeService, ServerClosingWithoutReplyIsUnhealthy)
{
    HttpResponder http({""});
    std::string why;
    EXPECT_FALSE(probe_service(loopback4(), http.port(), "/", 1000, why));
    EXPECT_FALSE(why.empty());
}

// ---- the load meter ------------------------------------------------------

Config file_source(const std::string& path)
{
    Config cfg;
    cfg.source = LoadSource::file;
    cfg.load_file = path;
    cfg.update_ms = 5;
    return cfg;
}

TEST(LoadMeter, PeriodIsUpdateMsExceptForCostlySources)
{
    Config cfg;
    cfg.update_ms = 20;
    cfg.source = LoadSource::file;
    EXPECT_EQ(load_period_ms(cfg), 20u);
    for (LoadSource sampled : {LoadSource::connections, LoadSource::cpu, LoadSource::cgroup}) {
        cfg.source = sampled;
        EXPECT_EQ(load_period_ms(cfg), 100u);
    }
    cfg.source = LoadSource::exec;
    EXPECT_EQ(load_period_ms(cfg), 1000u);
    cfg.update_ms = 1000;
    cfg.source = LoadSource::cpu;
    EXPECT_EQ(load_period_ms(cfg), 1000u);
}

TEST(LoadMeter, SourceIsMadeAgainOnlyForItsOwnSettings)
{
    const Config a = file_source("/x");
    Config b = a;
    b.smoothing_ms = 500;
    b.update_ms = 50;
    EXPECT_TRUE(same_load_source(a, b));
    b.load_file = "/y";
    EXPECT_FALSE(same_load_source(a, b));
    b = a;
    b.capacity = a.capacity + 1;
    EXPECT_FALSE(same_load_source(a, b));
}

// Waits for the meter to publish `bp`; false after 2 s.
bool publishes(const std::atomic<uint32_t>& published, uint32_t bp)
{
    for (int i = 0; i < 400 && published != bp; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return published == bp;
}

TEST(LoadMeter, PublishesEachReadingAndTakesNewSettings)
{
    TempDir dir;
    std::atomic<uint32_t> published{0};
    LoadMeter meter(file_source(dir.write("a", "40")), [&](uint32_t bp, uint64_t) { published = bp; });
    EXPECT_FALSE(meter.measured());
    meter.start();
    EXPECT_TRUE(publishes(published, 4000));
    EXPECT_TRUE(meter.measured());
    EXPECT_EQ(meter.load_bp(), 4000u);
    dir.write("a", "55");
    EXPECT_TRUE(publishes(published, 5500)); // read again at its period
    meter.configure(file_source(dir.write("b", "12.5")));
    EXPECT_TRUE(publishes(published, 1250));
    meter.stop();
}

TEST(LoadMeter, FailingSourceIsNeitherMeasuredNorPublished)
{
    TempDir dir;
    std::atomic<int> published{0};
    LoadMeter meter(file_source(dir.file("missing")), [&](uint32_t, uint64_t) { published++; });
    meter.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    meter.stop();
    EXPECT_FALSE(meter.measured());
    EXPECT_EQ(published, 0);
}

} // namespace
} // namespace peerlb

TEST(InflightReconciler, CorrectsADifferenceSeenOnTwoStillWalksInARow)
{
    peerlb::InflightReconciler r;
    // 2 connections opened before their address was a service.
    EXPECT_EQ(r.reconcile(10, 10, 5, 7, 0), std::nullopt);
    EXPECT_EQ(r.reconcile(12, 12, 6, 8, 0), std::optional<int64_t>(2));
    EXPECT_EQ(r.reconcile(12, 12, 6, 8, 2), std::nullopt);
    // Two left open when it stopped being one, later.
    EXPECT_EQ(r.reconcile(20, 20, 9, 5, 2), std::nullopt);
    EXPECT_EQ(r.reconcile(20, 20, 9, 5, 2), std::optional<int64_t>(-4));
}

TEST(InflightReconciler, AWalkDuringWhichTheCountMovedIsNotCompared)
{
    peerlb::InflightReconciler r;
    // Opens and closes during the walk: whatever it found, nothing changes.
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(r.reconcile(100 + i, 102 + i, 1, 0, 0), std::nullopt);
    // One odd still walk between good ones starts over.
    EXPECT_EQ(r.reconcile(200, 200, 3, 4, 0), std::nullopt);
    EXPECT_EQ(r.reconcile(201, 201, 3, 3, 0), std::nullopt);
    EXPECT_EQ(r.reconcile(202, 202, 3, 4, 0), std::nullopt);
}
