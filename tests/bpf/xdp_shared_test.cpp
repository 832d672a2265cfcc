// Shared service addresses (DESIGN.md section 5b, bpf/shared.bpf.h): the
// client's bucket decides which node keeps a packet; a packet goes on to
// the owner and along the chain of previous owners with a hop mark in its
// outer header, at most three hops and never back to a node it passed.
// Every branch for IPv4 and IPv6 clients and nodes: verdict, output bytes
// (outer addresses and mark included), counters, no flow entry.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

constexpr uint32_t kBuckets = 4096;
constexpr uint16_t kNone = LB_BUCKET_NONE;
constexpr uint16_t kSelf = kSelfSlot;
constexpr uint16_t kOtherPort = 8080; // a service that is not shared
constexpr uint64_t kChainNs = 600'000'000'000ull;

uint32_t mark(uint32_t hop, uint32_t passed_a = kNone, uint32_t passed_b = kNone)
{
    return lb_hop_mark(hop, passed_a, passed_b);
}

// A chain_until_ns already over, on the data plane's coarse clock too (a
// tick behind).
uint64_t over()
{
    return monotonic_ns() - 1'000'000'000ull;
}

// A bucket owned by `owner` with no chain.
lb_bucket owned_by(uint16_t owner)
{
    lb_bucket b{};
    b.owner = owner;
    b.prev[0] = b.prev[1] = kNone;
    return b;
}

// A bucket that moved to `owner` from prev0 (and prev1), the chain lasting
// until `until_ns` (default: long after the test).
lb_bucket moved_to(uint16_t owner, uint16_t prev0, uint16_t prev1 = kNone, uint64_t until_ns = 0)
{
    lb_bucket b = owned_by(owner);
    b.prev[0] = prev0;
    b.prev[1] = prev1;
    b.chain_until_ns = until_ns ? until_ns : monotonic_ns() + kChainNs;
    return b;
}

Tcp data_segment(uint16_t sport = kClientPort, uint16_t dport = kServicePort)
{
    Tcp t;
    t.sport = sport;
    t.dport = dport;
    t.flags = kAck | kPsh;
    t.seq = 1001;
    t.ack = 5001;
    t.payload = Bytes(64, 'd');
    return t;
}

Tcp syn_segment(uint16_t sport = kClientPort, uint16_t dport = kServicePort)
{
    Tcp t;
    t.sport = sport;
    t.dport = dport;
    t.options = linux_syn_options();
    return t;
}

// A real TCP connection over loopback in the test network: the local socket
// bpf_skc_lookup_tcp finds (a test run looks in this namespace).
struct LoopbackConnection {
    IpAddress addr;
    uint16_t client_port = 0;
    uint16_t server_port = 0;
    Fd listener;
    Fd client;
};

