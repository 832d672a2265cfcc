// Packet generators of the fuzz test: (a) random bytes, (b) well-formed
// frames of every shape the data path meets, (c) those mutated. Driven by one
// seeded std::mt19937_64: the same seed gives the same packets in the same
// order.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fuzz_oracle.h"
#include "packet.h"

namespace peerlb::test::fuzz {

// A connection the test put in (or kept out of) the flow tables.
struct Tuple {
    IpAddress client;
    IpAddress service;
    uint16_t sport = 0;
    uint16_t dport = 0;
};

// The addresses the generator draws from. Nodes are listed in both families:
// which of them the maps know depends on the batch.
struct Catalog {
    Mac self_mac{};
    Mac router_mac{};
    std::vector<Mac> peer_macs;
    std::vector<IpAddress> node_addrs; // every slot, both families
    std::vector<Service> services;     // both families
    std::vector<IpAddress> clients;    // both families
    std::vector<IpAddress> grace_only; // in a grace period, not a service address
    std::vector<Tuple> flows;
};

enum class Gen { Random, WellFormed, Mutated, Count };
const char* gen_name(Gen g);

struct FuzzPacket {
    Bytes bytes;
    Gen gen = Gen::Random;
    const char* shape = "";
    std::vector<const char*> mutations;

    std::string describe() const;
};

class Generator {
public:
    Generator(uint64_t seed, Catalog catalog);
    FuzzPacket next();

private:
    // Randomness.
    uint64_t below(uint64_t n);
    uint64_t between(uint64_t lo, uint64_t hi); // inclusive
    bool percent(unsigned p);
    uint8_t byte() { return uint8_t(below(256)); }
    Bytes random_bytes(size_t n);
    template <typename T>
    const T& pick(const std::vector<T>& v)
    {
        return v[below(v.size())];
    }

    // Pieces.
    uint8_t random_family() { return percent(50) ? LB_FAMILY_IPV4 : LB_FAMILY_IPV6; }
    IpAddress random_addr(uint8_t family);
    IpAddress client(uint8_t family);
    IpAddress node_addr(uint8_t family);
    Mac random_mac();
    Ethernet ethernet();
    Tuple endpoints(uint8_t family);
    uint8_t tcp_flags();
    Bytes tcp_options(size_t len);
    size_t payload_len();
    std::vector<Ipv6Ext> ext_chain(size_t count);
    Bytes tcp_l3(uint8_t family, const Tuple& t, size_t payload, bool ipv6_ext);
    Bytes random_ext_chain_l3(const Tuple& t);

    // Generators.
    FuzzPacket random_frame();
    FuzzPacket well_formed();
    FuzzPacket mutated();
    void mutate(FuzzPacket& p);

    std::mt19937_64 rng_;
    Catalog cat_;
};

} // namespace peerlb::test::fuzz
