#include "fixture.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <ctime>

#include "userspace/dataplane/candidates.h"
#include "userspace/dataplane/error.h"

namespace peerlb::test {
namespace {

Fd dup_map_fd(const bpf_map* map)
{
    int fd = ::dup(bpf_map__fd(map));
    if (fd < 0)
        throw SystemError("dup map fd", errno);
    return Fd(fd);
}

// Staleness limits far above any test's run time: a test that wants stale
// information sets an old timestamp instead.
constexpr uint64_t kFreshForNs = 600'000'000'000ull;

// Empties one map of the shared skeleton: arrays back to zeros, hash
// tables without entries. (The ring buffer is left as it is.)
void reset_map(const bpf_map* map)
{
    const int fd = bpf_map__fd(map);
    const bpf_map_type type = bpf_map__type(map);
    const uint32_t key_size = bpf_map__key_size(map), max = bpf_map__max_entries(map);
    size_t value_size = bpf_map__value_size(map);
    if (type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
        type == BPF_MAP_TYPE_LRU_PERCPU_HASH)
        value_size = ((value_size + 7) / 8 * 8) * static_cast<size_t>(libbpf_num_possible_cpus());
    if (type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY) {
        // One batch (lb_buckets alone has 65 536 entries), entry by entry
        // where batches are not supported.
        std::vector<uint32_t> indexes(max);
        for (uint32_t i = 0; i < max; i++)
            indexes[i] = i;
        std::vector<uint8_t> all_zeros(value_size * max);
        uint32_t count = max;
        if (bpf_map_update_batch(fd, indexes.data(), all_zeros.data(), &count, nullptr) == 0)
            return;
        std::vector<uint8_t> zeros(value_size);
        for (uint32_t i = 0; i < max; i++)
            if (bpf_map_update_elem(fd, &i, zeros.data(), BPF_ANY))
                throw SystemError(fmt::format("reset map {}", bpf_map__name(map)), errno);
        return;
    }
    if (type != BPF_MAP_TYPE_HASH && type != BPF_MAP_TYPE_LRU_HASH)
        return;
    // Keys first, then the deletes: a walk restarted from the first key
    // after each delete is quadratic (a flood test leaves 262 144 flows).
    std::vector<uint8_t> keys, next(key_size);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
        keys.insert(keys.end(), next.begin(), next.end());
        prev = keys.data() + keys.size() - key_size;
    }
    for (size_t at = 0; at < keys.size(); at += key_size)
        if (bpf_map_delete_elem(fd, keys.data() + at) && errno != ENOENT)
            throw SystemError(fmt::format("reset map {}", bpf_map__name(map)), errno);
}

void run_command(const std::string& cmd)
{
    if (std::system((cmd + " >/dev/null").c_str()) != 0)
        throw Error("test network: " + cmd);
}

void write_proc(const std::string& path, const char* value)
{
    std::ofstream f(path);
    f << value;
    f.flush();
    if (!f)
        throw Error(fmt::format("test network: write {} = {}", path, value));
}

// The test network (fixture.h), made once: returns lbtest0's index.
uint32_t make_test_network()
{
    if (unshare(CLONE_NEWNET))
        throw SystemError("unshare a network namespace for the test network", errno);
    run_command("ip link set lo up");
    run_command(fmt::format("ip link add lbtest0 address {} mtu 9000 type veth peer name lbtest1 "
                            "mtu 9000",
                            format_mac(node_mac(kSelfSlot).data())));
    run_command("ip link set lbtest1 up && ip link set lbtest0 up");
    run_command(fmt::format("ip addr add {}/24 dev lbtest0",
                            format_ip(node_addr(LB_FAMILY_IPV4, kSelfSlot))));
    run_command(fmt::format("ip addr add {}/64 dev lbtest0 nodad",
                            format_ip(node_addr(LB_FAMILY_IPV6, kSelfSlot))));
    for (uint32_t slot = 0; slot < kNodeSlots; slot++) {
        if (slot == kSelfSlot)
            continue;
        for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6})
            run_command(fmt::format("ip neigh replace {} lladdr {} dev lbtest0 nud permanent",
                                    format_ip(node_addr(family, slot)),
                                    format_mac(node_mac(slot).data())));
    }
    write_proc("/proc/sys/net/ipv4/conf/lo/forwarding", "1");
    write_proc("/proc/sys/net/ipv6/conf/lo/forwarding", "1");
    const unsigned index = if_nametoindex("lbtest0");
    if (!index)
        throw SystemError("test network: lbtest0's index", errno);
    return index;
}

