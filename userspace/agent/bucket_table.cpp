#include "bucket_table.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

namespace peerlb {
namespace {

std::vector<BucketNode> as_bucket_nodes(const std::vector<TableNode>& nodes)
{
    std::vector<BucketNode> out;
    for (const auto& n : nodes)
        out.push_back({n.id, n.weight});
    return out;
}

// Nodes that take buckets: those not draining; every node when all drain
// (the buckets must go somewhere).
std::vector<bool> eligible_of(const std::vector<TableNode>& nodes)
{
    const bool all_drain = std::all_of(nodes.begin(), nodes.end(), [](const auto& n) { return n.draining; });
    std::vector<bool> eligible;
    for (const auto& n : nodes)
        eligible.push_back(all_drain || !n.draining);
    return eligible;
}

// bucket_quotas over the eligible nodes; 0 for the others.
std::vector<int64_t> eligible_quotas(const std::vector<TableNode>& nodes, const std::vector<bool>& eligible,
                                     uint32_t buckets)
{
    std::vector<TableNode> taking;
    for (size_t i = 0; i < nodes.size(); i++)
        if (eligible[i])
            taking.push_back(nodes[i]);
    const std::vector<uint32_t> q = bucket_quotas(as_bucket_nodes(taking), buckets);
    std::vector<int64_t> quota(nodes.size(), 0);
    for (size_t i = 0, k = 0; i < nodes.size(); i++)
        if (eligible[i])
            quota[i] = q[k++];
    return quota;
}

// The live set in a canonical order (by id; one entry per id), so that
// indexes, and with them the table, do not depend on how it was listed.
std::vector<TableNode> canonical(std::vector<TableNode> live)
{
    std::sort(live.begin(), live.end(), [](const TableNode& a, const TableNode& b) {
        return std::tie(a.id, a.weight, a.draining) < std::tie(b.id, b.weight, b.draining);
    });
    live.erase(std::unique(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.id == b.id; }),
               live.end());
    return live;
}

bool expired(uint64_t since_ms, uint64_t now_ms, uint64_t daisy_chain_ms)
{
    return since_ms + daisy_chain_ms <= now_ms;
}

// The chain of `b` (prev already in the new table's indexes, kNoNode for
// dead nodes) once its owner is `b.owner`: `gave_up` (the owner before, when
// it changed and is live) first, then the earlier previous owners that are
// live and not expired, never the owner itself, at most two.
void update_chain(TableBucket& b, uint16_t gave_up, uint64_t now_ms, uint64_t daisy_chain_ms)
{
    struct Entry {
        uint16_t node;
        uint64_t since_ms;
    };
    std::vector<Entry> chain;
    if (gave_up != kNoNode)
        chain.push_back({gave_up, now_ms});
    for (int i = 0; i < 2; i++)
        if (b.prev[i] != kNoNode)
            chain.push_back({b.prev[i], b.prev_since_ms[i]});
    TableBucket out = b;
    out.prev[0] = out.prev[1] = kNoNode;
    out.prev_since_ms[0] = out.prev_since_ms[1] = 0;
    int kept = 0;
    for (const Entry& e : chain) {
        if (kept == 2 || e.node == b.owner || (kept == 1 && out.prev[0] == e.node) ||
            expired(e.since_ms, now_ms, daisy_chain_ms))
            continue;
        out.prev[kept] = e.node;
        out.prev_since_ms[kept] = e.since_ms;
        kept++;
    }
    b = out;
}

// Targets must add up to `buckets`. Load moves carried over (a node that
// left with more or fewer buckets than its quota) and the clamp at 0 leave
// a difference: spread it over the eligible nodes by weight (bucket_quotas
// of the difference), taking never below 0, until none is left.
void fix_up_targets(std::vector<int64_t>& target, const std::vector<TableNode>& nodes,
                    const std::vector<bool>& eligible, uint32_t buckets)
{
    for (;;) {
        const int64_t diff = int64_t(buckets) - std::accumulate(target.begin(), target.end(), int64_t(0));
        if (diff == 0)
            return;
        std::vector<BucketNode> pool;
        std::vector<size_t> at;
        for (size_t i = 0; i < nodes.size(); i++)
            if (eligible[i] && (diff > 0 || target[i] > 0)) {
                pool.push_back({nodes[i].id, nodes[i].weight});
                at.push_back(i);
            }
        if (pool.empty())
            return;
        const std::vector<uint32_t> share = bucket_quotas(pool, uint32_t(diff > 0 ? diff : -diff));
        // Taking: some node has both a share and a target > 0, so each
        // round takes at least one bucket.
        for (size_t k = 0; k < at.size(); k++)
            target[at[k]] += diff > 0 ? int64_t(share[k]) : -std::min<int64_t>(target[at[k]], share[k]);
    }
}

// A table made from scratch (assign_buckets over the eligible nodes).
BucketTable fresh_table(const std::vector<TableNode>& live, uint32_t buckets, uint64_t version,
                        const std::string& author)
{
    BucketTable t;
    t.version = version;
    t.author = author;
    t.buckets = buckets;
    t.nodes = live;
    t.table.assign(buckets, TableBucket{});
    const std::vector<bool> eligible = eligible_of(live);
    std::vector<TableNode> taking;
    std::vector<uint16_t> at;
    for (size_t i = 0; i < live.size(); i++)
        if (eligible[i]) {
            taking.push_back(live[i]);
            at.push_back(uint16_t(i));
        }
    const std::vector<uint32_t> owner = assign_buckets(as_bucket_nodes(taking), buckets);
    for (uint32_t b = 0; b < buckets; b++)
        if (owner[b] != kNoOwner)
            t.table[b].owner = at[owner[b]];
    return t;
}

bool load_moved_recently(const TableBucket& b, uint64_t now_ms)
{
    return b.load_moved_ms != 0 && (b.load_moved_ms > now_ms || now_ms - b.load_moved_ms < kLoadMoveHoldMs);
}

} // namespace

