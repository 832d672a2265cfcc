// peerlb-sim: the membership of N agents in one process, on a fake clock
// and a fake transport (issue 17, part 3).
//
//   peerlb-sim [--nodes N] [--interval-ms MS] [--dead-after K] [--loss P]
//       [--delay-ms D] [--jitter-ms J] [--starved-fraction F] [--starve-ms S]
//       [--starve-gap-ms G] [--deaths K [--deaths-at-once]] [--return-ms R]
//       [--duration-s T] [--warmup-s W] [--seed X] [--ownership-nodes M] [--alone] [--cpu]
//       [--json FILE] [--check]
//
// Each simulated agent runs the agent's own parts as agent.cpp's loop
// drives them: at each turn it sends its heartbeat when due, naming its
// silent peers (Membership::silent_peers, fill_silent_peers), takes every
// datagram that reached it (Membership::on_heartbeat), judges its peers
// (Membership::tick), and computes the address owners again when the peers
// changed (compute_owners, as Agent::evaluate_ownership, its claims going
// into its next heartbeats). --alone: no silent peers named, as agents did
// before deaths were confirmed by peers: each observer decides alone.
// Heartbeats are the real struct, encoded and signed by the real encoder
// for their size; receivers are handed the struct (decoding 2 million
// datagrams per simulated second would make the run 10x longer; --cpu
// measures that cost on its own).
//
// Time: an event queue on a fake clock in nanoseconds. An agent's loop
// turns at its heartbeat time and at Membership::next_tick_ns(), the first
// instant a tick can change a state (at N = 1000 the real agent wakes on
// each of the ~2000 datagrams a second, so it judges within ~0.5 ms of that
// instant; the simulator judges at it); agents that compute the owners
// also every 10 ms (kTickNs, the agent's poll timeout). A datagram is taken
// with its arrival time (the agent wakes on the socket), before any turn
// that comes after it. Agents start knowing each other (as after their
// first period), so that each one's peer table lies in one piece of memory.
//
// Transport: multicast, every heartbeat to every other node, each copy lost
// with probability --loss, delayed by --delay-ms +- --jitter-ms (uniform,
// never below 0). Starvation: a fraction of the nodes (chosen by the seed)
// is CPU-starved now and then: for --starve-ms it neither sends nor
// processes; what reached it meanwhile is taken on waking, in order, before
// its tick, as the agent does (the socket buffer is not modelled: 2 MiB of
// SO_RCVBUF holds about 2 s of heartbeats at N = 1000). Deaths: --deaths
// nodes (not starved ones) stop at random times (or all at one instant,
// --deaths-at-once) for good, or return after --return-ms as a new agent
// (new incarnation, empty peer table).
//
// Figures (stdout, and --json): time from a death to each observer's
// suspect and dead (median, p99, max; observers that are starved ones
// apart), false suspicions and deaths of live nodes (each observer's
// declaration counts; "incidents": a live node going from dead nowhere to
// dead somewhere) per 1000 node-hours, for healthy and for starved nodes,
// datagrams and bytes per second per node, ownership computations, and
// the wall time. --cpu adds the measured cost of receiving one heartbeat
// (receive_cost.h). --check exits 1 when an observer missed a death or a
// live node was declared dead (for the smoke test).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nodes.h"
#include "receive_cost.h"
#include "userspace/agent/heartbeat.h"
#include "userspace/agent/membership.h"
#include "userspace/agent/ownership.h"

