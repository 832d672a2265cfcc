// The local health probe (DESIGN.md section 3): can this node's service be
// reached, and does it answer HTTP when a path is set.
#include "health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <string_view>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"
#include "io_util.h"

namespace peerlb {

using io_util::Clock;
using io_util::ms_until;
using io_util::quote;

namespace {

std::string endpoint_text(const IpAddress& address, uint16_t port)
{
    std::string ip = format_ip(address.addr, address.family);
    if (address.family == LB_FAMILY_IPV6)
        return fmt::format("[{}]:{}", ip, port);
    return fmt::format("{}:{}", ip, port);
}

} // namespace

bool probe_service(const IpAddress& address, uint16_t port, const std::string& http_path,
                   uint32_t timeout_ms, std::string& why)
{
    const std::string where = endpoint_text(address, port);
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    auto timed_out = [&](const char* stage) {
        why = fmt::format("{} {}: timeout after {} ms", stage, where, timeout_ms);
        return false;
    };
    auto failed = [&](const char* stage, int err) {
        why = fmt::format("{} {}: {}", stage, where, std::strerror(err));
        return false;
    };

    sockaddr_storage ss{};
    socklen_t sslen;
    int family;
    if (address.family == LB_FAMILY_IPV4) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        std::memcpy(&sin->sin_addr, &address.addr.v4, 4);
        sslen = sizeof(sockaddr_in);
        family = AF_INET;
    } else if (address.family == LB_FAMILY_IPV6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        std::memcpy(&sin6->sin6_addr, address.addr.v6, 16);
        sslen = sizeof(sockaddr_in6);
        family = AF_INET6;
    } else {
        why = fmt::format("probe: address family {} is not IPv4 or IPv6", address.family);
        return false;
    }

    Fd sock(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!sock)
        return failed("socket for", errno);

    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&ss), sslen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR)
            return failed("connect", errno);
        for (;;) {
            pollfd p{sock.get(), POLLOUT, 0};
            int timeout = ms_until(deadline);
            if (timeout == 0)
                return timed_out("connect");
            int r = ::poll(&p, 1, timeout);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return failed("poll connect", errno);
            if (r > 0)
                break;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return failed("getsockopt connect", errno);
        if (err != 0)
            return failed("connect", err);
    }
    if (http_path.empty()) {
        why.clear();
        return true;
    }

    std::string host = format_ip(address.addr, address.family);
    if (address.family == LB_FAMILY_IPV6)
        host = "[" + host + "]";
    if (port != 80) { // not `":" + std::to_string(port)`: GCC 12's false -Wrestrict
        host += ':';
        host += std::to_string(port);
    }
    std::string request =
        fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n", http_path, host);
    size_t off = 0;
    while (off < request.size()) {
        ssize_t n = ::send(sock.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return failed("send to", errno);
        pollfd p{sock.get(), POLLOUT, 0};
        int timeout = ms_until(deadline);
        if (timeout == 0 || ::poll(&p, 1, timeout) == 0)
            return timed_out("HTTP request to");
    }

    // The status line: "HTTP/1.x SSS reason".
    std::string reply;
    while (reply.find('\n') == std::string::npos && reply.size() < 1024) {
        char buf[512];
        ssize_t n = ::recv(sock.get(), buf, sizeof(buf), 0);
        if (n > 0) {
            reply.append(buf, size_t(n));
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return failed("HTTP reply from", errno);
        pollfd p{sock.get(), POLLIN, 0};
        int timeout = ms_until(deadline);
        if (timeout == 0)
            return timed_out("HTTP reply from");
        int r = ::poll(&p, 1, timeout);
        if (r < 0 && errno != EINTR)
            return failed("poll HTTP reply from", errno);
        if (r == 0)
            return timed_out("HTTP reply from");
    }
    std::string_view line(reply);
    line = line.substr(0, line.find('\n'));
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    int status = 0;
    bool ok = line.size() >= 12 && line.substr(0, 7) == "HTTP/1." && line[8] == ' ';
    if (ok) {
        for (size_t i = 9; i < 12; i++) {
            if (line[i] < '0' || line[i] > '9')
                ok = false;
            else
                status = status * 10 + (line[i] - '0');
        }
        ok = ok && (line.size() == 12 || line[12] == ' ');
    }
    if (!ok) {
        why = fmt::format("HTTP reply from {}: bad status line {}", where, quote(line));
        return false;
    }
    if (status < 200 || status > 399) {
        why = fmt::format("HTTP status {} from {}{}", status, where, http_path);
        return false;
    }
    why.clear();
    return true;
}

} // namespace peerlb
