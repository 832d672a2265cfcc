#include "agent.h"

#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "../dataplane/dataplane.h"
#include "../dataplane/error.h"
#include "../dataplane/maps.h"
#include "bird.h"
#include "bucket_view.h"
#include "control.h"
#include "cookies.h"
#include "datagram_router.h"
#include "duplicate_ids.h"
#include "event_errors.h"
#include "heartbeat.h"
#include "heartbeat_rate.h"
#include "incarnation.h"
#include "health.h"
#include "load.h"
#include "load_meter.h"
#include "membership.h"
#include "metrics.h"
#include "netconf.h"
#include "node_table.h"
#include "ownership.h"
#include "pin_relay.h"
#include "service_book.h"
#include "shared_table.h"
#include "state_file.h"
#include "status_view.h"
#include "takeover.h"
#include "transport.h"

namespace peerlb {
namespace {

using json = nlohmann::ordered_json;

uint64_t clock_ns(clockid_t clock)
{
    timespec ts{};
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}
// The data plane's clock (bpf_ktime_get_ns): freshness and membership.
uint64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
// Wall clock: heartbeat timestamps, which other machines compare.
uint64_t unix_ms() { return clock_ns(CLOCK_REALTIME) / 1'000'000; }
// The bucket table's clock: the data plane's, in milliseconds.
uint64_t mono_ms() { return mono_ns() / 1'000'000; }

constexpr uint64_t kMs = 1'000'000;
// Main loop granularity: load-step heartbeats and membership ticks.
constexpr uint64_t kTickNs = 10 * kMs;
// Longest one wake-up spends receiving datagrams (~2 us each when forged).
constexpr uint64_t kReceiveBudgetNs = 20 * kMs;
// A failing event is logged at most this often per kind (a flood of bad
// datagrams must not flood the log); every failure is counted.
constexpr uint64_t kErrorLogPeriodNs = 10'000'000'000ull;
// Dead peers without addresses are forgotten after this (bounded tables).
constexpr uint64_t kForgetDeadAfterNs = 60'000'000'000ull;
// A scrape waits this long at most for the loop's snapshot.
constexpr auto kSnapshotWait = std::chrono::seconds(1);

class Agent {
public:
    Agent(const Config& cfg, std::vector<uint8_t> key, const AgentOptions& opts);
    int run();

private:
    // Main thread.
    void send_heartbeat(AnnouncedState state);
    uint32_t announced_load_bp(uint32_t inflight_capacity) const;
    void receive_datagrams();
    // Runs one event's handling (`what`: its kind, a fixed name): an
    // exception ends that event only, logged and counted, never the agent.
    template <class Handle>
    void guarded(const char* what, Handle&& handle);
    void note_duplicate_id(const Heartbeat& hb, DropReason verdict);
    void take(const Heartbeat& hb);
    void take(const FlowAnnouncement& a);
    void send_announcement(FlowAnnouncement a);
    template <class Message, class Encode>
    int send_stamped(Message& m, Encode encode);
    std::optional<std::string> node_id_of_slot(uint32_t slot) const;
    std::optional<uint32_t> slot_of_node_id(const std::string& id) const;
    void evaluate_ownership(uint64_t now);
    std::vector<NodeOwnershipView> ownership_views() const;
    void on_peer_event(const PeerEvent& ev);
    void install_uri_rules();
    void learn_services(const Heartbeat& hb);
    void drop_unannounced_services(uint64_t now);
    void update_rates(uint64_t now);
    // Shared addresses (DESIGN.md section 5b).
    void start_shared(const Config& cfg);
    std::optional<uint32_t> bucket_slot_of(const std::string& id) const;
    std::pair<SharedNode, std::vector<SharedNode>> shared_nodes(uint64_t now_ms) const;
    void tick_shared(uint64_t now_ms);
    json drain(bool undo);
    json buckets(const json& req);
    StatusSnapshot snapshot(uint64_t now) const;
    void publish_snapshot();
    json handle(const json& req);

    // Threads of their own.
    void health_loop();
    std::string render_metrics();

    AgentOptions opts_;
    std::string state_dir_;
    std::vector<uint8_t> key_;
    unsigned ifindex_;
    unsigned lo_index_;
    uint64_t incarnation_;
    uint64_t sequence_ = 0;
    size_t silent_cursor_ = 0; // the next silent peer to name (fill_silent_peers)

    mutable std::mutex mu_; // guards cfg_, members_ and the counters below
    Config cfg_;
    uint64_t config_generation_ = 0;
    Membership members_;
    uint64_t heartbeats_sent_ = 0, heartbeats_taken_ = 0, send_failures_ = 0;
    EventErrors errors_{kErrorLogPeriodNs};
    DuplicateIds duplicate_ids_{kErrorLogPeriodNs};
    uint32_t kept_per_s_ = 0, forwarded_per_s_ = 0;
    // What the metrics thread shows: state the main thread owns (the node
    // table, the takeover) among it, so taken by the loop, when a scrape
    // asks for it (snapshot_wanted_), never at every wake-up: with a
    // thousand peers one snapshot costs more than the heartbeats that woke
    // the loop (issue 17).
    StatusSnapshot published_;
    uint64_t publications_ = 0; // snapshots published so far (mu_)
    bool loop_ended_ = false;   // no snapshot will come any more (mu_)
    std::condition_variable published_cv_;
    std::atomic<bool> snapshot_wanted_{false};