Skeleton& shared_skeleton()
{
    static std::unique_ptr<Skeleton> skel = [] {
        auto s = std::make_unique<Skeleton>(std::nullopt);
        s->load();
        return s;
    }();
    return *skel;
}

} // namespace

uint32_t test_link_ifindex()
{
    static const uint32_t index = make_test_network();
    return index;
}

Mac node_mac(uint32_t slot)
{
    return {0x02, 0, 0, 0, uint8_t((slot + 1) >> 8), uint8_t(slot + 1)};
}

IpAddress node_addr(uint8_t family, uint32_t slot)
{
    if (family == LB_FAMILY_IPV4)
        return parse_ip(fmt::format("10.0.{}.{}", (slot + 1) >> 8, (slot + 1) & 0xff));
    return parse_ip("fd00::" + std::to_string(slot + 1));
}

IpAddress client_addr(uint8_t family)
{
    return parse_ip(family == LB_FAMILY_IPV4 ? "198.51.100.7" : "2001:db8:c::7");
}

IpAddress service_addr(uint8_t family)
{
    return parse_ip(family == LB_FAMILY_IPV4 ? "192.0.2.10" : "2001:db8:5::10");
}

Mac router_mac()
{
    return {0x02, 0, 0, 0xff, 0, 0xfe}; // no node's: theirs have 0 in byte 3
}

uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

lb_flow_key flow_key(const IpAddress& src, const IpAddress& dst, uint16_t sport, uint16_t dport)
{
    lb_flow_key key{};
    key.saddr = src.addr;
    key.daddr = dst.addr;
    key.sport = htons(sport);
    key.dport = htons(dport);
    key.family = src.family;
    key.protocol = kProtoTcp;
    return key;
}

::testing::AssertionResult passed_untouched(const RunResult& r, const Bytes& in)
{
    if (r.error)
        return ::testing::AssertionFailure() << "test run failed: " << std::strerror(r.error);
    if (r.verdict != XDP_PASS)
        return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not XDP_PASS";
    if (r.out != in)
        return ::testing::AssertionFailure() << "frame changed:\n"
                                             << hex(r.out) << "\nexpected:\n"
                                             << hex(in);
    return ::testing::AssertionSuccess();
}

Bytes l2_forward_of(const Bytes& in, uint32_t slot)
{
    Bytes out = in;
    const Mac to = node_mac(slot), from = node_mac(kSelfSlot);
    std::copy(to.begin(), to.end(), out.begin());
    std::copy(from.begin(), from.end(), out.begin() + 6);
    return out;
}

