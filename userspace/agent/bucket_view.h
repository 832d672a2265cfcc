// What `peerlb buckets` shows (DESIGN.md section 6): the applied bucket
// table of the shared addresses, who owns how much, and which bucket one
// client falls in. Built on the agent's loop from its state; no locks here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bucket_table.h"
#include "shared_table.h"

namespace peerlb {

struct BucketView {
    const BucketTable* table = nullptr; // the applied one (empty: none yet)
    uint32_t buckets = 0;               // configured
    uint32_t hash = LB_SHARED_HASH_ADDRESS;
    uint32_t delivery = LB_DELIVERY_ECMP;
    uint64_t daisy_chain_ms = 0;
    std::string coordinator;
    std::vector<SharedNode> nodes; // live nodes serving shared addresses, this node included
};

// {version, author, coordinator, buckets, hash, delivery, owned: {id: n}
// (every live node, zeros included, and any other owner), draining: [ids],
// unroutable: [ids], second_hop_percent: {id: %}, table: [owner id or null]}.
nlohmann::ordered_json buckets_json(const BucketView& v);

// {client, port, bucket, owner, previous: [ids]} for a client address (and
// port: required with hash = "address+port"); throws Error on a bad address
// or a missing port. previous: the bucket's previous owners whose daisy
// chain still runs at now_ms.
nlohmann::ordered_json client_bucket_json(const BucketView& v, const std::string& client,
                                          std::optional<uint16_t> port, uint64_t now_ms);

} // namespace peerlb