uint16_t BucketTable::index_of(const std::string& id) const
{
    for (size_t i = 0; i < nodes.size() && i < kNoNode; i++)
        if (nodes[i].id == id)
            return uint16_t(i);
    return kNoNode;
}

std::vector<uint32_t> BucketTable::owned() const
{
    std::vector<uint32_t> count(nodes.size(), 0);
    for (const auto& b : table)
        if (b.owner < nodes.size())
            count[b.owner]++;
    return count;
}

// Targets. A node's target is its count now plus what its quota gained or
// lost (quota over the new eligible nodes minus quota over the previous
// version's eligible nodes), so that earlier load moves stay; clamped at
// 0, then fixed up to add up to `buckets` (fix_up_targets). A node new to
// the set, or back from a drain, has no old quota and no bucket: it gets
// its quota. A draining node's target is 0.
//
// Moves. Buckets of owners no longer live or no longer eligible are free;
// a node above its target frees its lowest-score buckets; free buckets go
// to nodes under their target by decreasing score (as assign_buckets). A
// node is never both above and under its target, so every move is one the
// targets need.
BucketTable next_for_membership(const BucketTable& cur, const std::vector<TableNode>& live_in,
                                uint32_t buckets, uint64_t now_ms, uint64_t daisy_chain_ms,
                                const std::string& author, MoveCounts* moves)
{
    if (moves)
        *moves = {};
    const std::vector<TableNode> live = canonical(live_in);
    if (cur.empty() && live.empty())
        return cur;
    // A fresh table (first one, or `buckets` changed: bucket b no longer
    // means the same clients): no chains, no moves counted.
    if (cur.empty() || cur.buckets != buckets || cur.table.size() != buckets)
        return fresh_table(live, buckets, cur.version + 1, author);

    // Old node index -> new one (kNoNode: no longer live).
    std::map<std::string, uint16_t> new_index;
    for (size_t i = 0; i < live.size(); i++)
        new_index[live[i].id] = uint16_t(i);
    std::vector<uint16_t> remap(cur.nodes.size(), kNoNode);
    std::vector<int64_t> old_quota_of_new(live.size(), 0);
    const std::vector<int64_t> old_quota = eligible_quotas(cur.nodes, eligible_of(cur.nodes), buckets);
    for (size_t i = 0; i < cur.nodes.size(); i++)
        if (auto it = new_index.find(cur.nodes[i].id); it != new_index.end()) {
            remap[i] = it->second;
            old_quota_of_new[it->second] = old_quota[i];
        }
    auto mapped = [&](uint16_t old) { return old < remap.size() ? remap[old] : kNoNode; };

    const std::vector<bool> eligible = eligible_of(live);
    const std::vector<int64_t> quota = eligible_quotas(live, eligible, buckets);
    std::vector<int64_t> held(live.size(), 0);
    std::vector<uint16_t> owner(buckets, kNoNode);
    for (uint32_t b = 0; b < buckets; b++) {
        const uint16_t o = mapped(cur.table[b].owner);
        if (o != kNoNode && eligible[o]) {
            owner[b] = o;
            held[o]++;
        }
    }
    std::vector<int64_t> target(live.size(), 0);
    for (size_t i = 0; i < live.size(); i++)
        if (eligible[i])
            target[i] = std::max<int64_t>(0, held[i] + quota[i] - old_quota_of_new[i]);
    fix_up_targets(target, live, eligible, buckets);

    // Buckets go home first: a bucket whose live chain holds a node under
    // its target goes back to that node (its connections are there, so the
    // chain ends) before any other moves. Without this, back-and-forth
    // moves (a drain and its undo, then a join) push the node that serves a
    // bucket's connections out of its two-place chain.
    auto is_home = [&](uint32_t b, size_t node) {
        const TableBucket& t = cur.table[b];
        for (int k = 0; k < 2; k++)
            if (mapped(t.prev[k]) == node && now_ms < t.prev_since_ms[k] + daisy_chain_ms)
                return true;
        return false;
    };
    auto has_home_under_target = [&](uint32_t b) {
        const TableBucket& t = cur.table[b];
        for (int k = 0; k < 2; k++) {
            const uint16_t p = mapped(t.prev[k]);
            if (p != kNoNode && eligible[p] && held[p] < target[p] && is_home(b, p))
                return true;
        }
        return false;
    };

    auto chain_length = [&](uint32_t b) {
        int n = 0;
        for (int k = 0; k < 2; k++) {
            const uint16_t p = mapped(cur.table[b].prev[k]);
            n += p != kNoNode && is_home(b, p);
        }
        return n;
    };

    // Nodes above target free buckets that can go home first, then their
    // least wanted ones.
    std::vector<std::vector<uint32_t>> mine(live.size());
    for (uint32_t b = 0; b < buckets; b++)
        if (owner[b] != kNoNode)
            mine[owner[b]].push_back(b);
    std::vector<bool> homeward(buckets, false);
    for (uint32_t b = 0; b < buckets; b++)
        homeward[b] = owner[b] != kNoNode && has_home_under_target(b);
    for (size_t i = 0; i < live.size(); i++) {
        if (held[i] <= target[i])
            continue;
        // Homeward buckets first; then those with the shortest live chain
        // (moving a bucket adds its owner to its chain: a full chain would
        // lose its oldest node, and that node's connections); then the
        // least wanted.
        std::vector<std::tuple<int, int, uint64_t, uint32_t>> by_score;
        for (uint32_t b : mine[i])
            by_score.push_back({homeward[b] ? 0 : 1, chain_length(b), bucket_score(live[i].id, b), b});
        std::sort(by_score.begin(), by_score.end());
        for (size_t k = 0; k < size_t(held[i] - target[i]); k++)
            owner[std::get<3>(by_score[k])] = kNoNode;
        held[i] = target[i];
    }
    // Free buckets to the nodes under target, best pairs first.
    struct Pair {
        bool home; // the node is in the bucket's live chain
        uint64_t score;
        uint16_t node;
        uint32_t bucket;
    };
    std::vector<Pair> pairs;
    for (uint32_t b = 0; b < buckets; b++)
        if (owner[b] == kNoNode)
            for (size_t i = 0; i < live.size(); i++)
                if (held[i] < target[i])
                    pairs.push_back({is_home(b, i), bucket_score(live[i].id, b), uint16_t(i), b});
    std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
        // home first, then score desc
        return std::tie(b.home, b.score, a.node, a.bucket) < std::tie(a.home, a.score, b.node, b.bucket);
    });
    for (const Pair& p : pairs)
        if (owner[p.bucket] == kNoNode && held[p.node] < target[p.node]) {
            owner[p.bucket] = p.node;
            held[p.node]++;
        }

    BucketTable next;
    next.buckets = buckets;
    next.nodes = live;
    next.table.resize(buckets);
    for (uint32_t b = 0; b < buckets; b++) {
        const TableBucket& was = cur.table[b];
        TableBucket& nb = next.table[b];
        nb = was;
        nb.owner = owner[b];
        for (int i = 0; i < 2; i++)
            nb.prev[i] = mapped(was.prev[i]); // dead: kNoNode, dropped by update_chain
        const uint16_t old_owner = mapped(was.owner);
        const bool moved = was.owner != kNoNode ? old_owner != owner[b] : owner[b] != kNoNode;
        if (moved) {
            nb.moved_ms = now_ms;
            if (moves && was.owner != kNoNode) {
                const bool drained = old_owner != kNoNode && live[old_owner].draining;
                (drained ? moves->drain : moves->membership)++;
            }
        }
        update_chain(nb, moved ? old_owner : kNoNode, now_ms, daisy_chain_ms);
    }
    if (next.nodes == cur.nodes && next.table == cur.table)
        return cur;
    next.version = cur.version + 1;
    next.author = author;
    return next;
}

