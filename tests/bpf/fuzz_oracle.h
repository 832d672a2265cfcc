// The fuzz test's judge: decides from the INPUT bytes alone, with a parser of
// its own (not bpf/parse.bpf.h), which verdicts and outputs the design
// (DESIGN.md section 2) allows xdp_peerlb for a frame, given what the maps
// hold. It never asks what the program would do: a frame that is not TCP to
// a configured service may not be sent back out, whatever the program
// thinks of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "packet.h"

extern "C" {
#include "maps/config.h"
#include "maps/node.h"
}

namespace peerlb::test::fuzz {

struct Service {
    IpAddress addr;
    uint16_t port = 0; // host order
};

struct Peer {
    uint32_t slot = 0;
    Mac mac{};
    IpAddress addr;
    uint8_t state = 0; // enum lb_node_state
};

// The data plane's state while a batch of packets runs, read back from the
// maps (not from what the test meant to write into them).
struct World {
    uint32_t forward = 0; // LB_FORWARD_L2 / LB_FORWARD_IPIP
    uint32_t mtu = 0;
    Mac self_mac{};
    IpAddress self_addr;
    std::vector<Peer> peers;           // used node slots other than self
    std::vector<Mac> node_macs;        // keys of lb_node_macs
    std::vector<IpAddress> node_addrs; // keys of lb_node_addrs
    std::vector<Service> services;     // keys of lb_services
    std::vector<IpAddress> grace;      // keys of lb_grace with a deadline ahead

    bool is_service(const IpAddress& addr, uint16_t port) const;
    bool is_node_addr(const IpAddress& addr) const;
    // A live peer's node address (not this node's; not empty, not dead).
    bool is_live_peer_addr(const IpAddress& addr) const;
    bool is_node_mac(const uint8_t* mac) const;
    bool in_grace(const IpAddress& addr) const;
    const Peer* peer_by_mac(const uint8_t* mac) const;
};

// A frame as the design reads it: Ethernet, at most 2 VLAN tags (0x8100 /
// 0x88a8), IPv4 (version 4, IHL >= 5, header inside the frame, no MF and no
// offset) or IPv6 (version 6, at most 4 extension headers of hop-by-hop /
// routing / destination options / AH, each inside the frame), then TCP
// (doff >= 5, header inside the frame) or an inner IPv4/IPv6 packet.
struct View {
    bool ethernet = false;  // at least an Ethernet header
    size_t l2_len = 0;      // Ethernet header and tags: where L3 starts
    uint16_t ethertype = 0; // the one right before L3
    uint8_t family = 0;     // LB_FAMILY_IPV4/6 once an IP header was read
    bool fragment = false;
    IpAddress src, dst;
    bool encap = false;      // the IP header(s) lead to protocol 4 or 41
    uint8_t inner_proto = 0; // 4 or 41 when encap
    size_t outer_len = 0;    // IP header with options / extensions when encap
    bool tcp = false;        // a TCP header with doff >= 5 inside the frame
    size_t l4 = 0;
    uint16_t sport = 0, dport = 0;
    uint8_t flags = 0;
};

View parse_view(const Bytes& frame);

// What one run came to, when it was allowed.
enum class Outcome {
    Refused,          // the kernel refused a runt (EINVAL)
    PassUntouched,
    PassDecapsulated,
    TxL2,
    TxIpip,
    DropForwardError,
    DropOrphanGrace,
    Count,
};
const char* outcome_name(Outcome o);

// How far drop_forward_error and drop_orphan_grace moved during the run.
struct DropDelta {
    uint64_t forward_error = 0;
    uint64_t orphan_grace = 0;
};

struct Judgement {
    Outcome outcome = Outcome::PassUntouched;
    std::string failure; // empty: allowed
    // The oracle's reading, for the coverage figures.
    bool to_service = false;
    bool steered_encap = false;
    bool steered_mac = false;
};

// `error` is the errno of BPF_PROG_TEST_RUN (0 on success).
Judgement judge(const World& world, const Bytes& in, int error, uint32_t verdict,
                const Bytes& out, const DropDelta& drops);

} // namespace peerlb::test::fuzz
