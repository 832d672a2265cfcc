// Announcing a moved service address (gratuitous ARP, unsolicited NA), the
// established connections on an address (sock_diag), and adding/removing
// host addresses. Whatever changes the network runs in a forked child inside
// its own network namespace, so nothing on the host changes; the child does
// its checks without gtest and reports them through a pipe.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "userspace/agent/announce.h"
#include "userspace/agent/netconf.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/fd.h"

namespace peerlb {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

constexpr int kSkip = 77;

// ---- running in a private network namespace ------------------------------

// What went wrong in the child, one line each; empty when all passed.
struct Report {
    std::string text;
    void expect(bool ok, const std::string& what)
    {
        if (!ok)
            text += what + "\n";
    }
};

struct ChildResult {
    bool skipped = false;
    bool passed = false;
    std::string report;
};

void write_all(int fd, const std::string& text)
{
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        off += size_t(n);
    }
}

// Sets IFF_UP on an interface of the calling process's namespace.
void set_up(const char* name)
{
    Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock)
        throw SystemError("socket for SIOCSIFFLAGS", errno);
    ifreq req{};
    std::strncpy(req.ifr_name, name, IFNAMSIZ - 1);
    if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0)
        throw SystemError(fmt::format("SIOCGIFFLAGS {}", name), errno);
    req.ifr_flags = short(req.ifr_flags | IFF_UP);
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) < 0)
        throw SystemError(fmt::format("SIOCSIFFLAGS {} up", name), errno);
}

// Forks; the child enters a new network namespace, brings lo up and runs
// `body`, which returns its failures (or throws). The namespace, and all it
// holds, dies with the child.
ChildResult in_private_netns(const std::function<std::string()>& body, int timeout_ms = 20000)
{
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0)
        return {false, false, fmt::format("pipe: {}", std::strerror(errno))};
    pid_t pid = ::fork();
    if (pid < 0) {
        ::close(pipefd[0]);
        ::close(pipefd[1]);
        return {false, false, fmt::format("fork: {}", std::strerror(errno))};
    }
    if (pid == 0) {
        ::close(pipefd[0]);
        if (::unshare(CLONE_NEWNET) < 0) {
            write_all(pipefd[1], fmt::format("unshare(CLONE_NEWNET): {}", std::strerror(errno)));
            ::_exit(kSkip);
        }
        std::string failures;
        try {
            set_up("lo");
            failures = body();
        } catch (const std::exception& e) {
            failures += fmt::format("exception: {}\n", e.what());
        }
        write_all(pipefd[1], failures);
        ::_exit(failures.empty() ? 0 : 1);
    }

    ::close(pipefd[1]);
    Fd reader(pipefd[0]);
    ChildResult result;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    bool timed_out = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{reader.get(), POLLIN, 0};
        int r = ::poll(&p, 1, int(left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        char buf[4096];
        ssize_t n = ::read(reader.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        result.report.append(buf, size_t(n));
    }
    if (timed_out) {
        ::kill(pid, SIGKILL);
        result.report += fmt::format("child timed out after {} ms\n", timeout_ms);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.skipped = WIFEXITED(status) && WEXITSTATUS(status) == kSkip;
    result.passed = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!result.passed && !result.skipped && result.report.empty())
        result.report = fmt::format("child ended with status {:#x}", status);
    return result;
}

#define RUN_IN_PRIVATE_NETNS(...)                                                                   \
    do {                                                                                            \
        ChildResult child_ = in_private_netns(__VA_ARGS__);                                         \
        if (child_.skipped)                                                                         \
            GTEST_SKIP() << child_.report;                                                          \
        EXPECT_TRUE(child_.passed) << child_.report;                                                \
    } while (0)

// ---- a veth pair and a capture on its far end ------------------------------

constexpr const char* kNear = "ann0"; // announce_address sends here
constexpr const char* kFar = "ann1";  // the capture listens here

// Creates the pair in the current (private) namespace and brings it up.
void make_veth()
{
    nl_sock* sock = nl_socket_alloc();
    if (!sock)
        throw Error("nl_socket_alloc");
    int err = nl_connect(sock, NETLINK_ROUTE);
    if (!err)
        err = rtnl_link_veth_add(sock, kNear, kFar, ::getpid());
    nl_socket_free(sock);
    if (err)
        throw Error(fmt::format("create veth {}/{}: {}", kNear, kFar, nl_geterror(err)));
    set_up(kNear);
    set_up(kFar);
}

unsigned ifindex_of(const char* name)
{
    unsigned index = ::if_nametoindex(name);
    if (!index)
        throw SystemError(fmt::format("if_nametoindex {}", name), errno);
    return index;
}

// Every frame arriving on `name` (not those it sends).
Fd open_capture(const char* name)
{
    Fd sock(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (!sock)
        throw SystemError("socket(AF_PACKET)", errno);
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_ALL);
    ll.sll_ifindex = int(ifindex_of(name));
    if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) < 0)
        throw SystemError("bind capture", errno);
    timeval tv{0, 100 * 1000};
    if (::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        throw SystemError("SO_RCVTIMEO", errno);
    return sock;
}