std::optional<LoopbackConnection> connect_loopback(uint8_t family)
{
    const bool v4 = family == LB_FAMILY_IPV4;
    LoopbackConnection c;
    c.addr = parse_ip(v4 ? "127.0.0.1" : "::1");
    const int af = v4 ? AF_INET : AF_INET6;
    sockaddr_storage addr{};
    socklen_t len = v4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (v4) {
        auto* a = reinterpret_cast<sockaddr_in*>(&addr);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = c.addr.addr.v4;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
        a->sin6_family = AF_INET6;
        std::memcpy(&a->sin6_addr, c.addr.addr.v6, 16);
    }
    c.listener = Fd(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c.listener || ::bind(c.listener.get(), reinterpret_cast<sockaddr*>(&addr), len) ||
        ::listen(c.listener.get(), 4) ||
        ::getsockname(c.listener.get(), reinterpret_cast<sockaddr*>(&addr), &len))
        return std::nullopt;
    c.client = Fd(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage local{};
    socklen_t local_len = sizeof(local);
    if (!c.client || ::connect(c.client.get(), reinterpret_cast<sockaddr*>(&addr), len) ||
        ::getsockname(c.client.get(), reinterpret_cast<sockaddr*>(&local), &local_len))
        return std::nullopt;
    auto port_of = [v4](const sockaddr_storage& s) {
        return ntohs(v4 ? reinterpret_cast<const sockaddr_in*>(&s)->sin_port
                        : reinterpret_cast<const sockaddr_in6*>(&s)->sin6_port);
    };
    c.server_port = port_of(addr);
    c.client_port = port_of(local);
    return c;
}

// Clients and nodes of one family (the parameter), ipip forwarding, the
// fixture's services on port 80 shared (ecmp, address hash, 4096 buckets),
// one more service on kOtherPort that is not.
class XdpShared : public DataPlaneTest, public ::testing::WithParamInterface<uint8_t> {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        use_cluster(LB_FORWARD_IPIP);
    }

    // The fixture's cluster (install_cluster) and the services above.
    void use_cluster(uint32_t forward)
    {
        install_cluster(forward, family());
        share(service_addr(family()), kServicePort);
        lb_service_key other = service_key(service_addr(family()), kOtherPort);
        maps().add_service(other, lb_service{LB_MODE_L4, 2, 0});
        change_config([](lb_config& c) {
            c.shared_buckets = kBuckets;
            c.shared_hash = LB_SHARED_HASH_ADDRESS;
            c.shared_delivery = LB_DELIVERY_ECMP;
        });
    }

    void TearDown() override
    {
        for (const std::string& cmd : undo_)
            EXPECT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << "undo: " << cmd;
    }

    uint8_t family() const { return GetParam(); }
    IpAddress client() const { return client_addr(family()); }
    IpAddress service() const { return service_addr(family()); }

    static lb_service_key service_key(const IpAddress& addr, uint16_t port)
    {
        lb_service_key key{};
        key.addr = addr.addr;
        key.port = htons(port);
        key.family = addr.family;
        return key;
    }
    void share(const IpAddress& addr, uint16_t port)
    {
        maps().add_service(service_key(addr, port), lb_service{LB_MODE_L4, 1, LB_SERVICE_SHARED});
    }

    uint32_t bucket_index(const IpAddress& client, uint16_t port) const
    {
        const lb_config c = config();
        return lb_bucket_of(&client.addr, client.family, htons(port), c.shared_hash,
                            c.shared_buckets);
    }
    // This node's entry for the bucket of the client (default: the
    // fixture's client and port).
    void set_bucket(const lb_bucket& b, std::optional<IpAddress> from = std::nullopt,
                    uint16_t port = kClientPort)
    {
        maps().set_bucket(bucket_index(from.value_or(client()), port), b);
    }

    // Frames from the router (outside), and from peer `from` with `hop_mark`.
    Bytes outside(const Tcp& tcp) const { return client_frame(family(), tcp); }
    Bytes tunnelled(uint32_t from, const Bytes& client_frame, uint32_t hop_mark) const
    {
        return ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(from), {}},
                              ethertype_of(family()),
                              ip_tunnel_packet(node_addr(family(), from),
                                               node_addr(family(), kSelfSlot),
                                               slice(client_frame, kEthHeaderLen), hop_mark));
    }
    // What decapsulating tunnelled(from, client_frame, ...) gives.
    Bytes unwrapped(uint32_t from, const Bytes& client_frame) const
    {
        return ethernet_frame(Ethernet{node_mac(kSelfSlot), node_mac(from), {}},
                              ethertype_of(family()), slice(client_frame, kEthHeaderLen));
    }

    ::testing::AssertionResult forwarded(const RunResult& r, const Bytes& client_frame,
                                         uint32_t to, uint32_t hop_mark) const
    {
        return ipip_forwarded(r, client_frame, to, family(), {}, hop_mark);
    }
    ::testing::AssertionResult passed_as(const RunResult& r, const Bytes& expected) const
    {
        if (r.error || r.verdict != XDP_PASS)
            return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not XDP_PASS";
        if (r.out != expected)
            return ::testing::AssertionFailure() << "frame:\n"
                                                 << hex(r.out) << "\nexpected:\n"
                                                 << hex(expected);
        return ::testing::AssertionSuccess();
    }
    static ::testing::AssertionResult dropped(const RunResult& r)
    {
        if (r.error || r.verdict != XDP_DROP)
            return ::testing::AssertionFailure() << "verdict " << r.verdict << ", not XDP_DROP";
        return ::testing::AssertionSuccess();
    }

    uint64_t packets_forwarded(uint32_t slot) const
    {
        return maps().node_counters().at(slot).packets_forwarded;
    }
    bool no_flows() const { return maps().flows().empty(); }

    // One more node in `slot` (>= kNodeSlots) on the test link: its address,
    // a neighbour entry (undone at TearDown).
    void add_node(uint32_t slot)
    {
        const std::string addr = format_ip(node_addr(family(), slot));
        const std::string cmd =
            fmt::format("ip neigh replace {} lladdr {} dev lbtest0 nud permanent", addr,
                        format_mac(node_mac(slot).data()));
        ASSERT_EQ(std::system((cmd + " >/dev/null").c_str()), 0) << cmd;
        undo_.push_back(fmt::format("ip neigh del {} dev lbtest0", addr));
        maps().set_node(slot, test_node(family(), slot, 0, monotonic_ns()));
        change_config([slot](lb_config& c) { c.node_slots = std::max(c.node_slots, slot + 1); });
    }

private:
    std::vector<std::string> undo_;
};

INSTANTIATE_TEST_SUITE_P(Family, XdpShared,
                         ::testing::Values(uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)),
                         family_param_name);

// A. Packets from outside.

