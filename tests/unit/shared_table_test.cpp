// The bucket table manager of shared addresses (userspace/agent/
// shared_table.h): who makes tables and when, how they travel (chunks,
// loss, catch-up), which one a node applies, and what it writes in its
// data plane. Nodes here are managers wired to fakes: chunks go where a
// test delivers them, lb_buckets is a vector.
#include "userspace/agent/shared_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace peerlb {
namespace {

constexpr uint32_t kBuckets = 100;
constexpr uint64_t kPeriod = 500;
constexpr uint64_t kSettle = 1500; // dead_after 3 x 500 ms
constexpr uint64_t kDaisy = 60'000;

SharedSettings settings(const std::string& id, uint32_t buckets = kBuckets)
{
    SharedSettings s;
    s.self_id = id;
    s.buckets = buckets;
    s.hash = LB_SHARED_HASH_ADDRESS;
    s.delivery = LB_DELIVERY_ECMP;
    s.daisy_chain_ms = kDaisy;
    s.period_ms = kPeriod;
    s.settle_ms = kSettle;
    s.t1_bp = 5000;
    s.t2_bp = 2000;
    return s;
}

// One node: its manager, its data plane, what it sent.
struct Node {
    std::string id;
    std::map<std::string, uint32_t> slots; // what this node's node table knows
    std::vector<lb_bucket> lb_buckets;
    uint32_t full_writes = 0, entry_writes = 0;
    uint32_t shared_buckets = 0, hash = 99, delivery = 99;
    std::vector<TableChunk> outbox;
    uint64_t sequence = 0;
    uint32_t load_bp = 0;
    std::unique_ptr<SharedTable> table;

    SharedNode view(uint64_t heard_ms) const
    {
        SharedNode n;
        n.id = id;
        n.draining = table->draining();
        n.load_bp = load_bp;
        n.table_version = table->applied().version;
        n.heard_ms = heard_ms;
        return n;
    }
};

std::unique_ptr<Node> node(const std::string& id, uint64_t started_ms, uint32_t buckets = kBuckets)
{
    auto n = std::make_unique<Node>();
    n->id = id;
    // Every node knows every other in a slot of its own numbering.
    for (const char* other : {"a", "b", "c", "d", "e"})
        n->slots[other] = uint32_t(other[0] - 'a') + 10;
    n->slots[id] = 3; // its own slot
    Node* self = n.get();
    n->table = std::make_unique<SharedTable>(
        settings(id, buckets),
        SharedTable::Dataplane{
            .slot_of = [self](const std::string& i) -> std::optional<uint32_t> {
                auto it = self->slots.find(i);
                if (it == self->slots.end())
                    return std::nullopt;
                return it->second;
            },
            .write_buckets =
                [self](const std::vector<lb_bucket>& t) {
                    self->lb_buckets = t;
                    self->full_writes++;
                },
            .write_bucket =
                [self](uint32_t i, const lb_bucket& b) {
                    self->lb_buckets.at(i) = b;
                    self->entry_writes++;
                },
            .write_config =
                [self](uint32_t buckets, uint32_t hash, uint32_t delivery) {
                    self->shared_buckets = buckets;
                    self->hash = hash;
                    self->delivery = delivery;
                }},
        [self](TableChunk& c) {
            c.node_id = self->id;
            c.incarnation = 1;
            c.sequence = ++self->sequence;
            c.sent_unix_ms = 1'700'000'000'000ULL;
            self->outbox.push_back(c);
            return 0;
        },
        started_ms);
    return n;
}

// A cluster whose members all hear each other (unless told otherwise).
struct Cluster {
    std::map<std::string, std::unique_ptr<Node>> nodes;
    std::set<std::string> down; // not in anyone's live set

    Node& add(const std::string& id, uint64_t started_ms, uint32_t buckets = kBuckets)
    {
        return *(nodes[id] = node(id, started_ms, buckets));
    }
    Node& operator[](const std::string& id) { return *nodes.at(id); }

