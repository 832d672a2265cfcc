// The agent's control socket: served on the event loop, so no client may
// hold it (a request gets a deadline in all, however its bytes trickle in).
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

#include "userspace/agent/control.h"
#include "userspace/dataplane/fd.h"

namespace peerlb {
namespace {

using Clock = std::chrono::steady_clock;

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

// As the agent's loop does: serve once a client is waiting.
void serve_when_ready(ControlServer& server, const ControlServer::Handler& handler)
{
    pollfd p{server.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no client came";
    server.serve_one(handler);
}

double seconds_since(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(ControlServer, AnswersARequest)
{
    TempRunDir dir;
    const std::string& run_dir = dir.run;
    ControlServer server(run_dir);
    std::thread client([&] {
        const nlohmann::json reply = control_request(run_dir, {{"cmd", "ping"}});
        EXPECT_EQ(reply, nlohmann::json({{"pong", true}}));
    });
    serve_when_ready(server, [](const nlohmann::json& req) {
        EXPECT_EQ(req["cmd"], "ping");
        return nlohmann::json({{"pong", true}});
    });
    client.join();
}

// A client sending one byte every 50 ms for 5 s would have held the loop
// for ever with a per-read timeout; the request's deadline ends it. (The
// bound checked is generous: it tells "returns" from "hangs", not speed.)
TEST(ControlServer, ATricklingClientCannotHoldTheLoop)
{
    TempRunDir dir;
    const std::string& run_dir = dir.run;
    ControlServer server(run_dir);
    Fd fd = connect_raw(run_dir);
    std::atomic<bool> stop{false};
    std::thread trickle([&] {
        for (int i = 0; i < 100 && !stop; i++) {
            if (::send(fd.get(), "{", 1, MSG_NOSIGNAL) != 1)
                return; // the server gave up on it: as it should
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });
    const auto start = Clock::now();
    bool handled = false;
    serve_when_ready(server, [&](const nlohmann::json&) {
        handled = true;
        return nlohmann::json::object();
    });
    const double took = seconds_since(start);
    stop = true;
    trickle.join();
    EXPECT_FALSE(handled);
    EXPECT_LT(took, 2.0) << "serve_one waited " << took << " s on a trickling client";
}

TEST(ControlServer, ASilentClientCannotHoldTheLoop)
{
    TempRunDir dir;
    const std::string& run_dir = dir.run;
    ControlServer server(run_dir);
    Fd fd = connect_raw(run_dir);
    const auto start = Clock::now();
    serve_when_ready(server, [](const nlohmann::json&) { return nlohmann::json::object(); });
    EXPECT_LT(seconds_since(start), 2.0);
    // It was told why.
    char buf[256] = {};
    ::recv(fd.get(), buf, sizeof(buf) - 1, 0);
    EXPECT_NE(std::string(buf).find("no complete request"), std::string::npos) << buf;
}

} // namespace
} // namespace peerlb
