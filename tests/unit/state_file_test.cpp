// What the agent keeps in its state directory besides the incarnation: the
// drain flag, set by `peerlb drain` and kept across restarts.
#include "userspace/agent/state_file.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "userspace/dataplane/error.h"

namespace peerlb {
namespace {

class StateFileTest : public testing::Test {
protected:
    void SetUp() override
    {
        std::string pattern = testing::TempDir() + "peerlb_state_XXXXXX";
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        root_ = pattern;
        dir_ = root_ + "/state";
    }
    void TearDown() override { std::filesystem::remove_all(root_); }
    std::string root_, dir_;
};

TEST_F(StateFileTest, DrainFlagSetKeptAndCleared)
{
    EXPECT_FALSE(read_drain_flag(dir_)) << "no state directory yet: not draining";
    write_drain_flag(dir_, true);
    EXPECT_TRUE(std::filesystem::exists(dir_ + "/draining"));
    EXPECT_TRUE(read_drain_flag(dir_));
    write_drain_flag(dir_, true); // again: still set
    EXPECT_TRUE(read_drain_flag(dir_));
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/draining.tmp"));
    write_drain_flag(dir_, false);
    EXPECT_FALSE(read_drain_flag(dir_));
    write_drain_flag(dir_, false); // clearing what is clear is no error
    EXPECT_FALSE(read_drain_flag(dir_));
}

TEST_F(StateFileTest, StateFileIsReplacedWhole)
{
    std::filesystem::create_directories(dir_);
    const std::string path = dir_ + "/f";
    write_state_file(dir_, path, "one\n", "f");
    write_state_file(dir_, path, "two\n", "f");
    std::ifstream in(path);
    std::string text;
    std::getline(in, text);
    EXPECT_EQ(text, "two");
}

TEST_F(StateFileTest, AStateDirectoryThatIsAFileIsAnErrorNamingIt)
{
    std::filesystem::create_directories(root_);
    const std::string file = root_ + "/not-a-dir";
    std::ofstream(file) << "x";
    for (bool draining : {true, false}) {
        try {
            write_drain_flag(file, draining);
            if (draining)
                ADD_FAILURE() << "no error";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
        }
    }
}

} // namespace
} // namespace peerlb
