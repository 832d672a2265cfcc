// Balancing quality of the SYN decision at cluster sizes a test bed cannot
// hold: a discrete-event simulation of N nodes, each a server of W workers
// with a FIFO queue, new connections arriving at nodes (as DNS or a router
// spreads them) and decided there by the data plane's own arithmetic
// (bpf/decision.h: lb_decide; with choices = d, over the d peers
// lb_draw_distinct draws from the candidate list, as the XDP program does).
//
// What a node knows, as in the real cluster with load.source = "inflight":
// its own open connections exactly, each peer's load as of the peer's last
// heartbeat (every interval_ms, random phase), plus the connections it
// handed that peer since that heartbeat and that are still open (lb_handed:
// the real-time correction), each at the peer's per-connection cost.
//
// Configurations compared on the same arrivals (one seed per repeat):
//   full      choices = 0: every peer compared (the full scan)
//   d=K       choices = K: K peers drawn per decision (power of K choices)
//   central   a central balancer's least connections (in flight over
//             workers, the least loaded node of all), the reference
//
// Figures per run: response time percentiles (queueing + service), the
// busiest node's mean utilisation over the mean of all nodes', and the share
// of connections forwarded. Medians (and ranges) of the repeats.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <fstream>
#include <queue>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include "bpf/decision.h"
}

namespace {

struct Workload {
    std::string name;
    std::vector<uint32_t> workers; // per node
    std::vector<double> shares;    // of the arrivals, per node (sum 1)
};

// Named workloads for n nodes.
//   skewed    equal nodes (8 workers), one node receives 60 % of arrivals
//   hot       equal nodes, a tenth of them (at least one) receive half
//   unequal   capacities 4 / 8 / 12 workers in turn, arrivals even
//   single    equal nodes, every arrival to one node
Workload workload(const std::string& name, uint32_t n)
{
    Workload w{name, std::vector<uint32_t>(n, 8), std::vector<double>(n, 0)};
    if (name == "skewed") {
        w.shares[0] = n > 1 ? 0.6 : 1.0;
        for (uint32_t i = 1; i < n; i++)
            w.shares[i] = 0.4 / (n - 1);
    } else if (name == "hot") {
        const uint32_t hot = std::max(1u, n / 10);
        for (uint32_t i = 0; i < n; i++)
            w.shares[i] = i < hot ? 0.5 / hot : (n > hot ? 0.5 / (n - hot) : 0);
        if (n == hot)
            std::fill(w.shares.begin(), w.shares.end(), 1.0 / n);
    } else if (name == "unequal") {
        const uint32_t sizes[] = {4, 8, 12};
        for (uint32_t i = 0; i < n; i++) {
            w.workers[i] = sizes[i % 3];
            w.shares[i] = 1.0 / n;
        }
    } else if (name == "single") {
        w.shares[0] = 1.0;
    } else {
        throw CLI::ValidationError("--workload", "unknown workload '" + name + "'");
    }
    return w;
}

struct Settings {
    uint32_t nodes = 100;
    double load_pct = 50;
    double service_ms = 20;
    bool exponential = false; // service times: constant (as peerlb-bench-app) or exponential
    uint32_t interval_ms = 500;
    double seconds = 60;
    double warmup = 5;
    uint32_t t1_pct = 50, t2_pct = 20;
    uint32_t pick = LB_PICK_WEIGHTED;
};

// A configuration: choices (0 = full scan), or the central reference.
struct Config {
    std::string name;
    bool central = false;
    uint32_t choices = 0;
};

struct Result {
    double p50 = 0, p99 = 0, busiest = 0, forwarded = 0;
};

class Simulation {
public:
    Simulation(const Settings& s, const Workload& w, const Config& c, uint64_t seed)
        : s_(s), w_(w), c_(c), arrivals_rng_(seed), decide_rng_(seed * 7919 + 1), n_(s.nodes)
    {
        cfg_.accept_below_bp = s.t1_pct * 100;
        cfg_.min_difference_bp = s.t2_pct * 100;
        cfg_.pick = s.pick;
        cfg_.overflow = LB_OVERFLOW_KEEP;
        nodes_.resize(n_);
        handed_open_.assign(size_t(n_) * n_, 0);
        at_report_.assign(size_t(n_) * n_, 0);
        double capacity = 0;
        for (uint32_t i = 0; i < n_; i++)
            capacity += w.workers[i] * 1000.0 / s.service_ms;
        rate_ = capacity * s.load_pct / 100;
        std::discrete_distribution<uint32_t> pick(w.shares.begin(), w.shares.end());
        receiver_ = pick;
    }

