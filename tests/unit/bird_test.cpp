// The BIRD control socket client (userspace/agent/bird.h) against a fake
// BIRD that speaks the control protocol as BIRD 2.0.12 does.
#include "../../userspace/agent/bird.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

using peerlb::BirdAnnouncer;
using peerlb::BirdControl;
using peerlb::parse_bird_reply;

namespace {

TEST(BirdReply, EnableDisableAndErrors)
{
    EXPECT_FALSE(parse_bird_reply(""));
    EXPECT_FALSE(parse_bird_reply("0011-peerlb: enabled\n"));     // its last line is still to come
    EXPECT_FALSE(parse_bird_reply("0011-peerlb: enabled\n0000 ")); // the last line not ended
    auto r = parse_bird_reply("0011-peerlb: enabled\n0000 \n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 11);
    EXPECT_EQ(r->text, "peerlb: enabled");
    EXPECT_FALSE(r->error);
    r = parse_bird_reply("0001 BIRD 2.0.12 ready.\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 1);
    r = parse_bird_reply("9001 syntax error, unexpected CF_SYM_UNDEFINED\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 9001);
    EXPECT_TRUE(r->error);
    // Table rows (1xxx, 2xxx) and " text" continuations do not tell the outcome.
    r = parse_bird_reply("2002-Name Proto\n1002-peerlb Static master4 up\n more\n0000 \n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, 0);
}

// A fake BIRD on a unix socket: greets, then answers enable/disable of the
// protocols it knows by their state; `silent` never answers a command.
class FakeBird {
public:
    explicit FakeBird(bool silent = false) : silent_(silent)
    {
        path_ = testing::TempDir() + "peerlb_bird_test_" + std::to_string(getpid()) + "_" +
                std::to_string(counter_++) + ".ctl";
        unlink(path_.c_str());
        listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
        EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
        EXPECT_EQ(listen(listener_, 8), 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeBird()
    {
        stop_ = true;
        shutdown(listener_, SHUT_RDWR);
        thread_.join();
        close(listener_);
        unlink(path_.c_str());
    }
    const std::string& path() const { return path_; }
    bool enabled() const { return enabled_; }
    int commands() const { return commands_; }
    void restart() { enabled_ = false; } // BIRD reread its configuration: disabled again

private:
    void serve()
    {
        while (!stop_) {
            const int c = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0)
                return;
            const std::string hello = "0001 BIRD 2.0.12 ready.\n";
            (void)!write(c, hello.data(), hello.size());
            char buf[256];
            const ssize_t n = read(c, buf, sizeof(buf));
            if (n > 0 && !silent_) {
                commands_++;
                const std::string cmd(buf, size_t(n));
                std::string out;
                if (cmd == "enable peerlb\n")
                    out = enabled_.exchange(true) ? "0010-peerlb: already enabled\n0000 \n"
                                                  : "0011-peerlb: enabled\n0000 \n";
                else if (cmd == "disable peerlb\n")
                    out = enabled_.exchange(false) ? "0009-peerlb: disabled\n0000 \n"
                                                   : "0008-peerlb: already disabled\n0000 \n";
                else
                    out = "9001 syntax error, unexpected CF_SYM_UNDEFINED\n";
                (void)!write(c, out.data(), out.size());
            } else if (silent_) {
                usleep(300 * 1000);
            }
            close(c);
        }
    }

    static inline int counter_ = 0;
    bool silent_;
    std::string path_;
    int listener_ = -1;
    std::thread thread_;
    std::atomic<bool> stop_{false}, enabled_{false};
    std::atomic<int> commands_{0};
};

TEST(BirdControl, EnablesAndDisablesTheProtocol)
{
    FakeBird bird;
    BirdControl control(bird.path(), "peerlb");
    auto r = control.set_announced(true);
    EXPECT_EQ(r.outcome, BirdControl::Outcome::changed) << r.message;
    EXPECT_TRUE(bird.enabled());
    EXPECT_EQ(control.set_announced(true).outcome, BirdControl::Outcome::unchanged);
    r = control.set_announced(false);
    EXPECT_EQ(r.outcome, BirdControl::Outcome::changed) << r.message;
    EXPECT_FALSE(bird.enabled());
    EXPECT_EQ(control.set_announced(false).outcome, BirdControl::Outcome::unchanged);
}

TEST(BirdControl, FailuresSayWhy)
{
    FakeBird bird;
    auto r = BirdControl(bird.path(), "other").set_announced(true);
    EXPECT_EQ(r.outcome, BirdControl::Outcome::failed);
    EXPECT_NE(r.message.find("is protocol other in its configuration?"), std::string::npos)
        << r.message;

    r = BirdControl(bird.path() + ".absent", "peerlb").set_announced(true);
    EXPECT_EQ(r.outcome, BirdControl::Outcome::failed);
    EXPECT_NE(r.message.find("connect to BIRD at"), std::string::npos) << r.message;

    FakeBird silent(true);
    r = BirdControl(silent.path(), "peerlb", std::chrono::milliseconds(100)).set_announced(true);
    EXPECT_EQ(r.outcome, BirdControl::Outcome::failed);
    EXPECT_EQ(r.message, "no answer in time");
}

TEST(BirdAnnouncer, TellsAtChangesAndReassertsAfterARestart)
{
    FakeBird bird;
    BirdAnnouncer a(BirdControl(bird.path(), "peerlb"), std::chrono::seconds(5),
                    std::chrono::seconds(1));
    ASSERT_TRUE(a.update(true, 1000));
    EXPECT_EQ(a.announced(), true);
    EXPECT_FALSE(a.update(true, 2000)); // nothing new, not time to reassert
    bird.restart();
    EXPECT_FALSE(bird.enabled());
    auto r = a.update(true, 6000); // reasserted: BIRD's restart is undone
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, BirdControl::Outcome::changed);
    EXPECT_TRUE(bird.enabled());
    ASSERT_TRUE(a.update(false, 6001)); // a change goes at once
    EXPECT_FALSE(bird.enabled());
    EXPECT_EQ(a.announced(), false);
}

TEST(BirdAnnouncer, RetriesSoonerAfterAFailure)
{
    FakeBird bird;
    BirdAnnouncer a(BirdControl(bird.path() + ".absent", "peerlb"), std::chrono::seconds(5),
                    std::chrono::seconds(1));
    auto r = a.update(true, 1000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, BirdControl::Outcome::failed);
    EXPECT_FALSE(a.announced());
    EXPECT_FALSE(a.update(true, 1500));
    EXPECT_TRUE(a.update(true, 2000)); // one retry period later, not the reassert one
}

} // namespace
