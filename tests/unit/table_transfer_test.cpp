// A bucket table on the wire (userspace/agent/table_transfer.h): cut into
// chunks that each fit in a datagram, put together again in any order; a
// missing chunk keeps the table out, a re-send completes it.
#include "userspace/agent/table_transfer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "userspace/agent/bucket_table.h"
#include "userspace/dataplane/error.h"

namespace peerlb {
namespace {

using Bytes = std::vector<uint8_t>;
const Bytes kKey(32, 0x42);

Bytes table_bytes(size_t n, uint8_t seed = 1)
{
    Bytes b(n);
    for (size_t i = 0; i < n; i++)
        b[i] = static_cast<uint8_t>(i * 31 + seed);
    return b;
}

// As a receiver gets them: stamped, signed, sent, decoded.
std::vector<TableChunk> on_the_wire(const Bytes& table, uint64_t version, const std::string& author)
{
    std::vector<TableChunk> out;
    uint64_t seq = 0;
    for (TableChunk c : split_table(table, version, author)) {
        c.node_id = author;
        c.incarnation = 1;
        c.sequence = ++seq;
        c.sent_unix_ms = 1'700'000'000'000ULL;
        const Decoded<TableChunk> d = decode_table_chunk(encode_table_chunk(c, kKey), kKey);
        EXPECT_EQ(d.reason, DropReason::none);
        out.push_back(d.message);
    }
    return out;
}

TEST(TableTransfer, SplitsIntoChunksThatFitAndAgree)
{
    const Bytes table = table_bytes(3 * kTableChunkBytes + 100);
    const auto chunks = split_table(table, 7, "s1");
    ASSERT_EQ(chunks.size(), 4u);
    for (size_t i = 0; i < chunks.size(); i++) {
        EXPECT_EQ(chunks[i].index, i);
        EXPECT_EQ(chunks[i].count, 4u);
        EXPECT_EQ(chunks[i].total_len, table.size());
        EXPECT_EQ(chunks[i].version, 7u);
        EXPECT_EQ(chunks[i].author, "s1");
    }
    EXPECT_EQ(chunks.back().bytes.size(), 100u);
    EXPECT_EQ(split_table(table_bytes(kTableChunkBytes), 1, "s1").size(), 1u);
    EXPECT_THROW(split_table(Bytes{}, 1, "s1"), Error);
    EXPECT_THROW(split_table(Bytes(kMaxTableBytes + 1), 1, "s1"), Error);
}

TEST(TableTransfer, RoundTripInAnyOrder)
{
    const Bytes table = table_bytes(5 * kTableChunkBytes + 1);
    auto chunks = on_the_wire(table, 3, "s1");
    std::mt19937 rng(7);
    for (int round = 0; round < 5; round++) {
        std::shuffle(chunks.begin(), chunks.end(), rng);
        TableAssembler a(10'000);
        for (size_t i = 0; i < chunks.size(); i++) {
            auto whole = a.add(chunks[i], 1000);
            if (i + 1 < chunks.size()) {
                EXPECT_FALSE(whole) << "complete after " << i + 1 << " of " << chunks.size();
            } else {
                ASSERT_TRUE(whole);
                EXPECT_EQ(*whole, table);
            }
        }
        EXPECT_EQ(a.pending(), 0u);
    }
}

TEST(TableTransfer, AMissingChunkKeepsTheTableOutUntilAResendCompletesIt)
{
    const Bytes table = table_bytes(4 * kTableChunkBytes);
    const auto chunks = on_the_wire(table, 9, "s2");
    TableAssembler a(10'000);
    for (size_t i = 0; i < chunks.size(); i++) {
        if (i != 2) {
            EXPECT_FALSE(a.add(chunks[i], 1000));
        }
    }
    // Duplicates of what came complete nothing.
    EXPECT_FALSE(a.add(chunks[0], 1100));
    EXPECT_EQ(a.pending(), 1u);
    // The re-send: every chunk again; the one that was missing completes it.
    std::optional<Bytes> whole;
    for (const auto& c : chunks)
        if (auto w = a.add(c, 1500))
            whole = w;
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, table);
}

TEST(TableTransfer, TablesAreKeptApartByVersionAndAuthor)
{
    const Bytes t1 = table_bytes(2 * kTableChunkBytes, 1), t2 = table_bytes(2 * kTableChunkBytes, 2);
    const auto a_chunks = on_the_wire(t1, 5, "s1");
    const auto b_chunks = on_the_wire(t2, 5, "s2"); // same version, another author
    TableAssembler a(10'000);
    EXPECT_FALSE(a.add(a_chunks[0], 1));
    EXPECT_FALSE(a.add(b_chunks[1], 1));
    auto whole = a.add(b_chunks[0], 2);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, t2);
    whole = a.add(a_chunks[1], 3);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, t1);
}

TEST(TableTransfer, BoundedInTablesAndTime)
{
    TableAssembler a(1000);
    for (uint64_t v = 1; v <= TableAssembler::kMaxTables + 2; v++)
        a.add(on_the_wire(table_bytes(2 * kTableChunkBytes), v, "s1")[0], v);
    EXPECT_EQ(a.pending(), TableAssembler::kMaxTables);
    // The oldest were evicted: version 1's second chunk starts it afresh.
    EXPECT_FALSE(a.add(on_the_wire(table_bytes(2 * kTableChunkBytes), 1, "s1")[1], 10));
    // Past the timeout, whatever was started is forgotten.
    a.add(on_the_wire(table_bytes(2 * kTableChunkBytes), 99, "s1")[0], 5000);
    EXPECT_EQ(a.pending(), 1u);
    a.forget_unless([](uint64_t version, const std::string&) { return version > 99; });
    EXPECT_EQ(a.pending(), 0u);
}

TEST(TableTransfer, AChunkOfAnotherEncodingRestartsItsTable)
{
    // Same (version, author), another total length (a re-encoding): the
    // parts cannot be mixed.
    const auto first = on_the_wire(table_bytes(2 * kTableChunkBytes), 4, "s1");
    const auto second = on_the_wire(table_bytes(2 * kTableChunkBytes + 5), 4, "s1");
    TableAssembler a(10'000);
    EXPECT_FALSE(a.add(first[0], 1));
    EXPECT_FALSE(a.add(second[1], 2));
    EXPECT_FALSE(a.add(first[1], 3)) << "the first encoding's part was dropped";
}

} // namespace
} // namespace peerlb

namespace peerlb {
namespace {

// The largest cluster (LB_MAX_NODES = 1024 nodes) and bucket table (65 536
// buckets), after a node joined (chains in the table): the coordinator's
// table goes through the wire in chunks and comes out the same.
TEST(TableTransfer, TheLargestTableCrossesTheWire)
{
    std::vector<TableNode> live;
    for (int i = 0; i < 1023; i++)
        live.push_back({"node-" + std::to_string(1000 + i)});
    const uint64_t now = 1'000'000;
    BucketTable t = next_for_membership({}, live, 65536, now, 240'000, "node-1000");
    live.push_back({"node-9999"});
    t = next_for_membership(t, live, 65536, now + 1000, 240'000, "node-1000");
    ASSERT_EQ(t.nodes.size(), 1024u);
    const auto owned = t.owned();
    EXPECT_EQ(*std::min_element(owned.begin(), owned.end()), 64u);
    EXPECT_EQ(*std::max_element(owned.begin(), owned.end()), 64u);

    const Bytes encoded = encode_table(t, now + 1000);
    ASSERT_LE(encoded.size(), kMaxTableBytes);
    auto chunks = on_the_wire(encoded, t.version, t.author);
    std::shuffle(chunks.begin(), chunks.end(), std::mt19937(3));
    TableAssembler assembler(10'000);
    std::optional<Bytes> whole;
    for (const TableChunk& c : chunks) {
        ASSERT_FALSE(whole) << "complete before its last chunk";
        whole = assembler.add(c, now + 1000);
    }
    ASSERT_TRUE(whole);
    const auto back = decode_table(*whole, now + 1000);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, t);
    std::printf("1024 nodes, 65536 buckets: %zu bytes, %zu chunks\n", encoded.size(), chunks.size());
}

} // namespace
} // namespace peerlb