TEST_P(XdpShared, WithoutATableEverythingIsDropped)
{
    // No table at all, whatever the load decision would say.
    change_config([](lb_config& c) { c.shared_buckets = 0; });
    for (const Tcp& tcp : {syn_segment(), data_segment()})
        EXPECT_TRUE(dropped(run_xdp(outside(tcp))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_no_table", 2}}));

    // A table whose bucket has no owner yet.
    change_config([](lb_config& c) { c.shared_buckets = kBuckets; });
    set_bucket(owned_by(kNone));
    EXPECT_TRUE(dropped(run_xdp(outside(data_segment()))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_no_table", 1}}));

    // More buckets than the map holds: the client's is out of it.
    change_config([](lb_config& c) { c.shared_buckets = 0xffffffffu; });
    ASSERT_GE(bucket_index(client(), kClientPort), uint32_t(LB_MAX_BUCKETS));
    EXPECT_TRUE(dropped(run_xdp(outside(syn_segment()))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_no_table", 1}}));
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, OwnerKeepsItsSteadyTraffic)
{
    set_bucket(owned_by(kSelf));
    for (const Tcp& tcp : {syn_segment(), data_segment()}) {
        Bytes in = outside(tcp);
        EXPECT_TRUE(passed_untouched(run_xdp(in), in));
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 2}}));
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, OwnerKeepsSynsWhileItsChainLasts)
{
    set_bucket(moved_to(kSelf, 2));
    Bytes syn = outside(syn_segment());
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, OwnerSendsOtherPacketsToThePreviousOwnerWhileTheChainLasts)
{
    set_bucket(moved_to(kSelf, 2, 3));
    Bytes in = outside(data_segment());
    EXPECT_TRUE(forwarded(run_xdp(in), in, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}}));
    EXPECT_EQ(packets_forwarded(2), 1u);
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, OwnerKeepsEverythingOnceTheChainIsOver)
{
    set_bucket(moved_to(kSelf, 2, 3, over()));
    Bytes in = outside(data_segment());
    EXPECT_TRUE(passed_untouched(run_xdp(in), in));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));
}

TEST_P(XdpShared, OwnerKeepsItsOwnConnectionsWhileTheChainLasts)
{
    std::optional<LoopbackConnection> c = connect_loopback(family());
    if (!c)
        GTEST_SKIP() << "no loopback connection for this family: " << std::strerror(errno);
    share(c->addr, c->server_port);
    set_bucket(moved_to(kSelf, 2), c->addr, c->client_port);
    Bytes ours = tcp_frame(inbound(), c->addr, c->addr, data_segment(c->client_port, c->server_port));
    EXPECT_TRUE(passed_untouched(run_xdp(ours), ours));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));

    // Another port of that client (its bucket the same: address hash)
    // matches the listener only: the previous owner's.
    const uint16_t other = c->client_port == 65535 ? 1024 : c->client_port + 1;
    Bytes theirs = tcp_frame(inbound(), c->addr, c->addr, data_segment(other, c->server_port));
    EXPECT_TRUE(forwarded(run_xdp(theirs), theirs, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}}));
}