// The first received frame that `wanted` accepts within 3 s. The link also
// carries the kernel's own traffic (IPv6 router solicitations, MLD, DAD).
std::optional<Bytes> capture(const Fd& sock, const std::function<bool(const Bytes&)>& wanted)
{
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    while (Clock::now() < deadline) {
        Bytes frame(2048);
        sockaddr_ll from{};
        socklen_t fromlen = sizeof(from);
        ssize_t n = ::recvfrom(sock.get(), frame.data(), frame.size(), 0,
                               reinterpret_cast<sockaddr*>(&from), &fromlen);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            throw SystemError("recvfrom capture", errno);
        }
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue;
        frame.resize(size_t(n));
        if (wanted(frame))
            return frame;
    }
    return std::nullopt;
}

std::string hex(const Bytes& bytes)
{
    std::string out;
    for (uint8_t b : bytes)
        out += fmt::format("{:02x}", b);
    return out;
}

Bytes slice(const Bytes& b, size_t off, size_t len)
{
    return Bytes(b.begin() + long(off), b.begin() + long(off + len));
}

Bytes mac_bytes(const Mac& mac) { return Bytes(mac.begin(), mac.end()); }

Bytes ip_bytes(const IpAddress& ip)
{
    auto* p = reinterpret_cast<const uint8_t*>(ip.family == LB_FAMILY_IPV4 ? &ip.addr.v4 : ip.addr.v6);
    return Bytes(p, p + (ip.family == LB_FAMILY_IPV4 ? 4 : 16));
}

uint16_t be16(const Bytes& b, size_t off) { return uint16_t(b[off] << 8 | b[off + 1]); }

