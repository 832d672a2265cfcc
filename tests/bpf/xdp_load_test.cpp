// Load in real time and capacity (DESIGN.md section 2) in the XDP program:
// connections counted open per node until the client closes them, the
// local load read from the socket state count, weights, standby nodes,
// high water and overflow; and the socket state tracepoint itself, on
// real sockets in the fixture's test network.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "fixture.h"

namespace peerlb::test {
namespace {

using namespace tcp_flags;

class XdpLoad : public DataPlaneTest {
protected:
    // A segment of the test client's connection on `sport`.
    Bytes segment(uint16_t sport, uint8_t flags)
    {
        Tcp t;
        t.sport = sport;
        t.flags = flags;
        t.seq = 1001;
        t.ack = 5001;
        if (flags & kPsh)
            t.payload = Bytes{'G', 'E', 'T', ' ', '/', '\r', '\n'};
        return client_frame(LB_FAMILY_IPV4, t);
    }
    Bytes syn(uint16_t sport) { return client_syn(LB_FAMILY_IPV4, sport); }

    // Where a SYN on `sport` went: LB_NODE_LOCAL, a slot, or
    // LB_NODE_REFUSE when dropped.
    uint32_t decide(uint16_t sport)
    {
        const RunResult r = run_xdp(syn(sport));
        if (r.verdict == XDP_DROP)
            return LB_NODE_REFUSE;
        std::optional<lb_flow> flow = maps().flow(client_key(LB_FAMILY_IPV4, sport));
        return flow ? flow->node : LB_NODE_REFUSE - 1;
    }

    void set_counted(int64_t connections)
    {
        uint32_t key = LB_INFLIGHT_COUNTED;
        lb_inflight v{connections};
        ASSERT_EQ(bpf_map_update_elem(maps().fds().inflight.get(), &key, &v, BPF_ANY), 0);
    }