    std::vector<SharedNode> peers_of(const std::string& id, uint64_t now_ms) const
    {
        std::vector<SharedNode> out;
        for (const auto& [other, n] : nodes)
            if (other != id && !down.count(other))
                out.push_back(n->view(now_ms));
        return out;
    }
    void tick(const std::string& id, uint64_t now_ms)
    {
        Node& n = *nodes.at(id);
        n.table->tick(now_ms, n.view(now_ms), peers_of(id, now_ms));
    }
    void tick_all(uint64_t now_ms)
    {
        for (const auto& [id, n] : nodes)
            if (!down.count(id))
                tick(id, now_ms);
    }
    // Every chunk sent so far reaches every other live node (all but those
    // `lost` says), then the outboxes are empty.
    template <class Lost>
    void deliver(uint64_t now_ms, Lost lost)
    {
        for (const auto& [from, n] : nodes) {
            for (const TableChunk& c : n->outbox)
                for (const auto& [to, m] : nodes)
                    if (to != from && !down.count(to) && !lost(to, c))
                        m->table->take(c, now_ms);
            n->outbox.clear();
        }
    }
    void deliver(uint64_t now_ms)
    {
        deliver(now_ms, [](const std::string&, const TableChunk&) { return false; });
    }
    // Ticks and delivers every period from `from` to `to` (inclusive).
    void run(uint64_t from, uint64_t to)
    {
        for (uint64_t t = from; t <= to; t += kPeriod) {
            tick_all(t);
            deliver(t);
        }
    }
};

uint32_t owned_by(const BucketTable& t, const std::string& id)
{
    const uint16_t i = t.index_of(id);
    return i == kNoNode ? 0 : t.owned()[i];
}

// The table a node sent (its outbox put together and decoded).
std::optional<BucketTable> sent_table(const Node& n, uint64_t now_ms)
{
    TableAssembler a(UINT64_MAX);
    for (const TableChunk& c : n.outbox)
        if (auto whole = a.add(c, now_ms))
            return decode_table(*whole, now_ms);
    return std::nullopt;
}

// A table made by hand: `owners` by bucket (an id, or "" for none).
BucketTable hand_table(uint64_t version, const std::string& author, const std::vector<std::string>& ids,
                       const std::vector<std::string>& owners)
{
    BucketTable t;
    t.version = version;
    t.author = author;
    t.buckets = uint32_t(owners.size());
    for (const auto& id : ids)
        t.nodes.push_back(TableNode{id, 100, false});
    for (const auto& o : owners) {
        TableBucket b;
        b.owner = o.empty() ? kNoNode : t.index_of(o);
        t.table.push_back(b);
    }
    return t;
}

std::vector<TableChunk> chunks_of(const BucketTable& t, uint64_t now_ms, const std::string& sender)
{
    auto chunks = split_table(encode_table(t, now_ms), t.version, t.author);
    for (auto& c : chunks)
        c.node_id = sender;
    return chunks;
}

void take_all(Node& n, const std::vector<TableChunk>& chunks, uint64_t now_ms)
{
    for (const auto& c : chunks)
        n.table->take(c, now_ms);
}

// --- who makes tables, and when ---------------------------------------------

TEST(SharedTable, TheLowestIdMakesTheFirstTableOnceSettled)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    for (uint64_t t = 0; t < kSettle; t += kPeriod) {
        c.tick_all(t);
        EXPECT_TRUE(c["a"].outbox.empty()) << "at " << t << " ms: membership has not settled";
    }
    EXPECT_EQ(c["a"].shared_buckets, 0u) << "no table: the data plane drops shared packets";
    c.tick_all(kSettle);
    EXPECT_TRUE(c["b"].outbox.empty()) << "b is not the coordinator";
    ASSERT_FALSE(c["a"].outbox.empty());
    EXPECT_EQ(c["a"].table->coordinator(), "a");
    EXPECT_EQ(c["b"].table->coordinator(), "a");
    const BucketTable& made = c["a"].table->applied();
    EXPECT_EQ(made.version, 1u);
    EXPECT_EQ(made.author, "a");
    EXPECT_EQ(made.buckets, kBuckets);
    EXPECT_EQ(owned_by(made, "a") + owned_by(made, "b"), kBuckets);
    EXPECT_NEAR(owned_by(made, "a"), kBuckets / 2, 3);
    // Applied here as it was sent.
    EXPECT_EQ(c["a"].shared_buckets, kBuckets);
    EXPECT_EQ(c["a"].hash, uint32_t(LB_SHARED_HASH_ADDRESS));
    EXPECT_EQ(c["a"].delivery, uint32_t(LB_DELIVERY_ECMP));
    c.deliver(kSettle);
    EXPECT_EQ(c["b"].table->applied().version, 1u);
    EXPECT_EQ(c["b"].table->applied().author, "a");
    EXPECT_EQ(c["b"].shared_buckets, kBuckets);
    EXPECT_EQ(c["b"].lb_buckets.size(), kBuckets);
    // Nothing changes: no new version, nothing sent.
    c.run(kSettle + kPeriod, kSettle + 4 * kPeriod);
    EXPECT_EQ(c["a"].table->applied().version, 1u);
    EXPECT_EQ(c["a"].table->stats().tables_made, 1u);
}