const Mac kAnnouncedMac{0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

// ---- announce_address -------------------------------------------------------

TEST(AnnounceAddress, GratuitousArpIsTheExactBroadcastRequest)
{
    RUN_IN_PRIVATE_NETNS([] {
        Report r;
        make_veth();
        Fd cap = open_capture(kFar);
        announce_address(parse_ip("10.99.0.1"), ifindex_of(kNear), kAnnouncedMac);
        auto frame = capture(cap, [](const Bytes& f) { return f.size() >= 14 && be16(f, 12) == 0x0806; });
        if (!frame)
            return std::string("no ARP frame arrived on the other end\n");
        const Bytes expected = {
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, // source: the MAC given
            0x08, 0x06,                         // ARP
            0x00, 0x01,                         // hardware: Ethernet
            0x08, 0x00,                         // protocol: IPv4
            6, 4,                               // address lengths
            0x00, 0x01,                         // request
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, // sender MAC
            10, 99, 0, 1,                       // sender IP
            0, 0, 0, 0, 0, 0,                   // target MAC: unknown
            10, 99, 0, 1,                       // target IP = sender IP
        };
        r.expect(*frame == expected,
                 fmt::format("ARP frame\n  got      {}\n  expected {}", hex(*frame), hex(expected)));
        return r.text;
    });
}

// Checks an unsolicited NA for `target` sent from `source` out of kNear.
std::string check_na(const Bytes& f, const IpAddress& target)
{
    Report r;
    const size_t ip = 14, icmp = ip + 40;
    if (f.size() < icmp + 32)
        return fmt::format("NA frame of {} bytes is too short: {}\n", f.size(), hex(f));
    r.expect(slice(f, 0, 6) == Bytes{0x33, 0x33, 0, 0, 0, 1},
             "Ethernet destination is not 33:33:00:00:00:01: " + hex(slice(f, 0, 6)));
    r.expect(slice(f, 6, 6) == mac_bytes(interface_mac(kNear)),
             "Ethernet source is not the interface's MAC: " + hex(slice(f, 6, 6)));
    r.expect(be16(f, 12) == 0x86dd, fmt::format("ethertype {:#06x}, not IPv6", be16(f, 12)));
    r.expect(f[ip] >> 4 == 6, "IP version is not 6");
    r.expect(be16(f, ip + 4) == 32, fmt::format("payload length {}, not 32", be16(f, ip + 4)));
    r.expect(f[ip + 6] == 58, fmt::format("next header {}, not 58 (ICMPv6)", f[ip + 6]));
    r.expect(f[ip + 7] == 255, fmt::format("hop limit {}, not 255", f[ip + 7]));
    r.expect(slice(f, ip + 8, 16) == ip_bytes(target), "IPv6 source is not the address: " + hex(slice(f, ip + 8, 16)));
    r.expect(slice(f, ip + 24, 16) == ip_bytes(parse_ip("ff02::1")),
             "IPv6 destination is not ff02::1: " + hex(slice(f, ip + 24, 16)));
    r.expect(f[icmp] == 136, fmt::format("ICMPv6 type {}, not 136", f[icmp]));
    r.expect(f[icmp + 1] == 0, fmt::format("ICMPv6 code {}, not 0", f[icmp + 1]));
    r.expect(f[icmp + 4] == 0x20, fmt::format("flags {:#04x}, not O only (0x20)", f[icmp + 4]));
    r.expect(f[icmp + 5] == 0 && f[icmp + 6] == 0 && f[icmp + 7] == 0, "reserved bits are not zero");
    r.expect(slice(f, icmp + 8, 16) == ip_bytes(target), "target is not the address: " + hex(slice(f, icmp + 8, 16)));
    r.expect(f[icmp + 24] == 2, fmt::format("option type {}, not 2 (target link-layer address)", f[icmp + 24]));
    r.expect(f[icmp + 25] == 1, fmt::format("option length {}, not 1", f[icmp + 25]));
    r.expect(slice(f, icmp + 26, 6) == mac_bytes(kAnnouncedMac),
             "option MAC is not the one given: " + hex(slice(f, icmp + 26, 6)));

    // Checksum over the pseudo-header (source, destination, length, next
    // header) and the message: all of it sums to 0xffff when it is right.
    uint32_t sum = 32 + 58;
    for (size_t i = ip + 8; i < ip + 40; i += 2)
        sum += be16(f, i);
    for (size_t i = icmp; i < icmp + 32; i += 2)
        sum += be16(f, i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    r.expect(sum == 0xffff, fmt::format("ICMPv6 checksum {:#06x} is wrong", be16(f, icmp + 2)));
    return r.text;
}

bool is_na(const Bytes& f)
{
    return f.size() >= 14 + 40 + 1 && be16(f, 12) == 0x86dd && f[14 + 6] == 58 && f[14 + 40] == 136;
}

TEST(AnnounceAddress, UnsolicitedNeighbourAdvertisement)
{
    RUN_IN_PRIVATE_NETNS([] {
        make_veth();
        const IpAddress address = parse_ip("fd99::1");
        AddressManager addresses;
        if (!addresses.add(address, ifindex_of(kNear))) // with nodad
            return std::string("fd99::1 was already on the veth\n");
        Fd cap = open_capture(kFar);
        announce_address(address, ifindex_of(kNear), kAnnouncedMac);
        auto frame = capture(cap, is_na);
        if (!frame)
            return std::string("no neighbour advertisement arrived on the other end\n");
        return check_na(*frame, address);
    });
}

// An address not configured here yet (or still tentative) cannot be bound
// without IPV6_FREEBIND; the advertisement must go out all the same.
TEST(AnnounceAddress, UnsolicitedNaForAnAddressNotConfigured)
{
    RUN_IN_PRIVATE_NETNS([] {
        make_veth();
        const IpAddress address = parse_ip("fd99::2");
        Fd cap = open_capture(kFar);
        announce_address(address, ifindex_of(kNear), kAnnouncedMac);
        auto frame = capture(cap, is_na);
        if (!frame)
            return std::string("no neighbour advertisement arrived on the other end\n");
        return check_na(*frame, address);
    });
}

TEST(AnnounceAddress, UnknownInterfaceThrowsSystemError)
{
    const unsigned missing = 0x7ffffff0;
    for (const char* text : {"10.99.0.1", "fd99::1"}) {
        try {
            announce_address(parse_ip(text), missing, kAnnouncedMac);
            ADD_FAILURE() << "announce_address(" << text << ") on a missing interface did not throw";
        } catch (const SystemError& e) {
            EXPECT_NE(std::string(e.what()).find(std::to_string(missing)), std::string::npos) << e.what();
            if (e.code() != EPERM) { // not root: socket() itself fails
                EXPECT_EQ(e.code(), ENODEV) << e.what();
            }
        }
    }
}

// ---- established_on ----------------------------------------------------------

struct Endpoint {
    Fd sock;
    uint16_t port = 0;
};

sockaddr_storage make_sockaddr(const char* text, uint16_t port, socklen_t& len)
{
    sockaddr_storage ss{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        len = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
    } else {
        throw Error(fmt::format("bad address {}", text));
    }
    return ss;
}

uint16_t local_port(int sock)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(sock, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
        throw SystemError("getsockname", errno);
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// A socket of `family` bound to `address` with an ephemeral port.
Endpoint bound(int family, const char* address)
{
    Endpoint e{Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0))};
    if (!e.sock)
        throw SystemError("socket", errno);
    socklen_t len;
    sockaddr_storage ss = make_sockaddr(address, 0, len);
    if (::bind(e.sock.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0)
        throw SystemError(fmt::format("bind {}", address), errno);
    e.port = local_port(e.sock.get());
    return e;
}

Endpoint listener(int family, const char* address)
{
    Endpoint e = bound(family, address);
    if (::listen(e.sock.get(), 16) < 0)
        throw SystemError("listen", errno);
    return e;
}

// Connects a client bound to `from` to `to`:`port`, and accepts it on `l`.
// Returns the client (its port is the client port) and the accepted socket.
std::pair<Endpoint, Fd> connect_pair(int family, const char* from, const char* to, const Endpoint& l)
{
    Endpoint client = bound(family, from);
    socklen_t len;
    sockaddr_storage ss = make_sockaddr(to, l.port, len);
    if (::connect(client.sock.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0)
        throw SystemError(fmt::format("connect to {}", to), errno);
    Fd accepted(::accept4(l.sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!accepted)
        throw SystemError("accept", errno);
    return {std::move(client), std::move(accepted)};
}

using Seen = std::tuple<std::string, uint16_t, uint16_t>; // client, client port, local port

// The connections reported for `local` that involve one of `ports` (other
// processes on this host may hold connections on loopback too).
std::vector<Seen> reported(const char* local, const std::vector<uint16_t>& ports)
{
    std::vector<Seen> out;
    for (const LocalConnection& c : established_on(parse_ip(local))) {
        auto ours = [&](uint16_t p) { return std::find(ports.begin(), ports.end(), p) != ports.end(); };
        if (ours(c.client_port) || ours(c.local_port))
            out.emplace_back(format_ip(c.client), c.client_port, c.local_port);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Clients come from 127.0.0.3, so that only the server side of each
// connection has a local address of .1 or .2.
TEST(EstablishedOn, Ipv4ReportsTheServerSideOfConnectionsOnThatAddressOnly)
{
    Endpoint l1 = listener(AF_INET, "127.0.0.1");
    Endpoint l2 = listener(AF_INET, "127.0.0.2");
    std::vector<std::pair<Endpoint, Fd>> conns;
    for (int i = 0; i < 3; i++)
        conns.push_back(connect_pair(AF_INET, "127.0.0.3", "127.0.0.1", l1));
    for (int i = 0; i < 2; i++)
        conns.push_back(connect_pair(AF_INET, "127.0.0.3", "127.0.0.2", l2));

    std::vector<uint16_t> ports = {l1.port, l2.port};
    for (auto& c : conns)
        ports.push_back(c.first.port);
    std::vector<Seen> expected1, expected2;
    for (int i = 0; i < 3; i++)
        expected1.emplace_back("127.0.0.3", conns[size_t(i)].first.port, l1.port);
    for (int i = 3; i < 5; i++)
        expected2.emplace_back("127.0.0.3", conns[size_t(i)].first.port, l2.port);
    std::sort(expected1.begin(), expected1.end());
    std::sort(expected2.begin(), expected2.end());

    EXPECT_EQ(reported("127.0.0.1", ports), expected1);
    EXPECT_EQ(reported("127.0.0.2", ports), expected2);
    EXPECT_EQ(reported("127.0.0.3", ports).size(), 5u); // the client sides
    EXPECT_TRUE(reported("::1", ports).empty());

    // Closing a connection (both ends) takes it off the list.
    const uint16_t gone = conns[0].first.port;
    conns.erase(conns.begin());
    expected1.erase(std::remove_if(expected1.begin(), expected1.end(),
                                   [&](const Seen& s) { return std::get<1>(s) == gone; }),
                    expected1.end());
    EXPECT_EQ(reported("127.0.0.1", ports), expected1);
}

TEST(EstablishedOn, Ipv4ConnectionsOnADualStackSocketAreIncluded)
{
    // An AF_INET6 listener on ::ffff:127.0.0.1 takes IPv4 connections; the
    // accepted sockets are AF_INET6 with mapped addresses.
    Endpoint l;
    try {
        l = listener(AF_INET6, "::ffff:127.0.0.1");
    } catch (const SystemError& e) {
        GTEST_SKIP() << "no IPv6 sockets: " << e.what();
    }
    auto c1 = connect_pair(AF_INET, "127.0.0.3", "127.0.0.1", l);
    auto c2 = connect_pair(AF_INET, "127.0.0.3", "127.0.0.1", l);
    std::vector<Seen> expected = {{"127.0.0.3", c1.first.port, l.port},
                                  {"127.0.0.3", c2.first.port, l.port}};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(reported("127.0.0.1", {l.port, c1.first.port, c2.first.port}), expected);
}

TEST(EstablishedOn, Ipv6Loopback)
{
    Endpoint l;
    try {
        l = listener(AF_INET6, "::1");
    } catch (const SystemError& e) {
        GTEST_SKIP() << "::1 unavailable: " << e.what();
    }
    // ::1 is the only IPv6 loopback address: the clients' sides are local
    // to ::1 as well.
    auto c1 = connect_pair(AF_INET6, "::1", "::1", l);
    auto c2 = connect_pair(AF_INET6, "::1", "::1", l);
    // An IPv4 connection on the same port numbers must not show.
    Endpoint l4 = listener(AF_INET, "127.0.0.1");
    auto c4 = connect_pair(AF_INET, "127.0.0.3", "127.0.0.1", l4);

    std::vector<Seen> expected = {
        {"::1", c1.first.port, l.port}, {"::1", c2.first.port, l.port}, // server sides
        {"::1", l.port, c1.first.port}, {"::1", l.port, c2.first.port}, // client sides
    };
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(reported("::1", {l.port, c1.first.port, c2.first.port, l4.port, c4.first.port}), expected);

    // Closing one connection (both ends) drops its two sockets.
    c2.first.sock.reset();
    c2.second.reset();
    expected.erase(std::remove_if(expected.begin(), expected.end(),
                                  [&](const Seen& s) {
                                      return std::get<1>(s) == c2.first.port || std::get<2>(s) == c2.first.port;
                                  }),
                   expected.end());
    EXPECT_EQ(reported("::1", {l.port, c1.first.port, c2.first.port}), expected);
}

// ---- AddressManager ----------------------------------------------------------

// Whether the address is configured here: binding to it works.
bool bindable(const IpAddress& ip)
{
    int family = ip.family == LB_FAMILY_IPV4 ? AF_INET : AF_INET6;
    Fd sock(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    socklen_t len;
    sockaddr_storage ss = make_sockaddr(format_ip(ip).c_str(), 0, len);
    return sock && ::bind(sock.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0;
}

std::string round_trip(const char* text)
{
    Report r;
    const IpAddress ip = parse_ip(text);
    const unsigned lo = ifindex_of("lo");
    AddressManager m;
    r.expect(!bindable(ip), fmt::format("{} is usable before add", text));
    r.expect(m.add(ip, lo), fmt::format("first add({}) returned false", text));
    r.expect(bindable(ip), fmt::format("{} is not usable after add", text));
    r.expect(!m.add(ip, lo), fmt::format("second add({}) returned true", text));
    r.expect(m.remove(ip, lo), fmt::format("first remove({}) returned false", text));
    r.expect(!bindable(ip), fmt::format("{} is still usable after remove", text));
    r.expect(!m.remove(ip, lo), fmt::format("second remove({}) returned true", text));
    r.expect(m.add(ip, lo), fmt::format("add({}) after remove returned false", text));
    return r.text;
}

TEST(AddressManager, AddRemoveRoundTripIpv4)
{
    RUN_IN_PRIVATE_NETNS([] { return round_trip("10.99.0.1"); });
}

TEST(AddressManager, AddRemoveRoundTripIpv6)
{
    RUN_IN_PRIVATE_NETNS([] { return round_trip("fd99::1"); });
}

TEST(AddressManager, RemoveFromAMissingInterfaceThrows)
{
    RUN_IN_PRIVATE_NETNS([] {
        AddressManager m;
        for (const char* text : {"10.99.0.1", "fd99::1"}) {
            try {
                m.remove(parse_ip(text), 0x7ffffff0);
                return fmt::format("remove({}) from a missing interface did not throw\n", text);
            } catch (const Error&) {
            }
        }
        return std::string();
    });
}

// Addresses a peer may not make this node hold (a key holder announcing the
// loopback, a multicast group or a node's own address as its service).
TEST(UnfitServiceAddress, RefusesWhatNoServiceMayBe)
{
    const std::vector<IpAddress> nodes = {parse_ip("10.0.0.11"), parse_ip("fd00::12")};
    for (const char* ok : {"10.0.0.111", "192.0.2.10", "2001:db8::10", "fd00::111"})
        EXPECT_EQ(unfit_service_address(parse_ip(ok), nodes), "") << ok;
    const std::pair<const char*, const char*> refused[] = {
        {"10.0.0.11", "it is a node's own address"},
        {"fd00::12", "it is a node's own address"},
        {"127.0.0.1", "it is a loopback address"},
        {"127.9.9.9", "it is a loopback address"},
        {"::1", "it is a loopback address"},
        {"0.0.0.0", "it is unspecified"},
        {"::", "it is unspecified"},
        {"239.7.7.7", "it is a multicast address"},
        {"ff02::1", "it is a multicast address"},
        {"169.254.1.1", "it is link-local"},
        {"fe80::1", "it is link-local"},
        {"255.255.255.255", "it is the broadcast address"},
    };
    for (const auto& [address, why] : refused)
        EXPECT_EQ(unfit_service_address(parse_ip(address), nodes), why) << address;
}

TEST(UnfitServiceAddress, RefusesThisNodesGateways)
{
    const std::vector<IpAddress> gateways = {parse_ip("10.0.0.1"), parse_ip("fd00::1")};
    for (const char* gw : {"10.0.0.1", "fd00::1"})
        EXPECT_EQ(unfit_service_address(parse_ip(gw), {}, gateways), "it is a gateway of this node");
    EXPECT_EQ(unfit_service_address(parse_ip("10.0.0.2"), {}, gateways), "");
    // The machine's own routes read: whatever they hold is a gateway.
    for (const IpAddress& g : peerlb::gateways())
        EXPECT_EQ(unfit_service_address(g, {}, peerlb::gateways()), "it is a gateway of this node");
}

} // namespace
} // namespace peerlb

