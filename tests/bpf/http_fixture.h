// The test cluster in "http" mode (DESIGN section 4), for the cookie tests
// (xdp_cookie_test.cpp) and the per-packet bench (tools/bench/xdp_cost.cpp):
// both services in http mode, cookie keys, and the client's packets of a
// cookie handshake.
#pragma once

#include <arpa/inet.h>
#include <linux/bpf.h>

#include <string_view>
#include <vector>

#include "fixture.h"

namespace peerlb::test {

// The window scale this cluster announces: unlike any client's.
inline constexpr uint32_t kHttpWscale = 9;

// Slot s's key; valid only where a test says so.
inline lb_cookie_key cookie_key_of(uint32_t slot, bool valid)
{
    lb_cookie_key k{};
    k.k0 = 0x6b65'7930'0000'0000ull + slot;
    k.k1 = ~k.k0 * 0x9e37'79b9'7f4a'7c15ull;
    k.epoch = 1000 + slot;
    k.expires_ns = monotonic_ns() + 3600'000'000'000ull; // an hour: never during a test
    k.valid = valid;
    return k;
}

// A first request: what the client sends once connected.
inline Bytes request()
{
    constexpr std::string_view r = "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n";
    return Bytes(r.begin(), r.end());
}

class HttpDataPlaneTest : public DataPlaneTest {
protected:
    // The test cluster (install_cluster, this node idle, nodes of family())
    // with both services in http mode, the window scale kHttpWscale and
    // SYN-ACKs made with slot 1, the only valid key.
    void use_http(uint32_t forward)
    {
        install_cluster(forward, family());
        for (uint8_t f : {LB_FAMILY_IPV4, LB_FAMILY_IPV6}) {
            lb_service_key key{};
            key.addr = service_addr(f).addr;
            key.port = htons(kServicePort);
            key.family = f;
            maps().add_service(key, lb_service{LB_MODE_HTTP, 1, 0});
        }
        for (uint32_t slot = 0; slot < LB_COOKIE_SLOTS; slot++)
            maps().set_cookie_key(slot, cookie_key_of(slot, slot == 1));
        change_config([](lb_config& cfg) {
            cfg.cookie_slot = 1;
            cfg.http_wscale = kHttpWscale;
        });
    }

    // The clients' family (and the nodes', with use_http).
    uint8_t family() const { return family_; }
    void set_family(uint8_t family) { family_ = family; }
    bool v4() const { return family() == LB_FAMILY_IPV4; }
    IpAddress client() const { return client_addr(family()); }
    IpAddress service() const { return service_addr(family()); }

    Bytes syn(uint16_t sport, uint32_t isn, const Bytes& options = linux_syn_options(),
              std::vector<VlanTag> vlans = {}) const
    {
        Tcp t;
        t.sport = sport;
        t.seq = isn;
        t.options = options;
        return client_frame(family(), t, std::move(vlans));
    }

    // The client's next segment after the SYN-ACK with `cookie`.
    Bytes segment(uint16_t sport, uint32_t isn, uint32_t cookie, const Bytes& payload = request(),
                  uint8_t flags = tcp_flags::kAck | tcp_flags::kPsh,
                  std::vector<VlanTag> vlans = {}) const
    {
        Tcp t;
        t.sport = sport;
        t.flags = flags;
        t.seq = isn + 1;
        t.ack = cookie + 1;
        t.payload = payload;
        return client_frame(family(), t, std::move(vlans));
    }

    // A SYN with Linux's options through XDP: the SYN-ACK's cookie.
    uint32_t handshake(uint16_t sport, uint32_t isn, std::vector<VlanTag> vlans = {})
    {
        const Bytes in = syn(sport, isn, linux_syn_options(), vlans);
        RunResult r = run_xdp(in);
        const size_t t = kEthHeaderLen + kVlanTagLen * vlans.size() +
                         (v4() ? kIpv4HeaderLen : kIpv6HeaderLen);
        EXPECT_EQ(r.verdict, uint32_t(XDP_TX)) << "SYN not answered";
        if (r.verdict != XDP_TX || r.out.size() < t + kTcpHeaderLen)
            return 0;
        return read32(r.out, t + 4);
    }

private:
    uint8_t family_ = LB_FAMILY_IPV4;
};

} // namespace peerlb::test