BucketTable next_for_load(const BucketTable& cur, const std::vector<std::pair<std::string, uint32_t>>& load_bp,
                          uint32_t t1_bp, uint32_t t2_bp, uint32_t max_moves, uint64_t now_ms,
                          uint64_t daisy_chain_ms, const std::string& author, MoveCounts* moves)
{
    if (moves)
        *moves = {};
    if (cur.empty() || max_moves == 0)
        return cur;
    // Estimated loads in 1/1000 bp, so that moving buckets one at a time
    // does not round away the load they carry.
    constexpr int64_t kScale = 1000;
    const size_t n = cur.nodes.size();
    std::vector<bool> has_load(n, false);
    std::vector<int64_t> est(n, 0);
    for (const auto& [id, bp] : load_bp)
        if (uint16_t i = cur.index_of(id); i != kNoNode && !has_load[i]) {
            has_load[i] = true;
            est[i] = int64_t(bp) * kScale;
        }
    const std::vector<uint32_t> owned = cur.owned();
    std::vector<int64_t> count(owned.begin(), owned.end());
    auto lower_id = [&](size_t a, size_t b) { return cur.nodes[a].id < cur.nodes[b].id; };

    BucketTable next = cur;
    std::vector<bool> done(n, false); // no more buckets to give, or nobody to take them
    uint32_t budget = max_moves;
    uint32_t moved_total = 0;
    while (budget > 0) {
        // The hottest node above T1 with buckets (ties: lower id).
        size_t h = n;
        for (size_t i = 0; i < n; i++)
            if (has_load[i] && !done[i] && count[i] > 0 && est[i] > int64_t(t1_bp) * kScale &&
                (h == n || est[i] > est[h] || (est[i] == est[h] && lower_id(i, h))))
                h = i;
        if (h == n)
            break;
        // The coldest node that may take buckets (ties: lower id).
        size_t c = n;
        for (size_t i = 0; i < n; i++)
            if (i != h && has_load[i] && !cur.nodes[i].draining &&
                (c == n || est[i] < est[c] || (est[i] == est[c] && lower_id(i, c))))
                c = i;
        if (c == n || est[c] > est[h] - int64_t(t2_bp) * kScale) {
            done[h] = true;
            continue;
        }
        // Moving k buckets of load p = est(h) / count(h) each closes the gap
        // by 2kp: k = count(h) * gap / (2 est(h)), rounded up.
        const int64_t gap = est[h] - est[c];
        const int64_t want = (count[h] * gap + 2 * est[h] - 1) / (2 * est[h]);
        // As membership moves do: buckets whose chain holds c first (they go
        // home), then the shortest live chains (a full one would lose its
        // oldest node's connections), then c's score.
        struct Movable {
            int home, chain;
            uint64_t score;
            uint32_t bucket;
        };
        std::vector<Movable> movable;
        for (uint32_t b = 0; b < next.buckets; b++) {
            const TableBucket& tb = next.table[b];
            if (tb.owner != h || load_moved_recently(tb, now_ms))
                continue;
            Movable m{1, 0, bucket_score(cur.nodes[c].id, b), b};
            for (int k = 0; k < 2; k++)
                if (tb.prev[k] != kNoNode && now_ms < tb.prev_since_ms[k] + daisy_chain_ms) {
                    m.chain++;
                    if (tb.prev[k] == c)
                        m.home = 0;
                }
            movable.push_back(m);
        }
        std::sort(movable.begin(), movable.end(), [](const Movable& a, const Movable& b) {
            return std::tie(a.home, a.chain, b.score, a.bucket) < std::tie(b.home, b.chain, a.score, b.bucket);
        });
        const int64_t k = std::min<int64_t>({int64_t(budget), want, int64_t(movable.size())});
        if (k == 0 || (k < want && k < int64_t(budget))) {
            done[h] = true; // gives what it can (maybe nothing), then no more
            if (k == 0)
                continue;
        }
        for (int64_t j = 0; j < k; j++) {
            TableBucket& tb = next.table[movable[size_t(j)].bucket];
            tb.owner = uint16_t(c);
            tb.moved_ms = now_ms;
            tb.load_moved_ms = now_ms;
            update_chain(tb, uint16_t(h), now_ms, daisy_chain_ms);
        }
        const int64_t per_bucket = est[h] / count[h];
        est[h] -= k * per_bucket;
        est[c] += k * per_bucket;
        count[h] -= k;
        count[c] += k;
        budget -= uint32_t(k);
        moved_total += uint32_t(k);
    }
    if (moved_total == 0)
        return cur;
    // Chains of the other buckets expire as in next_for_membership.
    for (auto& tb : next.table)
        update_chain(tb, kNoNode, now_ms, daisy_chain_ms);
    if (moves)
        moves->load = moved_total;
    next.version = cur.version + 1;
    next.author = author;
    return next;
}

