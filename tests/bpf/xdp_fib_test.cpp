// ipip forwarding across routers (DESIGN.md section 2, bpf/forward.bpf.h
// lb_next_hop): the outer frame goes to the next hop the kernel's routing
// table gives, not to the peer's own MAC. The tests change the routes and
// neighbours of the test network (fixture.h: this process's own network
// namespace, lbtest0 = 10.0.0.1/24, fd00::1/64, the ingress of every run)
// and undo them after each test.
#include <linux/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

// The peer every forwarded SYN goes to: the least loaded (pick = least).
constexpr uint32_t kPeer = 1;

const Mac kRouterMac{0x02, 0, 0, 0, 0, 0xaa};   // the gateway's, on lbtest0
const Mac kOtherLinkMac{0x02, 0, 0, 0, 0, 0xbb}; // lbtest2, a second interface
const Mac kBehindMac{0x02, 0, 0, 0, 0, 0xcc};    // a next hop on lbtest2

class XdpFib : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        install_cluster(LB_FORWARD_IPIP, family());
        set_load(kSelfSlot, 9000);
    }

    void TearDown() override
    {
        // Undone in reverse; a failure leaves the next tests a wrong network,
        // so it fails this one.
        for (auto it = undo_.rbegin(); it != undo_.rend(); ++it)
            EXPECT_EQ(std::system(it->c_str()), 0) << "undo: " << *it;
        if (lo_forwarding_off_)
            set_lo_forwarding("1");
    }

    uint8_t family() const { return GetParam(); }
    bool v4() const { return family() == LB_FAMILY_IPV4; }
    const char* ip() const { return v4() ? "ip -4" : "ip -6"; }

    // Runs a command that changes the test network; `undo` reverts it.
    void change(const std::string& cmd, const std::string& undo)
    {
        ASSERT_EQ(std::system((cmd + " >/dev/null").c_str()), 0) << cmd;
        undo_.push_back(undo + " >/dev/null 2>&1");
    }

    // Another subnet, reached through a gateway on lbtest0.
    std::string routed_net() const { return v4() ? "10.9.0.0/24" : "fd09::/64"; }
    IpAddress routed_peer() const { return parse_ip(v4() ? "10.9.0.2" : "fd09::2"); }
    std::string gateway() const { return v4() ? "10.0.0.254" : "fd00::fe"; }

    void add_route(const std::string& route)
    {
        change(fmt::format("{} route add {}", ip(), route),
               fmt::format("{} route del {}", ip(), route));
    }
    void add_neighbour(const std::string& addr, const Mac& mac, const std::string& dev = "lbtest0")
    {
        change(fmt::format("ip neigh replace {} lladdr {} dev {} nud permanent", addr,
                           format_mac(mac.data()), dev),
               fmt::format("ip neigh del {} dev {}", addr, dev));
    }

    // Moves peer `slot` to `addr` (its MAC stays node_mac(slot)).
    void move_peer(uint32_t slot, const IpAddress& addr)
    {
        lb_node n = maps().node(slot);
        n.addr = addr.addr;
        n.family = addr.family;
        maps().set_node(slot, n);
    }

    void set_lo_forwarding(const char* value)
    {
        for (const char* path : {"/proc/sys/net/ipv4/conf/lo/forwarding",
                                 "/proc/sys/net/ipv6/conf/lo/forwarding"}) {
            std::ofstream f(path);
            f << value;
            f.flush();
            ASSERT_TRUE(f) << "write " << path;
        }
        lo_forwarding_off_ = std::string(value) == "0";
    }

    Bytes syn(std::vector<VlanTag> vlans = {}, uint16_t sport = kClientPort) const
    {
        return client_syn(family(), sport, std::move(vlans));
    }

private:
    std::vector<std::string> undo_;
    bool lo_forwarding_off_ = false;
};