namespace peerlb::sim {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSecond = 1000 * kMs;
constexpr uint64_t kTickNs = 10 * kMs;                  // the agent's loop (agent.cpp kTickNs)
constexpr uint64_t kForgetDeadAfterNs = 60 * kSecond;   // agent.cpp
constexpr uint64_t kHoldDownNs = 5 * kSecond;           // cluster.hold_down_ms default
constexpr uint64_t kUnixEpochMs = 1'700'000'000'000ull; // sent_unix_ms = this + fake clock

struct Options {
    uint32_t nodes = 1000;
    uint32_t interval_ms = 500;
    uint32_t dead_after = 3;
    double loss = 0;
    double delay_ms = 0.5;
    double jitter_ms = 0.5;
    double starved_fraction = 0;
    double starve_ms = 2000;
    double starve_gap_ms = 10'000;
    uint32_t deaths = 0;
    bool deaths_at_once = false;
    double return_ms = 0;
    double duration_s = 60;
    double warmup_s = 5;
    double detect_within_ms = 10'000;
    uint64_t seed = 1;
    uint32_t ownership_nodes = UINT32_MAX; // the first ones compute the owners; default: all
    bool alone = false;
    bool cpu = false;
    bool check = false;
    std::string json_path;
};

// Deterministic across platforms: mt19937_64 is specified, and the
// conversions below are ours (std's distributions are not).
class Random {
public:
    explicit Random(uint64_t seed) : gen_(seed) {}
    double uniform() { return double(gen_() >> 11) * 0x1.0p-53; } // [0, 1)
    uint64_t below(uint64_t n) { return uint64_t(uniform() * double(n)); }
    double exponential(double mean) { return -mean * std::log(1.0 - uniform()); }

private:
    std::mt19937_64 gen_;
};

struct Delivery {
    uint64_t arrival_ns;
    uint32_t sender;
    uint32_t slot;      // in the sender's ring of sent heartbeats
    uint64_t sequence;  // checks that the slot still holds it
};

struct Agent {
    std::string id;
    bool starvable = false;
    bool computes_ownership = true;
    bool killed = false;
    uint64_t starved_until_ns = 0;
    uint64_t resumed_ns = 0;      // end of its last starvation
    uint64_t wake_ns = UINT64_MAX; // its one live wake event (others in the queue are stale)
    uint64_t next_heartbeat_ns = 0;
    uint64_t started_ns = 0;
    uint64_t next_forget_ns = 0;
    size_t silent_cursor = 0;
    std::unique_ptr<Membership> members;
    Heartbeat hb; // the fields that stay; identity and sequence stamped at each send
    std::vector<Delivery> inbox;
    // As Agent::evaluate_ownership.
    bool ownership_due = true;
    uint64_t ownership_seen = 0;
    uint64_t ownership_at_ns = 0;
    std::map<std::string, uint64_t> came_alive_ns;
};

// A death being watched: when each observer saw it (0: not yet).
struct Death {
    uint32_t node;
    uint64_t at_ns;
    std::vector<uint64_t> suspect_ns, dead_ns;
    std::vector<bool> observer; // alive and not killed from the death on
};

struct Samples {
    std::vector<double> v;
    void add(double x) { v.push_back(x); }
    json summary() const
    {
        if (v.empty())
            return {{"count", 0}, {"median", nullptr}, {"p99", nullptr}, {"max", nullptr}};
        std::vector<double> s = v;
        std::sort(s.begin(), s.end());
        auto at = [&](double q) { return s[std::min(s.size() - 1, size_t(q * double(s.size())))]; };
        return {{"count", s.size()}, {"median", at(0.5)}, {"p99", at(0.99)}, {"max", s.back()}};
    }
};

// What one run counts; "healthy" and "starved" are the class of the node a
// declaration is about (starved: one of the nodes starved now and then).
struct Counts {
    uint64_t false_suspicions[2] = {}; // [starvable]
    uint64_t false_deaths[2] = {};
    uint64_t false_deaths_by_starved_observer[2] = {};
    uint64_t incidents[2] = {};
    double node_ns[2] = {}; // live node time measured, by class
    uint64_t sent = 0, sent_bytes = 0, received = 0, received_bytes = 0;
    uint64_t hb_min = UINT64_MAX, hb_max = 0;
    uint64_t ownership_runs = 0;
    double ownership_wall_ns = 0;
    double ownership_node_ns = 0; // time of the nodes that compute it
    uint64_t wakes = 0, ticks = 0;
};

class Simulation {
public:
    explicit Simulation(const Options& o) : o_(o), rng_(o.seed), key_(32, 0x5a) { setup(); }
    void run();
    json results() const;
    bool check_failed(std::string& why) const;

private:
    enum class Kind : uint8_t { wake, starve, kill, revive };
    struct Event {
        uint64_t at_ns;
        uint64_t order; // ties: in the order scheduled (deterministic)
        Kind kind;
        uint32_t node;
        bool operator>(const Event& e) const { return at_ns != e.at_ns ? at_ns > e.at_ns : order > e.order; }
    };

    void setup();
    void start_agent(uint32_t i, uint64_t now);
    void schedule(Kind kind, uint32_t node, uint64_t at);
    void wake(uint32_t i, uint64_t now);
    void turn(uint32_t i, uint64_t now);
    void send(uint32_t i, uint64_t now);
    void receive(uint32_t i, uint64_t now);
    void evaluate_ownership(uint32_t i, uint64_t now);
    void note(uint32_t observer, const PeerEvent& ev, uint64_t now);
    void starve(uint32_t i, uint64_t now);
    void kill(uint32_t i, uint64_t now);
    void revive(uint32_t i, uint64_t now);
    void account_time(uint64_t now);
    uint32_t index_of(const std::string& id) const { return uint32_t(std::stoul(id.substr(1))); }
    bool measuring(uint64_t now) const { return now >= warmup_ns_; }

