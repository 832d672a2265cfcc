// Packet fuzzing of xdp_peerlb: random, well-formed and mutated frames
// through BPF_PROG_TEST_RUN (repeat = 1) against the populated test cluster
// (services, nodes, peers' MACs and addresses, flows in lb_flows and
// lb_flows_new, grace entries), in l2 and ipip mode. For EACH frame the
// verdict and the output must be ones the design allows; fuzz_oracle.h
// decides that from the input bytes with a parser of its own.
//
// PEERLB_FUZZ_PACKETS sets the number of frames (default 100000; the full
// run, tools/fuzz-xdp.sh, does 1000000), PEERLB_FUZZ_SEED the seed (printed;
// a failure names it and the packet index, so it can be run again).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "fixture.h"
#include "fuzz_generate.h"
#include "fuzz_oracle.h"

namespace peerlb::test {
namespace {

using namespace fuzz;

constexpr uint64_t kDefaultSeed = 0x7065'6572'6c62'f022ull;
constexpr uint64_t kDefaultPackets = 100'000;
// Packets per batch; the configuration changes between batches.
constexpr uint64_t kBatch = 2'500;
constexpr size_t kMaxFailures = 5;
constexpr uint64_t kHourNs = 3'600'000'000'000ull;

// A second service, whose address is in a grace period (a takeover just
// moved it here), and an address in grace that is not a service.
constexpr uint16_t kGracePort = 443;
IpAddress grace_service(uint8_t family)
{
    return parse_ip(family == LB_FAMILY_IPV4 ? "192.0.2.20" : "2001:db8:5::20");
}
IpAddress grace_only(uint8_t family)
{
    return parse_ip(family == LB_FAMILY_IPV4 ? "192.0.2.99" : "2001:db8:5::99");
}
IpAddress second_client(uint8_t family)
{
    return parse_ip(family == LB_FAMILY_IPV4 ? "198.51.100.8" : "2001:db8:c::8");
}

struct BatchConfig {
    const char* name;
    uint32_t forward;
    uint8_t node_family; // of the node addresses: the outer header in ipip
    uint32_t pick;
    uint32_t self_load_bp; // 9000: SYNs go to peers; 0: kept
    uint32_t mtu;
};

constexpr BatchConfig kConfigs[] = {
    {"l2, IPv4 nodes, busy, least", LB_FORWARD_L2, LB_FAMILY_IPV4, LB_PICK_LEAST, 9000, 1500},
    {"ipip, IPv4 nodes, busy, weighted", LB_FORWARD_IPIP, LB_FAMILY_IPV4, LB_PICK_WEIGHTED, 9000,
     1500},
    {"l2, IPv6 nodes, busy, weighted", LB_FORWARD_L2, LB_FAMILY_IPV6, LB_PICK_WEIGHTED, 9000, 1500},
    {"ipip, IPv6 nodes, busy, least", LB_FORWARD_IPIP, LB_FAMILY_IPV6, LB_PICK_LEAST, 9000, 1500},
    {"ipip, IPv4 nodes, idle", LB_FORWARD_IPIP, LB_FAMILY_IPV4, LB_PICK_WEIGHTED, 0, 1500},
    {"ipip, IPv6 nodes, busy, MTU 1280", LB_FORWARD_IPIP, LB_FAMILY_IPV6, LB_PICK_WEIGHTED, 9000,
     1280},
    {"l2, IPv4 nodes, idle", LB_FORWARD_L2, LB_FAMILY_IPV4, LB_PICK_LEAST, 0, 1500},
    {"ipip, IPv4 nodes, busy, MTU 9000", LB_FORWARD_IPIP, LB_FAMILY_IPV4, LB_PICK_LEAST, 9000,
     9000},
};

uint64_t env_u64(const char* name, uint64_t fallback)
{
    const char* text = std::getenv(name);
    if (!text || !*text)
        return fallback;
    char* end = nullptr;
    const uint64_t value = std::strtoull(text, &end, 0);
    if (*end)
        throw std::invalid_argument(fmt::format("{}={}: not a number", name, text));
    return value;
}

const char* verdict_name(uint32_t v)
{
    switch (v) {
    case XDP_ABORTED:
        return "XDP_ABORTED";
    case XDP_DROP:
        return "XDP_DROP";
    case XDP_PASS:
        return "XDP_PASS";
    case XDP_TX:
        return "XDP_TX";
    case XDP_REDIRECT:
        return "XDP_REDIRECT";
    default:
        return "unknown";
    }
}

// Every key of a hash map.
template <typename Key>
std::vector<Key> map_keys(int fd)
{
    std::vector<Key> keys;
    Key key{}, next{};
    const Key* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        keys.push_back(next);
        key = next;
        prev = &key;
    }
    return keys;
}

std::string figures(const std::map<std::string, uint64_t>& counts)
{
    std::string out;
    for (const auto& [name, n] : counts)
        out += fmt::format("{}{} {}", out.empty() ? "" : ", ", name, n);
    return out;
}

class XdpFuzz : public DataPlaneTest {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        prog_fd_ = bpf_program__fd(skeleton()->progs.xdp_peerlb);
        ncpus_ = libbpf_num_possible_cpus();
        ASSERT_GT(ncpus_, 0);
        // The connections kept in (or out of) the flow tables: each family,
        // two clients, both services.
        for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6})
            for (uint16_t k = 0; k < 24; k++) {
                const bool grace = k % 3 == 2;
                pool_.push_back({k % 2 ? client_addr(family) : second_client(family),
                                 grace ? grace_service(family) : service_addr(family),
                                 uint16_t(41000 + k), grace ? kGracePort : kServicePort});
            }
    }

    Catalog catalog() const
    {
        Catalog c;
        c.self_mac = node_mac(kSelfSlot);
        c.router_mac = router_mac();
        for (uint32_t slot = 0; slot < kNodeSlots; slot++) {
            if (slot != kSelfSlot)
                c.peer_macs.push_back(node_mac(slot));
            for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6})
                c.node_addrs.push_back(node_addr(family, slot));
        }
        for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6}) {
            c.services.push_back({service_addr(family), kServicePort});
            c.services.push_back({grace_service(family), kGracePort});
            c.clients.push_back(client_addr(family));
            c.clients.push_back(second_client(family));
            c.grace_only.push_back(grace_only(family));
        }
        c.flows = pool_;
        return c;
    }

    // The cluster as install_cluster leaves it, changed by `c`, with the
    // second service, the grace entries and the pool's flow entries.
    void apply(const BatchConfig& c)
    {
        install_cluster(c.forward, c.node_family);
        change_config([&](lb_config& cfg) {
            cfg.pick = c.pick;
            cfg.mtu = c.mtu;
        });
        set_load(kSelfSlot, c.self_load_bp);
        const uint64_t now = monotonic_ns();
        for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6}) {
            lb_service_key key{};
            key.addr = grace_service(family).addr;
            key.port = htons(kGracePort);
            key.family = family;
            maps().add_service(key, lb_service{LB_MODE_L4, 2, 0});
            maps().set_grace(grace_service(family), now + kHourNs);
            maps().set_grace(grace_only(family), now + kHourNs);
            // Over: orphans to the first service are passed (reset) again.
            maps().set_grace(service_addr(family), now - 1);
        }
        const int flows = maps().fds().flows.get(), flows_new = maps().fds().flows_new.get();
        for (size_t k = 0; k < pool_.size(); k++) {
            const Tuple& t = pool_[k];
            const lb_flow_key key = flow_key(t.client, t.service, t.sport, t.dport);
            bpf_map_delete_elem(flows, &key);
            bpf_map_delete_elem(flows_new, &key);
            switch (k % 4) {
            case 0:
                add_flow(key, LB_NODE_LOCAL);
                break;
            case 1:
                add_flow(key, uint32_t(1 + k % 3));
                break;
            case 2: { // half-open, as a SYN leaves it
                lb_flow f{};
                f.node = (k / 4) % 2 ? uint32_t(1 + k % 3) : LB_NODE_LOCAL;
                f.reason = f.node == LB_NODE_LOCAL ? LB_REASON_BELOW_T1 : LB_REASON_LEAST;
                f.created_ns = now;
                ASSERT_EQ(bpf_map_update_elem(flows_new, &key, &f, BPF_ANY), 0);
                break;
            }
            default: // no entry: a SYN is decided, anything else an orphan
                break;
            }
        }
    }

    // What the maps hold now, read back.
    World read_world()
    {
        World w;
        const lb_config cfg = config();
        w.forward = cfg.forward;
        w.mtu = cfg.mtu;
        const lb_node self = maps().node(cfg.self_slot);
        std::copy(std::begin(self.mac), std::end(self.mac), w.self_mac.begin());
        w.self_addr = IpAddress{self.addr, self.family};
        for (uint32_t slot = 0; slot < cfg.node_slots; slot++) {
            const lb_node n = maps().node(slot);
            if (slot == cfg.self_slot || n.state == LB_NODE_EMPTY)
                continue;
            Peer p;
            p.slot = slot;
            std::copy(std::begin(n.mac), std::end(n.mac), p.mac.begin());
            p.addr = IpAddress{n.addr, n.family};
            p.state = n.state;
            w.peers.push_back(p);
        }
        for (const lb_node_mac_key& k : map_keys<lb_node_mac_key>(maps().fds().node_macs.get())) {
            Mac m;
            std::copy(std::begin(k.mac), std::end(k.mac), m.begin());
            w.node_macs.push_back(m);
        }
        for (const lb_node_addr_key& k : map_keys<lb_node_addr_key>(maps().fds().node_addrs.get()))
            w.node_addrs.push_back(IpAddress{k.addr, k.family});
        for (const auto& [key, svc] : maps().services())
            w.services.push_back({IpAddress{key.addr, key.family}, ntohs(key.port)});
        // Deadlines at least a minute ahead: none runs out during a batch.
        const uint64_t soon = monotonic_ns() + 60'000'000'000ull;
        const int grace_fd = maps().fds().grace.get();
        for (const lb_grace_key& k : map_keys<lb_grace_key>(grace_fd)) {
            lb_grace g{};
            if (bpf_map_lookup_elem(grace_fd, &k, &g) == 0 && g.until_ns > soon &&
                g.previous == LB_NODE_LOCAL)
                w.grace.push_back(IpAddress{k.addr, k.family});
        }
        return w;
    }

    uint64_t counter(uint32_t index)
    {
        per_cpu_.resize(static_cast<size_t>(ncpus_));
        if (bpf_map_lookup_elem(maps().fds().stats.get(), &index, per_cpu_.data()))
            throw std::runtime_error("read lb_stats");
        uint64_t sum = 0;
        for (const lb_counter_value& v : per_cpu_)
            sum += v.packets;
        return sum;
    }

    // How far the two drop counters moved since the last call.
    DropDelta drops_since_last()
    {
        const uint64_t fe = counter(LB_C_DROP_FORWARD_ERROR);
        const uint64_t og = counter(LB_C_DROP_ORPHAN_GRACE);
        DropDelta d{fe - last_forward_error_, og - last_orphan_grace_};
        last_forward_error_ = fe;
        last_orphan_grace_ = og;
        return d;
    }

    int prog_fd_ = -1;
    int ncpus_ = 0;
    std::vector<Tuple> pool_;
    std::vector<lb_counter_value> per_cpu_;
    uint64_t last_forward_error_ = 0;
    uint64_t last_orphan_grace_ = 0;
};