TEST(SharedTable, ARestartingCoordinatorTakesTheRunningTableBeforeMakingOne)
{
    Cluster c;
    c.add("b", 0);
    c.add("c", 0);
    c.run(0, 2 * kSettle);
    ASSERT_EQ(c["c"].table->applied().version, 1u);
    ASSERT_EQ(c["b"].table->applied().author, "b");

    // a (the lowest id) starts: it is the coordinator at once, but listens.
    const uint64_t start = 10'000;
    c.add("a", start);
    c.tick("a", start);
    EXPECT_TRUE(c["a"].outbox.empty()) << "a restarting node never makes a table before it settled";
    // b, the lowest of the others with the newest table, catches a up.
    c.tick("b", start + kPeriod);
    c.tick("c", start + kPeriod);
    EXPECT_FALSE(c["b"].outbox.empty());
    EXPECT_TRUE(c["c"].outbox.empty()) << "one helper, not every node";
    EXPECT_EQ(c["b"].table->stats().chunks_resent, c["b"].outbox.size());
    c.deliver(start + kPeriod);
    EXPECT_EQ(c["a"].table->applied().version, 1u);
    EXPECT_EQ(c["a"].table->applied().author, "b");
    // Having the running table, a makes the next one over it, for all three.
    c.tick("a", start + 2 * kPeriod);
    const auto next = sent_table(c["a"], start + 2 * kPeriod);
    ASSERT_TRUE(next);
    EXPECT_EQ(next->version, 2u);
    EXPECT_EQ(next->author, "a");
    EXPECT_EQ(next->nodes.size(), 3u);
    EXPECT_GT(owned_by(*next, "a"), 0u);
    EXPECT_GT(owned_by(*next, "c"), 0u);
}

TEST(SharedTable, ACoordinatorBehindItsPeersWaitsThenMakesAVersionAboveTheirs)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    // b shows version 7, but its table never reaches a (lost every time).
    take_all(c["b"], chunks_of(hand_table(7, "z", {"b"}, std::vector<std::string>(kBuckets, "b")), 0, "z"), 0);
    ASSERT_EQ(c["b"].table->applied().version, 7u);
    // Settled at 1500 ms, a waits as long again for b's table.
    for (uint64_t t = 0; t < 2 * kSettle; t += kPeriod) {
        c.tick_all(t);
        c.deliver(t, [](const std::string& to, const TableChunk&) { return to == "a"; });
        EXPECT_EQ(c["a"].table->applied().version, 0u) << "at " << t << ": a waits for the newer table";
    }
    c.tick_all(2 * kSettle);
    EXPECT_EQ(c["a"].table->applied().version, 8u) << "above every version a peer showed";
    c.deliver(2 * kSettle);
    EXPECT_EQ(c["b"].table->applied().version, 8u);
    EXPECT_EQ(c["b"].table->applied().author, "a");
}

