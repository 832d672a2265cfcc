#include "bucket_view.h"

#include <arpa/inet.h>

#include <map>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

using json = nlohmann::ordered_json;

json node_or_null(const BucketTable& t, uint16_t index)
{
    return index < t.nodes.size() ? json(t.nodes[index].id) : json(nullptr);
}

const BucketTable& table_of(const BucketView& v)
{
    static const BucketTable none;
    return v.table ? *v.table : none;
}

} // namespace

json buckets_json(const BucketView& v)
{
    const BucketTable& t = table_of(v);
    std::map<std::string, uint32_t> owned;
    json draining = json::array(), unroutable = json::array(), second_hop = json::object();
    for (const SharedNode& n : v.nodes) {
        owned[n.id] = 0;
        if (n.draining)
            draining.push_back(n.id);
        if (!n.routable)
            unroutable.push_back(n.id);
        second_hop[n.id] = n.second_hop_permille / 10.0;
    }
    json table = json::array();
    for (const TableBucket& b : t.table) {
        table.push_back(node_or_null(t, b.owner));
        if (b.owner < t.nodes.size())
            owned[t.nodes[b.owner].id]++;
    }
    if (t.empty()) // no table yet: no bucket has an owner
        for (uint32_t b = 0; b < v.buckets; b++)
            table.push_back(nullptr);
    return {
        {"version", t.version},
        {"author", t.empty() ? json(nullptr) : json(t.author)},
        {"coordinator", v.coordinator},
        {"buckets", t.empty() ? v.buckets : t.buckets},
        {"hash", v.hash == LB_SHARED_HASH_ADDRESS_PORT ? "address+port" : "address"},
        {"delivery", v.delivery == LB_DELIVERY_FLOOD ? "flood" : "ecmp"},
        {"owned", owned},
        {"draining", draining},
        {"unroutable", unroutable},
        {"second_hop_percent", second_hop},
        {"table", table},
    };
}

json client_bucket_json(const BucketView& v, const std::string& client, std::optional<uint16_t> port,
                        uint64_t now_ms)
{
    IpAddress ip;
    try {
        ip = parse_ip(client);
    } catch (const Error&) {
        throw Error(fmt::format("'{}' is not an IPv4 or IPv6 address", client));
    }
    if (v.hash == LB_SHARED_HASH_ADDRESS_PORT && !port)
        throw Error("[shared] hash = \"address+port\": the bucket depends on the client's port too "
                    "(give --port)");
    const BucketTable& t = table_of(v);
    const uint32_t buckets = t.empty() ? v.buckets : t.buckets;
    if (!buckets)
        throw Error("no buckets configured");
    // The data plane's own function, on the address and port as it reads
    // them from the packet (network byte order).
    const uint32_t bucket = lb_bucket_of(&ip.addr, ip.family, htons(port.value_or(0)), v.hash, buckets);
    json previous = json::array();
    json owner = nullptr;
    if (bucket < t.table.size()) {
        const TableBucket& b = t.table[bucket];
        owner = node_or_null(t, b.owner);
        for (int i = 0; i < 2; i++)
            if (b.prev[i] < t.nodes.size() && b.prev_since_ms[i] + v.daisy_chain_ms > now_ms)
                previous.push_back(t.nodes[b.prev[i]].id);
    }
    return {
        {"client", format_ip(ip)},
        {"port", port ? json(*port) : json(nullptr)},
        {"bucket", bucket},
        {"owner", owner},
        {"previous", previous},
    };
}

} // namespace peerlb