    Result run()
    {
        const double end = s_.warmup + s_.seconds;
        std::uniform_real_distribution<double> phase(0, s_.interval_ms / 1000.0);
        for (uint32_t i = 0; i < n_; i++)
            push({phase(arrivals_rng_), Event::heartbeat, i, 0, 0});
        push({next_arrival(0), Event::arrival, 0, 0, 0});
        for (double t = s_.warmup; t < end; t += 0.1)
            push({t, Event::sample, 0, 0, 0});
        while (!events_.empty()) {
            const Event e = events_.top();
            events_.pop();
            if (e.at > end)
                break;
            now_ = e.at;
            switch (e.kind) {
            case Event::arrival:
                arrive();
                push({next_arrival(now_), Event::arrival, 0, 0, 0});
                break;
            case Event::completion:
                complete(e.node, e.receiver, e.arrived);
                break;
            case Event::heartbeat:
                report(e.node);
                push({now_ + s_.interval_ms / 1000.0, Event::heartbeat, e.node, 0, 0});
                break;
            case Event::sample:
                for (uint32_t i = 0; i < n_; i++)
                    nodes_[i].inflight_sum += nodes_[i].inflight();
                samples_++;
                break;
            }
        }
        return result();
    }

private:
    struct Event {
        double at;
        enum Kind { arrival, completion, heartbeat, sample } kind;
        uint32_t node;     // completion, heartbeat: the node
        uint32_t receiver; // completion: the node that decided it
        double arrived;    // completion: when the connection arrived
        bool operator>(const Event& o) const { return at > o.at; }
    };
    struct Node {
        uint32_t busy = 0;
        std::deque<std::pair<double, uint32_t>> queue; // (arrived, receiver)
        uint32_t reported_bp = 0;
        double inflight_sum = 0;
        uint32_t inflight() const { return busy + uint32_t(queue.size()); }
    };

    void push(const Event& e) { events_.push(e); }

    double next_arrival(double t)
    {
        return t + std::exponential_distribution<double>(rate_)(arrivals_rng_);
    }

    uint32_t load_bp(uint32_t i) const
    {
        return lb_inflight_load(nodes_[i].inflight(), w_.workers[i]);
    }
    uint32_t cost_bp(uint32_t i) const { return LB_LOAD_FULL / w_.workers[i]; }
    uint16_t weight(uint32_t i) const { return uint16_t(w_.workers[i] * LB_WEIGHT_ONE / 8); }

    // Peer p as receiver r's data plane sees it.
    lb_peer_view view(uint32_t r, uint32_t p) const
    {
        const size_t k = size_t(r) * n_ + p;
        const int32_t delta = lb_handed_delta(handed_open_[k], at_report_[k]);
        return lb_peer_view{lb_effective_load(nodes_[p].reported_bp, delta, cost_bp(p)), weight(p),
                            0, 0};
    }

    uint32_t decide(uint32_t r)
    {
        if (c_.central) {
            uint32_t best = 0;
            double best_u = 1e18;
            for (uint32_t i = 0; i < n_; i++) {
                const double u = double(nodes_[i].inflight()) / w_.workers[i];
                if (u < best_u) {
                    best_u = u;
                    best = i;
                }
            }
            return best;
        }
        const uint32_t local = load_bp(r);
        const uint32_t random = uint32_t(decide_rng_());
        lb_decision d;
        if (c_.choices == 0) {
            views_.resize(n_);
            for (uint32_t p = 0; p < n_; p++)
                views_[p] = p == r ? lb_peer_view{LB_LOAD_UNUSABLE, 0, 0, 0} : view(r, p);
            d = lb_decide(&cfg_, local, views_.data(), n_, random);
            return d.node == LB_NODE_LOCAL ? r : d.node;
        }
        // The candidate list: every peer (all usable here), self left out.
        uint32_t draws[LB_MAX_CHOICES], picked[LB_MAX_CHOICES];
        for (auto& x : draws)
            x = uint32_t(decide_rng_());
        const uint32_t k = lb_draw_distinct(n_ - 1, c_.choices, draws, picked);
        lb_peer_view sampled[LB_MAX_CHOICES];
        uint32_t nodes[LB_MAX_CHOICES];
        for (uint32_t i = 0; i < k; i++) {
            nodes[i] = picked[i] + (picked[i] >= r); // list index -> node, skipping self
            sampled[i] = view(r, nodes[i]);
        }
        d = lb_decide(&cfg_, local, sampled, k, random);
        return d.node == LB_NODE_LOCAL ? r : nodes[d.node];
    }