TEST(SharedTable, TheNextLowestIdTakesOverWithTheTableItApplied)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    c.add("c", 0);
    c.run(0, kSettle);
    ASSERT_EQ(c["c"].table->applied().version, 1u);
    c.down.insert("a"); // membership calls it dead
    c.run(kSettle + kPeriod, kSettle + 2 * kPeriod);
    const BucketTable& t = c["b"].table->applied();
    EXPECT_EQ(t.version, 2u);
    EXPECT_EQ(t.author, "b");
    EXPECT_EQ(owned_by(t, "a"), 0u) << "a dead node's buckets go to the living";
    EXPECT_EQ(owned_by(t, "b") + owned_by(t, "c"), kBuckets);
    EXPECT_EQ(c["c"].table->applied().version, 2u);
    EXPECT_EQ(c["b"].table->coordinator(), "b");
}

// --- which table a node applies ---------------------------------------------

TEST(SharedTable, AppliesVersionsInOrderTiesByAuthorAndIgnoresStaleOnes)
{
    auto n = node("x", 0);
    const std::vector<std::string> ids = {"a", "m", "x", "z"};
    auto table = [&](uint64_t v, const std::string& author, const std::string& owner) {
        return chunks_of(hand_table(v, author, ids, std::vector<std::string>(kBuckets, owner)), 0, author);
    };
    take_all(*n, table(2, "m", "m"), 0);
    EXPECT_EQ(n->table->applied().version, 2u);
    take_all(*n, table(1, "a", "a"), 0);
    EXPECT_EQ(n->table->applied().author, "m") << "an older version is ignored";
    take_all(*n, table(2, "z", "z"), 0);
    EXPECT_EQ(n->table->applied().author, "m") << "the same version from a higher id is ignored";
    take_all(*n, table(2, "a", "a"), 0);
    EXPECT_EQ(n->table->applied().author, "a") << "the same version from a lower id wins";
    EXPECT_EQ(n->lb_buckets[0].owner, 10u) << "a's slot here";
    take_all(*n, table(3, "z", "x"), 0);
    EXPECT_EQ(n->table->applied().version, 3u);
    EXPECT_EQ(n->lb_buckets[0].owner, 3u) << "this node's own slot";
    EXPECT_EQ(n->table->owned_here(), kBuckets);
    EXPECT_EQ(n->table->stats().tables_applied, 3u);
    // A chunk of what is applied is not even kept.
    const uint64_t taken = n->table->stats().chunks_taken;
    take_all(*n, table(3, "z", "x"), 0);
    EXPECT_EQ(n->table->stats().chunks_taken, taken);
}

TEST(SharedTable, ATableForAnotherBucketCountIsRefused)
{
    auto n = node("x", 0);
    take_all(*n, chunks_of(hand_table(4, "a", {"a"}, std::vector<std::string>(kBuckets / 2, "a")), 0, "a"), 0);
    EXPECT_TRUE(n->table->applied().empty());
    EXPECT_EQ(n->table->stats().tables_refused, 1u);
    EXPECT_EQ(n->full_writes, 0u);
    EXPECT_EQ(n->shared_buckets, 0u);
}

// --- chunks lost, and catching up -------------------------------------------