    Options o_;
    Random rng_;
    std::vector<uint8_t> key_;
    uint64_t interval_ns_, warmup_ns_, end_ns_, detect_within_ns_;
    std::vector<Agent> agents_;
    std::vector<std::vector<Heartbeat>> sent_; // per sender: a ring of its last heartbeats
    size_t ring_ = 0;
    std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
    uint64_t order_ = 0;
    std::vector<uint32_t> dead_views_; // per node: observers holding it dead now
    std::vector<Death> deaths_;
    std::vector<int> death_of_; // per node: index in deaths_ of its current death, or -1
    Counts c_;
    uint64_t accounted_ns_ = 0;
    uint32_t live_[2] = {}; // live nodes by class (starvable)
    uint32_t live_computing_ = 0; // live nodes that compute the owners
    double wall_s_ = 0;
    std::optional<ReceiveCost> cpu_;
};

void Simulation::setup()
{
    interval_ns_ = uint64_t(o_.interval_ms) * kMs;
    warmup_ns_ = uint64_t(o_.warmup_s * 1e9);
    end_ns_ = warmup_ns_ + uint64_t(o_.duration_s * 1e9);
    detect_within_ns_ = uint64_t(o_.detect_within_ms * 1e6);
    const uint64_t longest_wait_ns = uint64_t((o_.starve_ms + o_.delay_ms + o_.jitter_ms) * 1e6) + 2 * kTickNs;
    ring_ = size_t(longest_wait_ns / interval_ns_) + 4;

    agents_.resize(o_.nodes);
    sent_.assign(o_.nodes, std::vector<Heartbeat>(ring_));
    dead_views_.assign(o_.nodes, 0);
    death_of_.assign(o_.nodes, -1);
    for (uint32_t i = 0; i < o_.nodes; i++) {
        Agent& a = agents_[i];
        a.id = node_id(i, o_.nodes);
        a.computes_ownership = i < o_.ownership_nodes;
        a.hb = node_heartbeat(i, o_.nodes, o_.interval_ms);
        a.hb.incarnation = 0; // start_agent: 1
    }
    // Starved nodes: a fraction, chosen at random; deaths among the others.
    std::vector<uint32_t> order(o_.nodes);
    for (uint32_t i = 0; i < o_.nodes; i++)
        order[i] = i;
    for (uint32_t i = o_.nodes - 1; i > 0; i--)
        std::swap(order[i], order[rng_.below(i + 1)]);
    const auto starvable = uint32_t(std::lround(o_.starved_fraction * o_.nodes));
    for (uint32_t k = 0; k < starvable; k++) {
        agents_[order[k]].starvable = true;
        schedule(Kind::starve, order[k], uint64_t(rng_.uniform() * double(o_.starve_gap_ms) * 1e6));
    }
    const uint64_t last_death = end_ns_ > detect_within_ns_ + warmup_ns_ ? end_ns_ - detect_within_ns_ : warmup_ns_;
    const uint64_t together_ns = warmup_ns_ + uint64_t(rng_.uniform() * double(last_death - warmup_ns_));
    for (uint32_t k = 0; k < o_.deaths && starvable + k < o_.nodes; k++)
        schedule(Kind::kill, order[starvable + k],
                 o_.deaths_at_once ? together_ns
                                   : warmup_ns_ + uint64_t(rng_.uniform() * double(last_death - warmup_ns_)));
    // Every agent starts within the first period, at a random phase.
    for (uint32_t i = 0; i < o_.nodes; i++) {
        start_agent(i, uint64_t(rng_.uniform() * double(interval_ns_)));
        live_[agents_[i].starvable]++;
        live_computing_ += agents_[i].computes_ownership;
    }
    // Each agent starts knowing its peers, as after the first period: its
    // peer table is then allocated in one piece, not interleaved with the
    // other agents' tables (the run is several times faster for it).
    for (uint32_t i = 0; i < o_.nodes; i++)
        for (uint32_t j = 0; j < o_.nodes; j++)
            if (j != i)
                agents_[i].members->on_heartbeat(agents_[j].hb, agents_[i].started_ns);
}

void Simulation::start_agent(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    a.members = std::make_unique<Membership>(a.id, o_.dead_after);
    a.hb.incarnation++;
    a.hb.sequence = 0;
    a.hb.claims = a.hb.services;
    a.inbox.clear();
    a.came_alive_ns.clear();
    a.started_ns = now;
    a.next_heartbeat_ns = now;
    a.next_forget_ns = now + kSecond;
    a.ownership_due = true;
    a.ownership_at_ns = 0;
    a.resumed_ns = now;
    schedule(Kind::wake, i, now);
}

void Simulation::schedule(Kind kind, uint32_t node, uint64_t at)
{
    if (kind == Kind::wake)
        agents_[node].wake_ns = at; // the one live wake: an earlier one still queued is stale
    events_.push(Event{at, order_++, kind, node});
}

void Simulation::run()
{
    const auto t0 = std::chrono::steady_clock::now();
    while (!events_.empty()) {
        const Event e = events_.top();
        if (e.at_ns > end_ns_)
            break;
        events_.pop();
        account_time(e.at_ns);
        switch (e.kind) {
        case Kind::wake:
            if (e.at_ns == agents_[e.node].wake_ns)
                wake(e.node, e.at_ns);
            break;
        case Kind::starve: starve(e.node, e.at_ns); break;
        case Kind::kill: kill(e.node, e.at_ns); break;
        case Kind::revive: revive(e.node, e.at_ns); break;
        }
    }
    account_time(end_ns_);
    wall_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o_.cpu)
        cpu_ = measure_receive_cost(o_.nodes, o_.interval_ms, o_.dead_after);
}

