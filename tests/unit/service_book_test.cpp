// Which peers' service addresses stay on lo (issue 15, item 10): an address
// nobody announces any more goes after the linger time, not before, and not
// while another peer still announces it.
#include <gtest/gtest.h>

#include "userspace/agent/service_book.h"

namespace {

using peerlb::IpAddress;
using peerlb::parse_ip;
using peerlb::ServiceBook;

constexpr uint64_t kSecond = 1'000'000'000ull;

std::vector<std::string> texts(const std::vector<IpAddress>& v)
{
    std::vector<std::string> out;
    for (const auto& a : v)
        out.push_back(peerlb::format_ip(a));
    return out;
}

TEST(ServiceBook, AnAddressNoLongerAnnouncedGoesAfterTheLingerTime)
{
    ServiceBook book(60 * kSecond);
    book.announce("s2", {parse_ip("10.0.0.112"), parse_ip("fd00::112")}, 0);
    EXPECT_TRUE(book.expired(100 * kSecond).empty());
    book.announce("s2", {parse_ip("10.0.0.112")}, 100 * kSecond); // fd00::112 dropped
    EXPECT_FALSE(book.announced(parse_ip("fd00::112")));
    EXPECT_TRUE(book.expired(159 * kSecond).empty());
    EXPECT_EQ(texts(book.expired(160 * kSecond)), std::vector<std::string>{"fd00::112"});
    EXPECT_TRUE(book.expired(500 * kSecond).empty()) << "reported once";
}

TEST(ServiceBook, AnnouncedAgainInTimeStays)
{
    ServiceBook book(60 * kSecond);
    book.announce("s2", {parse_ip("10.0.0.112")}, 0);
    book.announce("s2", {}, 10 * kSecond);
    book.announce("s2", {parse_ip("10.0.0.112")}, 20 * kSecond);
    EXPECT_TRUE(book.expired(1000 * kSecond).empty());
}

TEST(ServiceBook, AnotherPeerStillAnnouncingKeepsIt)
{
    ServiceBook book(60 * kSecond);
    book.announce("s2", {parse_ip("10.0.0.112")}, 0);
    book.announce("s3", {parse_ip("10.0.0.112"), parse_ip("10.0.0.113")}, 0);
    book.forget("s2", 10 * kSecond);
    EXPECT_TRUE(book.expired(1000 * kSecond).empty());
    book.forget("s3", 1000 * kSecond);
    EXPECT_EQ(texts(book.expired(1060 * kSecond)),
              (std::vector<std::string>{"10.0.0.112", "10.0.0.113"}));
    book.forget("nobody", 2000 * kSecond); // unknown: nothing happens
    EXPECT_TRUE(book.expired(3000 * kSecond).empty());
}

} // namespace
