#include "shared_table.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace peerlb {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

bool same_entry(const lb_bucket& a, const lb_bucket& b)
{
    return a.owner == b.owner && a.prev[0] == b.prev[0] && a.prev[1] == b.prev[1] &&
           a.chain_until_ns == b.chain_until_ns;
}

uint16_t slot_at(const std::vector<uint16_t>& slots, uint16_t node)
{
    return node < slots.size() ? slots[node] : uint16_t(LB_BUCKET_NONE);
}

} // namespace

SharedSettings shared_settings(const Config& cfg)
{
    SharedSettings s;
    s.self_id = cfg.node_id;
    s.buckets = cfg.shared_buckets;
    s.hash = cfg.shared_hash_port ? LB_SHARED_HASH_ADDRESS_PORT : LB_SHARED_HASH_ADDRESS;
    s.delivery = cfg.shared_delivery == SharedDelivery::flood ? LB_DELIVERY_FLOOD : LB_DELIVERY_ECMP;
    s.daisy_chain_ms = uint64_t(cfg.daisy_chain_s) * 1000;
    s.period_ms = cfg.interval_ms;
    s.settle_ms = uint64_t(cfg.dead_after) * cfg.interval_ms;
    s.t1_bp = cfg.accept_below * 100;
    s.t2_bp = cfg.min_difference * 100;
    return s;
}

std::vector<lb_bucket> bucket_entries(const BucketTable& t, const std::vector<uint16_t>& slots,
                                      uint64_t now_ms, uint64_t daisy_chain_ms, uint64_t* next_change_ms)
{
    uint64_t next = UINT64_MAX;
    std::vector<lb_bucket> out(t.table.size());
    for (size_t b = 0; b < t.table.size(); b++) {
        const TableBucket& in = t.table[b];
        lb_bucket& e = out[b];
        e.owner = slot_at(slots, in.owner);
        e.prev[0] = e.prev[1] = LB_BUCKET_NONE;
        size_t kept = 0;
        for (int i = 0; i < 2; i++) {
            const uint64_t ends = in.prev_since_ms[i] + daisy_chain_ms;
            const uint16_t slot = in.prev[i] == kNoNode ? uint16_t(LB_BUCKET_NONE) : slot_at(slots, in.prev[i]);
            // Over, or a node with no slot here: the data plane cannot send
            // to it, and the chain goes on to the next one.
            if (ends <= now_ms || slot == LB_BUCKET_NONE || slot == e.owner)
                continue;
            e.prev[kept++] = slot;
            e.chain_until_ns = std::max<uint64_t>(e.chain_until_ns, ends * kNsPerMs);
            next = std::min(next, ends);
        }
    }
    if (next_change_ms)
        *next_change_ms = next;
    return out;
}

lb_config shared_config_at_start(const lb_config& pinned, const Config& cfg)
{
    lb_config out = pinned;
    const SharedSettings s = shared_settings(cfg);
    if (!cfg.has_shared() || out.shared_buckets != s.buckets || out.shared_hash != s.hash)
        out.shared_buckets = 0;
    out.shared_hash = s.hash;
    out.shared_delivery = s.delivery;
    return out;
}

SharedTable::SharedTable(SharedSettings settings, Dataplane dataplane, Send send, uint64_t started_ms)
    : s_(std::move(settings)), dp_(std::move(dataplane)), send_(std::move(send)), started_ms_(started_ms),
      assembler_(10 * s_.period_ms)
{
}

void SharedTable::configure(const SharedSettings& settings)
{
    s_ = settings;
    assembler_.set_timeout(10 * s_.period_ms);
}

uint32_t SharedTable::owned_here() const
{
    const uint16_t self = applied_.index_of(s_.self_id);
    if (self == kNoNode)
        return 0;
    const auto owned = applied_.owned();
    return self < owned.size() ? owned[self] : 0;
}