    void set_node_capacity(uint32_t slot, uint16_t weight, uint8_t flags)
    {
        lb_node n = maps().node(slot);
        n.weight = weight;
        n.flags = flags;
        maps().set_node_entry(slot, n);
        sync_candidates(); // a standby peer waits in the agent's lists
    }
};

TEST_F(XdpLoad, ClientFinOrRstClosesAHandedConnectionOnce)
{
    set_load(kSelfSlot, 9000); // forwards: least is slot 1
    ASSERT_EQ(decide(kClientPort), 1u);
    EXPECT_EQ(handed_since(1), 1);
    run_xdp(segment(kClientPort, kAck));        // handshake ACK: promoted
    run_xdp(segment(kClientPort, kAck | kPsh)); // data
    EXPECT_EQ(handed_since(1), 1);
    run_xdp(segment(kClientPort, kAck | kFin));
    EXPECT_EQ(handed_since(1), 0);
    // The FIN again (retransmitted), then a RST: counted closed once.
    run_xdp(segment(kClientPort, kAck | kFin));
    run_xdp(segment(kClientPort, kRst));
    EXPECT_EQ(handed_since(1), 0);
    // Still forwarded: the peer's socket answers them.
    EXPECT_EQ(maps().flow(client_key(LB_FAMILY_IPV4))->node, 1u);

    // A connection kept here, aborted by its client while half-open.
    set_load(kSelfSlot, 1000);
    ASSERT_EQ(decide(kClientPort + 1), LB_NODE_LOCAL);
    EXPECT_EQ(handed_since(kSelfSlot), 1);
    run_xdp(segment(kClientPort + 1, kRst));
    EXPECT_EQ(handed_since(kSelfSlot), 0);
}

TEST_F(XdpLoad, AConnectionClosedSinceThePeersReportLowersItsLoadAtOnce)
{
    set_conn_cost(1000); // 10 % a connection
    set_load(kSelfSlot, 9000);
    set_load(3, 9000);
    set_load(1, 2000);
    set_load(2, 2500);
    ASSERT_EQ(decide(kClientPort), 1u);     // 2000 < 2500
    ASSERT_EQ(decide(kClientPort + 1), 2u); // 1: 3000 now, 2: 2500
    // Both report: their loads include those connections now.
    set_load(1, 4000);
    set_load(2, 3500);
    ASSERT_EQ(decide(kClientPort + 2), 2u); // 4000 > 3500
    EXPECT_EQ(handed_since(2), 1);
    // Slot 1's connection ends: 1 counts 3000 at once, 2 counts 4500.
    run_xdp(segment(kClientPort, kAck | kFin));
    EXPECT_EQ(handed_since(1), -1);
    EXPECT_EQ(decide(kClientPort + 3), 1u);
}

TEST_F(XdpLoad, InflightConnectionsAreTheLocalLoad)
{
    change_config([](lb_config& c) { c.inflight_capacity = 10; });
    set_load(kSelfSlot, 9000); // the agent's measure: not used with inflight
    set_counted(4);            // 40 %: under T1
    EXPECT_EQ(decide(kClientPort), LB_NODE_LOCAL);
    set_counted(6); // 60 %: slot 1 (10 %) is T2 lower
    EXPECT_EQ(decide(kClientPort + 1), 1u);
    maps().set_inflight_correction(-2); // the socket table knows 4
    EXPECT_EQ(decide(kClientPort + 2), LB_NODE_LOCAL);
    // A stale own entry still means "keep everything" (the fail-safe).
    maps().set_inflight_correction(0);
    change_config([](lb_config& c) { c.self_stale_ns = 1'000'000; });
    set_load_at(kSelfSlot, 0, monotonic_ns() - 10'000'000);
    EXPECT_EQ(decide(kClientPort + 3), LB_NODE_LOCAL);
}

TEST_F(XdpLoad, EveryNodeAtHighWaterRefusesOrKeeps)
{
    change_config([](lb_config& c) {
        c.high_water_bp = 8000;
        c.overflow = LB_OVERFLOW_REFUSE;
    });
    set_load(kSelfSlot, 8000);
    set_load(1, 8000);
    set_load(2, 9000);
    set_load(3, 8500);
    counter_deltas();
    const Bytes first = syn(kClientPort);
    EXPECT_EQ(run_xdp(first).verdict, XDP_DROP);
    EXPECT_FALSE(maps().flow(client_key(LB_FAMILY_IPV4)));
    EXPECT_EQ(counter_deltas(), (Counts{{"drop_syn_refused", 1}}));
    for (uint32_t slot = 0; slot < kNodeSlots; slot++)
        EXPECT_EQ(handed_since(slot), 0) << "slot " << slot;

    change_config([](lb_config& c) { c.overflow = LB_OVERFLOW_KEEP; });
    EXPECT_TRUE(passed_untouched(run_xdp(first), first));
    EXPECT_EQ(maps().flow(client_key(LB_FAMILY_IPV4))->reason, LB_REASON_OVERFLOW);
    EXPECT_EQ(counter_deltas(), (Counts{{"syn_local_overflow", 1}}));

    // Past the marks, a peer T2 lower still takes it (overflow = keep).
    set_load(kSelfSlot, 12000);
    EXPECT_EQ(decide(kClientPort + 1), 1u); // 8000: the least, 40 points lower
    EXPECT_EQ(maps().flow(client_key(LB_FAMILY_IPV4, kClientPort + 1))->reason, LB_REASON_LEAST);

    // One peer under its mark, T2 or not: it takes the next one.
    set_load(kSelfSlot, 8000);
    set_load(3, 7999);
    EXPECT_EQ(decide(kClientPort + 2), 3u);
}

TEST_F(XdpLoad, WeightsAndStandbyComeFromTheNodeTable)
{
    change_config([](lb_config& c) { c.pick = LB_PICK_WEIGHTED; });
    set_load(kSelfSlot, 9000);
    set_load(1, 2000);
    set_load(2, 2000);
    set_load(3, 2000);
    set_node_capacity(1, 100, 0);
    set_node_capacity(2, 400, 0);
    set_node_capacity(3, 400, LB_NODE_STANDBY); // waits: 1 and 2 are under T1
    std::map<uint32_t, int> got;
    const int syns = 1000;
    for (int i = 0; i < syns; i++)
        got[decide(uint16_t(kClientPort + i))]++;
    EXPECT_EQ(got.count(3), 0u);
    // 1 : 4 of the draws; 6 standard deviations of a binomial (about 76).
    EXPECT_NEAR(got[2], syns * 0.8, 76);
    EXPECT_NEAR(got[1], syns * 0.2, 76);

    // Both active peers at T1: the standby is a candidate, and the least.
    change_config([](lb_config& c) { c.pick = LB_PICK_LEAST; });
    set_load(1, 5000);
    set_load(2, 5500);
    EXPECT_EQ(decide(uint16_t(kClientPort + syns)), 3u);
}

// ---- the socket state tracepoint -----------------------------------------

// The sockets live in the fixture's test network (fixture.h: the test's
// own namespace, loopback up), never in the host's.
uint32_t netns_ino()
{
    struct stat st {};
    return stat("/proc/thread-self/ns/net", &st) ? 0 : uint32_t(st.st_ino);
}

sockaddr_in loopback(uint16_t port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

Fd listen_on(uint16_t port)
{
    Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in a = loopback(port);
    int one = 1;
    setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    EXPECT_EQ(listen(s.get(), 16), 0);
    return s;
}

Fd connect_to(uint16_t port)
{
    Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in a = loopback(port);
    EXPECT_EQ(connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0)
        << strerror(errno);
    return s;
}

class SockState : public DataPlaneTest {
protected:
    void SetUp() override
    {
        DataPlaneTest::SetUp();
        if (IsSkipped())
            return;
        link_ = bpf_program__attach(skeleton()->progs.lb_sock_state);
        ASSERT_TRUE(link_) << "attach the tracepoint: " << strerror(errno);
    }
    void TearDown() override
    {
        if (link_)
            bpf_link__destroy(link_);
    }

    // The count once it settles (the server side's state changes happen in
    // softirq, right after the client's calls return).
    int64_t counted_after(int64_t expected)
    {
        for (int i = 0; i < 200 && maps().inflight_counted() != expected; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return maps().inflight_counted();
    }

    void add_loopback_service(uint16_t port)
    {
        lb_service_key key{};
        key.addr.v4 = htonl(INADDR_LOOPBACK);
        key.port = htons(port);
        key.family = LB_FAMILY_IPV4;
        maps().add_service(key, lb_service{LB_MODE_L4, 2, 0});
    }

    bpf_link* link_ = nullptr;
};

TEST_F(SockState, CountsConnectionsEstablishedOnServicesOfItsNamespace)
{
    constexpr uint16_t kService = 8080, kOther = 8081;
    add_loopback_service(kService);
    const uint32_t ino = netns_ino();
    ASSERT_NE(ino, 0u);
    change_config([&](lb_config& c) { c.netns_ino = ino; });
    Fd service = listen_on(kService), other = listen_on(kOther);

    std::vector<Fd> clients, accepted;
    for (int i = 0; i < 3; i++) {
        clients.push_back(connect_to(kService));
        accepted.emplace_back(accept4(service.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
    // The service's three server sides; not the clients' ends.
    EXPECT_EQ(counted_after(3), 3);
    Fd elsewhere = connect_to(kOther);
    Fd elsewhere_accepted(accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_EQ(counted_after(3), 3) << "a port that is no service";

    clients[0] = Fd(); // the client's FIN
    EXPECT_EQ(counted_after(2), 2);
    linger abort{1, 0};
    ASSERT_EQ(setsockopt(clients[1].get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)), 0);
    clients[1] = Fd(); // the client's RST: the server side goes to CLOSE
    EXPECT_EQ(counted_after(1), 1);
    accepted[2] = Fd(); // the server closes first (FIN_WAIT1)
    EXPECT_EQ(counted_after(0), 0);

    // Another namespace's sockets do not count.
    change_config([&](lb_config& c) { c.netns_ino = ino + 1; });
    Fd late = connect_to(kService);
    Fd late_accepted(accept4(service.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_EQ(counted_after(1), 0);
    // Every counted change, each way: 3 opened, 3 closed.
    EXPECT_EQ(maps().inflight_changes(), 6u);
}

} // namespace
} // namespace peerlb::test
