// The persisted incarnation counter (userspace/agent/incarnation.h): it
// grows by one at every start whatever the wall clock says, and a file it
// cannot trust stops the start with a message naming it.
#include "userspace/agent/incarnation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "userspace/dataplane/error.h"

namespace peerlb {
namespace {

using testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class IncarnationTest : public testing::Test {
protected:
    void SetUp() override
    {
        std::string pattern = testing::TempDir() + "peerlb_incarnation_XXXXXX";
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        root_ = pattern;
        dir_ = root_ + "/state";
    }
    void TearDown() override { std::filesystem::remove_all(root_); }

    std::string file() const { return dir_ + "/incarnation"; }
    void write(const std::string& content) const
    {
        std::filesystem::create_directories(dir_);
        std::ofstream(file(), std::ios::binary) << content;
    }
    std::string read() const
    {
        std::ifstream f(file(), std::ios::binary);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }
    // The message next_incarnation refuses with, or "no error".
    std::string error_of() const
    {
        try {
            next_incarnation(dir_);
        } catch (const Error& e) {
            return e.what();
        }
        return "no error";
    }

    std::string root_, dir_;
};

TEST_F(IncarnationTest, StartsAtOneThenGrowsByOneAtEveryStart)
{
    EXPECT_EQ(next_incarnation(dir_), 1u); // the directory is created too
    EXPECT_EQ(read(), "1\n");
    EXPECT_EQ(next_incarnation(dir_), 2u);
    EXPECT_EQ(read(), "2\n");
    EXPECT_EQ(next_incarnation(dir_), 3u);
    EXPECT_FALSE(std::filesystem::exists(file() + ".tmp"));
    EXPECT_EQ(incarnation_path(dir_), file());
}

TEST_F(IncarnationTest, ContinuesFromWhatTheFileHolds)
{
    write("41\n");
    EXPECT_EQ(next_incarnation(dir_), 42u);
    write("7"); // written by hand, no newline
    EXPECT_EQ(next_incarnation(dir_), 8u);
    write("18446744073709551614\n"); // UINT64_MAX - 1
    EXPECT_EQ(next_incarnation(dir_), UINT64_MAX);
}

TEST_F(IncarnationTest, CorruptFileIsAnErrorNamingItAndStaysAsItWas)
{
    const std::vector<std::string> corrupt = {
        "", "\n", "abc\n", "12x\n", "-1\n", "+5\n", " 5\n", "5 \n", "5\n\n", "0x10\n",
        "18446744073709551616\n" /* over 64 bits */, "99999999999999999999999999\n",
        "18446744073709551615\n" /* no successor */, std::string("4\0", 2)};
    for (const std::string& bad : corrupt) {
        SCOPED_TRACE(bad);
        write(bad);
        const std::string error = error_of();
        EXPECT_THAT(error, HasSubstr("incarnation file " + file() + ": "));
        EXPECT_EQ(read(), bad);
    }
    write("5\n\x01\x02");
    EXPECT_THAT(error_of(), HasSubstr("\"5???\" is not a decimal number"));
}

TEST_F(IncarnationTest, UnreadableOrUnwritableIsAnErrorNamingThePath)
{
    // A directory where the file should be: it cannot be read.
    std::filesystem::create_directories(file());
    EXPECT_THAT(error_of(), HasSubstr("incarnation file " + file() + ": cannot read it"));
    std::filesystem::remove(file());

    // The temporary file cannot be created: the old file stays.
    write("9\n");
    std::filesystem::create_directories(file() + ".tmp");
    EXPECT_THAT(error_of(), HasSubstr("incarnation file " + file() + ": cannot write it"));
    EXPECT_EQ(read(), "9\n");
    std::filesystem::remove(file() + ".tmp");
    EXPECT_EQ(next_incarnation(dir_), 10u);
}

TEST_F(IncarnationTest, StateDirThatIsNotADirectory)
{
    std::ofstream(dir_) << "a file";
    EXPECT_THAT(error_of(), HasSubstr("state directory " + dir_));
    EXPECT_THROW(next_incarnation(""), Error);
}

} // namespace
} // namespace peerlb
