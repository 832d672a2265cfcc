// The fixture of the BPF tests: loads the real peerlb programs privately (no
// pinning), fills the maps with a small test cluster and runs packets through
// BPF_PROG_TEST_RUN.
#pragma once

#include <sched.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "packet.h"
#include "userspace/dataplane/maps.h"
#include "userspace/dataplane/skeleton.h"

namespace peerlb::test {

// The test cluster: this node in slot 0, three peers in slots 1..3 (10 %,
// 20 % and 40 % loaded), one IPv4 and one IPv6 service on port 80.
inline constexpr uint32_t kSelfSlot = 0;
inline constexpr uint32_t kNodeSlots = 4;
inline constexpr uint16_t kServicePort = 80;
inline constexpr uint16_t kClientPort = 40000;
// Loads at install_cluster: this node idle, peers at 10, 20 and 40 %.
inline constexpr uint32_t kInitialLoad[kNodeSlots] = {0, 1000, 2000, 4000};

Mac node_mac(uint32_t slot);                        // 02:00:00:00:<slot + 1, 2 bytes>
IpAddress node_addr(uint8_t family, uint32_t slot); // 10.0.<slot + 1, 2 bytes> / fd00::<slot + 1>
IpAddress client_addr(uint8_t family);              // 198.51.100.7 / 2001:db8:c::7
IpAddress service_addr(uint8_t family);             // 192.0.2.10 / 2001:db8:5::10
// The MAC of the router the clients' packets come through (02:00:00:ff:00:fe).
Mac router_mac();

// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns().
uint64_t monotonic_ns();

lb_flow_key flow_key(const IpAddress& src, const IpAddress& dst, uint16_t sport, uint16_t dport);

struct RunResult {
    int error = 0;        // of bpf_prog_test_run_opts
    uint32_t verdict = 0; // the program's return value
    Bytes out;
    uint32_t duration_ns = 0; // the program's run time, as the kernel measured it
};

// One BPF_PROG_TEST_RUN (repeat = 1) of any program. An XDP program's run
// may name its ingress interface (xdp_md.ingress_ifindex; 0: lo).
RunResult try_run(int prog_fd, const Bytes& frame, uint32_t ingress_ifindex = 0);

// The network the XDP runs see (ipip forwarding asks its routing table,
// bpf_fib_lookup): made at the first DataPlaneTest::SetUp, in a network
// namespace this process enters then and keeps (the root namespace's routes
// and interfaces are never seen nor touched). lbtest0 (MAC node_mac(0),
// 10.0.0.1/24, fd00::1/64, MTU 9000; its other end lbtest1) is the ingress
// interface of every run_xdp; the test cluster's peers are on its link with
// permanent neighbour entries (node_addr -> node_mac), and forwarding is on
// for lo, as the agent sets it in ipip mode. Tests that change it undo it.
uint32_t test_link_ifindex();

// XDP_PASS with the frame exactly as it came in.
::testing::AssertionResult passed_untouched(const RunResult& r, const Bytes& in);
// What an l2 forward to `slot` makes of `in`: only the MACs change.
Bytes l2_forward_of(const Bytes& in, uint32_t slot);
// XDP_TX with exactly l2_forward_of(in, slot).
::testing::AssertionResult l2_forwarded(const RunResult& r, const Bytes& in, uint32_t slot);
// XDP_TX of `in` pushed in an outer header from this node to `peer`, VLAN
// tags kept, carrying `mark` (a shared address's chain, maps/shared.h);
// nodes of `family`.
::testing::AssertionResult ipip_forwarded(const RunResult& r, const Bytes& in, uint32_t peer,
                                          uint8_t family, const std::vector<VlanTag>& vlans = {},
                                          uint32_t mark = 0);

// An alive test node in `slot`: its address and MAC, load, fresh as of now_ns.
lb_node test_node(uint8_t family, uint32_t slot, uint32_t load_bp, uint64_t now_ns);

// Names the cases of tests parameterized by address family: "ipv4", "ipv6".
inline std::string family_param_name(const ::testing::TestParamInfo<uint8_t>& info)
{
    return info.param == LB_FAMILY_IPV4 ? "ipv4" : "ipv6";
}

// Packets per counter name; only counters that moved.
using Counts = std::map<std::string, uint64_t>;

// Keeps this thread on the CPU it runs on, for the scope: for what the
// data plane keeps per CPU (next hops, the SYN meter).
class OnOneCpu {
public:
    OnOneCpu()
    {
        sched_getaffinity(0, sizeof(old_), &old_);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(sched_getcpu(), &one);
        pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    ~OnOneCpu() { sched_setaffinity(0, sizeof(old_), &old_); }
    OnOneCpu(const OnOneCpu&) = delete;
    OnOneCpu& operator=(const OnOneCpu&) = delete;
    bool pinned() const { return pinned_; }

private:
    cpu_set_t old_{};
    bool pinned_ = false;
};

class DataPlaneTest : public ::testing::Test {
protected:
    void SetUp() override;

