// xdp_peerlb for "http" services (DESIGN section 4): the SYN-ACK with a
// cluster SYN cookie, byte by byte, for each set of client options; the
// cookie checked at the first data segment across an epoch change and
// against forgeries; the dropped handshake ACK; and where a decided flow
// goes (kept, l2, ipip) for its first and later segments. Expected cookies
// come from bpf/cookie.h run as C++ (tests/unit/cookie_test.cpp checks it
// against OpenSSL), expected frames from the packet builder.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cstring>
#include <optional>
#include <random>

#include "http_fixture.h"

extern "C" {
#include "bpf/cookie.h"
}

namespace peerlb::test {
namespace {

using namespace tcp_flags;

// The peer a forwarded connection goes to: the least loaded (pick = least).
constexpr uint32_t kLeastPeer = 1;
constexpr uint32_t kSynackWindow = 65535;

Bytes be32(uint32_t v)
{
    return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

Bytes ts_option(uint32_t tsval, uint32_t tsecr)
{
    return concat(concat({8, 10}, be32(tsval)), be32(tsecr));
}

Bytes ws_option(uint8_t shift)
{
    return {1, 3, 3, shift}; // NOP, window scale
}

// A client SYN's options and what the cookie must keep of them.
struct ClientOptions {
    const char* name;
    Bytes options;
    uint32_t mss_index; // in lb_cookie_mss_value()
    uint32_t wscale;    // LB_COOKIE_NO_WSCALE: none offered
    bool sack;
    bool ts;
    uint32_t tsval; // the client's, echoed in the SYN-ACK
};

// What Linux offers (linux_syn_options()).
ClientOptions typical_options()
{
    return {"Linux: MSS + SACK + TS + WS 7", linux_syn_options(1460), 3, 7, true, true, 0x01020304};
}

std::vector<ClientOptions> client_option_sets()
{
    constexpr uint32_t kNone = LB_COOKIE_NO_WSCALE;
    return {
        {"none (MSS 536 assumed)", {}, 0, kNone, false, false, 0},
        {"MSS only", mss_option(1460), 3, kNone, false, false, 0},
        {"MSS + SACK", concat(mss_option(1440), {1, 1, 4, 2}), 2, kNone, true, false, 0},
        {"MSS + TS", concat(concat(mss_option(1220), {1, 1}), ts_option(0xdeadbeef, 0)), 1, kNone,
         false, true, 0xdeadbeef},
        typical_options(),
        {"MSS 1439 + WS 14", concat(mss_option(1439), ws_option(14)), 1, 14, false, false, 0},
        {"MSS 9000 + WS 15 (clamped to 14)", concat(mss_option(9000), ws_option(15)), 3, 14,
         false, false, 0},
        {"WS 255 (clamped to 14), no MSS", ws_option(255), 0, 14, false, false, 0},
        {"WS 0 + MSS 1219", concat(ws_option(0), mss_option(1219)), 0, 0, false, false, 0},
        {"SACK + TS without MSS", concat(concat({4, 2}, ts_option(77, 0)), {1, 1, 1, 1}), 0, kNone,
         true, true, 77},
        // Nothing after an end-of-options is read.
        {"MSS, EOL, then WS", concat(concat(mss_option(1460), {0, 0, 0, 0}), ws_option(7)), 3,
         kNone, false, false, 0},
        // An option shorter than its own header ends the walk (as in Linux's
        // tcp_parse_options); what came before stands.
        {"MSS, then a 1-byte-long SACK_PERM", concat(mss_option(1440), {4, 1, 1, 1}), 2, kNone,
         false, false, 0},
        // The full 40 bytes, the last options ending at the very end.
        {"40 bytes: NOPs, SACK, TS, WS", concat(concat(concat(Bytes(24, 1), {4, 2}),
                                                       ts_option(5, 0)), ws_option(6)),
         0, 6, true, true, 5},
        {"40 bytes: NOPs, then MSS", concat(Bytes(36, 1), mss_option(1300)), 1, kNone, false,
         false, 0},
    };
}

// The SYN-ACK's options as the comment above LB_SYNACK_OPTS_TS lays them
// out, for a client that offered `c`.
Bytes synack_options(const ClientOptions& c, uint16_t mss, uint32_t our_tsval)
{
    Bytes o = mss_option(mss);
    if (c.ts) {
        o = concat(o, c.sack ? Bytes{4, 2} : Bytes{1, 1});
        o = concat(o, ts_option(our_tsval, c.tsval));
    } else {
        o = concat(o, {1, 1});
        o = concat(o, c.sack ? Bytes{4, 2} : Bytes{1, 1});
    }
    return concat(o, c.wscale != LB_COOKIE_NO_WSCALE ? ws_option(kHttpWscale) : Bytes{1, 1, 1, 1});
}

uint16_t announced_mss(uint8_t family, uint32_t forward, uint32_t mtu)
{
    const uint32_t ip = family == LB_FAMILY_IPV4 ? kIpv4HeaderLen : kIpv6HeaderLen;
    // ipip: an outer header, assumed IPv6-sized (syncookie.bpf.h).
    return uint16_t(mtu - ip - kTcpHeaderLen - (forward == LB_FORWARD_IPIP ? kIpv6HeaderLen : 0));
}

// Each test runs for IPv4 and then IPv6 clients (for_each_family) rather
// than being parameterized: the verifier takes about a second per program
// load, and one load per test keeps the file within its time budget.
class XdpCookie : public HttpDataPlaneTest {
protected:
    // Runs `body` once per client family, each time on a fresh http cluster
    // (use_http(LB_FORWARD_L2)) of that family with no flows.
    template <typename Body>
    void for_each_family(Body&& body)
    {
        for (uint8_t f : {uint8_t(LB_FAMILY_IPV4), uint8_t(LB_FAMILY_IPV6)}) {
            SCOPED_TRACE(f == LB_FAMILY_IPV4 ? "ipv4" : "ipv6");
            set_family(f);
            use_http(LB_FORWARD_L2);
            for (const FlowEntry& flow : maps().flows())
                bpf_map_delete_elem(flow.established ? maps().fds().flows.get()
                                                     : maps().fds().flows_new.get(),
                                    &flow.key);
            counter_deltas();
            body();
        }
    }

    void set_key_valid(uint32_t slot, bool valid)
    {
        maps().set_cookie_key(slot, cookie_key_of(slot, valid));
    }

    uint32_t expected_cookie(uint16_t sport, uint32_t isn, uint32_t slot,
                             const ClientOptions& c) const
    {
        // The low bits by the layout documented in bpf/cookie.h.
        const uint32_t low = slot << 8 | c.wscale << 4 | uint32_t(c.ts) << 3 |
                             uint32_t(c.sack) << 2 | c.mss_index;
        const lb_cookie_key k = cookie_key_of(slot, true);
        const lb_flow_key key = client_key(family(), sport);
        return lb_cookie_make(&k, &key, isn, low);
    }

    // Runs `in` (a SYN with options c) and checks the SYN-ACK field by field,
    // then whole against one built independently. Returns its cookie.
    uint32_t expect_synack(const Bytes& in, const std::vector<VlanTag>& vlans, uint16_t sport,
                           uint32_t isn, const ClientOptions& c, uint16_t mss, uint32_t slot = 1);

    std::optional<FlowEntry> find_flow(uint16_t sport) const
    {
        const lb_flow_key key = client_key(family(), sport);
        for (const FlowEntry& f : maps().flows())
            if (std::memcmp(&f.key, &key, sizeof(key)) == 0)
                return f;
        return std::nullopt;
    }
    void delete_flow(uint16_t sport)
    {
        const lb_flow_key key = client_key(family(), sport);
        ASSERT_EQ(bpf_map_delete_elem(maps().fds().flows.get(), &key), 0);
    }
};


uint32_t XdpCookie::expect_synack(const Bytes& in, const std::vector<VlanTag>& vlans,
                                  uint16_t sport, uint32_t isn, const ClientOptions& c,
                                  uint16_t mss, uint32_t slot)
{
    const uint32_t before_ms = uint32_t(monotonic_ns() / 1'000'000);
    const RunResult r = run_xdp(in);
    const uint32_t after_ms = uint32_t(monotonic_ns() / 1'000'000);
    EXPECT_EQ(r.verdict, uint32_t(XDP_TX));
    const size_t l3 = kEthHeaderLen + kVlanTagLen * vlans.size();
    const size_t ip_len = v4() ? kIpv4HeaderLen : kIpv6HeaderLen;
    const size_t tcp_len = kTcpHeaderLen + (c.ts ? 20 : 12);
    const size_t t = l3 + ip_len;
    EXPECT_EQ(r.out.size(), t + tcp_len) << "no IP options, no payload";
    if (r.verdict != XDP_TX || r.out.size() != t + tcp_len)
        return 0;

    EXPECT_EQ(slice(r.out, 0, 6), mac_bytes(router_mac())) << "destination MAC: the SYN's source";
    EXPECT_EQ(slice(r.out, 6, 6), mac_bytes(node_mac(kSelfSlot))) << "source MAC";
    EXPECT_EQ(slice(r.out, 12, l3 - 12), slice(in, 12, l3 - 12)) << "VLAN tags and ethertype";

    if (v4()) {
        EXPECT_EQ(r.out[l3], 0x45) << "version / IHL: no options";
        EXPECT_EQ(r.out[l3 + 1], 0) << "DSCP / ECN";
        EXPECT_EQ(read16(r.out, l3 + 2), ip_len + tcp_len) << "tot_len";
        EXPECT_EQ(read16(r.out, l3 + 4), 0) << "id";
        EXPECT_EQ(read16(r.out, l3 + 6), 0x4000) << "DF, offset 0";
        EXPECT_EQ(r.out[l3 + 8], 64) << "ttl";
        EXPECT_EQ(r.out[l3 + 9], kProtoTcp) << "protocol";
        EXPECT_TRUE(ipv4_checksum_ok(r.out.data() + l3, kIpv4HeaderLen))
            << "IP checksum " << std::hex << read16(r.out, l3 + 10);
        EXPECT_EQ(slice(r.out, l3 + 12, 4), addr_bytes(service())) << "saddr";
        EXPECT_EQ(slice(r.out, l3 + 16, 4), addr_bytes(client())) << "daddr";
    } else {
        EXPECT_EQ(read32(r.out, l3), 6u << 28) << "version, traffic class, flow label";
        EXPECT_EQ(read16(r.out, l3 + 4), tcp_len) << "payload_len";
        EXPECT_EQ(r.out[l3 + 6], kProtoTcp) << "nexthdr: no extension headers";
        EXPECT_EQ(r.out[l3 + 7], 64) << "hop limit";
        EXPECT_EQ(slice(r.out, l3 + 8, 16), addr_bytes(service())) << "saddr";
        EXPECT_EQ(slice(r.out, l3 + 24, 16), addr_bytes(client())) << "daddr";
    }

    const uint32_t cookie = read32(r.out, t + 4);
    EXPECT_EQ(read16(r.out, t), kServicePort) << "sport";
    EXPECT_EQ(read16(r.out, t + 2), sport) << "dport";
    EXPECT_EQ(cookie, expected_cookie(sport, isn, slot, c))
        << "seq: the cookie, got " << std::hex << cookie;
    EXPECT_EQ(read32(r.out, t + 8), isn + 1) << "ack: the client's ISN + 1";
    EXPECT_EQ(r.out[t + 12], tcp_len / 4 << 4) << "data offset";
    EXPECT_EQ(r.out[t + 13], kSyn | kAck) << "flags";
    EXPECT_EQ(read16(r.out, t + 14), kSynackWindow) << "window";
    EXPECT_EQ(read16(r.out, t + 18), 0) << "urgent pointer";
    EXPECT_TRUE(tcp_checksum_ok(service(), client(), r.out.data() + t, tcp_len))
        << "TCP checksum " << std::hex << read16(r.out, t + 16);

    // Our timestamp: bpf_ktime_get_ns() in ms, the clock of monotonic_ns().
    const uint32_t our_tsval = c.ts ? read32(r.out, t + kTcpHeaderLen + 8) : 0;
    if (c.ts) {
        EXPECT_LE(our_tsval - before_ms, after_ms - before_ms)
            << "TSval " << our_tsval << " not in [" << before_ms << ", " << after_ms << "]";
    }
    EXPECT_EQ(hex(slice(r.out, t + kTcpHeaderLen)), hex(synack_options(c, mss, our_tsval)))
        << "options";

    // What the serving node will read back from the cookie.
    lb_syn_options decoded{};
    lb_cookie_options(cookie, &decoded);
    EXPECT_EQ(decoded.mss, lb_cookie_mss_value(c.mss_index));
    EXPECT_EQ(decoded.wscale, c.wscale);
    EXPECT_EQ(decoded.sack_ok, c.sack);
    EXPECT_EQ(decoded.ts_ok, c.ts);
    EXPECT_EQ(lb_cookie_slot(cookie), slot);

    // The whole frame, built on its own.
    Tcp synack;
    synack.sport = kServicePort;
    synack.dport = sport;
    synack.flags = kSyn | kAck;
    synack.seq = expected_cookie(sport, isn, slot, c);
    synack.ack = isn + 1;
    synack.window = kSynackWindow;
    synack.options = synack_options(c, mss, our_tsval);
    const Ethernet eth{router_mac(), node_mac(kSelfSlot), vlans};
    const Bytes seg = tcp_segment(service(), client(), synack);
    Ipv4Fields fields;
    fields.id = 0;
    const Bytes ip = v4() ? ipv4_packet(service(), client(), kProtoTcp, seg, fields)
                          : ipv6_packet(service(), client(), kProtoTcp, seg);
    const Bytes expected = ethernet_frame(eth, ethertype_of(family()), ip);
    EXPECT_EQ(hex(r.out), hex(expected));
    return cookie;
}

const std::vector<std::vector<VlanTag>> kTagSets{
    {}, {{kEthVlan, 3}}, {{kEthQinQ, 30}, {kEthVlan, 3}}};

TEST_F(XdpCookie, SynAckForEachSetOfClientOptions)
{
    for_each_family([&] {
        const uint16_t mss = announced_mss(family(), LB_FORWARD_L2, 1500);
        EXPECT_EQ(mss, v4() ? 1460 : 1440);
        uint16_t sport = kClientPort;
        uint32_t isn = 0x10000000, answered = 0;
        for (const ClientOptions& c : client_option_sets())
            for (const auto& tags : kTagSets) {
                SCOPED_TRACE(std::string(c.name) + ", " + std::to_string(tags.size()) + " tags");
                expect_synack(syn(sport, isn, c.options, tags), tags, sport, isn, c, mss);
                sport++;
                isn += 0x01234567;
                answered++;
            }

        // Stateless: a retransmitted SYN gets the same cookie, another
        // 4-tuple another one; ISN + 1 wraps.
        const uint32_t first = handshake(kClientPort, 0xfffffff0);
        EXPECT_EQ(handshake(kClientPort, 0xfffffff0), first);
        EXPECT_NE(handshake(kClientPort + 1, 0xfffffff0), first);
        expect_synack(syn(kClientPort, 0xffffffff), {}, kClientPort, 0xffffffff,
                      typical_options(), mss);
        answered += 4;

        EXPECT_EQ(counter_deltas(), (Counts{{"tx_syn_cookie", answered}}));
        EXPECT_TRUE(maps().flows().empty()) << "a SYN leaves no state";
    });
}

TEST_F(XdpCookie, SynAckLeavesOutPayloadAndIpOptionsAndAnnouncesAnMssThatFits)
{
    // A TFO-like SYN: Linux's options, a Fast Open cookie option (kind 34)
    // and 200 bytes of data. The SYN-ACK acknowledges only the SYN.
    const Bytes tfo_options =
        concat(concat(linux_syn_options(), {34, 10, 1, 2, 3, 4, 5, 6, 7, 8}), {1, 1});
    const ClientOptions typical = typical_options();
    for_each_family([&] {
        const uint16_t mss = announced_mss(family(), LB_FORWARD_L2, 1500);
        uint16_t sport = kClientPort;
        for (const auto& tags : kTagSets) {
            SCOPED_TRACE(std::to_string(tags.size()) + " tags");
            // An ECN-setup SYN (ECE, CWR) too: the SYN-ACK does not
            // agree to ECN (flags exactly SYN, ACK).
            Tcp t;
            t.sport = sport;
            t.flags = kSyn | 0x40 | 0x80;
            t.seq = 5000 + sport;
            t.options = tfo_options;
            t.payload = Bytes(200, 'x');
            expect_synack(client_frame(family(), t, tags), tags, sport, t.seq, typical, mss);
            sport++;

            // The same SYN behind IPv4 options (router alert, NOP, EOL) or
            // IPv6 hop-by-hop and destination options headers.
            t.sport = sport;
            t.seq = 9000 + sport;
            Bytes with_options;
            if (v4()) {
                Ipv4Fields f;
                f.options = {0x94, 0x04, 0, 0, 1, 1, 1, 0};
                with_options =
                    ethernet_frame(inbound(tags), kEthIpv4,
                                   ipv4_packet(client(), service(), kProtoTcp,
                                               tcp_segment(client(), service(), t), f));
            } else {
                with_options = client_frame(
                    family(), t, tags,
                    {ipv6_options_ext(kProtoHopOpts), ipv6_options_ext(kProtoDstOpts, 16)});
            }
            expect_synack(with_options, tags, sport, t.seq, typical, mss);
            sport++;
        }
        EXPECT_EQ(counter_deltas(), (Counts{{"tx_syn_cookie", 2 * kTagSets.size()}}));

        // The MSS this node announces: what the MTU leaves after the
        // client's IP header and TCP, and an outer header with ipip.
        const struct {
            uint32_t forward, mtu;
            uint16_t v4_mss, v6_mss;
        } cases[] = {{LB_FORWARD_L2, 1500, 1460, 1440},
                     {LB_FORWARD_IPIP, 1500, 1420, 1400},
                     {LB_FORWARD_L2, 9000, 8960, 8940},
                     {LB_FORWARD_IPIP, 9000, 8920, 8900}};
        for (const auto& c : cases) {
            SCOPED_TRACE(std::string(c.forward == LB_FORWARD_L2 ? "l2" : "ipip") + ", MTU " +
                         std::to_string(c.mtu));
            use_http(c.forward);
            change_config([&](lb_config& cfg) { cfg.mtu = c.mtu; });
            const uint16_t expected = v4() ? c.v4_mss : c.v6_mss;
            EXPECT_EQ(announced_mss(family(), c.forward, c.mtu), expected);
            expect_synack(syn(sport, 42), {}, sport, 42, typical, expected);
            sport++;
        }
    });
}

// A cookie can be made only with a valid key in the config's slot, and
// holds while the key of its own slot stays valid: across one epoch change,
// not past the key's expiry.
TEST_F(XdpCookie, CookieLivesAsLongAsItsEpochKey)
{
    for_each_family([&] {
        // The config's slot holds a key marked invalid (expired, or not yet
        // installed): the kernel answers, as in l4 mode.
        change_config([](lb_config& cfg) { cfg.cookie_slot = 3; });
        const Bytes in = syn(kClientPort, 1000);
        EXPECT_TRUE(passed_untouched(run_xdp(in), in));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_syn_no_cookie_key", 1}}));

        // No key at all.
        for (uint32_t slot = 0; slot < LB_COOKIE_SLOTS; slot++)
            maps().set_cookie_key(slot, lb_cookie_key{});
        change_config([](lb_config& cfg) { cfg.cookie_slot = 1; });
        EXPECT_TRUE(passed_untouched(run_xdp(in), in));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_syn_no_cookie_key", 1}}));
        EXPECT_TRUE(maps().flows().empty());

        // The slot is the epoch modulo 4.
        set_key_valid(1, true);
        change_config([](lb_config& cfg) { cfg.cookie_slot = 5; });
        expect_synack(in, {}, kClientPort, 1000, typical_options(),
                      announced_mss(family(), LB_FORWARD_L2, 1500), 1);

        // A clean start for the epoch change: only slot 1 valid, in use.
        use_http(LB_FORWARD_L2);
        counter_deltas();

        const uint16_t a = kClientPort, b = kClientPort + 1, c = kClientPort + 2;
        const uint32_t cookie_a = handshake(a, 0x11111111), cookie_b = handshake(b, 0x22222222);
        EXPECT_EQ(lb_cookie_slot(cookie_a), 1u);
        EXPECT_EQ(lb_cookie_slot(cookie_b), 1u);

        // The next epoch: slot 2 makes the cookies, slot 1 still checks them.
        set_key_valid(2, true);
        change_config([](lb_config& cfg) { cfg.cookie_slot = 2; });
        const uint32_t cookie_c = handshake(c, 0x33333333);
        EXPECT_EQ(lb_cookie_slot(cookie_c), 2u);
        counter_deltas();

        const Bytes first_a = segment(a, 0x11111111, cookie_a);
        EXPECT_TRUE(passed_untouched(run_xdp(first_a), first_a)) << "this node is idle: kept";
        EXPECT_EQ(counter_deltas(), (Counts{{"http_local", 1}}));
        std::optional<FlowEntry> flow = find_flow(a);
        ASSERT_TRUE(flow);
        EXPECT_TRUE(flow->established);
        EXPECT_EQ(flow->value.node, LB_NODE_LOCAL);
        EXPECT_EQ(flow->value.reason, LB_REASON_BELOW_T1);
        EXPECT_EQ(handed_since(kSelfSlot), 1);

        // Slot 1 expires: its cookies are not ours any more.
        set_key_valid(1, false);
        const Bytes first_b = segment(b, 0x22222222, cookie_b);
        EXPECT_TRUE(passed_untouched(run_xdp(first_b), first_b));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
        EXPECT_FALSE(find_flow(b));
        // Nor is the segment accepted before, once its entry is gone.
        delete_flow(a);
        EXPECT_TRUE(passed_untouched(run_xdp(first_a), first_a));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
        EXPECT_FALSE(find_flow(a));

        // Slot 2's cookie is still good.
        const Bytes first_c = segment(c, 0x33333333, cookie_c);
        EXPECT_TRUE(passed_untouched(run_xdp(first_c), first_c));
        EXPECT_EQ(counter_deltas(), (Counts{{"http_local", 1}}));
        EXPECT_TRUE(find_flow(c));
        EXPECT_EQ(maps().flows().size(), 1u);
    });
}

// A key's lifetime bounds its cookies on the data plane's own clock: with
// no agent to clear it (valid stays 1), it neither makes a cookie nor lets a
// captured first segment create a connection once expires_ns has passed.
TEST_F(XdpCookie, ExpiredKeyNeitherSignsNorValidatesWithoutTheAgent)
{
    for_each_family([&] {
        use_http(LB_FORWARD_L2);
        const uint16_t a = kClientPort, b = kClientPort + 1;
        const uint32_t cookie_a = handshake(a, 0x11111111);
        const uint32_t cookie_b = handshake(b, 0x22222222);
        // A captured first segment: accepted while the key lives.
        const Bytes first_a = segment(a, 0x11111111, cookie_a);
        counter_deltas();
        EXPECT_TRUE(passed_untouched(run_xdp(first_a), first_a));
        EXPECT_EQ(counter_deltas(), (Counts{{"http_local", 1}}));

        lb_cookie_key expired = cookie_key_of(1, true);
        expired.expires_ns = monotonic_ns() - 1;
        maps().set_cookie_key(1, expired);
        const Bytes first_b = segment(b, 0x22222222, cookie_b);
        EXPECT_TRUE(passed_untouched(run_xdp(first_b), first_b));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
        EXPECT_FALSE(find_flow(b));
        const Bytes in = syn(kClientPort + 2, 3000);
        EXPECT_TRUE(passed_untouched(run_xdp(in), in));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_syn_no_cookie_key", 1}}));
    });
}

TEST_F(XdpCookie, ForgedCookiesNeverCreateAFlow)
{
    for_each_family([&] {
        // Three valid slots, as the agent keeps them (epoch - 1, epoch, + 1).
        set_key_valid(0, true);
        set_key_valid(2, true);
        const uint32_t isn = 0x5a5a0000;
        const uint32_t cookie = handshake(kClientPort, isn);
        counter_deltas();
        std::mt19937 rng(family());
        int runs = 0, accepted = 0;
        auto expect_refused = [&](const Bytes& frame) {
            runs++;
            if (!passed_untouched(run_xdp(frame), frame))
                accepted++;
        };

        // Random acknowledgment (and sequence) numbers.
        for (int i = 0; i < 1500; i++) {
            Tcp t;
            t.sport = uint16_t(1024 + rng() % 60000);
            t.flags = kAck | kPsh;
            t.seq = rng();
            t.ack = rng();
            t.payload = request();
            expect_refused(client_frame(family(), t));
        }
        // The right cookie with a wrong ISN.
        for (int i = 0; i < 500; i++)
            expect_refused(segment(kClientPort, isn + 1 + rng() % 0xfffffffeu, cookie));
        // The right cookie and ISN for another 4-tuple: other client ports,
        // other client addresses.
        for (int i = 0; i < 500; i++)
            expect_refused(segment(uint16_t(kClientPort + 1 + rng() % 20000), isn, cookie));
        for (int i = 1; i <= 200; i++) {
            Tcp t;
            t.sport = kClientPort;
            t.flags = kAck | kPsh;
            t.seq = isn + 1;
            t.ack = cookie + 1;
            t.payload = request();
            const IpAddress other = parse_ip(v4() ? "198.51.100." + std::to_string(7 + i)
                                                  : "2001:db8:c::" + std::to_string(7 + i));
            expect_refused(tcp_frame(inbound(), other, service(), t));
        }

        EXPECT_EQ(runs, 2700);
        EXPECT_EQ(accepted, 0);
        EXPECT_TRUE(maps().flows().empty());
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", uint64_t(runs)}}))
            << "no http_local / http_forward / drop_handshake_ack";
        EXPECT_EQ(handed_since(kSelfSlot), 0);
    });
}

TEST_F(XdpCookie, HandshakeAckIsDroppedWhileFinAndDataAreDecided)
{
    for_each_family([&] {
        const uint32_t isn = 77777;
        const uint32_t cookie = handshake(kClientPort, isn);
        counter_deltas();

        // The pure ACK completing the handshake, also padded to Ethernet's
        // minimum (padding past the IP length is not payload).
        const Bytes ack = segment(kClientPort, isn, cookie, {}, kAck);
        Bytes padded = ack;
        padded.resize(ack.size() + 6, 0);
        for (const Bytes& frame : {ack, padded, ack})
            EXPECT_EQ(run_xdp(frame).verdict, uint32_t(XDP_DROP));
        EXPECT_EQ(counter_deltas(), (Counts{{"drop_handshake_ack", 3}}));
        EXPECT_TRUE(maps().flows().empty());

        // A RST is no handshake: the l4 path (no socket here: orphan).
        const Bytes rst = segment(kClientPort, isn, cookie, {}, kRst | kAck);
        EXPECT_TRUE(passed_untouched(run_xdp(rst), rst));
        EXPECT_EQ(counter_deltas(), (Counts{{"pass_orphan", 1}}));
        EXPECT_TRUE(maps().flows().empty());

        // A FIN without data closes a connection that exists for the
        // client: it is decided like a request.
        const Bytes fin = segment(kClientPort, isn, cookie, {}, kAck | kFin);
        EXPECT_TRUE(passed_untouched(run_xdp(fin), fin));
        EXPECT_EQ(counter_deltas(), (Counts{{"http_local", 1}}));
        std::optional<FlowEntry> flow = find_flow(kClientPort);
        ASSERT_TRUE(flow);
        EXPECT_TRUE(flow->established);
        EXPECT_EQ(flow->value.node, LB_NODE_LOCAL);

        // Another connection's request, kept (this node is idle); its next
        // segment follows the entry although this node is loaded by then.
        const uint16_t sport = kClientPort + 1;
        const uint32_t cookie2 = handshake(sport, isn);
        const Bytes first = segment(sport, isn, cookie2);
        EXPECT_TRUE(passed_untouched(run_xdp(first), first));
        set_load(kSelfSlot, 9000);
        Tcp next;
        next.sport = sport;
        next.flags = kAck | kPsh;
        next.seq = isn + 1 + uint32_t(request().size());
        next.ack = cookie2 + 1;
        next.payload = request();
        const Bytes second = client_frame(family(), next);
        EXPECT_TRUE(passed_untouched(run_xdp(second), second));
        EXPECT_EQ(counter_deltas(),
                  (Counts{{"tx_syn_cookie", 1}, {"http_local", 1}, {"pass_flow_local", 1}}));
        EXPECT_EQ(maps().flows().size(), 2u);
    });
}

TEST_F(XdpCookie, DecidedFlowIsForwardedAndFollowed)
{
    for_each_family([&] {
        for (uint32_t forward : {LB_FORWARD_L2, LB_FORWARD_IPIP}) {
            SCOPED_TRACE(forward == LB_FORWARD_L2 ? "l2" : "ipip");
            use_http(forward);
            set_load(kSelfSlot, 9000); // every decision forwards: to slot 1
            counter_deltas();
            const uint64_t conns_before = conns_forwarded(kLeastPeer);
            auto forwarded = [&](const RunResult& r, const Bytes& in,
                                 const std::vector<VlanTag>& tags) {
                return forward == LB_FORWARD_L2
                           ? l2_forwarded(r, in, kLeastPeer)
                           : ipip_forwarded(r, in, kLeastPeer, family(), tags);
            };
            uint16_t sport = forward == LB_FORWARD_L2 ? kClientPort : kClientPort + 100;
            std::vector<std::pair<Bytes, std::vector<VlanTag>>> seconds;
            for (const auto& tags : kTagSets) {
                SCOPED_TRACE(std::to_string(tags.size()) + " tags");
                const uint32_t isn = 1000u * sport;
                const uint32_t cookie = handshake(sport, isn, tags);
                const Bytes first = segment(sport, isn, cookie, request(), kAck | kPsh, tags);
                EXPECT_TRUE(forwarded(run_xdp(first), first, tags));
                std::optional<FlowEntry> flow = find_flow(sport);
                ASSERT_TRUE(flow);
                EXPECT_TRUE(flow->established);
                EXPECT_EQ(flow->value.node, kLeastPeer);
                EXPECT_EQ(flow->value.reason, LB_REASON_LEAST);

                // The next segment: more data, or the client's FIN.
                Tcp next;
                next.sport = sport;
                next.flags = tags.empty() ? kAck | kPsh : kAck | kFin;
                next.seq = isn + 1 + uint32_t(request().size());
                next.ack = cookie + 1;
                if (tags.empty())
                    next.payload = Bytes(100, 'b');
                seconds.emplace_back(client_frame(family(), next, tags), tags);
                sport++;
            }
            EXPECT_EQ(counter_deltas(), (Counts{{"tx_syn_cookie", 3}, {"http_forward", 3}}));
            EXPECT_EQ(conns_forwarded(kLeastPeer) - conns_before, 3u);
            EXPECT_EQ(handed_since(kLeastPeer), 3);

            // Peer 1 is loaded now: a new decision would pick peer 2; the
            // entries keep sending these flows to peer 1.
            set_load(kLeastPeer, 9500);
            for (const auto& [second, tags] : seconds)
                EXPECT_TRUE(forwarded(run_xdp(second), second, tags));
            EXPECT_EQ(counter_deltas(), (Counts{{"tx_flow_forward", 3}}));
        }
        EXPECT_EQ(maps().flows().size(), 6u);
    });
}

// Stateful rules pin an IPv6 client by its /64 (one host holds a /64
// whole): its other addresses follow the pin, and a client rotating
// through them takes one pin entry, not one per address.
TEST_F(XdpCookie, Ipv6ClientsArePinnedByTheirSlash64)
{
    set_family(LB_FAMILY_IPV6);
    use_http(LB_FORWARD_L2);
    set_load(kSelfSlot, 1000); // below T1: kept, unless pinned elsewhere
    lb_uri_rule rule{};
    const std::string_view prefix = "/index";
    std::memcpy(rule.pattern, prefix.data(), prefix.size());
    rule.pattern_len = uint16_t(prefix.size());
    rule.flags = LB_URI_STATEFUL | LB_URI_SELF;
    lb_node_set_add(rule.nodes, kSelfSlot);
    rule.pin_timeout_s = 600;
    maps().set_uri_rule(0, rule);
    change_config([](lb_config& cfg) { cfg.uri_rules = 1; });

    // The entry request pins the client: the key is its /64.
    const uint32_t cookie = handshake(kClientPort, 4000);
    const Bytes first = segment(kClientPort, 4000, cookie);
    EXPECT_TRUE(passed_untouched(run_xdp(first), first));
    auto pins = maps().pins();
    ASSERT_EQ(pins.size(), 1u);
    IpAddress prefix64 = client();
    std::memset(&prefix64.addr.v6[2], 0, 8);
    EXPECT_EQ(std::memcmp(&pins[0].first.client, &prefix64.addr, sizeof(prefix64.addr)), 0);
    EXPECT_EQ(pins[0].second.node, uint32_t(LB_NODE_LOCAL));

    // The pin moves to peer 2 (as a peer's announcement would set it): a
    // request from another address of the /64 follows it.
    maps().set_pin(pins[0].first, lb_pin{2, 0, pins[0].second.expires_ns});
    IpAddress other = client();
    other.addr.v6[3] ^= htonl(0x5a5a);
    Tcp s;
    s.sport = kClientPort + 1;
    s.seq = 5000;
    s.options = linux_syn_options();
    const RunResult r = run_xdp(tcp_frame(inbound(), other, service(), s));
    ASSERT_EQ(r.verdict, uint32_t(XDP_TX));
    const uint32_t cookie2 = read32(r.out, kEthHeaderLen + kIpv6HeaderLen + 4);
    Tcp req;
    req.sport = kClientPort + 1;
    req.flags = kAck | kPsh;
    req.seq = 5001;
    req.ack = cookie2 + 1;
    req.payload = request();
    const Bytes from_other = tcp_frame(inbound(), other, service(), req);
    EXPECT_TRUE(l2_forwarded(run_xdp(from_other), from_other, 2));
    EXPECT_EQ(maps().pins().size(), 1u);
}

} // namespace
} // namespace peerlb::test