INSTANTIATE_TEST_SUITE_P(Family, XdpFib,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

// What an ipip forward of `in` to `to` makes of it when sent from `smac` to
// `dmac`: built on its own (outer IPv4 ID 0), from the packet builder.
Bytes encapsulated(const Bytes& in, uint8_t family, const IpAddress& to, const Mac& dmac,
                   const Mac& smac, const std::vector<VlanTag>& vlans = {})
{
    const Bytes inner = slice(in, l3_offset(in));
    const uint8_t proto = read16(in, l3_offset(in) - 2) == kEthIpv4 ? kProtoIpip : kProtoIpv6;
    const IpAddress self = node_addr(family, kSelfSlot);
    Ipv4Fields outer;
    outer.id = 0;
    const Ethernet eth{dmac, smac, vlans};
    return family == LB_FAMILY_IPV4
               ? ethernet_frame(eth, kEthIpv4, ipv4_packet(self, to, proto, inner, outer))
               : ethernet_frame(eth, kEthIpv6, ipv6_packet(self, to, proto, inner));
}

::testing::AssertionResult sent(const RunResult& r, uint32_t verdict, const Bytes& expected)
{
    if (r.error)
        return ::testing::AssertionFailure() << "test run failed: " << r.error;
    if (r.verdict != verdict)
        return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not " << verdict;
    if (r.out != expected)
        return ::testing::AssertionFailure() << "frame:\n"
                                             << hex(r.out) << "\nexpected:\n"
                                             << hex(expected);
    return ::testing::AssertionSuccess();
}

TEST_P(XdpFib, OnLinkPeerGoesToItsNeighbourEntry)
{
    // The fixture's neighbour entry says 02:00:00:00:00:02; lb_nodes says
    // otherwise: the routing table's answer wins.
    lb_node n = maps().node(kPeer);
    n.mac[5] = 0x77;
    maps().set_node(kPeer, n);
    Bytes in = syn();
    EXPECT_TRUE(sent(run_xdp(in), XDP_TX,
                     encapsulated(in, family(), node_addr(family(), kPeer), node_mac(kPeer),
                                  node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

TEST_P(XdpFib, RoutedPeerGoesToTheRouter)
{
    add_neighbour(gateway(), kRouterMac);
    add_route(fmt::format("{} via {} dev lbtest0", routed_net(), gateway()));
    move_peer(kPeer, routed_peer());
    Bytes in = syn();
    EXPECT_TRUE(sent(run_xdp(in), XDP_TX,
                     encapsulated(in, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));

    // The flow's next segment takes the same way.
    Tcp data;
    data.flags = kAck | kPsh;
    data.seq = 1001;
    data.payload = Bytes(300, 0x61);
    Bytes next = client_frame(family(), data);
    EXPECT_TRUE(sent(run_xdp(next), XDP_TX,
                     encapsulated(next, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
    EXPECT_EQ(maps().node_counters().at(kPeer).packets_forwarded, 2u);
}

TEST_P(XdpFib, RoutedPeerKeepsTheVlanTags)
{
    add_neighbour(gateway(), kRouterMac);
    add_route(fmt::format("{} via {} dev lbtest0", routed_net(), gateway()));
    move_peer(kPeer, routed_peer());
    const std::vector<VlanTag> tags{{kEthQinQ, 30}, {kEthVlan, 3}};
    Bytes in = syn(tags);
    EXPECT_TRUE(sent(run_xdp(in), XDP_TX,
                     encapsulated(in, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot),
                                  tags)));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

TEST_P(XdpFib, UnresolvedRouterIsDroppedAndCountedUntilResolved)
{
    // A route through a gateway nobody has resolved yet: the frame cannot
    // go to the peer's own MAC (not on this link), nor be passed.
    add_route(fmt::format("{} via {} dev lbtest0", routed_net(), gateway()));
    move_peer(kPeer, routed_peer());
    Bytes in = syn();
    RunResult r = run_xdp(in);
    EXPECT_EQ(r.verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"drop_forward_no_neigh", 1}}));
    EXPECT_EQ(maps().node_counters().at(kPeer).packets_forwarded, 0u);

    // Once resolved, the client's retransmitted SYN follows its entry.
    add_neighbour(gateway(), kRouterMac);
    EXPECT_TRUE(sent(run_xdp(in), XDP_TX,
                     encapsulated(in, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
}

TEST_P(XdpFib, OnLinkPeerWithoutNeighbourEntryGetsItsOwnMac)
{
    // On lbtest0's subnet, no neighbour entry (peers that only multicast to
    // each other never resolve one another): the peer's MAC from lb_nodes.
    const IpAddress unresolved = parse_ip(v4() ? "10.0.0.42" : "fd00::42");
    move_peer(kPeer, unresolved);
    Bytes in = syn();
    EXPECT_TRUE(sent(run_xdp(in), XDP_TX,
                     encapsulated(in, family(), unresolved, node_mac(kPeer), node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"ipip_peer_mac", 1}}));
}

TEST_P(XdpFib, NoUsableRouteIsDroppedAndCounted)
{
    // No route at all (the test network has no default route), then a
    // blackhole, an unreachable and a prohibit route, each to a subnet of
    // its own.
    move_peer(kPeer, parse_ip(v4() ? "10.8.0.2" : "fd08::2"));
    uint16_t port = kClientPort;
    RunResult r = run_xdp(syn({}, port++));
    EXPECT_EQ(r.verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"drop_forward_no_route", 1}}));

    int subnet = 1;
    for (const char* type : {"blackhole", "unreachable", "prohibit"}) {
        SCOPED_TRACE(type);
        add_route(v4() ? fmt::format("{} 10.8.{}.0/24", type, subnet)
                       : fmt::format("{} fd08:{}::/64", type, subnet));
        move_peer(kPeer, parse_ip(v4() ? fmt::format("10.8.{}.2", subnet)
                                       : fmt::format("fd08:{}::2", subnet)));
        subnet++;
        r = run_xdp(syn({}, port++));
        EXPECT_EQ(r.verdict, XDP_DROP);
        EXPECT_EQ(counter_deltas(),
                  (Counts{{"syn_forward_least", 1}, {"drop_forward_no_route", 1}}));
    }
}

TEST_P(XdpFib, ForwardingDisabledOnLoIsDroppedAndCounted)
{
    // bpf_fib_lookup answers only when forwarding is on for its input
    // interface (lo): without it nothing is sent blind to the peer's MAC.
    set_lo_forwarding("0");
    RunResult r = run_xdp(syn());
    EXPECT_EQ(r.verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(),
              (Counts{{"syn_forward_least", 1}, {"drop_forward_fib_disabled", 1}}));
}

TEST_P(XdpFib, OuterPacketOverTheRouteMtuIsDropped)
{
    add_neighbour(gateway(), kRouterMac);
    add_route(fmt::format("{} via {} dev lbtest0 mtu lock 1280", routed_net(), gateway()));
    move_peer(kPeer, routed_peer());
    add_flow(client_key(family()), kPeer);
    const size_t outer = v4() ? kIpv4HeaderLen : kIpv6HeaderLen;
    const size_t headers = (v4() ? kIpv4HeaderLen : kIpv6HeaderLen) + kTcpHeaderLen;
    Tcp data;
    data.flags = kAck;
    data.payload = Bytes(1280 - outer - headers, 0x42); // exactly the route's MTU
    Bytes fits = client_frame(family(), data);
    EXPECT_TRUE(sent(run_xdp(fits), XDP_TX,
                     encapsulated(fits, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot))));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));

    data.payload.push_back(0x42);
    Bytes too_big = client_frame(family(), data);
    EXPECT_EQ(run_xdp(too_big).verdict, XDP_DROP);
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_forward_error", 1}}));
}

TEST_P(XdpFib, RouteByAnotherInterfaceIsARedirect)
{
    // lbtest2 (its other end lbtest3) carries the route to the peer.
    change(fmt::format("ip link add lbtest2 address {} type veth peer name lbtest3 && "
                       "ip link set lbtest2 up && ip link set lbtest3 up && "
                       "ip addr add {} dev lbtest2 {}",
                       format_mac(kOtherLinkMac.data()), v4() ? "10.6.0.1/24" : "fd06::1/64",
                       v4() ? "" : "nodad"),
           "ip link del lbtest2");
    const IpAddress behind = parse_ip(v4() ? "10.6.0.2" : "fd06::2");
    add_neighbour(v4() ? "10.6.0.2" : "fd06::2", kBehindMac, "lbtest2");
    move_peer(kPeer, behind);
    Bytes in = syn();
    EXPECT_TRUE(sent(run_xdp(in), XDP_REDIRECT,
                     encapsulated(in, family(), behind, kBehindMac, kOtherLinkMac)));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}, {"ipip_redirect", 1}}));

    // A flow's later segments: sent, and counted as sent.
    Tcp data;
    data.flags = kAck;
    data.seq = 1001;
    Bytes next = client_frame(family(), data);
    EXPECT_TRUE(sent(run_xdp(next), XDP_REDIRECT,
                     encapsulated(next, family(), behind, kBehindMac, kOtherLinkMac)));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}, {"ipip_redirect", 1}}));

    // A tagged frame cannot be redirected to a VLAN's device: it leaves the
    // way it came, tags kept, with the route's MACs.
    const std::vector<VlanTag> tags{{kEthVlan, 7}};
    Bytes tagged = syn(tags, kClientPort + 1);
    EXPECT_TRUE(sent(run_xdp(tagged), XDP_TX,
                     encapsulated(tagged, family(), behind, kBehindMac, kOtherLinkMac, tags)));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