void SharedTable::tick(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers)
{
    if (!applied_.empty()) {
        // A node that got its slot after the table came (it joined), or a
        // chain that ended: those entries are written again.
        if (now_ms >= next_change_ms_ || slots_of(applied_) != slots_)
            write_entries(applied_, now_ms, false);
    }
    if (now_ms < next_round_ms_)
        return;
    next_round_ms_ = now_ms + s_.period_ms;
    round(now_ms, self, peers);
}

void SharedTable::round(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers)
{
    coordinator_ = self.id;
    uint64_t highest = 0; // the newest version a peer applied
    for (const SharedNode& p : peers) {
        coordinator_ = std::min(coordinator_, p.id);
        highest = std::max(highest, p.table_version);
    }
    // A peer's heartbeat sent before our table could reach it says nothing.
    const auto shows_other = [&](const SharedNode& p, uint64_t version) {
        return p.table_version != version && p.heard_ms >= applied_ms_ + s_.period_ms / 2;
    };

    if (coordinator_ != self.id) {
        behind_since_ms_ = 0;
        // The coordinator is behind (it restarted): the lowest id among
        // the others that have the newest table sends it, once a period.
        const auto coord = std::find_if(peers.begin(), peers.end(),
                                        [&](const SharedNode& p) { return p.id == coordinator_; });
        if (applied_.empty() || coord == peers.end() || coord->table_version >= applied_.version ||
            !shows_other(*coord, applied_.version))
            return;
        std::string helper = self.id;
        for (const SharedNode& p : peers)
            if (p.id != coordinator_ && p.table_version >= applied_.version && p.id < helper)
                helper = p.id;
        if (helper == self.id && highest <= applied_.version)
            send(applied_, now_ms, true);
        return;
    }

    // A restarting node listens first: it never makes a table for a live
    // set it has not heard in full, over the running cluster's.
    if (now_ms - started_ms_ < s_.settle_ms && !applied_from_peer_)
        return;
    // Peers have a newer table than ours: the coordinator takes it first
    // (a helper sends it), and makes its own over it only if none comes.
    const bool behind = highest > applied_.version;
    if (!behind) {
        behind_since_ms_ = 0;
    } else {
        if (!behind_since_ms_)
            behind_since_ms_ = now_ms;
        if (now_ms - behind_since_ms_ < s_.settle_ms)
            return;
    }
    author(now_ms, self, peers, highest, behind);
    if (applied_.empty())
        return;
    for (const SharedNode& p : peers)
        if (shows_other(p, applied_.version)) {
            send(applied_, now_ms, true); // once for all of them: every peer gets every chunk
            break;
        }
}

void SharedTable::author(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers,
                         uint64_t highest_peer_version, bool force)
{
    std::vector<const SharedNode*> all = {&self};
    for (const SharedNode& p : peers)
        all.push_back(&p);
    std::sort(all.begin(), all.end(), [](const SharedNode* a, const SharedNode* b) { return a->id < b->id; });
    std::vector<TableNode> live;
    std::vector<std::pair<std::string, uint32_t>> loads;
    for (const SharedNode* n : all) {
        // An unhealthy node steers new connections away (DESIGN.md 3): as
        // a drain, which ends when it is healthy again.
        const bool draining = n->draining || !n->routable;
        live.push_back(TableNode{n->id, n->weight, draining});
        // A draining node takes no bucket by load either.
        if (!draining)
            loads.emplace_back(n->id, n->load_bp);
    }
    MoveCounts moves, by_load; // each call counts its own moves from zero
    BucketTable next =
        next_for_membership(applied_, live, s_.buckets, now_ms, s_.daisy_chain_ms, self.id, &moves);
    const uint32_t max_moves = std::max<uint32_t>(1, s_.buckets * 2 / 100);
    next = next_for_load(next, loads, s_.t1_bp, s_.t2_bp, max_moves, now_ms, s_.daisy_chain_ms, self.id,
                         &by_load);
    moves.load += by_load.load;
    if (next.version == applied_.version && !force)
        return;
    // Above every version any node has, ours included: every node takes it.
    next.version = std::max(applied_.version, highest_peer_version) + 1;
    next.author = self.id;
    apply(next, now_ms);
    stats_.tables_made++;
    stats_.moves.membership += moves.membership;
    stats_.moves.load += moves.load;
    stats_.moves.drain += moves.drain;
    spdlog::info("bucket table v{} made for {} nodes: {} buckets moved ({} membership, {} load, {} drain)",
                 applied_.version, live.size(), moves.total(), moves.membership, moves.load, moves.drain);
    send(applied_, now_ms, false);
}