// Live node time, by class, over the measured part of the run.
void Simulation::account_time(uint64_t now)
{
    if (now <= accounted_ns_)
        return;
    const uint64_t from = std::max(accounted_ns_, warmup_ns_);
    if (now > from) {
        const double span = double(now - from);
        c_.node_ns[0] += double(live_[0]) * span;
        c_.node_ns[1] += double(live_[1]) * span;
        c_.ownership_node_ns += double(live_computing_) * span;
    }
    accounted_ns_ = now;
}

void Simulation::wake(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    a.wake_ns = UINT64_MAX;
    if (a.killed || a.starved_until_ns > now)
        return;
    turn(i, now);
    // The next turn: its heartbeat, the first instant a tick can change a
    // peer's state, every turn of the loop (10 ms) while a tick is due at
    // each, and an owner computation due (hold-down). An agent that computes
    // the owners turns every 10 ms as the agent does (a heartbeat taken may
    // change them); the others need no turn in between: the datagrams wait
    // with their arrival times and are taken before anything reads the peers.
    uint64_t next = a.next_heartbeat_ns;
    const uint64_t due = a.members->next_tick_ns();
    next = std::min(next, due > now ? due : now + kTickNs);
    if (a.computes_ownership)
        next = std::min({next, now + kTickNs, std::max(a.ownership_at_ns, now + 1)});
    schedule(Kind::wake, i, next);
}

// One turn of agent.cpp's loop, in its order: heartbeat, datagrams, tick,
// owners. The datagrams first here: the agent took those that came before
// this turn in the turns they woke it for.
void Simulation::turn(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    c_.wakes++;
    receive(i, now);
    if (now >= a.next_heartbeat_ns) {
        send(i, now);
        a.next_heartbeat_ns = now + interval_ns_;
    }
    if (now >= a.members->next_tick_ns()) {
        c_.ticks++;
        for (const PeerEvent& ev : a.members->tick(now))
            note(i, ev, now);
    }
    if (now >= a.next_forget_ns) { // the agent does it every turn; nothing is due more often
        a.members->forget_dead(now, kForgetDeadAfterNs);
        a.next_forget_ns = now + kSecond;
    }
    if (a.computes_ownership &&
        (a.ownership_due || a.members->live_changes() != a.ownership_seen || now >= a.ownership_at_ns))
        evaluate_ownership(i, now);
}

void Simulation::send(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    Heartbeat& hb = a.hb;
    hb.sequence++;
    hb.sent_unix_ms = kUnixEpochMs + now / kMs;
    // As agent.cpp's send_heartbeat: the silent peers last, in turn
    // (--alone: none, as agents did before; each observer decides alone).
    hb.lists_silent = !o_.alone;
    hb.silent.clear();
    if (hb.lists_silent)
        a.silent_cursor += fill_silent_peers(hb, a.members->silent_peers(now), a.silent_cursor);
    const size_t bytes = encode_heartbeat(hb, key_).size();
    const auto slot = uint32_t(hb.sequence % ring_);
    sent_[i][slot] = hb;
    if (measuring(now)) {
        c_.sent++;
        c_.sent_bytes += bytes;
        c_.hb_min = std::min<uint64_t>(c_.hb_min, bytes);
        c_.hb_max = std::max<uint64_t>(c_.hb_max, bytes);
    }
    const double jitter_ns = o_.jitter_ms * 1e6, delay_ns = o_.delay_ms * 1e6;
    for (uint32_t j = 0; j < o_.nodes; j++) {
        if (j == i || agents_[j].killed)
            continue;
        if (o_.loss > 0 && rng_.uniform() < o_.loss)
            continue;
        const double d = std::max(0.0, delay_ns + (2 * rng_.uniform() - 1) * jitter_ns);
        agents_[j].inbox.push_back(Delivery{now + uint64_t(d), i, slot, hb.sequence});
        if (measuring(now)) {
            c_.received++;
            c_.received_bytes += bytes;
        }
    }
}