// The next hops are cached per CPU: OnOneCpu (fixture.h) keeps the test on one.
TEST_P(XdpFib, TheNextHopIsReusedForItsTtlThenLookedUpAgain)
{
    // LB_NEXT_HOP_TTL_NS of bpf/forward.bpf.h, on the kernel's coarse clock
    // (a tick late: up to 10 ms), hence the margins below.
    constexpr uint64_t kTtlNs = 50'000'000;
    constexpr uint64_t kTickNs = 10'000'000;
    const Mac failed_over{0x02, 0, 0, 0, 0, 0xdd};
    OnOneCpu cpu;
    ASSERT_TRUE(cpu.pinned());
    add_neighbour(gateway(), kRouterMac);
    add_route(fmt::format("{} via {} dev lbtest0", routed_net(), gateway()));
    move_peer(kPeer, routed_peer());
    add_flow(client_key(family()), kPeer);
    Tcp data;
    data.flags = kAck;
    Bytes frame = client_frame(family(), data);
    const Bytes to_router =
        encapsulated(frame, family(), routed_peer(), kRouterMac, node_mac(kSelfSlot));
    const Bytes to_new_mac =
        encapsulated(frame, family(), routed_peer(), failed_over, node_mac(kSelfSlot));

    const uint64_t looked_up = monotonic_ns();
    EXPECT_TRUE(sent(run_xdp(frame), XDP_TX, to_router));
    // The router's MAC changes (a failover to another box).
    ASSERT_EQ(std::system(fmt::format("ip neigh replace {} lladdr {} dev lbtest0 nud permanent",
                                      gateway(), format_mac(failed_over.data()))
                              .c_str()),
              0);
    RunResult within = run_xdp(frame);
    if (monotonic_ns() - looked_up < kTtlNs - 2 * kTickNs)
        EXPECT_TRUE(sent(within, XDP_TX, to_router)) << "not reused within the TTL";
    else
        std::printf("    (this machine was too slow to check the reuse within the TTL)\n");
    while (monotonic_ns() - looked_up < kTtlNs + 2 * kTickNs)
        usleep(5000);
    EXPECT_TRUE(sent(run_xdp(frame), XDP_TX, to_new_mac)) << "not looked up again after the TTL";
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 3}}));

    // A slot given to another address is looked up at once.
    move_peer(kPeer, node_addr(family(), kPeer));
    EXPECT_TRUE(sent(run_xdp(frame), XDP_TX,
                     encapsulated(frame, family(), node_addr(family(), kPeer), node_mac(kPeer),
                                  node_mac(kSelfSlot))));
}

TEST_P(XdpFib, L2ModeNeverAsksTheRoutingTable)
{
    install_cluster(LB_FORWARD_L2, family());
    set_load(kSelfSlot, 9000);
    move_peer(kPeer, parse_ip(v4() ? "10.8.0.2" : "fd08::2")); // no route
    Bytes in = syn();
    EXPECT_TRUE(l2_forwarded(run_xdp(in), in, kPeer));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
}

} // namespace
} // namespace peerlb::test