TEST_P(XdpShared, OwnerSkipsPreviousOwnersThatAreDeadGoneOrItself)
{
    Bytes in = outside(data_segment());
    set_state(2, LB_NODE_DEAD);
    set_bucket(moved_to(kSelf, 2, 3));
    EXPECT_TRUE(forwarded(run_xdp(in), in, 3, mark(1)));
    set_bucket(moved_to(kSelf, kSelf, 3));
    EXPECT_TRUE(forwarded(run_xdp(in), in, 3, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 2}}));

    // Suspect and unroutable nodes still take their connections' packets.
    set_state(2, LB_NODE_SUSPECT);
    set_bucket(moved_to(kSelf, 2, 3));
    EXPECT_TRUE(forwarded(run_xdp(in), in, 2, mark(1)));
    set_state(2, LB_NODE_UNROUTABLE);
    EXPECT_TRUE(forwarded(run_xdp(in), in, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 2}}));

    // Nobody left: dropped, never passed (the kernel would reset it).
    set_state(2, LB_NODE_DEAD);
    maps().clear_node(3);
    EXPECT_TRUE(dropped(run_xdp(in)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_chain_drop", 1}}));
}

TEST_P(XdpShared, OwnerWithFloodDeliveryDropsWhatThePreviousOwnerHasToo)
{
    change_config([](lb_config& c) { c.shared_delivery = LB_DELIVERY_FLOOD; });
    set_bucket(moved_to(kSelf, 2));
    EXPECT_TRUE(dropped(run_xdp(outside(data_segment()))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_not_owner", 1}}));
    Bytes syn = outside(syn_segment());
    EXPECT_TRUE(passed_untouched(run_xdp(syn), syn));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));
}

TEST_P(XdpShared, OthersSendEverythingToTheOwner)
{
    set_bucket(owned_by(3));
    for (const Tcp& tcp : {syn_segment(), data_segment()}) {
        Bytes in = outside(tcp);
        EXPECT_TRUE(forwarded(run_xdp(in), in, 3, mark(1)));
    }
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_to_owner", 2}}));
    EXPECT_EQ(packets_forwarded(3), 2u);
    EXPECT_EQ(conns_forwarded(3), 0u); // not a decision of this node
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, TheMarkAndAddressesAreInTheOuterHeader)
{
    set_bucket(owned_by(2));
    Bytes in = outside(data_segment());
    RunResult r = run_xdp(in);
    ASSERT_EQ(r.verdict, XDP_TX);
    const size_t l3 = kEthHeaderLen;
    ASSERT_EQ(read16(r.out, l3 - 2), ethertype_of(family()));
    if (family() == LB_FAMILY_IPV4) {
        EXPECT_EQ(read16(r.out, l3 + 4), mark(1) & 0xffff) << "IPv4 id";
        EXPECT_EQ(r.out[l3 + 1], (mark(1) >> 16) << 2) << "IPv4 DSCP (ECN 0)";
        EXPECT_EQ(read16(r.out, l3 + 6), 0x4000) << "DF";
        EXPECT_EQ(slice(r.out, l3 + 12, 4), addr_bytes(node_addr(family(), kSelfSlot)));
        EXPECT_EQ(slice(r.out, l3 + 16, 4), addr_bytes(node_addr(family(), 2)));
        EXPECT_TRUE(ipv4_checksum_ok(r.out.data() + l3, kIpv4HeaderLen));
    } else {
        EXPECT_EQ(read32(r.out, l3), 6u << 28 | (mark(1) >> 16) << 22 | (mark(1) & 0xffff))
            << "version, class (DSCP, ECN 0), flow label";
        EXPECT_EQ(slice(r.out, l3 + 8, 16), addr_bytes(node_addr(family(), kSelfSlot)));
        EXPECT_EQ(slice(r.out, l3 + 24, 16), addr_bytes(node_addr(family(), 2)));
    }
}

TEST_P(XdpShared, OthersWithFloodDeliveryDrop)
{
    change_config([](lb_config& c) { c.shared_delivery = LB_DELIVERY_FLOOD; });
    set_bucket(moved_to(3, kSelf));
    for (const Tcp& tcp : {syn_segment(), data_segment()})
        EXPECT_TRUE(dropped(run_xdp(outside(tcp))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_not_owner", 2}}));
}

TEST_P(XdpShared, PreviousOwnerKeepsItsConnectionsWhileTheChainLasts)
{
    std::optional<LoopbackConnection> c = connect_loopback(family());
    if (!c)
        GTEST_SKIP() << "no loopback connection for this family: " << std::strerror(errno);
    share(c->addr, c->server_port);
    Bytes ours = tcp_frame(inbound(), c->addr, c->addr, data_segment(c->client_port, c->server_port));

    for (uint32_t delivery : {LB_DELIVERY_ECMP, LB_DELIVERY_FLOOD}) {
        SCOPED_TRACE(delivery == LB_DELIVERY_ECMP ? "ecmp" : "flood");
        change_config([delivery](lb_config& c) { c.shared_delivery = delivery; });
        set_bucket(moved_to(3, 2, kSelf), c->addr, c->client_port);
        EXPECT_TRUE(passed_untouched(run_xdp(ours), ours));
        EXPECT_EQ(counter_deltas(), (Counts{{"shared_previous_local", 1}}));
    }

    // Not once the chain is over, nor when this node is not in it.
    change_config([](lb_config& c) { c.shared_delivery = LB_DELIVERY_ECMP; });
    set_bucket(moved_to(3, 2, kSelf, over()), c->addr, c->client_port);
    EXPECT_TRUE(forwarded(run_xdp(ours), ours, 3, mark(1)));
    set_bucket(moved_to(3, 2), c->addr, c->client_port);
    EXPECT_TRUE(forwarded(run_xdp(ours), ours, 3, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_to_owner", 2}}));
}

TEST_P(XdpShared, L2ModeSharedHopsStillTravelInAnOuterHeader)
{
    // balance.forward = "l2" (DESIGN 6's sample beside [shared] ecmp): the
    // hop mark needs the outer header, so shared hops encapsulate anyway.
    use_cluster(LB_FORWARD_L2);
    set_bucket(owned_by(2));
    const Bytes syn = outside(syn_segment());
    EXPECT_TRUE(forwarded(run_xdp(syn), syn, 2, mark(1)));
    set_bucket(moved_to(kSelf, 2));
    const Bytes data = outside(data_segment());
    EXPECT_TRUE(forwarded(run_xdp(data), data, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_to_owner", 1}, {"shared_second_hop", 1}}));

    // A peer's marked hop to a shared address is taken in l2 mode too...
    set_bucket(owned_by(kSelf));
    const Bytes in = tunnelled(2, outside(syn_segment()), mark(1));
    EXPECT_TRUE(passed_as(run_xdp(in), unwrapped(2, outside(syn_segment()))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));
    // ...an unmarked tunnel is not (l2 mode steers by MAC, never in a tunnel).
    const Bytes unmarked = tunnelled(2, outside(syn_segment()), 0);
    EXPECT_TRUE(passed_as(run_xdp(unmarked), unmarked));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_tunnel_refused", 1}}));

    // A peer's l2 forward passes as before.
    Bytes steered = tcp_frame(Ethernet{node_mac(kSelfSlot), node_mac(2), {}}, client(), service(),
                              data_segment());
    EXPECT_TRUE(passed_untouched(run_xdp(steered), steered));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_steered_in", 1}}));
}

TEST_P(XdpShared, FloodKeptFramesGetThisNodesMac)
{
    // Flooded to a multicast MAC: TCP takes only frames to the host.
    change_config([](lb_config& c) { c.shared_delivery = LB_DELIVERY_FLOOD; });
    set_bucket(owned_by(kSelf));
    Bytes frame = outside(syn_segment());
    const uint8_t multicast[6] = {0x01, 0x00, 0x5e, 0x4d, 0x00, 0xc8};
    std::memcpy(frame.data(), multicast, 6);
    const RunResult r = run_xdp(frame);
    ASSERT_EQ(r.verdict, uint32_t(XDP_PASS));
    Bytes expected = frame;
    const auto mac = node_mac(kSelfSlot);
    std::memcpy(expected.data(), mac.data(), 6);
    EXPECT_EQ(r.out, expected);
    // A unicast frame keeps its MAC (the node's own, or whatever brought it).
    const Bytes unicast = outside(syn_segment());
    EXPECT_TRUE(passed_untouched(run_xdp(unicast), unicast));
    // Ecmp leaves a multicast destination alone (not this variant's to mend).
    change_config([](lb_config& c) { c.shared_delivery = LB_DELIVERY_ECMP; });
    EXPECT_TRUE(passed_untouched(run_xdp(frame), frame));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 3}}));
}

TEST_P(XdpShared, AddressAndPortHashSpreadsOneClientsPorts)
{
    change_config([](lb_config& c) { c.shared_hash = LB_SHARED_HASH_ADDRESS_PORT; });
    uint16_t other = kClientPort + 1;
    while (bucket_index(client(), other) == bucket_index(client(), kClientPort))
        other++;
    set_bucket(owned_by(kSelf), client(), kClientPort);
    set_bucket(owned_by(2), client(), other);
    Bytes mine = outside(data_segment(kClientPort)), theirs = outside(data_segment(other));
    EXPECT_TRUE(passed_untouched(run_xdp(mine), mine));
    EXPECT_TRUE(forwarded(run_xdp(theirs), theirs, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}, {"shared_to_owner", 1}}));

    // By address alone both ports are in one bucket.
    change_config([](lb_config& c) { c.shared_hash = LB_SHARED_HASH_ADDRESS; });
    ASSERT_EQ(bucket_index(client(), other), bucket_index(client(), kClientPort));
    set_bucket(owned_by(3));
    EXPECT_TRUE(forwarded(run_xdp(mine), mine, 3, mark(1)));
    EXPECT_TRUE(forwarded(run_xdp(theirs), theirs, 3, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_to_owner", 2}}));
}

TEST_P(XdpShared, NeitherTheLoadNorTheFailSafeDecides)
{
    // This node's own load was never written (as when its agent is gone):
    // an l4 SYN is kept (fail-safe); a shared one goes to its bucket's owner.
    set_load_at(kSelfSlot, 0, 0);
    set_bucket(owned_by(2));
    Bytes in = outside(syn_segment());
    EXPECT_TRUE(forwarded(run_xdp(in), in, 2, mark(1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_to_owner", 1}}));
    EXPECT_TRUE(no_flows());

    // The service that is not shared decides as before and records a flow.
    Bytes other = outside(syn_segment(kClientPort, kOtherPort));
    EXPECT_TRUE(passed_untouched(run_xdp(other), other));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_local_failsafe", 1}}));
    EXPECT_EQ(maps().flows().size(), 1u);
}

TEST_P(XdpShared, ServiceThatIsNotSharedIsUnaffected)
{
    set_bucket(owned_by(2));
    set_load(kSelfSlot, 9000); // busy: a new connection goes to the least loaded peer (1)
    Bytes syn = outside(syn_segment(kClientPort, kOtherPort));
    EXPECT_TRUE(forwarded(run_xdp(syn), syn, 1, 0));
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_forward_least", 1}}));
    Bytes data = outside(data_segment(kClientPort, kOtherPort));
    EXPECT_TRUE(forwarded(run_xdp(data), data, 1, 0));
    EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 1}}));
    ASSERT_EQ(maps().flows().size(), 1u);
}

// B. Packets a peer sent along a chain.

TEST_P(XdpShared, ChainPacketGoesOnFromTheOwnerToThePreviousOwner)
{
    set_bucket(moved_to(kSelf, 2, 3));
    Bytes client_in = outside(data_segment());
    RunResult r = run_xdp(tunnelled(1, client_in, mark(1)));
    EXPECT_TRUE(forwarded(r, client_in, 2, mark(2, 1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}}));
    EXPECT_EQ(packets_forwarded(2), 1u);
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, ChainSynIsKept)
{
    // The sender took this node for the owner: it keeps the SYN.
    set_bucket(moved_to(3, 2));
    Bytes client_in = outside(syn_segment());
    EXPECT_TRUE(passed_as(run_xdp(tunnelled(1, client_in, mark(1))), unwrapped(1, client_in)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, ChainPacketOfALocalConnectionIsKept)
{
    std::optional<LoopbackConnection> c = connect_loopback(family());
    if (!c)
        GTEST_SKIP() << "no loopback connection for this family: " << std::strerror(errno);
    share(c->addr, c->server_port);
    Bytes client_in =
        tcp_frame(inbound(), c->addr, c->addr, data_segment(c->client_port, c->server_port));

    set_bucket(moved_to(kSelf, 2), c->addr, c->client_port);
    EXPECT_TRUE(passed_as(run_xdp(tunnelled(1, client_in, mark(1))), unwrapped(1, client_in)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_local", 1}}));

    // At a previous owner, even at the last hop.
    set_bucket(moved_to(2, kSelf), c->addr, c->client_port);
    EXPECT_TRUE(
        passed_as(run_xdp(tunnelled(1, client_in, mark(3, 2, 3))), unwrapped(1, client_in)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_previous_local", 1}}));
}

TEST_P(XdpShared, ChainPacketAtItsThirdHopIsDropped)
{
    set_bucket(moved_to(kSelf, 2));
    Bytes client_in = outside(data_segment());
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(3, 3, 4)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_chain_drop", 1}}));
    // One hop fewer, it goes on: the third.
    EXPECT_TRUE(forwarded(run_xdp(tunnelled(1, client_in, mark(2, 3))), client_in, 2,
                          mark(3, 3, 1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}}));
}

TEST_P(XdpShared, ChainNeverGoesBackToTheSender)
{
    // The sender is the owner by this node's table (the tables disagree):
    // on to the previous owner that is not this node.
    set_bucket(moved_to(1, kSelf, 2));
    Bytes client_in = outside(data_segment());
    EXPECT_TRUE(forwarded(run_xdp(tunnelled(1, client_in, mark(1))), client_in, 2, mark(2, 1)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}}));

    // Nobody else: dropped, not passed.
    set_bucket(moved_to(1, kSelf));
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(1)))));
    set_bucket(owned_by(1));
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(1)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_chain_drop", 2}}));
}