// Every datagram that reached the agent by now, in arrival order, before
// its tick (agent.cpp: "Heartbeats already queued are read before peers are
// judged"). One that came while it was starved is taken when it wakes.
void Simulation::receive(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    auto& in = a.inbox;
    std::sort(in.begin(), in.end(), [](const Delivery& x, const Delivery& y) {
        return x.arrival_ns != y.arrival_ns ? x.arrival_ns < y.arrival_ns : x.sequence < y.sequence;
    });
    size_t taken = 0;
    for (; taken < in.size() && in[taken].arrival_ns <= now; taken++) {
        const Delivery& d = in[taken];
        const Heartbeat& hb = sent_[d.sender][d.slot];
        if (hb.sequence != d.sequence)
            throw std::logic_error("simulator: a heartbeat left its sender's ring before it was taken");
        const uint64_t at = std::max(d.arrival_ns, a.resumed_ns);
        if (auto ev = a.members->on_heartbeat(hb, at))
            note(i, *ev, at);
    }
    in.erase(in.begin(), in.begin() + ptrdiff_t(taken));
}

// Agent::ownership_views + Agent::evaluate_ownership, takeover on; the
// addresses this node is given become its claims at once (Takeover::apply).
void Simulation::evaluate_ownership(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    a.ownership_due = true;
    a.ownership_seen = a.members->live_changes();
    const uint64_t listened = a.started_ns + uint64_t(o_.dead_after) * interval_ns_;
    if (now < listened) {
        a.ownership_at_ns = listened;
        a.ownership_due = false;
        return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<NodeOwnershipView> views;
    views.reserve(a.members->peers().size() + 1);
    views.push_back({a.id, true, a.started_ns, a.hb.services, a.hb.claims});
    for (const auto& [id, p] : a.members->peers()) {
        auto since = a.came_alive_ns.find(id);
        views.push_back({id, p.state != PeerState::dead,
                         since == a.came_alive_ns.end() ? p.state_since_ns : since->second, p.last.services,
                         p.last.claims});
    }
    const OwnerMap owners = compute_owners(views, a.id, now, kHoldDownNs);
    a.ownership_at_ns = next_ownership_change(views, now, kHoldDownNs).value_or(UINT64_MAX);
    std::vector<IpAddress> claims;
    for (const auto& [address, owner] : owners)
        if (owner.owner == a.id)
            claims.push_back(address);
    a.ownership_due = claims != a.hb.claims;
    a.hb.claims = std::move(claims);
    if (measuring(now)) {
        c_.ownership_runs++;
        c_.ownership_wall_ns += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    }
}

// A peer event at an observer: detection of a death, or a live node
// suspected or declared dead.
void Simulation::note(uint32_t observer, const PeerEvent& ev, uint64_t now)
{
    const uint32_t x = index_of(ev.node_id);
    Agent& o = agents_[observer];
    const bool was_dead = ev.from && *ev.from == PeerState::dead;
    if (ev.to == PeerState::alive && (!ev.from || was_dead))
        o.came_alive_ns[ev.node_id] = now; // agent.cpp on_peer_event: hold-down counts from here
    if (ev.to == PeerState::dead && !was_dead)
        dead_views_[x]++;
    else if (was_dead && ev.to != PeerState::dead)
        dead_views_[x]--;
    if (!ev.from || ev.to == PeerState::alive)
        return;

    if (death_of_[x] >= 0) { // a death: when this observer saw it
        Death& d = deaths_[size_t(death_of_[x])];
        if (d.observer[observer]) {
            if (!d.suspect_ns[observer])
                d.suspect_ns[observer] = now; // alive -> dead at once counts as suspected then too
            if (ev.to == PeerState::dead && !d.dead_ns[observer])
                d.dead_ns[observer] = now;
        }
        return;
    }
    if (!measuring(now))
        return;
    const bool starvable = agents_[x].starvable;
    if (ev.to == PeerState::suspect && *ev.from == PeerState::alive)
        c_.false_suspicions[starvable]++;
    if (ev.to == PeerState::dead && !was_dead) {
        c_.false_deaths[starvable]++;
        c_.false_deaths_by_starved_observer[starvable] += o.starvable;
        if (dead_views_[x] == 1)
            c_.incidents[starvable]++;
    }
}

void Simulation::starve(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    if (!a.killed && a.starved_until_ns <= now) {
        turn(i, now); // its last turn before the stall: what had reached it is taken
        a.starved_until_ns = now + uint64_t(o_.starve_ms * 1e6);
        a.resumed_ns = a.starved_until_ns;
        a.wake_ns = UINT64_MAX;
        schedule(Kind::wake, i, a.starved_until_ns);
    }
    schedule(Kind::starve, i, a.starved_until_ns + uint64_t(rng_.exponential(o_.starve_gap_ms) * 1e6));
}

void Simulation::kill(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    a.killed = true;
    a.wake_ns = UINT64_MAX;
    a.inbox.clear();
    live_[a.starvable]--;
    live_computing_ -= a.computes_ownership;
    Death d{i, now, std::vector<uint64_t>(o_.nodes), std::vector<uint64_t>(o_.nodes),
            std::vector<bool>(o_.nodes)};
    for (uint32_t j = 0; j < o_.nodes; j++) {
        d.observer[j] = j != i && !agents_[j].killed;
        // An observer that already suspects it (or holds it dead) saw it at once.
        const Peer* p = d.observer[j] ? agents_[j].members->find(a.id) : nullptr;
        if (p && p->state != PeerState::alive)
            d.suspect_ns[j] = now;
        if (p && p->state == PeerState::dead)
            d.dead_ns[j] = now;
    }
    death_of_[i] = int(deaths_.size());
    deaths_.push_back(std::move(d));
    // Observers killed later drop out of this death's figures.
    for (Death& other : deaths_)
        other.observer[i] = false;
    if (o_.return_ms > 0)
        schedule(Kind::revive, i, now + uint64_t(o_.return_ms * 1e6));
}

void Simulation::revive(uint32_t i, uint64_t now)
{
    Agent& a = agents_[i];
    a.killed = false;
    live_[a.starvable]++;
    live_computing_ += a.computes_ownership;
    death_of_[i] = -1;
    start_agent(i, now);
}

json Simulation::results() const
{
    Samples suspect, dead, suspect_starved, dead_starved;
    uint64_t missed = 0, observations = 0;
    for (const Death& d : deaths_) {
        for (uint32_t j = 0; j < o_.nodes; j++) {
            if (!d.observer[j])
                continue;
            const bool starved_observer = agents_[j].starvable;
            if (!starved_observer)
                observations++;
            const bool seen = d.dead_ns[j] && d.dead_ns[j] - d.at_ns <= detect_within_ns_;
            if (!seen && !starved_observer && d.at_ns + detect_within_ns_ <= end_ns_)
                missed++;
            if (d.suspect_ns[j])
                (starved_observer ? suspect_starved : suspect).add(double(d.suspect_ns[j] - d.at_ns) / 1e6);
            if (d.dead_ns[j])
                (starved_observer ? dead_starved : dead).add(double(d.dead_ns[j] - d.at_ns) / 1e6);
        }
    }
    const double hours[2] = {c_.node_ns[0] / 3.6e12, c_.node_ns[1] / 3.6e12};
    auto per_1000h = [&](uint64_t n, int cls) { return hours[cls] > 0 ? double(n) * 1000.0 / hours[cls] : 0.0; };
    auto klass = [&](int cls) {
        return json{{"node_hours", hours[cls]},
                    {"false_suspicions", c_.false_suspicions[cls]},
                    {"false_deaths", c_.false_deaths[cls]},
                    {"false_deaths_by_starved_observers", c_.false_deaths_by_starved_observer[cls]},
                    {"incidents", c_.incidents[cls]},
                    {"false_suspicions_per_1000_node_hours", per_1000h(c_.false_suspicions[cls], cls)},
                    {"false_deaths_per_1000_node_hours", per_1000h(c_.false_deaths[cls], cls)},
                    {"incidents_per_1000_node_hours", per_1000h(c_.incidents[cls], cls)}};
    };
    const double node_s = (c_.node_ns[0] + c_.node_ns[1]) / 1e9;
    json j = {
        {"config",
         {{"nodes", o_.nodes}, {"interval_ms", o_.interval_ms}, {"dead_after", o_.dead_after},
          {"loss", o_.loss}, {"delay_ms", o_.delay_ms}, {"jitter_ms", o_.jitter_ms},
          {"starved_fraction", o_.starved_fraction}, {"starve_ms", o_.starve_ms},
          {"starve_gap_ms", o_.starve_gap_ms}, {"deaths", o_.deaths}, {"deaths_at_once", o_.deaths_at_once}, {"return_ms", o_.return_ms},
          {"duration_s", o_.duration_s}, {"warmup_s", o_.warmup_s}, {"seed", o_.seed}, {"alone", o_.alone},
          {"ownership_nodes", std::min(o_.ownership_nodes, o_.nodes)}}},
        {"detection",
         {{"deaths", deaths_.size()}, {"observations", observations}, {"missed", missed},
          {"suspect_ms", suspect.summary()}, {"dead_ms", dead.summary()},
          {"starved_observers", {{"suspect_ms", suspect_starved.summary()}, {"dead_ms", dead_starved.summary()}}}}},
        {"healthy", klass(0)},
        {"starved", klass(1)},
        {"traffic",
         {{"sent_datagrams_per_node_s", node_s > 0 ? double(c_.sent) / node_s : 0},
          {"sent_bytes_per_node_s", node_s > 0 ? double(c_.sent_bytes) / node_s : 0},
          {"received_datagrams_per_node_s", node_s > 0 ? double(c_.received) / node_s : 0},
          {"received_bytes_per_node_s", node_s > 0 ? double(c_.received_bytes) / node_s : 0},
          {"heartbeat_bytes_min", c_.sent ? c_.hb_min : 0},
          {"heartbeat_bytes_max", c_.hb_max},
          {"heartbeat_bytes_mean", c_.sent ? double(c_.sent_bytes) / double(c_.sent) : 0}}},
        {"ownership",
         {{"computations", c_.ownership_runs},
          {"per_node_s", c_.ownership_node_ns > 0 ? double(c_.ownership_runs) / (c_.ownership_node_ns / 1e9) : 0},
          {"us_each", c_.ownership_runs ? c_.ownership_wall_ns / double(c_.ownership_runs) / 1e3 : 0}}},
        {"loop", {{"turns", c_.wakes}, {"ticks", c_.ticks}}},
        {"simulated_s", double(end_ns_) / 1e9},
        {"measured_s", o_.duration_s},
        {"wall_s", wall_s_},
    };
    if (cpu_)
        j["cpu"] = to_json(*cpu_);
    return j;
}

bool Simulation::check_failed(std::string& why) const
{
    const json r = results();
    if (r["detection"]["missed"].get<uint64_t>())
        why += fmt::format("{} observations of a death missed (not dead within {} ms); ",
                           r["detection"]["missed"].get<uint64_t>(), o_.detect_within_ms);
    if (o_.deaths && r["detection"]["observations"].get<uint64_t>() == 0)
        why += "no death was observed; ";
    const uint64_t false_deaths =
        r["healthy"]["false_deaths"].get<uint64_t>() + r["starved"]["false_deaths"].get<uint64_t>();
    if (false_deaths)
        why += fmt::format("{} false deaths of live nodes; ", false_deaths);
    return !why.empty();
}

std::string ms(const json& v) { return v.is_null() ? "-" : fmt::format("{:.0f}", v.get<double>()); }

void print(const json& r)
{
    const json& c = r["config"];
    fmt::print("peerlb-sim: {} nodes, interval {} ms, dead_after {}, loss {:.1f} %, delay {} +- {} ms, "
               "{:.1f} % starved {} ms at a time, seed {}\n",
               c["nodes"].get<uint32_t>(), c["interval_ms"].get<uint32_t>(), c["dead_after"].get<uint32_t>(),
               c["loss"].get<double>() * 100, c["delay_ms"].get<double>(), c["jitter_ms"].get<double>(),
               c["starved_fraction"].get<double>() * 100, c["starve_ms"].get<double>(), c["seed"].get<uint64_t>());
    const json& d = r["detection"];
    fmt::print("  deaths {}: observations {}, missed {}; to suspect ms median {} p99 {} max {}; "
               "to dead ms median {} p99 {} max {}\n",
               d["deaths"].get<uint64_t>(), d["observations"].get<uint64_t>(), d["missed"].get<uint64_t>(),
               ms(d["suspect_ms"]["median"]), ms(d["suspect_ms"]["p99"]), ms(d["suspect_ms"]["max"]),
               ms(d["dead_ms"]["median"]), ms(d["dead_ms"]["p99"]), ms(d["dead_ms"]["max"]));
    for (const char* cls : {"healthy", "starved"}) {
        const json& k = r[cls];
        fmt::print("  {} nodes, {:.1f} node-hours: false suspicions {} ({:.3g} / 1000 node-h), false deaths "
                   "{} ({:.3g} / 1000 node-h; {} by starved observers), incidents {} ({:.3g} / 1000 node-h)\n",
                   cls, k["node_hours"].get<double>(), k["false_suspicions"].get<uint64_t>(),
                   k["false_suspicions_per_1000_node_hours"].get<double>(), k["false_deaths"].get<uint64_t>(),
                   k["false_deaths_per_1000_node_hours"].get<double>(),
                   k["false_deaths_by_starved_observers"].get<uint64_t>(), k["incidents"].get<uint64_t>(),
                   k["incidents_per_1000_node_hours"].get<double>());
    }
    const json& t = r["traffic"];
    fmt::print("  per node per second: sent {:.1f} datagrams, {:.0f} bytes; received {:.1f} datagrams, "
               "{:.0f} bytes (heartbeats {}..{} bytes)\n",
               t["sent_datagrams_per_node_s"].get<double>(), t["sent_bytes_per_node_s"].get<double>(),
               t["received_datagrams_per_node_s"].get<double>(), t["received_bytes_per_node_s"].get<double>(),
               t["heartbeat_bytes_min"].get<uint64_t>(), t["heartbeat_bytes_max"].get<uint64_t>());
    const json& w = r["ownership"];
    fmt::print("  ownership: {:.2f} computations per node per second, {:.0f} us each\n",
               w["per_node_s"].get<double>(), w["us_each"].get<double>());
    if (r.contains("cpu"))
        print_receive_cost(r["cpu"]);
    fmt::print("  loop turns {}, ticks {}\n", r["loop"]["turns"].get<uint64_t>(), r["loop"]["ticks"].get<uint64_t>());
    fmt::print("  {:.0f} s simulated ({:.0f} s measured) in {:.1f} s\n", r["simulated_s"].get<double>(),
               r["measured_s"].get<double>(), r["wall_s"].get<double>());
}

} // namespace
} // namespace peerlb::sim