    void arrive()
    {
        const uint32_t r = receiver_(arrivals_rng_);
        const uint32_t to = decide(r);
        if (measuring()) {
            decided_++;
            forwarded_ += to != r;
        }
        if (to != r)
            handed_open_[size_t(r) * n_ + to]++;
        Node& node = nodes_[to];
        if (node.busy < w_.workers[to]) {
            node.busy++;
            push({now_ + service(), Event::completion, to, r, now_});
        } else {
            node.queue.push_back({now_, r});
        }
    }

    void complete(uint32_t i, uint32_t receiver, double arrived)
    {
        if (receiver != i)
            handed_open_[size_t(receiver) * n_ + i]--;
        if (arrived >= s_.warmup)
            latencies_.push_back((now_ - arrived) * 1000);
        Node& node = nodes_[i];
        if (node.queue.empty()) {
            node.busy--;
            return;
        }
        const auto [next_arrived, next_receiver] = node.queue.front();
        node.queue.pop_front();
        push({now_ + service(), Event::completion, i, next_receiver, next_arrived});
    }

    // Node i's heartbeat reaches every peer now: its load, and each peer's
    // count of what it handed i at this moment.
    void report(uint32_t i)
    {
        nodes_[i].reported_bp = load_bp(i);
        for (uint32_t r = 0; r < n_; r++)
            at_report_[size_t(r) * n_ + i] = handed_open_[size_t(r) * n_ + i];
    }

    double service()
    {
        if (!s_.exponential)
            return s_.service_ms / 1000.0;
        return std::exponential_distribution<double>(1000.0 / s_.service_ms)(decide_rng_);
    }
    bool measuring() const { return now_ >= s_.warmup; }

    Result result()
    {
        Result out;
        std::sort(latencies_.begin(), latencies_.end());
        auto pct = [&](double q) {
            return latencies_.empty() ? 0 : latencies_[size_t(q * (latencies_.size() - 1))];
        };
        out.p50 = pct(0.5);
        out.p99 = pct(0.99);
        double sum = 0, top = 0;
        for (uint32_t i = 0; i < n_; i++) {
            const double u = samples_ ? nodes_[i].inflight_sum / samples_ / w_.workers[i] : 0;
            sum += u;
            top = std::max(top, u);
        }
        out.busiest = sum > 0 ? top / (sum / n_) : 0;
        out.forwarded = decided_ ? double(forwarded_) / decided_ : 0;
        return out;
    }