::testing::AssertionResult l2_forwarded(const RunResult& r, const Bytes& in, uint32_t slot)
{
    if (r.error)
        return ::testing::AssertionFailure() << "test run failed: " << std::strerror(r.error);
    if (r.verdict != XDP_TX)
        return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not XDP_TX";
    const Bytes expected = l2_forward_of(in, slot);
    if (r.out != expected)
        return ::testing::AssertionFailure() << "frame:\n"
                                             << hex(r.out) << "\nexpected:\n"
                                             << hex(expected);
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult ipip_forwarded(const RunResult& r, const Bytes& in, uint32_t peer,
                                          uint8_t family, const std::vector<VlanTag>& vlans,
                                          uint32_t mark)
{
    if (r.error)
        return ::testing::AssertionFailure() << "test run failed: " << std::strerror(r.error);
    if (r.verdict != XDP_TX)
        return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not XDP_TX";
    const Bytes inner = slice(in, l3_offset(in));
    const IpAddress self = node_addr(family, kSelfSlot), to = node_addr(family, peer);
    const Ethernet eth{node_mac(peer), node_mac(kSelfSlot), vlans};
    const Bytes expected =
        ethernet_frame(eth, ethertype_of(family), ip_tunnel_packet(self, to, inner, mark));
    if (r.out != expected)
        return ::testing::AssertionFailure() << "frame:\n"
                                             << hex(r.out) << "\nexpected:\n"
                                             << hex(expected);
    return ::testing::AssertionSuccess();
}

lb_node test_node(uint8_t family, uint32_t slot, uint32_t load_bp, uint64_t now_ns)
{
    lb_node n{};
    IpAddress addr = node_addr(family, slot);
    n.addr = addr.addr;
    n.family = addr.family;
    Mac mac = node_mac(slot);
    std::copy(mac.begin(), mac.end(), n.mac);
    n.state = LB_NODE_ALIVE;
    n.load_bp = load_bp;
    n.updated_ns = now_ns;
    n.weight = LB_WEIGHT_ONE;
    return n;
}

void DataPlaneTest::SetUp()
{
    if (geteuid() != 0)
        GTEST_SKIP() << "needs root to load BPF programs (BPF_PROG_TEST_RUN)";
    test_link_ifindex(); // the process's own network, from the first test on
    skel_ = &shared_skeleton();
    bpf_map* map;
    bpf_object__for_each_map(map, (*skel_)->obj)
    {
        reset_map(map);
    }
    MapFds fds;
    fds.config = dup_map_fd((*skel_)->maps.lb_config);
    fds.nodes = dup_map_fd((*skel_)->maps.lb_nodes);
    fds.node_addrs = dup_map_fd((*skel_)->maps.lb_node_addrs);
    fds.node_macs = dup_map_fd((*skel_)->maps.lb_node_macs);
    fds.services = dup_map_fd((*skel_)->maps.lb_services);
    fds.flows = dup_map_fd((*skel_)->maps.lb_flows);
    fds.flows_new = dup_map_fd((*skel_)->maps.lb_flows_new);
    fds.grace = dup_map_fd((*skel_)->maps.lb_grace);
    fds.stats = dup_map_fd((*skel_)->maps.lb_stats);
    fds.node_stats = dup_map_fd((*skel_)->maps.lb_node_stats);
    fds.cookie_keys = dup_map_fd((*skel_)->maps.lb_cookie_keys);
    fds.uri_rules = dup_map_fd((*skel_)->maps.lb_uri_rules_v2);
    fds.rule_stats = dup_map_fd((*skel_)->maps.lb_rule_stats);
    fds.pins = dup_map_fd((*skel_)->maps.lb_pins);
    fds.pin_events = dup_map_fd((*skel_)->maps.lb_pin_events);
    fds.inflight = dup_map_fd((*skel_)->maps.lb_inflight);
    fds.handed = dup_map_fd((*skel_)->maps.lb_handed);
    fds.buckets = dup_map_fd((*skel_)->maps.lb_buckets);
    fds.candidates = dup_map_fd((*skel_)->maps.lb_candidates);
    maps_ = std::make_unique<Maps>(std::move(fds));
    install_cluster(LB_FORWARD_L2);
}

void DataPlaneTest::install_cluster(uint32_t forward, uint8_t node_family)
{
    lb_config cfg = default_config();
    cfg.forward = forward;
    cfg.pick = LB_PICK_LEAST;
    cfg.conn_cost_bp = 0;
    cfg.self_slot = kSelfSlot;
    cfg.node_slots = kNodeSlots;
    cfg.mtu = 1500;
    cfg.peer_stale_ns = kFreshForNs;
    cfg.self_stale_ns = kFreshForNs;
    // The SYN meter on, but never reached by the tests' bursts of SYNs;
    // xdp_flood_test.cpp sets its own rate.
    cfg.syn_cookies = LB_SYN_COOKIES_AUTO;
    cfg.syn_cookie_rate = 10'000'000;
    cfg.choices = 0;
    maps_->set_config(cfg);

    const uint64_t now = monotonic_ns();
    for (uint32_t slot = 0; slot < kNodeSlots; slot++)
    {
        lb_node n = test_node(node_family, slot, kInitialLoad[slot], now);
        n.handed_at_report = maps_->handed_open(slot); // a fresh report, as the agent writes it
        maps_->set_node(slot, n);
    }
    for (uint8_t family : {LB_FAMILY_IPV4, LB_FAMILY_IPV6}) {
        lb_service_key key{};
        key.addr = service_addr(family).addr;
        key.port = htons(kServicePort);
        key.family = family;
        maps_->add_service(key, lb_service{LB_MODE_L4, 1, 0});
    }
    sync_candidates();
}

void DataPlaneTest::sync_candidates()
{
    peerlb::sync_candidates(*maps_);
}

void DataPlaneTest::set_cluster_size(uint32_t nodes, const std::function<uint32_t(uint32_t)>& load_of)
{
    const uint8_t family = maps_->node(kSelfSlot).family;
    const uint64_t now = monotonic_ns();
    for (uint32_t slot = 0; slot < nodes && slot < LB_MAX_NODES; slot++) {
        if (slot == kSelfSlot)
            continue;
        lb_node n = test_node(family, slot, load_of(slot), now);
        n.handed_at_report = maps_->handed_open(slot);
        maps_->set_node(slot, n);
    }
    change_config([&](lb_config& cfg) { cfg.node_slots = std::min<uint32_t>(nodes, LB_MAX_NODES); });
}

void DataPlaneTest::set_conn_cost(uint32_t cost_bp)
{
    lb_config cfg = maps_->config();
    cfg.conn_cost_bp = cost_bp;
    maps_->set_config(cfg);
    for (uint32_t slot = 0; slot < kNodeSlots; slot++) {
        lb_node n = maps_->node(slot);
        n.conn_cost_bp = cost_bp;
        maps_->set_node_entry(slot, n);
    }
}

int32_t DataPlaneTest::handed_since(uint32_t slot) const
{
    return int32_t(maps_->handed_open(slot) - maps_->node(slot).handed_at_report);
}

void DataPlaneTest::set_load(uint32_t slot, uint32_t load_bp)
{
    set_load_at(slot, load_bp, monotonic_ns());
}

void DataPlaneTest::set_load_at(uint32_t slot, uint32_t load_bp, uint64_t updated_ns)
{
    lb_node n = maps_->node(slot);
    n.load_bp = load_bp;
    n.handed_at_report = maps_->handed_open(slot);
    n.updated_ns = updated_ns;
    maps_->set_node(slot, n);
    sync_candidates();
}

void DataPlaneTest::set_state(uint32_t slot, uint8_t state)
{
    lb_node n = maps_->node(slot);
    n.state = state;
    maps_->set_node(slot, n);
    sync_candidates();
}

void DataPlaneTest::add_flow(const lb_flow_key& key, uint32_t node)
{
    lb_flow flow{};
    flow.node = node;
    flow.reason = node == LB_NODE_LOCAL ? LB_REASON_BELOW_T1 : LB_REASON_LEAST;
    flow.created_ns = monotonic_ns();
    if (bpf_map_update_elem(maps_->fds().flows.get(), &key, &flow, BPF_ANY))
        throw SystemError("write flow", errno);
}

RunResult try_run(int prog_fd, const Bytes& frame, uint32_t ingress_ifindex)
{
    RunResult r;
    // Room for an outer IPv6 header and then some.
    r.out.resize(frame.size() + 64);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = frame.data();
    opts.data_size_in = uint32_t(frame.size());
    opts.data_out = r.out.data();
    opts.data_size_out = uint32_t(r.out.size());
    xdp_md ctx{};
    if (ingress_ifindex) {
        ctx.data_end = uint32_t(frame.size());
        ctx.ingress_ifindex = ingress_ifindex;
        opts.ctx_in = &ctx;
        opts.ctx_size_in = sizeof(ctx);
    }
    // repeat > 1 would rerun on the already rewritten buffer.
    opts.repeat = 1;
    if (bpf_prog_test_run_opts(prog_fd, &opts)) {
        r.error = errno;
        r.out.clear();
        return r;
    }
    r.verdict = opts.retval;
    r.out.resize(opts.data_size_out);
    r.duration_ns = opts.duration;
    return r;
}

RunResult DataPlaneTest::run_xdp(const Bytes& frame)
{
    RunResult r =
        try_run(bpf_program__fd((*skel_)->progs.xdp_peerlb), frame, test_link_ifindex());
    EXPECT_EQ(r.error, 0) << "BPF_PROG_TEST_RUN(xdp_peerlb): " << std::strerror(r.error);
    return r;
}

RunResult DataPlaneTest::run_tc(const Bytes& frame)
{
    RunResult r = try_run(bpf_program__fd((*skel_)->progs.tc_mss_clamp), frame);
    EXPECT_EQ(r.error, 0) << "BPF_PROG_TEST_RUN(tc_mss_clamp): " << std::strerror(r.error);
    return r;
}

Counts DataPlaneTest::counter_deltas()
{
    Counts moved;
    for (const CounterTotal& c : maps_->counters()) {
        uint64_t& last = last_counts_[c.name];
        if (c.packets != last)
            moved[c.name] = c.packets - last;
        last = c.packets;
    }
    return moved;
}

uint64_t DataPlaneTest::conns_forwarded(uint32_t slot) const
{
    return maps_->node_counters().at(slot).conns_forwarded;
}

Ethernet DataPlaneTest::inbound(std::vector<VlanTag> vlans) const
{
    return Ethernet{node_mac(kSelfSlot), router_mac(), std::move(vlans)};
}

Bytes DataPlaneTest::client_frame(uint8_t family, const Tcp& tcp, std::vector<VlanTag> vlans,
                                  const std::vector<Ipv6Ext>& ext) const
{
    return tcp_frame(inbound(std::move(vlans)), client_addr(family), service_addr(family), tcp,
                     ext);
}

Bytes DataPlaneTest::client_syn(uint8_t family, uint16_t sport, std::vector<VlanTag> vlans) const
{
    Tcp syn;
    syn.sport = sport;
    syn.options = linux_syn_options();
    return client_frame(family, syn, std::move(vlans));
}

lb_flow_key DataPlaneTest::client_key(uint8_t family, uint16_t sport) const
{
    return flow_key(client_addr(family), service_addr(family), sport, kServicePort);
}

} // namespace peerlb::test