// Slots past the old 7-bit mark (127 nodes): the mark carries slots up to
// 1023 and the chain still never goes back to a node it passed.
TEST_P(XdpShared, ChainMarksCarryHighSlots)
{
    add_node(700);
    add_node(1000);
    // Receiver 1000 sent it to owner 700, which sent it here: on to 3, not
    // back to 1000.
    set_bucket(moved_to(1000, 700, 3));
    Bytes client_in = outside(data_segment());
    EXPECT_TRUE(forwarded(run_xdp(tunnelled(700, client_in, mark(2, 1000))), client_in, 3,
                          mark(3, 1000, 700)));
    // The owner passed, the other previous owner the sender: nobody left.
    set_bucket(moved_to(1000, 700));
    EXPECT_TRUE(dropped(run_xdp(tunnelled(700, client_in, mark(2, 1000)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}, {"shared_chain_drop", 1}}));
}

TEST_P(XdpShared, ChainNeverGoesBackToANodeItPassed)
{
    // Receiver 2 sent it to owner 1, which sent it here: not back to 2.
    set_bucket(moved_to(2, 1, 3));
    Bytes client_in = outside(data_segment());
    EXPECT_TRUE(
        forwarded(run_xdp(tunnelled(1, client_in, mark(2, 2))), client_in, 3, mark(3, 2, 1)));
    // The owner passed, the other previous owner the sender: nobody left.
    set_bucket(moved_to(2, 1));
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(2, 2)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}, {"shared_chain_drop", 1}}));
}