    // Config (forward mode, pick = least, choices = 0: every candidate,
    // conn_cost_bp = 0, generous staleness limits, MTU 1500, a SYN rate for
    // cookies no test reaches) and nodes whose addresses are of
    // node_family, all alive and fresh.
    void install_cluster(uint32_t forward, uint8_t node_family = LB_FAMILY_IPV4);
    lb_config config() const { return maps().config(); }
    template <typename Change>
    void change_config(Change&& change)
    {
        lb_config cfg = maps().config();
        change(cfg);
        maps().set_config(cfg);
        sync_candidates();
    }
    // The candidate lists as the agent would keep them for what the maps
    // hold (lb_nodes[0 .. node_slots), the URI rules in use): the helpers
    // here call it; a test that writes lb_nodes or the rules itself calls
    // it after, or writes the lists it wants.
    void sync_candidates();
    // A cluster of `nodes` (node_slots): every peer slot below it written
    // alive and fresh, of this node's family, slot s loaded load_of(s).
    void set_cluster_size(uint32_t nodes, const std::function<uint32_t(uint32_t)>& load_of);

    // Writes a node's load as the agent does: fresh timestamp, pending reset.
    void set_load(uint32_t slot, uint32_t load_bp);
    // The load one connection adds, for this node (lb_config) and every
    // node slot alike (lb_node.conn_cost_bp, as peers announce it).
    void set_conn_cost(uint32_t cost_bp);
    // The connections this node decided for `slot` since its load was last
    // written, still open (lb_handed less lb_node.handed_at_report).
    int32_t handed_since(uint32_t slot) const;
    void set_load_at(uint32_t slot, uint32_t load_bp, uint64_t updated_ns);
    void set_state(uint32_t slot, uint8_t state);
    // A flow entry as a SYN before would have left it.
    void add_flow(const lb_flow_key& key, uint32_t node);

    // One run (repeat = 1), failing the test on a syscall error.
    RunResult run_xdp(const Bytes& frame);
    RunResult run_tc(const Bytes& frame);

    // Counters that moved since the last call (or since SetUp).
    Counts counter_deltas();
    uint64_t conns_forwarded(uint32_t slot) const;

    // Frames as they arrive from the router at this node.
    Ethernet inbound(std::vector<VlanTag> vlans = {}) const;
    Bytes client_frame(uint8_t family, const Tcp& tcp, std::vector<VlanTag> vlans = {},
                       const std::vector<Ipv6Ext>& ext = {}) const;
    Bytes client_syn(uint8_t family, uint16_t sport = kClientPort,
                     std::vector<VlanTag> vlans = {}) const;
    lb_flow_key client_key(uint8_t family, uint16_t sport = kClientPort) const;

    Maps& maps() { return *maps_; }
    const Maps& maps() const { return *maps_; }
    Skeleton& skeleton() { return *skel_; }

private:
    // Loaded once per process and shared: verifying the programs takes
    // seconds. Every map is emptied at SetUp, so each test starts afresh.
    Skeleton* skel_ = nullptr;
    std::unique_ptr<Maps> maps_;
    std::map<std::string, uint64_t> last_counts_;
};

} // namespace peerlb::test
