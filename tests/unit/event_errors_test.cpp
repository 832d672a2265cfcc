// The agent's event boundary: what one event throws ends that event only,
// counted by kind and logged at most once per period.
#include <gtest/gtest.h>

#include <stdexcept>

#include "userspace/agent/event_errors.h"
#include "userspace/dataplane/error.h"

using namespace peerlb;

TEST(RunGuarded, ReturnsWhatWasThrownInsteadOfThrowing)
{
    std::optional<std::string> failed;
    EXPECT_NO_THROW(failed = run_guarded([] { throw Error("no free node slot for 10.0.0.9"); }));
    ASSERT_TRUE(failed);
    EXPECT_EQ(*failed, "no free node slot for 10.0.0.9");
    EXPECT_NO_THROW(failed = run_guarded([] { throw 42; }));
    EXPECT_TRUE(failed);
    bool ran = false;
    EXPECT_FALSE(run_guarded([&] { ran = true; }));
    EXPECT_TRUE(ran);
}

TEST(EventErrors, CountsEveryFailureAndLogsOncePerPeriodByKind)
{
    EventErrors errors(1000);
    uint64_t unlogged = 99;
    EXPECT_TRUE(errors.record("datagram", 10, &unlogged)); // the first is logged
    EXPECT_EQ(unlogged, 0u);
    EXPECT_FALSE(errors.record("datagram", 20, &unlogged));
    EXPECT_FALSE(errors.record("datagram", 1009, &unlogged));
    EXPECT_TRUE(errors.record("service address", 30, &unlogged)); // another kind: its own period
    EXPECT_TRUE(errors.record("datagram", 1010, &unlogged));
    EXPECT_EQ(unlogged, 2u); // the two in between
    const auto counts = errors.counts();
    EXPECT_EQ(counts.at("datagram"), 4u);
    EXPECT_EQ(counts.at("service address"), 1u);
}
