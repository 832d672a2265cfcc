// The agent's control socket: served on the event loop a step at a time, so
// no client holds the loop, however its bytes trickle in (each gets a
// deadline in all and one of a bounded number of places).
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "userspace/agent/control.h"
#include "userspace/dataplane/fd.h"

namespace peerlb {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A run directory under a fresh temporary one; the server creates the run
// directory and removes it, the test removes the parent.
struct TempRunDir {
    std::string parent = testing::TempDir() + "peerlb_control_test.XXXXXX";
    std::string run;
    TempRunDir()
    {
        if (!mkdtemp(parent.data()))
            ADD_FAILURE() << "mkdtemp failed";
        run = parent + "/run";
    }
    ~TempRunDir() { ::rmdir(parent.c_str()); }
};

Fd connect_raw(const std::string& run_dir)
{
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    control_socket_path(run_dir).copy(a.sun_path, sizeof(a.sun_path) - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return fd;
}

double seconds_since(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// As the agent's loop does: polls what the server asks for (10 ms at most,
// the loop's tick), serves, until done() or `limit`. Returns the longest
// serve() call, in seconds: what the loop would have been held.
template <class Done>
double serve_until(ControlServer& server, const ControlServer::Handler& handler, Done done,
                   std::chrono::milliseconds limit = 5000ms)
{
    const auto end = Clock::now() + limit;
    double longest = 0;
    while (!done()) {
        if (Clock::now() > end) {
            ADD_FAILURE() << "not done within " << limit.count() << " ms";
            break;
        }
        std::vector<pollfd> fds;
        server.add_poll_fds(fds);
        ::poll(fds.data(), fds.size(), 10);
        const auto start = Clock::now();
        server.serve(handler);
        longest = std::max(longest, seconds_since(start));
    }
    return longest;
}

// Reads until a newline, EOF or 3 s; the text read.
std::string read_answer(int fd)
{
    std::string out;
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    while (out.find('\n') == std::string::npos && ::poll(&p, 1, 3000) == 1) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

// read_answer() on a thread of its own, while the test serves.
struct AnswerReader {
    std::string text; // once done
    std::atomic<bool> done{false};
    std::thread thread;
    explicit AnswerReader(int fd)
        : thread([this, fd] {
              text = read_answer(fd);
              done = true;
          })
    {
    }
    ~AnswerReader() { thread.join(); }
};

const auto pong = [](const nlohmann::json& req) {
    EXPECT_EQ(req["cmd"], "ping");
    return nlohmann::json({{"pong", true}});
};

TEST(ControlServer, AnswersARequest)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    std::atomic<bool> done{false};
    std::thread client([&] {
        EXPECT_EQ(control_request(dir.run, {{"cmd", "ping"}}), nlohmann::json({{"pong", true}}));
        done = true;
    });
    serve_until(server, pong, [&] { return done.load(); });
    client.join();
    EXPECT_EQ(server.clients(), 0u);
}

// `peerlb buckets` lists an owner for each of up to 65536 buckets: an
// answer far larger than any request reaches the CLI whole.
TEST(ControlServer, AnswersLargerThanARequestArriveWhole)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    nlohmann::json big = nlohmann::json::array();
    for (int i = 0; i < 65536; i++)
        big.push_back(std::string(32, char('a' + i % 26)));
    const auto handler = [&](const nlohmann::json&) { return nlohmann::json({{"table", big}}); };
    std::atomic<bool> done{false};
    std::thread client([&] {
        EXPECT_EQ(control_request(dir.run, {{"cmd", "buckets"}})["table"], big);
        done = true;
    });
    serve_until(server, handler, [&] { return done.load(); });
    client.join();
}

// A request that ends at EOF without a newline is a request too.
TEST(ControlServer, AnswersARequestEndedByEof)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    Fd fd = connect_raw(dir.run);
    ASSERT_EQ(::send(fd.get(), R"({"cmd": "ping"})", 15, MSG_NOSIGNAL), 15);
    ::shutdown(fd.get(), SHUT_WR);
    AnswerReader reader(fd.get());
    serve_until(server, pong, [&] { return server.clients() == 0 && reader.done; });
    EXPECT_EQ(reader.text, "{\"pong\":true}\n");
}

// A client sending one byte every 50 ms for 5 s held the loop for ever with
// a per-read timeout, and 250 ms per request with one deadline for the
// blocking read: each serve() now returns at once, and the client is ended
// at its deadline (the bounds tell "returns" from "waits", not speed).
TEST(ControlServer, ATricklingClientNeverHoldsTheLoop)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    Fd fd = connect_raw(dir.run);
    std::atomic<bool> cut{false};
    std::thread trickle([&] {
        for (int i = 0; i < 100 && !cut; i++) {
            if (::send(fd.get(), "{", 1, MSG_NOSIGNAL) != 1)
                cut = true; // the server gave up on it: as it should
            std::this_thread::sleep_for(50ms);
        }
    });
    const auto start = Clock::now();
    bool handled = false;
    const double longest = serve_until(
        server,
        [&](const nlohmann::json&) {
            handled = true;
            return nlohmann::json::object();
        },
        [&] { return cut.load(); });
    const double took = seconds_since(start);
    trickle.join();
    EXPECT_FALSE(handled);
    EXPECT_LT(longest, 0.05) << "one serve() call took " << longest << " s";
    EXPECT_GT(took, 0.5) << "ended before its deadline";
    EXPECT_LT(took, 3.0) << "the trickling client was served " << took << " s";
}

