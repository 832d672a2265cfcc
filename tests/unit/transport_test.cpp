// The heartbeat socket in unicast mode, over loopback (multicast needs a
// real interface: the namespace tests cover it).
#include <gtest/gtest.h>
#include <net/if.h>
#include <poll.h>

#include <array>

#include "userspace/agent/transport.h"

using namespace peerlb;

namespace {

Config unicast(const char* self, const std::vector<const char*>& peers, uint16_t port)
{
    Config c;
    c.node_address = parse_ip(self);
    for (const char* p : peers)
        c.peers.push_back({parse_ip(p), port});
    return c;
}

std::optional<std::vector<uint8_t>> receive_within(HeartbeatSocket& s, int ms)
{
    pollfd p{s.fd(), POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return std::nullopt;
    std::array<uint8_t, 2048> buf{};
    auto n = s.receive(buf);
    if (!n)
        return std::nullopt;
    return std::vector<uint8_t>(buf.begin(), buf.begin() + *n);
}

} // namespace

TEST(HeartbeatSocket, UnicastReachesEveryPeer)
{
    const uint16_t port = 47946;
    const unsigned lo = if_nametoindex("lo");
    HeartbeatSocket a(unicast("127.0.0.1", {"127.0.0.2", "127.0.0.3"}, port), lo);
    HeartbeatSocket b(unicast("127.0.0.2", {"127.0.0.1", "127.0.0.3"}, port), lo);
    HeartbeatSocket c(unicast("127.0.0.3", {"127.0.0.1", "127.0.0.2"}, port), lo);
    const std::vector<uint8_t> msg = {'h', 'b', 1, 2, 3};
    EXPECT_EQ(a.send(msg), 0);
    EXPECT_EQ(receive_within(b, 1000), msg);
    EXPECT_EQ(receive_within(c, 1000), msg);
    EXPECT_EQ(receive_within(a, 50), std::nullopt); // not to itself
}

TEST(HeartbeatSocket, ReportsOversizeDatagramsByTheirRealLength)
{
    const uint16_t port = 47947;
    const unsigned lo = if_nametoindex("lo");
    HeartbeatSocket a(unicast("127.0.0.1", {"127.0.0.2"}, port), lo);
    HeartbeatSocket b(unicast("127.0.0.2", {"127.0.0.1"}, port), lo);
    std::vector<uint8_t> big(3000, 0xab);
    ASSERT_EQ(a.send(big), 0);
    pollfd p{b.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 1000), 1);
    std::array<uint8_t, 1500> buf{};
    auto n = b.receive(buf);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 3000u); // more than the buffer: the caller drops it
}

TEST(HeartbeatSocket, BindFailureNamesTheAddress)
{
    try {
        HeartbeatSocket s(unicast("192.0.2.1", {"127.0.0.1"}, 47948), if_nametoindex("lo"));
        FAIL() << "bound to an address this host does not have";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("192.0.2.1:47948"), std::string::npos) << e.what();
    }
}
