// The pin relay's translations: a data plane pin event into the
// announcement peers receive, and a peer's announcement into the pin here.
#include "userspace/agent/pin_relay.h"

#include <gtest/gtest.h>

namespace peerlb {
namespace {

lb_pin_event event(uint32_t op)
{
    lb_pin_event ev{};
    const IpAddress client = parse_ip("2001:db8::7");
    ev.key.client = client.addr;
    ev.key.family = client.family;
    ev.node = 3;
    ev.rule = 2;
    ev.op = op;
    ev.timeout_s = 30;
    return ev;
}

TEST(PinRelay, EventBecomesAnnouncementNamingTheServingNode)
{
    const PinAnnouncement a = pin_announcement(event(LB_PIN_SET), "node-b");
    EXPECT_TRUE(a.pinned);
    EXPECT_EQ(format_ip(a.client), "2001:db8::7");
    EXPECT_EQ(a.serving, "node-b");
    EXPECT_EQ(a.rule, 2);
    EXPECT_EQ(a.ttl_ms, 30'000u);
    EXPECT_FALSE(pin_announcement(event(LB_PIN_ENDED), "node-b").pinned);
}

TEST(PinRelay, AnnouncementBecomesThePinOfTheSameClient)
{
    const PinAnnouncement a = pin_announcement(event(LB_PIN_SET), "node-b");
    const lb_pin_key key = pin_key_of(a);
    EXPECT_EQ(key.family, LB_FAMILY_IPV6);
    EXPECT_EQ(format_ip(IpAddress{key.client, key.family}), "2001:db8::7");
    const lb_pin pin = pin_of(a, 5, 1'000'000'000);
    EXPECT_EQ(pin.node, 5u);
    EXPECT_EQ(pin.rule, 2u);
    EXPECT_EQ(pin.expires_ns, 1'000'000'000ull + 30'000ull * 1'000'000);
}

} // namespace
} // namespace peerlb