TEST_P(XdpShared, ChainOverOrUnusableNodesEndIt)
{
    Bytes client_in = outside(data_segment());
    // The chain is over here: the owner (this node) has no one to send to.
    set_bucket(moved_to(kSelf, 2, 3, over()));
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(1)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_chain_drop", 1}}));

    // A dead previous owner is skipped, an emptied slot too.
    set_bucket(moved_to(kSelf, 2, 3));
    set_state(2, LB_NODE_DEAD);
    EXPECT_TRUE(forwarded(run_xdp(tunnelled(1, client_in, mark(1))), client_in, 3, mark(2, 1)));
    maps().clear_node(3);
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, client_in, mark(1)))));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_second_hop", 1}, {"shared_chain_drop", 1}}));
}

TEST_P(XdpShared, ChainPacketWithoutATable)
{
    change_config([](lb_config& c) { c.shared_buckets = 0; });
    Bytes data = outside(data_segment()), syn = outside(syn_segment());
    EXPECT_TRUE(dropped(run_xdp(tunnelled(1, data, mark(1)))));
    EXPECT_TRUE(passed_as(run_xdp(tunnelled(1, syn, mark(1))), unwrapped(1, syn)));
    EXPECT_EQ(counter_deltas(), (Counts{{"shared_chain_drop", 1}, {"shared_local", 1}}));
}