TEST(SharedTable, AMissingChunkKeepsTheTableOutUntilTheCoordinatorSendsItAgain)
{
    const uint32_t buckets = 4096; // a table of several chunks
    Cluster c;
    c.add("a", 0, buckets);
    c.add("b", 0, buckets);
    for (uint64_t t = 0; t < kSettle; t += kPeriod)
        c.tick_all(t);
    c.tick_all(kSettle);
    ASSERT_GE(c["a"].outbox.size(), 2u) << "the test needs a table of several chunks";
    const size_t chunks = c["a"].outbox.size();
    c.deliver(kSettle, [](const std::string&, const TableChunk& ch) { return ch.index == 1; });
    EXPECT_TRUE(c["b"].table->applied().empty()) << "a table missing a chunk is not applied";
    EXPECT_EQ(c["b"].shared_buckets, 0u);

    // b's next heartbeat (sent after the table) still shows no table: the
    // coordinator sends it again, once for the period.
    const uint64_t next = kSettle + kPeriod;
    const std::vector<SharedNode> peers = {c["b"].view(next)};
    c["a"].table->tick(next, c["a"].view(next), peers);
    c["a"].table->tick(next + kPeriod / 3, c["a"].view(next), peers);
    EXPECT_EQ(c["a"].outbox.size(), chunks) << "once per period";
    EXPECT_EQ(c["a"].table->stats().chunks_resent, chunks);
    c.deliver(next);
    EXPECT_EQ(c["b"].table->applied().version, 1u);
    EXPECT_EQ(c["b"].lb_buckets.size(), buckets);
}

TEST(SharedTable, CatchUpIsTriggeredOnlyByHeartbeatsSentAfterTheTable)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    for (uint64_t t = 0; t <= kSettle; t += kPeriod)
        c.tick_all(t);
    c["a"].outbox.clear(); // lost, all of it
    // A heartbeat b sent before the table could reach it: no re-send.
    SharedNode old = c["b"].view(kSettle + 10);
    c["a"].table->tick(kSettle + kPeriod, c["a"].view(kSettle + kPeriod), {old});
    EXPECT_TRUE(c["a"].outbox.empty());
    // One heard later that still shows another version: re-sent.
    SharedNode later = c["b"].view(kSettle + kPeriod + 1);
    c["a"].table->tick(kSettle + 2 * kPeriod, c["a"].view(kSettle + 2 * kPeriod), {later});
    EXPECT_FALSE(c["a"].outbox.empty());
    c.deliver(kSettle + 2 * kPeriod);
    EXPECT_EQ(c["b"].table->applied().version, 1u);
    // Once b shows it, nothing more is sent.
    c.run(kSettle + 3 * kPeriod, kSettle + 6 * kPeriod);
    EXPECT_EQ(c["a"].table->stats().chunks_resent, c["a"].table->stats().chunks_sent / 2);
}

// --- drain, load -------------------------------------------------------------

TEST(SharedTable, ADrainingNodeLosesEveryBucketAndGetsItsShareBackOnUndo)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    c.add("c", 0);
    c.run(0, kSettle);
    const uint32_t share = owned_by(c["a"].table->applied(), "c");
    ASSERT_NEAR(share, kBuckets / 3, 3);

    c["c"].table->set_draining(true);
    c.run(kSettle + kPeriod, kSettle + kPeriod);
    const BucketTable& drained = c["a"].table->applied();
    EXPECT_EQ(drained.version, 2u);
    EXPECT_EQ(owned_by(drained, "c"), 0u);
    EXPECT_EQ(owned_by(drained, "a") + owned_by(drained, "b"), kBuckets);
    EXPECT_GE(c["a"].table->stats().moves.drain, share);
    EXPECT_EQ(c["c"].table->owned_here(), 0u);
    // The chains carry c's open connections: its moved buckets keep it as
    // their previous owner.
    size_t chained = 0;
    for (const TableBucket& b : drained.table)
        chained += b.prev[0] == drained.index_of("c");
    EXPECT_EQ(chained, share);

    c["c"].table->set_draining(false);
    c.run(kSettle + 2 * kPeriod, kSettle + 2 * kPeriod);
    const BucketTable& back = c["a"].table->applied();
    EXPECT_EQ(back.version, 3u);
    EXPECT_NEAR(owned_by(back, "c"), kBuckets / 3, 3);
}