    ControlServer control_;
    AddressManager addrs_;
    Maps maps_;
    std::optional<CookieRotation> cookies_; // with "http" services only
    Mac mac_;
    NodeTable table_; // main thread, except write_self (meter thread)
    HeartbeatSocket socket_;
    DatagramRouter router_; // main thread, except dropped()
    PinRelay pins_;
    std::set<std::string> known_services_;
    // Peers' service addresses on lo: until a minute after no peer
    // announces one (connections handed here on it can end).
    ServiceBook service_book_{kForgetDeadAfterNs};
    Takeover takeover_;
    uint64_t started_ns_;
    std::map<std::string, uint64_t> came_alive_ns_; // when each peer last joined or came back
    std::string coordinator_;
    OwnerMap owners_; // the last ownership computation
    // The owners are computed again only when their inputs may have changed
    // (main thread): the peers (members_.live_changes()), the settings (a `set`),
    // this node's own claims, or the time (ownership_at_ns_).
    bool ownership_due_ = true;      // own claims changed, or the last computation failed
    uint64_t ownership_seen_ = 0;    // members_.live_changes() the last computation read
    uint64_t ownership_at_ns_ = 0;   // hold-down or listen period end, or a retry
    uint64_t ownership_config_generation_ = 0;
    Config ownership_config_;        // the settings as of ownership_config_generation_