bool SharedTable::better(uint64_t version, const std::string& author) const
{
    return version > applied_.version || (version == applied_.version && author < applied_.author);
}

void SharedTable::take(const TableChunk& c, uint64_t now_ms)
{
    if (!better(c.version, c.author))
        return; // applied already, or older: a re-send for another node
    stats_.chunks_taken++;
    assembler_.forget_unless([this](uint64_t v, const std::string& a) { return better(v, a); });
    auto bytes = assembler_.add(c, now_ms);
    if (!bytes)
        return;
    auto t = decode_table(*bytes, now_ms);
    if (!t || t->version != c.version || t->author != c.author || t->buckets != s_.buckets) {
        stats_.tables_refused++;
        spdlog::warn("bucket table v{} from {} (author {}) refused: {}", c.version, c.node_id, c.author,
                     !t ? "it does not decode"
                        : t->buckets != s_.buckets
                            ? fmt::format("{} buckets, {} configured here ([shared] buckets must be the "
                                          "same on every node)",
                                          t->buckets, s_.buckets)
                            : std::string("its version or author differ from its chunks'"));
        return;
    }
    apply(std::move(*t), now_ms);
    applied_from_peer_ = true;
    spdlog::info("bucket table v{} by {} applied: {} of {} buckets here", applied_.version, applied_.author,
                 owned_here(), applied_.buckets);
}

void SharedTable::apply(BucketTable t, uint64_t now_ms)
{
    // The data plane first: a write that fails leaves the table not
    // applied, and its next send (or the next round) tries again.
    write_entries(t, now_ms, true);
    dp_.write_config(t.buckets, s_.hash, s_.delivery);
    applied_ = std::move(t);
    applied_ms_ = now_ms;
    stats_.tables_applied++;
}

void SharedTable::write_entries(const BucketTable& t, uint64_t now_ms, bool all)
{
    std::vector<uint16_t> slots = slots_of(t);
    uint64_t next = UINT64_MAX;
    std::vector<lb_bucket> entries = bucket_entries(t, slots, now_ms, s_.daisy_chain_ms, &next);
    if (all || entries.size() != written_.size()) {
        dp_.write_buckets(entries);
    } else {
        for (uint32_t i = 0; i < entries.size(); i++)
            if (!same_entry(entries[i], written_[i]))
                dp_.write_bucket(i, entries[i]);
    }
    slots_ = std::move(slots);
    written_ = std::move(entries);
    next_change_ms_ = next;
}

std::vector<uint16_t> SharedTable::slots_of(const BucketTable& t) const
{
    std::vector<uint16_t> slots;
    for (const TableNode& n : t.nodes) {
        const auto slot = dp_.slot_of(n.id);
        slots.push_back(slot && *slot < LB_BUCKET_NONE ? uint16_t(*slot) : uint16_t(LB_BUCKET_NONE));
    }
    return slots;
}

void SharedTable::send(const BucketTable& t, uint64_t now_ms, bool resend)
{
    int failed = 0;
    std::vector<TableChunk> chunks = split_table(encode_table(t, now_ms), t.version, t.author);
    for (TableChunk& c : chunks)
        failed += send_(c);
    stats_.chunks_sent += chunks.size();
    if (resend)
        stats_.chunks_resent += chunks.size();
    if (failed)
        spdlog::warn("bucket table v{}: {} chunk send(s) failed", t.version, failed);
}

} // namespace peerlb