TEST_P(XdpShared, TunnelWithoutAMarkIsPassedAsBefore)
{
    // Steered here by a peer's load decision: never steered again.
    set_bucket(owned_by(2));
    Bytes client_in = outside(data_segment());
    EXPECT_TRUE(passed_as(run_xdp(tunnelled(1, client_in, 0)), unwrapped(1, client_in)));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));

    // A mark on a tunnel to a service that is not shared means nothing.
    Bytes other = outside(data_segment(kClientPort, kOtherPort));
    EXPECT_TRUE(passed_as(run_xdp(tunnelled(1, other, mark(1))), unwrapped(1, other)));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_decapsulated", 1}}));
    EXPECT_TRUE(no_flows());
}

TEST_P(XdpShared, MarkedTunnelFromAnUntrustedSenderIsRefused)
{
    set_bucket(moved_to(kSelf, 2));
    set_state(1, LB_NODE_DEAD);
    Bytes frame = tunnelled(1, outside(data_segment()), mark(1));
    EXPECT_TRUE(passed_untouched(run_xdp(frame), frame));
    EXPECT_EQ(counter_deltas(), (Counts{{"pass_tunnel_refused", 1}}));
}

// Each node its own (random) view of the client's bucket, as during a
// table change: whichever node the router picks, the packet takes at most
// LB_HOP_MAX hops and never comes back to a node it passed.
TEST_P(XdpShared, NoTablesMakeAPacketLoop)
{
    // Slots 1..4 play the nodes (slot 0's address is the test link's own,
    // which the routing table cannot send to).
    add_node(4);
    const std::vector<uint16_t> nodes{1, 2, 3, 4};
    std::mt19937 rng(0x5eed);
    auto any_node = [&] { return nodes[rng() % nodes.size()]; };
    const Bytes client_in = outside(data_segment());
    size_t longest = 0, passes = 0, drops = 0;
    for (int round = 0; round < 300; round++) {
        std::vector<lb_bucket> view(5);
        for (uint16_t n : nodes) {
            view[n] = moved_to(any_node(), rng() % 3 ? any_node() : kNone,
                               rng() % 3 ? any_node() : kNone,
                               rng() % 4 ? 0 : over());
        }
        uint16_t at = any_node();
        std::vector<uint16_t> path{at};
        Bytes frame = client_in;
        for (;;) {
            change_config([at](lb_config& c) { c.self_slot = at; });
            set_bucket(view[at]);
            RunResult r = run_xdp(frame);
            ASSERT_EQ(r.error, 0);
            if (r.verdict != XDP_TX) {
                ASSERT_TRUE(r.verdict == XDP_DROP || r.verdict == XDP_PASS) << r.verdict;
                (r.verdict == XDP_PASS ? passes : drops)++;
                break;
            }
            // The next node, by the outer destination; the mark counts the hops.
            const size_t l3 = kEthHeaderLen;
            const Bytes to = slice(r.out, family() == LB_FAMILY_IPV4 ? l3 + 16 : l3 + 24,
                                   family() == LB_FAMILY_IPV4 ? 4 : 16);
            uint16_t next = kNone;
            for (uint16_t n : nodes)
                if (addr_bytes(node_addr(family(), n)) == to)
                    next = n;
            ASSERT_NE(next, kNone) << "sent to no node:\n" << hex(r.out);
            for (uint16_t seen : path)
                ASSERT_NE(seen, next) << "came back to node " << next << " (round " << round << ")";
            path.push_back(next);
            ASSERT_LE(path.size() - 1, size_t(LB_HOP_MAX)) << "round " << round;
            const uint32_t m = family() == LB_FAMILY_IPV4
                                   ? lb_hop_mark_from(read16(r.out, l3 + 4), r.out[l3 + 1] >> 2)
                                   : lb_hop_mark_from(uint16_t(read32(r.out, l3)),
                                                      uint8_t(read32(r.out, l3) >> 22 & 0x3f));
            ASSERT_EQ(lb_hop_count(m), path.size() - 1);
            frame = r.out;
            at = next;
        }
        longest = std::max(longest, path.size() - 1);
    }
    // The random views reach every length, both ends.
    EXPECT_EQ(longest, size_t(LB_HOP_MAX));
    EXPECT_GT(passes, 0u);
    EXPECT_GT(drops, 0u);
    EXPECT_TRUE(no_flows());
}