    std::atomic<bool> healthy_{true};
    std::atomic<bool> stop_{false}; // the health thread's
    LoadMeter meter_;
    uint32_t last_sent_load_ = 0;
    uint64_t last_sent_ns_ = 0;
    uint64_t rates_at_ns_ = 0, kept_total_ = 0, forwarded_total_ = 0;
    // Shared addresses: the bucket table (main thread), and this node's
    // share of shared packets sent on a second hop (announced).
    std::optional<SharedTable> shared_;
    std::unique_ptr<BirdWorker> bird_; // announce = "bird": the routes of the shared addresses
    bool announce_wanted_ = false;   // shared_->announce_wanted() as last seen
    uint64_t second_hops_total_ = 0, shared_packets_total_ = 0;
    uint16_t second_hop_permille_ = 0;
    bool heartbeat_now_ = false;     // a drain: peers hear of it at once
};

unsigned interface_index(const std::string& iface)
{
    unsigned idx = if_nametoindex(iface.c_str());
    if (!idx)
        throw Error(fmt::format("interface '{}' does not exist", iface));
    return idx;
}

Maps open_dataplane(const Config& cfg, const AgentOptions& opts)
{
    AttachOptions attach_opts;
    attach_opts.pin_root = opts.pin_root;
    attach_opts.iface = cfg.interface;
    attach_opts.forward = cfg.forward_ipip ? LB_FORWARD_IPIP : LB_FORWARD_L2;
    if (ensure_attached(attach_opts))
        spdlog::info("attached the data plane to {} (maps in {})", cfg.interface,
                     pin_dir(opts.pin_root, cfg.interface));
    else
        spdlog::info("data plane already attached to {}: keeping it and its flows",
                     cfg.interface);
    return Maps::open_pinned(pin_dir(opts.pin_root, cfg.interface));
}

Agent::Agent(const Config& cfg, std::vector<uint8_t> key, const AgentOptions& opts)
    : opts_(opts), state_dir_(opts.state_dir.empty() ? cfg.state_dir : opts.state_dir), key_(std::move(key)),
      ifindex_(interface_index(cfg.interface)), lo_index_(interface_index("lo")),
      incarnation_(next_incarnation(state_dir_)), cfg_(cfg),
      members_(cfg.node_id, cfg.dead_after), control_(opts.run_dir),
      addrs_(), maps_(open_dataplane(cfg, opts)),
      mac_(interface_mac(cfg.interface)), table_(maps_, cfg, mac_), socket_(cfg, ifindex_),
      router_(cfg.node_id, key_, cfg.replay_window_ms, kErrorLogPeriodNs,
              {.heartbeat = {.take = [this](const Heartbeat& hb) { take(hb); },
                             .judged = [this](const Heartbeat& hb, DropReason verdict) {
                                 note_duplicate_id(hb, verdict);
                             }},
               .announcement = {.take = [this](const FlowAnnouncement& a) { take(a); }},
               .pin = {.take = [this](const PinAnnouncement& a) { pins_.take(a, mono_ns()); }},
               // A node without shared addresses has no use for tables: taken
               // (authenticated, not a replay: nothing wrong) and ignored.
               .table = {.take = [this](const TableChunk& c) {
                   if (shared_)
                       shared_->take(c, mono_ms());
               }}}),
      pins_(maps_,
            {[this](uint32_t slot) { return node_id_of_slot(slot); },
             [this](const std::string& id) { return slot_of_node_id(id); }},
            [this](PinAnnouncement& a) { return send_stamped(a, encode_pin); }),
      takeover_(cfg, addrs_, maps_, ifindex_, mac_,
                [this](const FlowAnnouncement& a) { send_announcement(a); }),
      started_ns_(mono_ns()),
      meter_(cfg, [this](uint32_t load_bp, uint64_t now) {
          // Rewritten while measured: if this agent stops, the data
          // plane sees its own load go stale and keeps everything.
          table_.write_self(load_bp, healthy_, now);
      }, &maps_)
{
    // Only once the data plane is in place: an agent that cannot attach
    // (pin root off bpffs, another XDP program) leaves the host as it was.
    set_arp_sysctls(cfg.interface);
    if (cfg.forward_ipip)
        set_ipip_sysctls();
    // Keys always: l4 services answer SYN floods with cookies too, and
    // `set balance.syn_cookies` may turn them on at any time.
    if (cfg.has_http_service() || cfg.syn_cookies != LB_SYN_COOKIES_OFF)
        set_cookie_sysctls();
    cookies_.emplace(maps_, key_, cfg.cookie_epoch_s);
    cookies_->update(unix_ms() / 1000);
    install_uri_rules();
    if (cfg.has_http_service())
        pins_.listen([this](const char* what, const std::function<void()>& handle) { guarded(what, handle); });
    // On lo, every service address, own ones too: whoever holds one on its
    // NIC, this node can end the connections handed to it. The NIC gets
    // the addresses this node holds (Takeover).
    for (const auto& a : cfg.owned_services) {
        addrs_.add(a, lo_index_);
        known_services_.insert(format_ip(a));
        if (interface_has_address(cfg.interface, a))
            takeover_.adopt(a, cfg.node_id, unix_ms());
    }
    takeover_.set_fenced_slot([this](const std::string& id) {
        std::lock_guard lock(mu_);
        const Peer* p = members_.find(id);
        if (!p || p->state != PeerState::dead)
            return uint32_t(LB_NODE_LOCAL);
        return table_.slot_of(p->last.node_address).value_or(uint32_t(LB_NODE_LOCAL));
    });
    // Peers' service addresses a previous agent held (and left on the NIC
    // when it died): adopted once the cluster names them (Takeover::apply).
    takeover_.set_leftovers(
        nic_leftovers(interface_addresses(cfg.interface), cfg.node_address, cfg.owned_services));
    start_shared(cfg);
}

// Shared addresses on lo and in lb_services (never on the NIC: ECMP routes
// them here, or every node gets every packet), the table's settings, and
// the manager. Entries an agent configured otherwise left are removed.
void Agent::start_shared(const Config& cfg)
{
    for (const auto& a : table_.remove_other_shared(cfg.shared_addresses)) {
        addrs_.remove(a, lo_index_);
        spdlog::info("shared address {} no longer configured: removed from lo and the data plane",
                     format_ip(a));
    }
    maps_.set_config(shared_config_at_start(maps_.config(), cfg));
    if (!cfg.has_shared())
        return;
    // Shared hops always travel in an outer IP header, in l2 mode too.
    set_ipip_sysctls();
    for (const auto& a : cfg.shared_addresses) {
        addrs_.add(a, lo_index_);
        table_.add_shared_address(a);
    }
    shared_.emplace(
        shared_settings(cfg),
        SharedTable::Dataplane{
            .slot_of = [this](const std::string& id) { return bucket_slot_of(id); },
            .write_buckets = [this](const std::vector<lb_bucket>& t) { maps_.set_buckets(t); },
            .write_bucket = [this](uint32_t i, const lb_bucket& b) { maps_.set_bucket(i, b); },
            .write_config =
                [this](uint32_t buckets, uint32_t hash, uint32_t delivery) {
                    lb_config c = maps_.config();
                    c.shared_buckets = buckets;
                    c.shared_hash = hash;
                    c.shared_delivery = delivery;
                    maps_.set_config(c);
                }},
        [this](TableChunk& c) { return send_stamped(c, encode_table_chunk); }, mono_ms());
    if (cfg.announce_bird)
        bird_ = std::make_unique<BirdWorker>(
            BirdAnnouncer(BirdControl(cfg.bird_socket, cfg.bird_protocol)));
    // Kept across restarts, like the incarnation: a drained node stays so.
    if (read_drain_flag(state_dir_)) {
        shared_->set_draining(true);
        spdlog::info("draining (since `peerlb drain`; `peerlb drain --undo` ends it)");
    }
    std::string shown;
    for (const auto& a : cfg.shared_addresses)
        shown += (shown.empty() ? "" : ", ") + format_ip(a);
    spdlog::info("shared addresses {} on lo: {} buckets, waiting for the bucket table", shown,
                 cfg.shared_buckets);
}

// The data plane slot of a node of the bucket table: this node's own slot
// (not LB_NODE_LOCAL: a bucket holds 16-bit slots), a peer's by its address.
std::optional<uint32_t> Agent::bucket_slot_of(const std::string& id) const
{
    if (id == cfg_.node_id)
        return table_.self_slot();
    std::lock_guard lock(mu_);
    if (const Peer* p = members_.find(id))
        return table_.slot_of(p->last.node_address);
    return std::nullopt;
}

// This node and the live peers that serve shared addresses, as the
// bucket table's coordinator weighs them.
std::pair<SharedNode, std::vector<SharedNode>> Agent::shared_nodes(uint64_t now_ms) const
{
    SharedNode self;
    self.id = cfg_.node_id;
    self.weight = cfg_.weight_hundredths();
    self.draining = shared_->draining();
    self.routable = healthy_;
    self.load_bp = meter_.load_bp();
    self.table_version = shared_->applied().version;
    self.heard_ms = now_ms;
    self.second_hop_permille = second_hop_permille_;
    std::vector<SharedNode> peers;
    std::lock_guard lock(mu_);
    for (const auto& [id, p] : members_.peers()) {
        if (p.state == PeerState::dead || !p.last.shared)
            continue;
        SharedNode n;
        n.id = id;
        n.weight = p.last.weight;
        n.draining = p.last.draining;
        n.routable = p.routable();
        n.load_bp = p.last.load_bp_exact ? p.last.load_bp_exact : p.last.load_bp;
        n.table_version = p.last.table_version;
        n.heard_ms = p.last_heard_ns / kMs;
        n.second_hop_permille = p.last.second_hop_permille;
        peers.push_back(std::move(n));
    }
    return {self, peers};
}

void Agent::tick_shared(uint64_t now_ms)
{
    shared_->set_healthy(healthy_);
    const auto [self, peers] = shared_nodes(now_ms);
    shared_->tick(now_ms, self, peers);
    // The lead's BIRD control hooks here: routes to the shared addresses
    // are announced while announce_wanted(), withdrawn otherwise.
    if (const bool wanted = shared_->announce_wanted(); wanted != announce_wanted_) {
        announce_wanted_ = wanted;
        spdlog::info("shared addresses: routes {}", wanted ? "wanted (table applied, serving)"
                                                           : "not wanted (no table, draining, "
                                                             "unhealthy or stopping)");
    }
    if (bird_)
        bird_->want(announce_wanted_);
}

json Agent::drain(bool undo)
{
    if (!shared_)
        throw Error(fmt::format("this node has no shared addresses ([shared] addresses in {}): "
                                "nothing to drain",
                                cfg_.path));
    const bool was = shared_->draining();
    write_drain_flag(state_dir_, !undo); // first: a drain that is not kept is not done
    shared_->set_draining(!undo);
    heartbeat_now_ = true;
    if (was != !undo)
        spdlog::info(undo ? "drain undone: the coordinator gives this node its share again"
                          : "draining: the coordinator moves this node's buckets away");
    return {{"ok", true}, {"draining", !undo}, {"changed", was != !undo}};
}

json Agent::buckets(const json& req)
{
    if (!shared_)
        throw Error(fmt::format("this node has no shared addresses ([shared] addresses in {})", cfg_.path));
    const uint64_t now_ms = mono_ms();
    auto [self, peers] = shared_nodes(now_ms);
    BucketView v;
    v.table = &shared_->applied();
    {
        std::lock_guard lock(mu_);
        const SharedSettings s = shared_settings(cfg_);
        v.buckets = s.buckets;
        v.hash = s.hash;
        v.delivery = s.delivery;
        v.daisy_chain_ms = s.daisy_chain_ms;
    }
    v.coordinator = shared_->coordinator();
    v.nodes.push_back(std::move(self));
    for (auto& p : peers)
        v.nodes.push_back(std::move(p));
    if (!req.contains("client"))
        return buckets_json(v);
    std::optional<uint16_t> port;
    if (req.contains("port") && !req["port"].is_null())
        port = req["port"].get<uint16_t>();
    return client_bucket_json(v, req["client"].get<std::string>(), port, now_ms);
}

// With load.source = "inflight" the count as of now, not as of the meter's
// last reading (peers note their own hand-offs to this node when the
// heartbeat arrives, so the report should be as close to that as it can),
// and past 100 % too. inflight_capacity: load.capacity with that source
// unsmoothed, else 0 (the meter's reading).
uint32_t Agent::announced_load_bp(uint32_t inflight_capacity) const
{
    if (!inflight_capacity)
        return meter_.load_bp();
    try {
        return inflight_load_exact_bp(maps_, inflight_capacity, kMaxLoadExactBp);
    } catch (const std::exception&) {
        return meter_.load_bp();
    }
}

void Agent::send_heartbeat(AnnouncedState state)
{
    Heartbeat hb;
    uint32_t inflight_capacity = 0;
    {
        std::lock_guard lock(mu_);
        hb.node_id = cfg_.node_id;
        hb.interval_ms = cfg_.interval_ms;
        hb.node_address = cfg_.node_address;
        hb.services = cfg_.owned_services;
        hb.claims = takeover_.claims();
        hb.kept_per_s = kept_per_s_;
        hb.forwarded_per_s = forwarded_per_s_;
        hb.conn_cost_bp = cfg_.conn_cost_bp();
        hb.weight = cfg_.weight_hundredths();
        hb.standby = cfg_.standby;
        if (cfg_.source == LoadSource::inflight && !cfg_.smoothing_ms)
            inflight_capacity = cfg_.capacity;
    }
    if (shared_) {
        hb.shared = true;
        hb.draining = shared_->draining();
        hb.table_version = shared_->applied().version;
        hb.second_hop_permille = second_hop_permille_;
    }
    hb.incarnation = incarnation_;
    hb.sequence = ++sequence_;
    hb.sent_unix_ms = unix_ms();
    hb.mac = mac_;
    const uint32_t load = announced_load_bp(inflight_capacity);
    hb.load_bp = static_cast<uint16_t>(std::min(load, LB_LOAD_FULL));
    hb.load_bp_exact = load > LB_LOAD_FULL ? load : 0;
    hb.state = state == AnnouncedState::alive && !healthy_ ? AnnouncedState::unroutable : state;
    {
        // The peers not heard for 2 periods, for the others to confirm
        // deaths (membership.h): last, in the room the other fields leave;
        // named in turn when they do not all fit.
        std::lock_guard lock(mu_);
        hb.lists_silent = true;
        silent_cursor_ += fill_silent_peers(hb, members_.silent_peers(mono_ns()), silent_cursor_);
    }
    int failed = socket_.send(encode_heartbeat(hb, key_));
    std::lock_guard lock(mu_);
    heartbeats_sent_++;
    send_failures_ += failed;
    if (failed)
        spdlog::warn("heartbeat {}: {} send(s) failed", hb.sequence, failed);
    last_sent_load_ = hb.load_bp;
    last_sent_ns_ = mono_ns();
}

template <class Handle>
void Agent::guarded(const char* what, Handle&& handle)
{
    const auto failed = run_guarded(handle);
    if (!failed)
        return;
    std::lock_guard lock(mu_);
    uint64_t unlogged = 0;
    if (!errors_.record(what, mono_ns(), &unlogged))
        return;
    if (unlogged)
        spdlog::error("{} failed: {} (and {} more {} failures not logged)", what, *failed, unlogged, what);
    else
        spdlog::error("{} failed: {}", what, *failed);
}

void Agent::receive_datagrams()
{
    std::array<uint8_t, kMaxHeartbeatSize> buf;
    // Until the socket is empty, so that the membership tick that follows
    // never judges a peer silent while its heartbeat waits behind a flood;
    // bounded in time so that a flood cannot starve the other duties.
    const uint64_t deadline = mono_ns() + kReceiveBudgetNs;
    for (unsigned i = 0;; i++) {
        if (i % 64 == 63 && mono_ns() >= deadline)
            return;
        auto n = socket_.receive(buf);
        if (!n)
            return;
        const auto datagram = std::span<const uint8_t>(buf.data(), std::min(*n, buf.size()));
        guarded("datagram", [&] { router_.route(datagram, *n > buf.size(), mono_ns(), unix_ms()); });
    }
}

// A heartbeat that shows two nodes with one id: counted and logged, never
// silently absorbed by the own-id check or the replay guard.
void Agent::note_duplicate_id(const Heartbeat& hb, DropReason verdict)
{
    std::lock_guard lock(mu_);
    const Peer* peer = members_.find(hb.node_id);
    const auto why = duplicate_id_evidence(hb, verdict, peer ? &peer->last : nullptr,
                                           {cfg_.node_id, cfg_.node_address, incarnation_}, unix_ms(),
                                           cfg_.replay_window_ms);
    uint64_t unlogged = 0;
    if (why && duplicate_ids_.record(hb.node_id, mono_ns(), &unlogged))
        spdlog::error("duplicate node id: {}; give each node its own [node] id{}", *why,
                      unlogged ? fmt::format(" ({} more not logged)", unlogged) : "");
}

void Agent::take(const FlowAnnouncement& a)
{
    if (a.to != cfg_.node_id)
        return; // for another node's takeover
    std::optional<uint32_t> slot;
    {
        std::lock_guard lock(mu_);
        if (const Peer* p = members_.find(a.node_id))
            slot = table_.slot_of(p->last.node_address);
    }
    if (!slot) {
        spdlog::warn("{} announced connections but is not a known peer: ignored", a.node_id);
        return;
    }
    takeover_.install_flows(a, *slot, mono_ns());
}

std::optional<std::string> Agent::node_id_of_slot(uint32_t slot) const
{
    if (slot == LB_NODE_LOCAL)
        return cfg_.node_id;
    std::lock_guard lock(mu_);
    for (const auto& [id, p] : members_.peers())
        if (table_.slot_of(p.last.node_address) == slot)
            return id;
    return std::nullopt;
}

std::optional<uint32_t> Agent::slot_of_node_id(const std::string& id) const
{
    if (id == cfg_.node_id)
        return LB_NODE_LOCAL;
    std::lock_guard lock(mu_);
    if (const Peer* p = members_.find(id))
        return table_.slot_of(p->last.node_address);
    return std::nullopt;
}

void Agent::send_announcement(FlowAnnouncement a)
{
    if (int failed = send_stamped(a, encode_announcement))
        spdlog::warn("flow announcement to {}: {} send(s) failed", a.to, failed);
}

// Datagrams other than heartbeats share their sequence space.
template <class Message, class Encode>
int Agent::send_stamped(Message& m, Encode encode)
{
    m.node_id = cfg_.node_id;
    m.incarnation = incarnation_;
    m.sequence = ++sequence_;
    m.sent_unix_ms = unix_ms();
    return socket_.send(encode(m, key_));
}

std::vector<NodeOwnershipView> Agent::ownership_views() const
{
    std::vector<NodeOwnershipView> views;
    views.push_back({cfg_.node_id, true, started_ns_, cfg_.owned_services, takeover_.claims()});
    for (const auto& [id, p] : members_.peers()) {
        auto since = came_alive_ns_.find(id);
        views.push_back({id, p.state != PeerState::dead,
                         since == came_alive_ns_.end() ? p.state_since_ns : since->second,
                         p.last.services, p.last.claims});
    }
    return views;
}

// Called by run() when an input changed or ownership_at_ns_ came; sets
// when to call it again. Due again if it fails half-way (exception).
void Agent::evaluate_ownership(uint64_t now)
{
    ownership_due_ = true;
    OwnerMap owners;
    {
        std::lock_guard lock(mu_);
        ownership_seen_ = members_.live_changes();
        // A starting agent listens first: a peer may hold its address.
        const uint64_t listened = started_ns_ + uint64_t(cfg_.dead_after) * cfg_.interval_ms * kMs;
        if (now < listened) {
            ownership_at_ns_ = listened;
            ownership_due_ = false;
            return;
        }
        const auto views = ownership_views();
        ownership_at_ns_ = UINT64_MAX;
        if (cfg_.takeover) {
            const uint64_t hold_down_ns = uint64_t(cfg_.hold_down_ms) * kMs;
            owners = compute_owners(views, cfg_.node_id, now, hold_down_ns);
            ownership_at_ns_ = next_ownership_change(views, now, hold_down_ns).value_or(UINT64_MAX);
        } else { // each node holds its own addresses, whatever happens to the others
            for (const auto& v : views)
                for (const auto& a : v.home)
                    owners[a] = AddressOwner{v.id, v.id};
        }
        coordinator_ = coordinator(views).value_or("");
        owners_ = owners;
    }
    const auto claims = takeover_.claims();
    const bool settled = takeover_.apply(owners, now, unix_ms());
    // What this node holds is an input too (its claims: an adopted leftover
    // is decided by the next computation); a failed take is tried again.
    ownership_due_ = takeover_.claims() != claims;
    if (!settled)
        ownership_at_ns_ = std::min(ownership_at_ns_, now + kTickNs);
}

void Agent::take(const Heartbeat& hb)
{
    std::optional<PeerEvent> ev;
    Peer peer;
    {
        std::lock_guard lock(mu_);
        heartbeats_taken_++;
        ev = members_.on_heartbeat(hb, mono_ns());
        if (const Peer* p = members_.find(hb.node_id))
            peer = *p;
    }
    learn_services(hb);
    service_book_.announce(hb.node_id, hb.services, mono_ns());
    table_.write_peer(peer);
    if (ev)
        on_peer_event(*ev);
}

// A peer's service address that no peer has announced for a while: off lo
// and out of the data plane (unless this node owns it, or holds it now).
void Agent::drop_unannounced_services(uint64_t now)
{
    for (const auto& a : service_book_.expired(now)) {
        const bool own = std::find(cfg_.owned_services.begin(), cfg_.owned_services.end(), a) !=
                         cfg_.owned_services.end();
        const bool shared = std::find(cfg_.shared_addresses.begin(), cfg_.shared_addresses.end(), a) !=
                            cfg_.shared_addresses.end();
        const auto claims = takeover_.claims();
        if (own || shared || std::find(claims.begin(), claims.end(), a) != claims.end())
            continue;
        guarded("service address", [&] {
            table_.remove_service_address(a);
            addrs_.remove(a, lo_index_);
            known_services_.erase(format_ip(a));
            spdlog::info("removed service address {} from lo: no peer announces it", format_ip(a));
        });
    }
}

void Agent::learn_services(const Heartbeat& hb)
{
    std::vector<IpAddress> node_addresses; // filled when an address is new
    for (const auto& a : hb.services) {
        if (known_services_.count(format_ip(a)))
            continue;
        if (node_addresses.empty()) {
            node_addresses.push_back(cfg_.node_address);
            std::lock_guard lock(mu_);
            for (const auto& [id, p] : members_.peers())
                node_addresses.push_back(p.last.node_address);
        }
        // One address at a time, known once in place: a failure (IPv6
        // disabled, lb_services full) is retried at the next heartbeat and
        // keeps neither the other addresses nor the peer out.
        guarded("service address", [&] {
            // A key holder could announce the gateway's or a peer's address:
            // refused, counted and logged like any failed event.
            if (const std::string why = unfit_service_address(a, node_addresses, gateways());
                !why.empty())
                throw Error(fmt::format("{}'s service address {} refused: {}", hb.node_id,
                                        format_ip(a), why));
            // Its lb_services entries are the buckets' here: a peer that owns
            // it is configured otherwise.
            if (std::find(cfg_.shared_addresses.begin(), cfg_.shared_addresses.end(), a) !=
                cfg_.shared_addresses.end())
                throw Error(fmt::format("{}'s service address {} refused: it is a shared address here",
                                        hb.node_id, format_ip(a)));
            // Held on lo so this node can terminate connections handed to it.
            if (addrs_.add(a, lo_index_))
                spdlog::info("added {}'s service address {} to lo", hb.node_id, format_ip(a));
            table_.add_service_address(a);
            known_services_.insert(format_ip(a));
        });
    }
}

// The rules with node ids turned into this node's slots; a node not heard
// from yet has no slot, and is added when it joins.
void Agent::install_uri_rules()
{
    std::map<std::string, IpAddress> addresses{{cfg_.node_id, cfg_.node_address}};
    {
        std::lock_guard lock(mu_);
        for (const auto& [id, p] : members_.peers())
            addresses[id] = p.last.node_address;
    }
    table_.write_uri_rules(cfg_.uri_rules, addresses);
}

void Agent::on_peer_event(const PeerEvent& ev)
{
    Peer peer;
    {
        std::lock_guard lock(mu_);
        if (const Peer* p = members_.find(ev.node_id))
            peer = *p;
        // Hold-down counts from a join or a return, not from a suspect blip.
        if (ev.to == PeerState::alive && (!ev.from || *ev.from == PeerState::dead))
            came_alive_ns_[ev.node_id] = mono_ns();
    }
    const auto slot = table_.write_peer(peer);
    // A rule may name the newcomer (its slot joins the rule's node set),
    // or the newcomer took the slot of a rule's node gone (it leaves it).
    // Only then: the rewrite walks every peer, so a thousand joins would
    // cost a quadratic time.
    const auto names_it = [&](const UriRuleConfig& r) {
        return std::find(r.nodes.begin(), r.nodes.end(), ev.node_id) != r.nodes.end();
    };
    if (!ev.from && (std::any_of(cfg_.uri_rules.begin(), cfg_.uri_rules.end(), names_it) ||
                     (slot && table_.candidates().in_a_rule(*slot))))
        install_uri_rules();
    if (!ev.from)
        spdlog::info("peer {} ({}) joined: {} in slot {}", ev.node_id,
                     format_ip(peer.last.node_address), peer_state_name(ev.to),
                     slot ? std::to_string(*slot) : "none");
    else
        spdlog::log(ev.to == PeerState::alive ? spdlog::level::info : spdlog::level::warn,
                    "peer {} {} -> {}", ev.node_id, peer_state_name(*ev.from),
                    peer_state_name(ev.to));
}

void Agent::update_rates(uint64_t now)
{
    if (now - rates_at_ns_ < 1'000'000'000ull)
        return;
    uint64_t kept = 0, forwarded = 0, second_hops = 0, shared_packets = 0;
    for (const auto& c : maps_.counters()) {
        if (c.kind == LB_KIND_KEPT)
            kept += c.packets;
        else if (c.kind == LB_KIND_FORWARDED)
            forwarded += c.packets;
        if (c.name.starts_with("shared_"))
            shared_packets += c.packets;
        if (c.name == "shared_second_hop")
            second_hops += c.packets;
    }
    // Of the shared packets this node handled since the last reading, the
    // share it sent on along a chain (announced for `peerlb buckets`).
    if (shared_packets > shared_packets_total_ && second_hops >= second_hops_total_)
        second_hop_permille_ = static_cast<uint16_t>(std::min<uint64_t>(
            1000, (second_hops - second_hops_total_) * 1000 / (shared_packets - shared_packets_total_)));
    else
        second_hop_permille_ = 0;
    second_hops_total_ = second_hops;
    shared_packets_total_ = shared_packets;
    const double secs = rates_at_ns_ ? double(now - rates_at_ns_) / 1e9 : 0;
    std::lock_guard lock(mu_);
    if (secs > 0) {
        kept_per_s_ = static_cast<uint32_t>(std::lround(double(kept - kept_total_) / secs));
        forwarded_per_s_ =
            static_cast<uint32_t>(std::lround(double(forwarded - forwarded_total_) / secs));
    }
    kept_total_ = kept;
    forwarded_total_ = forwarded;
    rates_at_ns_ = now;
}

json Agent::handle(const json& req)
{
    const std::string cmd = req.value("cmd", "");
    if (cmd == "set") {
        const std::string key = req.at("key").get<std::string>();
        const std::string value = req.at("value").get<std::string>();
        std::lock_guard lock(mu_);
        Config next = apply_setting(cfg_, key, value); // throws: nothing changes
        if (next.syn_cookies != LB_SYN_COOKIES_OFF && cfg_.syn_cookies == LB_SYN_COOKIES_OFF)
            set_cookie_sysctls();
        table_.apply_config(next);
        members_.set_dead_after(next.dead_after);
        router_.set_replay_window(next.replay_window_ms);
        if (shared_)
            shared_->configure(shared_settings(next));
        takeover_.set_config(next);
        cfg_ = next;
        meter_.configure(next);
        config_generation_++;
        spdlog::info("set {} = {}", key, value);
        return {{"ok", true}, {"key", key}, {"value", value}};
    }
    if (cmd == "peers")
        return peers_json(snapshot(mono_ns()));
    if (cmd == "status")
        return status_json(snapshot(mono_ns()));
    if (cmd == "drain")
        return drain(req.value("undo", false));
    if (cmd == "buckets")
        return buckets(req);
    return {{"error", fmt::format("unknown command '{}'", cmd)}};
}

void Agent::health_loop()
{
    uint32_t failures = 0;
    while (!stop_) {
        Config cfg;
        {
            std::lock_guard lock(mu_);
            cfg = cfg_;
        }
        if (!cfg.health_enabled) {
            healthy_ = true;
        } else {
            std::string why;
            if (probe_service(cfg.node_address, cfg.health_port, cfg.health_http_path,
                              cfg.health_timeout_ms, why)) {
                if (!healthy_)
                    spdlog::info("service healthy again: routable");
                failures = 0;
                healthy_ = true;
            } else if (++failures >= cfg.health_fail_after && healthy_) {
                spdlog::warn("service unhealthy ({}): announcing not routable", why);
                healthy_ = false;
            }
        }
        for (uint32_t waited = 0; waited < cfg.health_interval_ms && !stop_; waited += 50)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// Main thread: the takeover and the node table are its own.
StatusSnapshot Agent::snapshot(uint64_t now) const
{
    StatusSnapshot s;
    s.taken_ns = now;
    s.incarnation = incarnation_;
    s.load_bp = meter_.load_bp();
    s.healthy = healthy_;
    s.slot = table_.self_slot();
    s.addresses = takeover_.status();
    s.takeovers = takeover_.takeovers();
    s.givebacks = takeover_.givebacks();
    s.flows_installed = takeover_.flows_installed();
    s.flows_announced = takeover_.flows_announced();
    s.node_slots_refused = table_.slots_refused();
    if (shared_) {
        s.shared.table_version = shared_->applied().version;
        s.shared.table_author = shared_->applied().author;
        s.shared.coordinator = shared_->coordinator();
        s.shared.owned = shared_->owned_here();
        if (bird_) {
            s.shared.bird = true;
            s.shared.bird_announced = bird_->announced();
            s.shared.bird_error = bird_->last_error();
        }
        s.shared.draining = shared_->draining();
        s.shared.announce = shared_->announce_wanted();
        s.shared.second_hop_permille = second_hop_permille_;
        s.shared.stats = shared_->stats();
    }
    for (DropReason r : kAllDropReasons)
        s.drops[r] = router_.dropped(r);
    std::lock_guard lock(mu_);
    s.node_id = cfg_.node_id;
    s.interface = cfg_.interface;
    s.config_path = cfg_.path;
    s.node_address = cfg_.node_address;
    s.home = cfg_.owned_services;
    s.shared.addresses = cfg_.shared_addresses;
    s.shared.buckets = cfg_.has_shared() ? cfg_.shared_buckets : 0;
    s.interval_ms = cfg_.interval_ms;
    s.dead_after = cfg_.dead_after;
    s.accept_below = cfg_.accept_below;
    s.min_difference = cfg_.min_difference;
    s.pick_least = cfg_.pick_least;
    s.choices = cfg_.choices;
    s.kept_per_s = kept_per_s_;
    s.forwarded_per_s = forwarded_per_s_;
    s.weight = cfg_.weight_hundredths();
    s.standby = cfg_.standby;
    for (const auto& [id, p] : members_.peers())
        s.peers[id] = {p, table_.slot_of(p.last.node_address)};
    s.owners = owners_;
    s.coordinator = coordinator_;
    s.heartbeats_sent = heartbeats_sent_;
    s.heartbeats_taken = heartbeats_taken_;
    s.duplicate_ids = duplicate_ids_.counts();
    s.duplicate_ids_total = duplicate_ids_.total();
    s.errors = errors_.counts();
    return s;
}

void Agent::publish_snapshot()
{
    StatusSnapshot s = snapshot(mono_ns());
    {
        std::lock_guard lock(mu_);
        published_ = std::move(s);
        publications_++;
    }
    published_cv_.notify_all();
}

// On the metrics server's thread: a snapshot the loop takes on request (at
// its next wake-up, within a tick), and the maps. A loop that does not
// answer within kSnapshotWait (stalled) leaves the last one it took.
std::string Agent::render_metrics()
{
    StatusSnapshot s;
    {
        std::unique_lock lock(mu_);
        const uint64_t seen = publications_;
        snapshot_wanted_ = true;
        published_cv_.wait_for(lock, kSnapshotWait,
                               [&] { return publications_ != seen || loop_ended_; });
        s = published_;
    }
    return metrics_text(s, maps_.counters(), maps_.node_counters());
}

int Agent::run()
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    // Blocked before the threads start, so only the signalfd sees them.
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);
    Fd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd)
        throw SystemError("signalfd", errno);

    meter_.start();
    std::thread health([this] { health_loop(); });
    std::unique_ptr<MetricsServer> metrics;
    struct Join {
        Agent* self;
        std::thread& health;
        ~Join()
        {
            {
                std::lock_guard lock(self->mu_);
                self->loop_ended_ = true; // a scrape waiting for a snapshot takes the last one
            }
            self->published_cv_.notify_all();
            self->stop_ = true;
            self->meter_.stop();
            health.join();
        }
    } join{this, health};
    if (cfg_.metrics_listen) {
        publish_snapshot();
        metrics = std::make_unique<MetricsServer>(*cfg_.metrics_listen,
                                                  [this] { return render_metrics(); });
        spdlog::info("metrics on http://{}:{}/metrics", format_ip(cfg_.metrics_listen->address),
                     cfg_.metrics_listen->port);
    }
    spdlog::info("agent {} up: node {} on {}, heartbeat every {} ms, incarnation {}",
                 cfg_.node_id, format_ip(cfg_.node_address), cfg_.interface, cfg_.interval_ms,
                 incarnation_);

    ownership_config_ = cfg_; // a `set` is compared with this
    uint64_t next_heartbeat = mono_ns();
    uint64_t next_judge = 0; // when the peers' silence is judged again
    while (true) {
        const uint64_t now = mono_ns();
        uint32_t interval_ms, load_step;
        size_t peers;
        {
            std::lock_guard lock(mu_);
            interval_ms = cfg_.interval_ms;
            load_step = cfg_.load_step;
            peers = members_.peers().size();
            if (ownership_config_generation_ != config_generation_) { // a `set`
                if (affects_ownership(ownership_config_, cfg_))
                    ownership_due_ = true;
                ownership_config_ = cfg_;
                ownership_config_generation_ = config_generation_;
            }
        }
        const bool load_jumped =
            meter_.measured() &&
            uint32_t(std::abs(int(meter_.load_bp()) - int(last_sent_load_))) >= load_step * 100 &&
            now - last_sent_ns_ >= extra_heartbeat_gap_ns(peers, kTickNs);
        // Each event below is guarded on its own: one that fails is
        // logged and counted, and the others still run.
        if (now >= next_heartbeat || load_jumped || heartbeat_now_) {
            heartbeat_now_ = false;
            guarded("heartbeat send", [&] { send_heartbeat(AnnouncedState::alive); });
            next_heartbeat = now + uint64_t(interval_ms) * kMs;
            // Setting net.ipv4.ip_forward (or net.ipv6.conf.all.forwarding)
            // resets every interface's forwarding, lo's included: put back
            // within a period (logged when it was off). Shared addresses'
            // hops always have an outer header: they need it in l2 mode too.
            if (cfg_.forward_ipip || shared_)
                guarded("ipip sysctls", [] { set_ipip_sysctls(); });
        }
        // Heartbeats already queued are read before peers are judged: after
        // a stall (a slow disk, a paused VM) they prove the peers alive.
        guarded("datagram receive", [&] { receive_datagrams(); });
        // Silence is judged once a tick, not at every wake-up: the loop
        // wakes for every datagram, and judging all of a thousand peers
        // at each of their heartbeats cost as much as taking them (issue 17).
        if (now >= next_judge) {
            next_judge = now + kTickNs;
            std::vector<PeerEvent> events;
            {
                std::lock_guard lock(mu_);
                events = members_.tick(mono_ns());
            }
            for (const auto& ev : events)
                guarded("peer event", [&] { on_peer_event(ev); });
            std::lock_guard lock(mu_);
            for (const auto& id : members_.forget_dead(now, kForgetDeadAfterNs)) {
                table_.forget_peer(id);
                came_alive_ns_.erase(id);
                service_book_.forget(id, now);
            }
        }
        drop_unannounced_services(now);
        // Peers joined, died, came back or changed their claims, a `set`,
        // this node's claims, or a deadline: the owners may have changed.
        bool ownership_inputs_changed;
        {
            std::lock_guard lock(mu_);
            ownership_inputs_changed = members_.live_changes() != ownership_seen_;
        }
        if (ownership_due_ || ownership_inputs_changed || now >= ownership_at_ns_)
            guarded("ownership", [&] { evaluate_ownership(now); });
        guarded("takeover timers", [&] { takeover_.run_timers(now); });
        if (shared_)
            guarded("bucket table", [&] { tick_shared(now / kMs); });
        if (cookies_)
            guarded("cookie keys", [&] {
                if (cookies_->update(unix_ms() / 1000))
                    spdlog::debug("cookie keys: new epoch");
            });
        guarded("rates", [&] { update_rates(now); });
        if (snapshot_wanted_.exchange(false))
            publish_snapshot(); // a scrape waits for it

        // The control socket's clients after the fixed three: each served a
        // step at a time, as its bytes come, never holding the loop.
        std::vector<pollfd> fds = {
            {socket_.fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0},
            {pins_.poll_fd(), POLLIN, 0}};
        const size_t control_from = fds.size();
        control_.add_poll_fds(fds);
        const uint64_t until = std::min({next_heartbeat, now + kTickNs, next_judge, ownership_at_ns_});
        int timeout_ms = int((until > now ? until - now : 0) / kMs) + 1;
        if (const auto deadline = control_.next_deadline())
            timeout_ms = int(std::clamp<int64_t>(
                std::chrono::ceil<std::chrono::milliseconds>(*deadline - ControlServer::Clock::now())
                    .count(),
                0, timeout_ms));
        if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR)
            throw SystemError("poll", errno);
        if (fds[2].revents & POLLIN)
            pins_.consume(); // each event guarded in the callback
        // Datagrams (fds[0]) are read at the top of the loop, before peers
        // are judged: poll only wakes it for them.
        const bool control_ready =
            std::any_of(fds.begin() + control_from, fds.end(), [](const pollfd& p) { return p.revents; });
        const auto control_deadline = control_.next_deadline();
        if (control_ready || (control_deadline && *control_deadline <= ControlServer::Clock::now()))
            guarded("control request", [&] {
                control_.serve([this](const nlohmann::json& req) { return nlohmann::json(handle(req)); });
            });
        if (fds[1].revents & POLLIN) {
            signalfd_siginfo si{};
            if (read(sigfd.get(), &si, sizeof(si)) == sizeof(si))
                spdlog::info("signal {}: leaving the cluster; the data plane stays attached",
                             si.ssi_signo);
            // Peers stop choosing this node at once instead of after
            // dead_after periods, and take its addresses over: off the NIC
            // (without takeover nobody would: they stay).
            if (cfg_.takeover)
                guarded("address release", [&] { takeover_.release_all(); });
            // Routes to the shared addresses go before the node does; the
            // addresses stay on lo and the data plane keeps following the
            // last table (DESIGN.md 5b, "No agent").
            if (shared_)
                guarded("bucket table", [&] { shared_->set_stopping(); tick_shared(mono_ms()); });
            if (bird_)
                guarded("BIRD withdrawal", [&] { bird_->withdraw_and_stop(); });
            guarded("heartbeat send", [&] { send_heartbeat(AnnouncedState::leaving); });
            return 0;
        }
    }
}

} // namespace

int run_agent(const AgentOptions& opts)
{
    Config cfg = load_config(opts.config_path); // nothing on the system changes before this
    spdlog::set_level(spdlog::level::from_str(cfg.log_level));
    Agent agent(cfg, load_key(cfg.key_file), opts);
    return agent.run();
}

} // namespace peerlb