// While one client trickles, others are answered at once.
TEST(ControlServer, OthersAreAnsweredWhileOneTrickles)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    Fd slow = connect_raw(dir.run);
    ASSERT_EQ(::send(slow.get(), "{\"cmd\"", 6, MSG_NOSIGNAL), 6);
    std::atomic<int> answered{0};
    double slowest = 0;
    std::thread clients([&] {
        for (int i = 0; i < 5; i++) {
            const auto start = Clock::now();
            EXPECT_EQ(control_request(dir.run, {{"cmd", "ping"}}), nlohmann::json({{"pong", true}}));
            slowest = std::max(slowest, seconds_since(start));
            answered++;
        }
    });
    serve_until(server, pong, [&] { return answered == 5; });
    clients.join();
    EXPECT_LT(slowest, 0.5);
    EXPECT_EQ(server.clients(), 1u) << "the trickling client is still there";
    // It finishes within its deadline: answered.
    ASSERT_EQ(::send(slow.get(), ": \"ping\"}\n", 10, MSG_NOSIGNAL), 10);
    AnswerReader reader(slow.get());
    serve_until(server, pong, [&] { return server.clients() == 0 && reader.done; });
    EXPECT_EQ(reader.text, "{\"pong\":true}\n");
}

TEST(ControlServer, ASilentClientIsToldWhyAtItsDeadline)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    Fd fd = connect_raw(dir.run);
    const auto start = Clock::now();
    serve_until(server, pong, [&] { return seconds_since(start) > 0.05 && server.clients() == 0; });
    EXPECT_LT(seconds_since(start), 3.0);
    EXPECT_GT(seconds_since(start), 0.5);
    EXPECT_NE(read_answer(fd.get()).find("no complete request"), std::string::npos);
}

// Silent clients take at most kMaxClients places; the others wait in the
// backlog (the listening socket is not polled meanwhile) and are served
// once places free up.
TEST(ControlServer, AtMostMaxClientsAtOnce)
{
    TempRunDir dir;
    ControlServer server(dir.run);
    std::vector<Fd> silent;
    for (size_t i = 0; i < ControlServer::kMaxClients + 2; i++)
        silent.push_back(connect_raw(dir.run));
    server.serve(pong);
    EXPECT_EQ(server.clients(), ControlServer::kMaxClients);
    std::vector<pollfd> fds;
    server.add_poll_fds(fds);
    EXPECT_EQ(fds.size(), ControlServer::kMaxClients) << "the listening socket is polled when full";
    // Past their deadline the first ones are ended and the waiting two served.
    const auto start = Clock::now();
    serve_until(server, pong, [&] { return server.clients() == 2; });
    EXPECT_GT(seconds_since(start), 0.5);
    for (size_t i = 0; i < ControlServer::kMaxClients; i++)
        EXPECT_NE(read_answer(silent[i].get()).find("no complete request"), std::string::npos) << i;
}

} // namespace
} // namespace peerlb