// The hop mark holds every slot of LB_MAX_NODES, and what a node writes in
// the outer header (id or flow label, DSCP) reads back as the same mark.
TEST(HopMark, EverySlotRoundTripsThroughTheOuterHeader)
{
    for (uint32_t a = 0; a < LB_MAX_NODES; a++)
        for (uint32_t b : {0u, 1u, a, uint32_t(LB_MAX_NODES - 1) - a}) {
            for (uint32_t hop = 1; hop <= LB_HOP_MAX; hop++) {
                const uint32_t m = lb_hop_mark(hop, a, b);
                ASSERT_NE(m, 0u) << "0 is an unmarked tunnel";
                ASSERT_LT(m, 1u << 22);
                const uint32_t back = lb_hop_mark_from(lb_hop_mark_low(m), lb_hop_mark_dscp(m));
                ASSERT_EQ(back, m);
                ASSERT_EQ(lb_hop_count(back), hop);
                ASSERT_EQ(lb_hop_passed(back, 0), hop >= 2 ? a : kNone) << hop << " " << a;
                ASSERT_EQ(lb_hop_passed(back, 1), hop >= 3 ? b : kNone) << hop << " " << b;
            }
        }
}

// The bucket of a client (maps/shared.h) spreads clients evenly: Pearson's
// chi-square of 409 600 clients over 4096 buckets, against its own
// distribution (mean df, standard deviation sqrt(2 df)): within 5 sigma.
double chi_square(const std::vector<uint32_t>& counts, double expected)
{
    double sum = 0;
    for (uint32_t c : counts)
        sum += (c - expected) * (c - expected) / expected;
    return sum;
}

::testing::AssertionResult even(const std::vector<uint32_t>& counts, uint32_t clients)
{
    const double expected = double(clients) / double(counts.size());
    const double df = double(counts.size() - 1);
    const double bound = df + 5 * std::sqrt(2 * df);
    const double x2 = chi_square(counts, expected);
    if (x2 > bound)
        return ::testing::AssertionFailure() << "chi-square " << x2 << " > " << bound;
    return ::testing::AssertionSuccess() << "chi-square " << x2;
}

TEST(SharedBuckets, ClientAddressesSpreadEvenly)
{
    constexpr uint32_t kClients = 409'600;
    // Consecutive addresses (one provider's block) and random ones.
    std::vector<uint32_t> block(kBuckets), random(kBuckets);
    std::mt19937 rng(7);
    for (uint32_t i = 0; i < kClients; i++) {
        lb_addr a{.v6 = {}};
        a.v4 = htonl(0x0a000000u + i);
        block[lb_bucket_of(&a, LB_FAMILY_IPV4, 0, LB_SHARED_HASH_ADDRESS, kBuckets)]++;
        a.v4 = uint32_t(rng());
        random[lb_bucket_of(&a, LB_FAMILY_IPV4, 0, LB_SHARED_HASH_ADDRESS, kBuckets)]++;
    }
    EXPECT_TRUE(even(block, kClients)) << "consecutive addresses";
    EXPECT_TRUE(even(random, kClients)) << "random addresses";
}

TEST(SharedBuckets, OneClientsPortsSpreadEvenlyByAddressAndPort)
{
    constexpr uint32_t kPorts = 65536 - 1024;
    std::vector<uint32_t> counts(kBuckets);
    lb_addr a{.v6 = {}};
    a.v4 = htonl(0xc6336407u); // 198.51.100.7
    for (uint32_t port = 1024; port < 65536; port++)
        counts[lb_bucket_of(&a, LB_FAMILY_IPV4, htons(uint16_t(port)), LB_SHARED_HASH_ADDRESS_PORT,
                            kBuckets)]++;
    EXPECT_TRUE(even(counts, kPorts));
}

} // namespace
} // namespace peerlb::test