TEST_F(XdpFuzz, EveryVerdictAndOutputIsOneTheDesignAllows)
{
    const uint64_t seed = env_u64("PEERLB_FUZZ_SEED", kDefaultSeed);
    const uint64_t total = env_u64("PEERLB_FUZZ_PACKETS", kDefaultPackets);
    fmt::print("[ fuzz     ] seed {:#x}, {} packets, batches of {} over {} configurations\n", seed,
               total, kBatch, std::size(kConfigs));
    std::fflush(stdout);

    Generator gen(seed, catalog());
    std::array<uint64_t, size_t(Outcome::Count)> outcomes{};
    std::array<uint64_t, size_t(Gen::Count)> gens{};
    std::map<std::string, uint64_t> verdicts, shapes, mutations, oracle;
    size_t failures = 0;
    uint64_t run = 0;
    World world;
    const BatchConfig* cfg = nullptr;
    const auto start = std::chrono::steady_clock::now();

    for (uint64_t i = 0; i < total && failures < kMaxFailures; i++) {
        if (i % kBatch == 0) {
            cfg = &kConfigs[(i / kBatch) % std::size(kConfigs)];
            apply(*cfg);
            world = read_world();
            drops_since_last();
        }
        const FuzzPacket p = gen.next();
        const RunResult r = try_run(prog_fd_, p.bytes, test_link_ifindex());
        const DropDelta drops = drops_since_last();
        const Judgement j = judge(world, p.bytes, r.error, r.verdict, r.out, drops);
        run++;
        gens[size_t(p.gen)]++;
        shapes[p.shape]++;
        for (const char* m : p.mutations)
            mutations[m]++;
        verdicts[!r.error                                      ? verdict_name(r.verdict)
                 : r.error == EINVAL && p.bytes.size() < kEthHeaderLen ? "refused runt"
                                                                        : "syscall error"]++;
        oracle["TCP to a service"] += j.to_service;
        oracle["tunnel from a node address"] += j.steered_encap;
        oracle["from a node MAC in l2 mode"] += j.steered_mac;
        if (j.failure.empty()) {
            outcomes[size_t(j.outcome)]++;
            continue;
        }
        failures++;
        ADD_FAILURE() << fmt::format(
            "FUZZ FAILURE {}: seed {:#x}, packet index {} ({}); configuration \"{}\"\n{}\n"
            "input:\n{}\noutput (error {}, verdict {} {}):\n{}\n"
            "again: PEERLB_FUZZ_SEED={:#x} PEERLB_FUZZ_PACKETS={} bpf_tests "
            "--gtest_filter='*Fuzz*'",
            failures, seed, i, p.describe(), cfg->name, j.failure, hex(p.bytes), r.error,
            r.verdict, verdict_name(r.verdict), hex(r.out), seed, i + 1);
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::map<std::string, uint64_t> allowed, by_gen, counters;
    for (size_t o = 0; o < outcomes.size(); o++)
        if (outcomes[o])
            allowed[outcome_name(Outcome(o))] = outcomes[o];
    for (size_t g = 0; g < gens.size(); g++)
        by_gen[gen_name(Gen(g))] = gens[g];
    for (const CounterTotal& c : maps().counters())
        if (c.packets)
            counters[c.name] = c.packets;

    fmt::print("[ fuzz     ] {} packets run in {:.2f} s ({:.1f} us each), seed {:#x}{}\n", run,
               secs, run ? secs * 1e6 / double(run) : 0.0, seed,
               failures >= kMaxFailures ? " -- stopped after 5 failures" : "");
    fmt::print("[ fuzz     ] verdicts: {}\n", figures(verdicts));
    fmt::print("[ fuzz     ] allowed outcomes: {}\n", figures(allowed));
    fmt::print("[ fuzz     ] generators: {}\n", figures(by_gen));
    fmt::print("[ fuzz     ] shapes: {}\n", figures(shapes));
    fmt::print("[ fuzz     ] mutations: {}\n", figures(mutations));
    fmt::print("[ fuzz     ] oracle: {}\n", figures(oracle));
    fmt::print("[ fuzz     ] program counters: {}\n", figures(counters));
    fmt::print("[ fuzz     ] failures: {}\n", failures);
    std::fflush(stdout);
    // The fuzzer keeps its teeth: once every configuration has run, each
    // allowed outcome has happened (a cluster that forwarded nothing would
    // pass every check above).
    if (failures == 0 && run >= kBatch * std::size(kConfigs)) {
        for (size_t o = 0; o < outcomes.size(); o++)
            EXPECT_GT(outcomes[o], 0u) << "no \"" << outcome_name(Outcome(o)) << "\" in " << run
                                       << " packets, seed " << fmt::format("{:#x}", seed);
    }
    RecordProperty("seed", fmt::format("{:#x}", seed));
    RecordProperty("packets", std::to_string(run));
}

} // namespace
} // namespace peerlb::test