TEST(SharedTable, TheCoordinatorDrainsItselfToo)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    c["a"].table->set_draining(true);
    c.run(0, kSettle);
    EXPECT_EQ(owned_by(c["b"].table->applied(), "a"), 0u);
    EXPECT_EQ(owned_by(c["b"].table->applied(), "b"), kBuckets);
    EXPECT_FALSE(c["a"].table->announce_wanted()) << "a draining node withdraws its routes";
    EXPECT_TRUE(c["b"].table->announce_wanted());
}

TEST(SharedTable, LoadMovesBucketsFromAHotNodeToACoolOne)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    c.run(0, kSettle);
    const uint32_t before = owned_by(c["a"].table->applied(), "b");
    c["b"].load_bp = 9000;
    c["a"].load_bp = 1000;
    c.run(kSettle + kPeriod, kSettle + kPeriod);
    const BucketTable& t = c["a"].table->applied();
    EXPECT_EQ(t.version, 2u);
    EXPECT_LT(owned_by(t, "b"), before);
    // At most 2 % of the buckets per period.
    EXPECT_LE(before - owned_by(t, "b"), std::max<uint32_t>(1, kBuckets * 2 / 100));
    EXPECT_GT(c["a"].table->stats().moves.load, 0u);
}

TEST(SharedTable, AnnounceWantedNeedsATableHealthAndNoDrainOrStop)
{
    auto n = node("a", 0);
    EXPECT_FALSE(n->table->announce_wanted()) << "no table yet";
    take_all(*n, chunks_of(hand_table(1, "a", {"a"}, std::vector<std::string>(kBuckets, "a")), 0, "b"), 0);
    EXPECT_TRUE(n->table->announce_wanted());
    n->table->set_healthy(false);
    EXPECT_FALSE(n->table->announce_wanted());
    n->table->set_healthy(true);
    n->table->set_draining(true);
    EXPECT_FALSE(n->table->announce_wanted());
    n->table->set_draining(false);
    n->table->set_stopping();
    EXPECT_FALSE(n->table->announce_wanted());
}

// --- the data plane's entries --------------------------------------------------