// Wire form, network byte order:
//   u8 format (1), u64 version, u8 author length + author, u32 buckets,
//   u16 nodes, per node: u8 id length + id, u32 weight, u8 flags (1: draining),
//   u16 owner per bucket,
//   u32 entries, then per entry (the buckets with a chain or a load move
//   within kLoadMoveHoldMs, by increasing index): u16 index, u8 present
//   (kHasPrev0, kHasPrev1, kHasLoadMove), u32 age of moved_ms, then per
//   present previous owner u16 node + u32 age of its prev_since_ms, then
//   with kHasLoadMove u32 age of load_moved_ms.
// An age is now - time in ms, saturated at kAgeMax; kAgeNever stands for
// time 0 (never). Buckets without an entry decode with moved_ms and
// load_moved_ms 0: those matter only with a chain or within the hold.
namespace {

constexpr uint8_t kWireFormat = 1;
constexpr uint32_t kAgeNever = UINT32_MAX;
constexpr uint32_t kAgeMax = UINT32_MAX - 1;
constexpr uint32_t kMaxBuckets = 65536;
constexpr uint8_t kHasPrev0 = 1, kHasPrev1 = 2, kHasLoadMove = 4;
constexpr size_t kMinEntryBytes = 2 + 1 + 4;

struct Writer {
    std::vector<uint8_t> out;
    void u8(uint8_t v) { out.push_back(v); }
    void u16(uint16_t v) { u8(uint8_t(v >> 8)), u8(uint8_t(v)); }
    void u32(uint32_t v) { u16(uint16_t(v >> 16)), u16(uint16_t(v)); }
    void u64(uint64_t v) { u32(uint32_t(v >> 32)), u32(uint32_t(v)); }
    void str(const std::string& s)
    {
        const size_t len = std::min<size_t>(s.size(), 255); // ids are at most 32 bytes
        u8(uint8_t(len));
        out.insert(out.end(), s.begin(), s.begin() + long(len));
    }
};

// Reads stop at the end of the input: `ok` turns false and values read 0.
struct Reader {
    std::span<const uint8_t> in;
    size_t at = 0;
    bool ok = true;
    bool has(size_t n) { return ok = ok && in.size() - at >= n; }
    uint64_t be(size_t n)
    {
        if (!has(n))
            return 0;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v = v << 8 | in[at++];
        return v;
    }
    uint8_t u8() { return uint8_t(be(1)); }
    uint16_t u16() { return uint16_t(be(2)); }
    uint32_t u32() { return uint32_t(be(4)); }
    uint64_t u64() { return be(8); }
    std::string str()
    {
        const size_t len = u8();
        if (!has(len))
            return {};
        std::string s(in.begin() + long(at), in.begin() + long(at + len));
        at += len;
        return s;
    }
    size_t left() const { return in.size() - at; }
};

uint32_t age_of(uint64_t t, uint64_t now_ms)
{
    if (t == 0)
        return kAgeNever;
    return t >= now_ms ? 0 : uint32_t(std::min<uint64_t>(now_ms - t, kAgeMax));
}

// Back on the receiver's clock; a time before its clock's start becomes 1
// (0 means never).
uint64_t time_of(uint32_t age, uint64_t now_ms)
{
    if (age == kAgeNever)
        return 0;
    return now_ms > age ? now_ms - age : 1;
}

uint8_t present_of(const TableBucket& b, uint64_t now_ms)
{
    return (b.prev[0] != kNoNode ? kHasPrev0 : 0) | (b.prev[1] != kNoNode ? kHasPrev1 : 0) |
           (load_moved_recently(b, now_ms) ? kHasLoadMove : 0);
}

} // namespace