    Settings s_;
    Workload w_;
    Config c_;
    std::mt19937_64 arrivals_rng_, decide_rng_;
    uint32_t n_;
    lb_config cfg_{};
    double rate_ = 0, now_ = 0;
    std::discrete_distribution<uint32_t> receiver_;
    std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
    std::vector<Node> nodes_;
    std::vector<uint32_t> handed_open_, at_report_; // [receiver * n + peer]
    std::vector<lb_peer_view> views_;
    std::vector<double> latencies_;
    uint64_t samples_ = 0, decided_ = 0, forwarded_ = 0;
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"peerlb-balance-sim: balancing quality of the SYN decision, simulated "
                 "(power of d choices against the full scan)"};
    Settings s;
    std::vector<std::string> workloads{"skewed", "hot", "unequal", "single"};
    std::vector<std::string> configs{"full", "d=2", "central"};
    uint32_t repeats = 5;
    uint64_t seed = 1;
    std::string json_out, pick = "weighted";
    app.add_option("--nodes", s.nodes, "cluster size")->check(CLI::Range(2u, 1024u));
    app.add_option("--workload", workloads, "skewed, hot, unequal, single")->delimiter(',');
    app.add_option("--configs", configs, "full, d=K (1..8), central")->delimiter(',');
    app.add_option("--load", s.load_pct, "offered load, % of the cluster's capacity")
        ->check(CLI::Range(1.0, 99.0));
    app.add_option("--service-ms", s.service_ms, "service time (mean, when exponential)")
        ->check(CLI::PositiveNumber);
    app.add_flag("--exponential", s.exponential, "exponential service times (default: constant)");
    app.add_option("--interval-ms", s.interval_ms, "heartbeat period")->check(CLI::Range(10u, 10000u));
    app.add_option("--seconds", s.seconds, "simulated time measured")->check(CLI::PositiveNumber);
    app.add_option("--warmup", s.warmup, "simulated time before measuring")->check(CLI::NonNegativeNumber);
    app.add_option("--accept-below", s.t1_pct, "T1, %")->check(CLI::Range(0u, 100u));
    app.add_option("--min-difference", s.t2_pct, "T2, %")->check(CLI::Range(0u, 100u));
    app.add_option("--pick", pick, "weighted or least")->check(CLI::IsMember({"weighted", "least"}));
    app.add_option("--repeats", repeats, "runs per (workload, configuration), seeds seed..")
        ->check(CLI::Range(1u, 100u));
    app.add_option("--seed", seed, "first seed");
    app.add_option("--json", json_out, "write the figures as JSON here");
    CLI11_PARSE(app, argc, argv);
    s.pick = pick == "least" ? LB_PICK_LEAST : LB_PICK_WEIGHTED;

    std::vector<Config> cs;
    for (const std::string& name : configs) {
        if (name == "full")
            cs.push_back({name, false, 0});
        else if (name == "central")
            cs.push_back({name, true, 0});
        else if (name.rfind("d=", 0) == 0 && name.size() == 3 && name[2] >= '1' && name[2] <= '8')
            cs.push_back({name, false, uint32_t(name[2] - '0')});
        else {
            fmt::print(stderr, "peerlb-balance-sim: unknown configuration '{}'\n", name);
            return 2;
        }
    }
    nlohmann::json out = nlohmann::json::array();
    fmt::print("{} nodes, {} % load, {} ms service ({}), heartbeat {} ms, pick {}, T1 {} T2 {}, "
               "{} s measured, medians of {} runs\n",
               s.nodes, s.load_pct, s.service_ms, s.exponential ? "exponential" : "constant",
               s.interval_ms, pick, s.t1_pct, s.t2_pct,
               s.seconds, repeats);
    fmt::print("{:<10} {:<8} {:>9} {:>9} {:>13} {:>10}\n", "workload", "config", "p50 ms",
               "p99 ms", "busiest/mean", "forwarded");
    for (const std::string& wname : workloads) {
        Workload w;
        try {
            w = workload(wname, s.nodes);
        } catch (const CLI::ValidationError& e) {
            fmt::print(stderr, "peerlb-balance-sim: {}\n", e.what());
            return 2;
        }
        for (const Config& c : cs) {
            std::vector<double> p50, p99, busiest, forwarded;
            for (uint32_t k = 0; k < repeats; k++) {
                const Result r = Simulation(s, w, c, seed + k).run();
                p50.push_back(r.p50);
                p99.push_back(r.p99);
                busiest.push_back(r.busiest);
                forwarded.push_back(r.forwarded);
            }
            auto range = [](const std::vector<double>& v) {
                return nlohmann::json{{"median", median(v)},
                                      {"min", *std::min_element(v.begin(), v.end())},
                                      {"max", *std::max_element(v.begin(), v.end())}};
            };
            fmt::print("{:<10} {:<8} {:>9.1f} {:>9.1f} {:>13.2f} {:>9.1f}%\n", wname, c.name,
                       median(p50), median(p99), median(busiest), 100 * median(forwarded));
            out.push_back({{"nodes", s.nodes}, {"workload", wname}, {"config", c.name},
                           {"p50_ms", range(p50)}, {"p99_ms", range(p99)},
                           {"busiest", range(busiest)}, {"forwarded", range(forwarded)}});
        }
    }
    if (!json_out.empty()) {
        std::ofstream f(json_out);
        f << out.dump(1) << "\n";
        if (!f) {
            fmt::print(stderr, "peerlb-balance-sim: cannot write {}\n", json_out);
            return 1;
        }
    }
    return 0;
}