int main(int argc, char** argv)
{
    using namespace peerlb::sim;
    Options o;
    CLI::App app{"peerlb-sim: the membership of N agents on a fake clock and a fake transport"};
    app.add_option("--nodes", o.nodes, "agents")->check(CLI::Range(2u, 100000u));
    app.add_option("--interval-ms", o.interval_ms, "heartbeat period")->check(CLI::Range(1u, 60000u));
    app.add_option("--dead-after", o.dead_after, "periods of silence to dead")->check(CLI::Range(1u, 1000u));
    app.add_option("--loss", o.loss, "probability that one copy of a datagram is lost")->check(CLI::Range(0.0, 1.0));
    app.add_option("--delay-ms", o.delay_ms, "transport delay")->check(CLI::Range(0.0, 10000.0));
    app.add_option("--jitter-ms", o.jitter_ms, "delay +- this, uniform")->check(CLI::Range(0.0, 10000.0));
    app.add_option("--starved-fraction", o.starved_fraction, "nodes starved now and then")->check(CLI::Range(0.0, 1.0));
    app.add_option("--starve-ms", o.starve_ms, "one starvation's length")->check(CLI::Range(0.0, 1e6));
    app.add_option("--starve-gap-ms", o.starve_gap_ms, "mean time between a starved node's starvations (exponential)")
        ->check(CLI::Range(1.0, 1e9));
    app.add_option("--deaths", o.deaths, "nodes that die at random times");
    app.add_flag("--deaths-at-once", o.deaths_at_once, "they all die at the same instant (a rack, a switch)");
    app.add_option("--return-ms", o.return_ms, "a dead node returns after this (0: never)")->check(CLI::Range(0.0, 1e9));
    app.add_option("--duration-s", o.duration_s, "measured time, after the warm-up")->check(CLI::Range(1.0, 1e7));
    app.add_option("--warmup-s", o.warmup_s, "unmeasured start (agents join)")->check(CLI::Range(1.0, 1e5));
    app.add_option("--detect-within-ms", o.detect_within_ms, "a death not declared within this is missed")
        ->check(CLI::Range(1.0, 1e9));
    app.add_option("--seed", o.seed, "random seed (same seed, same run)");
    app.add_option("--ownership-nodes", o.ownership_nodes,
                   "only the first M agents compute the address owners (default: all)");
    app.add_flag("--alone", o.alone,
                 "agents list no silent peers, as before deaths were confirmed: each observer decides alone");
    app.add_flag("--cpu", o.cpu, "also measure the cost of receiving one heartbeat");
    app.add_flag("--check", o.check, "exit 1 if a death is missed or a live node declared dead");
    app.add_option("--json", o.json_path, "write the figures to FILE");
    CLI11_PARSE(app, argc, argv);
    if (o.starved_fraction > 0 && o.starve_ms <= 0) {
        std::cerr << "peerlb-sim: --starve-ms must be > 0 with starved nodes\n";
        return 2;
    }

    Simulation sim(o);
    sim.run();
    const json r = sim.results();
    print(r);
    if (!o.json_path.empty()) {
        std::ofstream f(o.json_path);
        f << r.dump(2) << "\n";
        if (!f) {
            std::cerr << "peerlb-sim: cannot write " << o.json_path << "\n";
            return 1;
        }
    }
    std::string why;
    if (o.check && sim.check_failed(why)) {
        std::cerr << "peerlb-sim: check failed: " << why << "\n";
        return 1;
    }
    return 0;
}