std::vector<uint8_t> encode_table(const BucketTable& t, uint64_t now_ms)
{
    Writer w;
    w.u8(kWireFormat);
    w.u64(t.version);
    w.str(t.author);
    w.u32(t.buckets);
    w.u16(uint16_t(t.nodes.size()));
    for (const auto& n : t.nodes) {
        w.str(n.id);
        w.u32(n.weight);
        w.u8(n.draining ? 1 : 0);
    }
    for (const auto& b : t.table)
        w.u16(b.owner);
    uint32_t entries = 0;
    for (const auto& b : t.table)
        entries += present_of(b, now_ms) != 0;
    w.u32(entries);
    for (uint32_t i = 0; i < t.table.size(); i++) {
        const TableBucket& b = t.table[i];
        const uint8_t present = present_of(b, now_ms);
        if (!present)
            continue;
        w.u16(uint16_t(i));
        w.u8(present);
        w.u32(age_of(b.moved_ms, now_ms));
        for (int k = 0; k < 2; k++)
            if (b.prev[k] != kNoNode) {
                w.u16(b.prev[k]);
                w.u32(age_of(b.prev_since_ms[k], now_ms));
            }
        if (present & kHasLoadMove)
            w.u32(age_of(b.load_moved_ms, now_ms));
    }
    return std::move(w.out);
}