TEST(SharedTableEntries, OwnersAndChainsInThisNodesSlots)
{
    const uint64_t daisy = 10'000;
    BucketTable t = hand_table(1, "a", {"a", "b", "c", "d"}, {"a", "b", "c", "a", ""});
    t.table[2].prev[0] = t.index_of("a");
    t.table[2].prev_since_ms[0] = 1000;
    t.table[2].prev[1] = t.index_of("b"); // no slot here: left out
    t.table[2].prev_since_ms[1] = 900;
    t.table[3].prev[0] = t.index_of("c");
    t.table[3].prev_since_ms[0] = 2000;
    t.table[3].prev[1] = t.index_of("d");
    t.table[3].prev_since_ms[1] = 100;
    const std::vector<uint16_t> slots = {5, LB_BUCKET_NONE, 7, 9};

    uint64_t next = 0;
    auto e = bucket_entries(t, slots, 5000, daisy, &next);
    ASSERT_EQ(e.size(), 5u);
    EXPECT_EQ(e[0].owner, 5u);
    EXPECT_EQ(e[0].prev[0], LB_BUCKET_NONE);
    EXPECT_EQ(e[0].chain_until_ns, 0u);
    EXPECT_EQ(e[1].owner, LB_BUCKET_NONE) << "a node with no slot here";
    EXPECT_EQ(e[2].owner, 7u);
    EXPECT_EQ(e[2].prev[0], 5u);
    EXPECT_EQ(e[2].prev[1], LB_BUCKET_NONE);
    EXPECT_EQ(e[2].chain_until_ns, 11'000ull * 1'000'000);
    EXPECT_EQ(e[3].owner, 5u);
    EXPECT_EQ(e[3].prev[0], 7u);
    EXPECT_EQ(e[3].prev[1], 9u);
    EXPECT_EQ(e[3].chain_until_ns, 12'000ull * 1'000'000) << "the most recent previous owner's end";
    EXPECT_EQ(e[4].owner, LB_BUCKET_NONE) << "no owner";
    EXPECT_EQ(next, 10'100u) << "d's window ends first";

    // d's window is over: it is left out, c stays.
    e = bucket_entries(t, slots, 10'100, daisy, &next);
    EXPECT_EQ(e[3].prev[0], 7u);
    EXPECT_EQ(e[3].prev[1], LB_BUCKET_NONE);
    EXPECT_EQ(next, 11'000u);
    // Every window over: no chain at all.
    e = bucket_entries(t, slots, 12'000, daisy, &next);
    for (const auto& b : e) {
        EXPECT_EQ(b.prev[0], LB_BUCKET_NONE);
        EXPECT_EQ(b.chain_until_ns, 0u);
    }
    EXPECT_EQ(next, UINT64_MAX);
}

TEST(SharedTableEntries, RewrittenWhenAChainEndsOrANodeGetsItsSlot)
{
    Cluster c;
    c.add("a", 0);
    c.add("b", 0);
    c.run(0, kSettle);
    // c joins: buckets move to it, their old owners chained behind.
    Node& cn = c.add("c", kSettle);
    c["a"].slots.erase("c"); // a has not given c a slot yet
    const uint64_t moved_at = kSettle + kPeriod;
    c.run(moved_at, moved_at);
    const BucketTable& t = c["a"].table->applied();
    ASSERT_EQ(t.version, 2u);
    const uint16_t ci = t.index_of("c");
    ASSERT_NE(ci, kNoNode);
    size_t moved = 0, chained = 0;
    for (uint32_t b = 0; b < kBuckets; b++) {
        if (t.table[b].owner != ci)
            continue;
        moved++;
        EXPECT_EQ(c["a"].lb_buckets[b].owner, LB_BUCKET_NONE) << "c has no slot at a yet";
        chained += c["a"].lb_buckets[b].prev[0] != LB_BUCKET_NONE;
    }
    EXPECT_GT(moved, 0u);
    EXPECT_EQ(chained, moved) << "c's buckets chain to their previous owners";
    EXPECT_EQ(cn.table->applied().version, 2u);

    // c gets its slot at a: those entries are written again, one by one.
    c["a"].slots["c"] = 12;
    const uint32_t writes = c["a"].entry_writes;
    c.tick("a", moved_at + 10);
    EXPECT_EQ(c["a"].entry_writes - writes, moved);
    for (uint32_t b = 0; b < kBuckets; b++) {
        if (t.table[b].owner == ci) {
            EXPECT_EQ(c["a"].lb_buckets[b].owner, 12u);
        }
    }

    // At b (not the coordinator: no new version comes), the chains end
    // with their window and the entries are written again without them.
    Node& bn = c["b"];
    ASSERT_EQ(bn.table->applied().version, 2u);
    const uint32_t full = bn.full_writes, single = bn.entry_writes;
    c.tick("b", moved_at + kDaisy - 1);
    EXPECT_EQ(bn.entry_writes, single) << "every chain still runs";
    size_t still = 0;
    for (const auto& e : bn.lb_buckets)
        still += e.prev[0] != LB_BUCKET_NONE;
    EXPECT_EQ(still, moved);
    c.tick("b", moved_at + kDaisy);
    EXPECT_EQ(bn.entry_writes - single, moved);
    EXPECT_EQ(bn.full_writes, full) << "entries one by one, not the whole table";
    for (const auto& e : bn.lb_buckets) {
        EXPECT_EQ(e.prev[0], LB_BUCKET_NONE);
        EXPECT_EQ(e.chain_until_ns, 0u);
    }
}

TEST(SharedTable, TheLargestTableFitsInChunks)
{
    // LB_MAX_BUCKETS buckets, 64 nodes with 32-byte ids, every bucket with
    // two previous owners and a recent load move: the most the wire form
    // carries.
    const uint64_t now = 1'000'000;
    BucketTable t;
    t.version = UINT64_MAX - 1;
    t.author = std::string(32, 'a');
    t.buckets = LB_MAX_BUCKETS;
    for (int i = 0; i < 64; i++)
        t.nodes.push_back(TableNode{std::string(30, 'n') + char('A' + i / 26) + char('a' + i % 26), 10000, false});
    t.table.resize(t.buckets);
    for (uint32_t b = 0; b < t.buckets; b++) {
        TableBucket& e = t.table[b];
        e.owner = uint16_t(b % 64);
        e.prev[0] = uint16_t((b + 1) % 64);
        e.prev[1] = uint16_t((b + 2) % 64);
        e.moved_ms = e.prev_since_ms[0] = now - 10;
        e.prev_since_ms[1] = now - 20;
        e.load_moved_ms = now - 5;
    }
    const std::vector<uint8_t> encoded = encode_table(t, now);
    EXPECT_LE(encoded.size(), kMaxTableBytes);
    const auto chunks = split_table(encoded, t.version, t.author);
    EXPECT_EQ(chunks.size(), table_chunk_count(encoded.size()));
    TableAssembler a(UINT64_MAX);
    std::optional<std::vector<uint8_t>> whole;
    for (const auto& c : chunks)
        whole = a.add(c, now);
    ASSERT_TRUE(whole);
    const auto back = decode_table(*whole, now);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->table.size(), size_t(LB_MAX_BUCKETS));
    EXPECT_EQ(back->table[12345].prev[1], t.table[12345].prev[1]);
}

// --- settings -----------------------------------------------------------------

TEST(SharedSettings, FromTheConfiguration)
{
    Config cfg;
    cfg.node_id = "s1";
    cfg.shared_addresses = {parse_ip("10.0.0.100")};
    cfg.shared_buckets = 512;
    cfg.shared_hash_port = true;
    cfg.shared_delivery = SharedDelivery::flood;
    cfg.daisy_chain_s = 30;
    cfg.interval_ms = 200;
    cfg.dead_after = 4;
    cfg.accept_below = 60;
    cfg.min_difference = 15;
    const SharedSettings s = shared_settings(cfg);
    EXPECT_EQ(s.self_id, "s1");
    EXPECT_EQ(s.buckets, 512u);
    EXPECT_EQ(s.hash, uint32_t(LB_SHARED_HASH_ADDRESS_PORT));
    EXPECT_EQ(s.delivery, uint32_t(LB_DELIVERY_FLOOD));
    EXPECT_EQ(s.daisy_chain_ms, 30'000u);
    EXPECT_EQ(s.period_ms, 200u);
    EXPECT_EQ(s.settle_ms, 800u);
    EXPECT_EQ(s.t1_bp, 6000u);
    EXPECT_EQ(s.t2_bp, 1500u);
}

TEST(SharedSettings, APinnedTableStaysOnlyForTheSameBucketsAndHash)
{
    Config cfg;
    cfg.shared_addresses = {parse_ip("10.0.0.100")};
    cfg.shared_buckets = 512;
    lb_config pinned{};
    pinned.shared_buckets = 512;
    pinned.shared_hash = LB_SHARED_HASH_ADDRESS;
    pinned.accept_below_bp = 4242; // not the table's: kept as it was
    lb_config out = shared_config_at_start(pinned, cfg);
    EXPECT_EQ(out.shared_buckets, 512u) << "a restarted agent's data plane keeps its table";
    EXPECT_EQ(out.accept_below_bp, 4242u);
    cfg.shared_hash_port = true;
    out = shared_config_at_start(pinned, cfg);
    EXPECT_EQ(out.shared_buckets, 0u) << "another hash: the pinned table means nothing";
    EXPECT_EQ(out.shared_hash, uint32_t(LB_SHARED_HASH_ADDRESS_PORT));
    cfg.shared_hash_port = false;
    cfg.shared_buckets = 1024;
    EXPECT_EQ(shared_config_at_start(pinned, cfg).shared_buckets, 0u);
    cfg.shared_addresses.clear();
    cfg.shared_buckets = 512;
    EXPECT_EQ(shared_config_at_start(pinned, cfg).shared_buckets, 0u) << "no shared address any more";
}

} // namespace
} // namespace peerlb
