// The versioned bucket table (userspace/agent/bucket_table.h).
#include <gtest/gtest.h>

#include "userspace/agent/bucket_table.h"

namespace peerlb {
namespace {

TEST(BucketTable, FreshTableIsAssignBuckets)
{
    const std::vector<TableNode> live = {{"s1", 100, false}, {"s2", 100, false}};
    const BucketTable t = next_for_membership({}, live, 64, 1000, 240000, "s1");
    EXPECT_EQ(t.version, 1u);
    const auto owner = assign_buckets({{"s1", 100}, {"s2", 100}}, 64);
    for (uint32_t b = 0; b < 64; b++)
        EXPECT_EQ(t.table[b].owner, owner[b]);
}

} // namespace
} // namespace peerlb