std::optional<BucketTable> decode_table(std::span<const uint8_t> bytes, uint64_t now_ms)
{
    Reader r{bytes};
    if (r.u8() != kWireFormat || !r.ok)
        return std::nullopt;
    BucketTable t;
    t.version = r.u64();
    t.author = r.str();
    t.buckets = r.u32();
    const size_t node_count = r.u16();
    if (!r.ok || t.buckets > kMaxBuckets || node_count >= kNoNode) // kNoNode is no index
        return std::nullopt;
    std::set<std::string> ids;
    for (size_t i = 0; i < node_count; i++) {
        TableNode n;
        n.id = r.str();
        n.weight = r.u32();
        const uint8_t flags = r.u8();
        if (!r.ok || n.id.empty() || n.weight == 0 || (flags & ~1u) || !ids.insert(n.id).second)
            return std::nullopt;
        n.draining = flags & 1;
        t.nodes.push_back(std::move(n));
    }
    auto valid_node = [&](uint16_t i) { return i < t.nodes.size(); };
    if (!r.has(size_t(t.buckets) * 2)) // before allocating
        return std::nullopt;
    t.table.resize(t.buckets);
    for (auto& b : t.table) {
        b.owner = r.u16();
        if (b.owner != kNoNode && !valid_node(b.owner))
            return std::nullopt;
    }
    const uint32_t entries = r.u32();
    if (!r.ok || entries > t.buckets || r.left() / kMinEntryBytes < entries)
        return std::nullopt;
    int64_t last = -1;
    for (uint32_t e = 0; e < entries; e++) {
        const uint16_t index = r.u16();
        const uint8_t present = r.u8();
        if (!r.ok || int64_t(index) <= last || index >= t.buckets || present == 0 ||
            (present & ~(kHasPrev0 | kHasPrev1 | kHasLoadMove)) || ((present & kHasPrev1) && !(present & kHasPrev0)))
            return std::nullopt;
        last = index;
        TableBucket& b = t.table[index];
        b.moved_ms = time_of(r.u32(), now_ms);
        // A chain: distinct nodes of the table other than the owner, most
        // recent first.
        uint32_t since_age[2] = {0, 0};
        for (int k = 0; k < 2; k++)
            if (present & (k ? kHasPrev1 : kHasPrev0)) {
                b.prev[k] = r.u16();
                since_age[k] = r.u32();
                if (!valid_node(b.prev[k]) || b.prev[k] == b.owner)
                    return std::nullopt;
                b.prev_since_ms[k] = time_of(since_age[k], now_ms);
            }
        if ((present & kHasPrev1) && (b.prev[0] == b.prev[1] || since_age[0] > since_age[1]))
            return std::nullopt;
        if (present & kHasLoadMove)
            b.load_moved_ms = time_of(r.u32(), now_ms);
    }
    if (!r.ok || r.left() != 0)
        return std::nullopt;
    return t;
}

} // namespace peerlb
