// What `peerlb buckets` prints (DESIGN.md section 6): the JSON shapes the
// agent answers with, the client's bucket by the data plane's own
// function, and the CLI's text form of both.
#include "userspace/agent/bucket_view.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "userspace/cli/agent_commands.h"
#include "userspace/dataplane/error.h"

namespace peerlb {
namespace {

using json = nlohmann::ordered_json;

constexpr uint64_t kDaisy = 60'000;

BucketTable table_of(const std::vector<std::string>& ids, const std::vector<std::string>& owners)
{
    BucketTable t;
    t.version = 12;
    t.author = "s1";
    t.buckets = uint32_t(owners.size());
    for (const auto& id : ids)
        t.nodes.push_back(TableNode{id, 100, false});
    for (const auto& o : owners) {
        TableBucket b;
        b.owner = o.empty() ? kNoNode : t.index_of(o);
        t.table.push_back(b);
    }
    return t;
}

SharedNode live(const std::string& id, bool draining = false, uint16_t hops = 0, bool routable = true)
{
    SharedNode n;
    n.id = id;
    n.draining = draining;
    n.routable = routable;
    n.second_hop_permille = hops;
    return n;
}

BucketView view(const BucketTable* t, uint32_t buckets = 4)
{
    BucketView v;
    v.table = t;
    v.buckets = buckets;
    v.daisy_chain_ms = kDaisy;
    v.coordinator = "s1";
    v.nodes = {live("s1", false, 25), live("s2"), live("s3", true, 1000), live("s4", false, 0, false)};
    return v;
}

TEST(BucketView, TableShape)
{
    // s9 left the live set but still owns a bucket (not reassigned yet).
    const BucketTable t = table_of({"s1", "s2", "s3", "s9"}, {"s1", "s2", "", "s9", "s1"});
    const json j = buckets_json(view(&t, 5));
    EXPECT_EQ(j["version"], 12);
    EXPECT_EQ(j["author"], "s1");
    EXPECT_EQ(j["coordinator"], "s1");
    EXPECT_EQ(j["buckets"], 5);
    EXPECT_EQ(j["hash"], "address");
    EXPECT_EQ(j["delivery"], "ecmp");
    // Every live node, zeros included, and any other owner.
    EXPECT_EQ(j["owned"], json({{"s1", 2}, {"s2", 1}, {"s3", 0}, {"s4", 0}, {"s9", 1}}));
    EXPECT_EQ(j["draining"], json::array({"s3"}));
    EXPECT_EQ(j["unroutable"], json::array({"s4"}));
    EXPECT_EQ(j["second_hop_percent"]["s1"], 2.5);
    EXPECT_EQ(j["second_hop_percent"]["s3"], 100.0);
    EXPECT_EQ(j["table"], json::parse(R"(["s1", "s2", null, "s9", "s1"])"));
}

TEST(BucketView, NoTableYet)
{
    const BucketTable none;
    const json j = buckets_json(view(&none, 3));
    EXPECT_EQ(j["version"], 0);
    EXPECT_TRUE(j["author"].is_null());
    EXPECT_EQ(j["buckets"], 3);
    EXPECT_EQ(j["owned"]["s1"], 0);
    EXPECT_EQ(j["table"], json::parse("[null, null, null]"));
}

TEST(BucketView, ClientBucketIsTheDataPlanesOwn)
{
    const uint32_t buckets = 64;
    std::vector<std::string> owners(buckets);
    for (uint32_t b = 0; b < buckets; b++)
        owners[b] = b % 2 ? "s2" : "s1";
    BucketTable t = table_of({"s1", "s2", "s3"}, owners);
    const IpAddress client = parse_ip("198.51.100.77");
    const uint32_t expected = lb_bucket_of(&client.addr, client.family, 0, LB_SHARED_HASH_ADDRESS, buckets);
    t.table[expected].prev[0] = t.index_of("s3");
    t.table[expected].prev_since_ms[0] = 1000;
    const BucketView v = view(&t, buckets);
    json j = client_bucket_json(v, "198.51.100.77", std::nullopt, 2000);
    EXPECT_EQ(j["client"], "198.51.100.77");
    EXPECT_TRUE(j["port"].is_null());
    EXPECT_EQ(j["bucket"], expected);
    EXPECT_EQ(j["owner"], expected % 2 ? "s2" : "s1");
    EXPECT_EQ(j["previous"], json::array({"s3"}));
    // Its chain over: no previous owner.
    j = client_bucket_json(v, "198.51.100.77", std::nullopt, 1000 + kDaisy);
    EXPECT_EQ(j["previous"], json::array());
    // The port does not count with hash = "address".
    EXPECT_EQ(client_bucket_json(v, "198.51.100.77", 443, 2000)["bucket"], expected);
    // IPv6.
    const IpAddress v6 = parse_ip("2001:db8::1");
    EXPECT_EQ(client_bucket_json(v, "2001:db8::1", std::nullopt, 0)["bucket"],
              lb_bucket_of(&v6.addr, v6.family, 0, LB_SHARED_HASH_ADDRESS, buckets));
}

TEST(BucketView, AddressAndPortHashNeedsThePort)
{
    const BucketTable t = table_of({"s1"}, std::vector<std::string>(32, "s1"));
    BucketView v = view(&t, 32);
    v.hash = LB_SHARED_HASH_ADDRESS_PORT;
    try {
        client_bucket_json(v, "198.51.100.77", std::nullopt, 0);
        ADD_FAILURE() << "no error without --port";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--port"), std::string::npos) << e.what();
    }
    const IpAddress client = parse_ip("198.51.100.77");
    const json j = client_bucket_json(v, "198.51.100.77", 40000, 0);
    EXPECT_EQ(j["port"], 40000);
    EXPECT_EQ(j["bucket"], lb_bucket_of(&client.addr, client.family, htons(40000), LB_SHARED_HASH_ADDRESS_PORT, 32));
    EXPECT_THROW(client_bucket_json(v, "not-an-address", 1, 0), Error);
}

TEST(BucketView, TextForms)
{
    const BucketTable t = table_of({"s1", "s2", "s3"}, {"s1", "s2", "s1", "s1"});
    const json j = buckets_json(view(&t));
    const std::string text = cli::buckets_text(j);
    EXPECT_NE(text.find("bucket table v12 by s1, coordinator s1"), std::string::npos) << text;
    EXPECT_NE(text.find("4 buckets, hash address, delivery ecmp"), std::string::npos) << text;
    EXPECT_NE(text.find("draining"), std::string::npos) << text;
    // s1: 3 of 4 buckets, 2.5 % second hops.
    EXPECT_NE(text.find("75.0"), std::string::npos) << text;
    EXPECT_NE(text.find("2.5"), std::string::npos) << text;
    const BucketTable none;
    EXPECT_NE(cli::buckets_text(buckets_json(view(&none))).find("no bucket table yet"), std::string::npos);

    json client = client_bucket_json(view(&t), "198.51.100.77", 80, 0);
    client["previous"] = json::array({"s3"});
    const std::string line = cli::client_bucket_text(client);
    EXPECT_NE(line.find("client 198.51.100.77 port 80: bucket "), std::string::npos) << line;
    EXPECT_NE(line.find("previous owners s3"), std::string::npos) << line;
}

} // namespace
} // namespace peerlb
