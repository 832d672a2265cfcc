#include "sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {

SockDiag::SockDiag()
    : sock_(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)), buf_(64 * 1024 / 4)
{
    if (!sock_)
        throw SystemError("socket(NETLINK_SOCK_DIAG)", errno);
    // A kernel that never answers must not hang the agent.
    timeval tv{1, 0};
    if (::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        throw SystemError("sock_diag: setsockopt(SO_RCVTIMEO)", errno);
}

void SockDiag::established(int family, std::span<const inet_diag_bc_op> filter,
                           const std::function<void(const inet_diag_msg&)>& each)
{
    struct Request {
        nlmsghdr nlh;
        inet_diag_req_v2 req;
    };
    static_assert(sizeof(Request) == NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
    const char* fam = family == AF_INET ? "IPv4" : "IPv6";
    const uint32_t seq = ++seq_;
    const size_t bc_bytes = filter.size_bytes();
    nlattr attr{};
    attr.nla_type = INET_DIAG_REQ_BYTECODE;
    attr.nla_len = uint16_t(NLA_HDRLEN + bc_bytes);

    Request r{};
    r.nlh.nlmsg_len =
        uint32_t(sizeof(Request) + (bc_bytes ? NLA_ALIGN(attr.nla_len) : 0));
    r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    r.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    r.nlh.nlmsg_seq = seq;
    r.req.sdiag_family = uint8_t(family);
    r.req.sdiag_protocol = IPPROTO_TCP;
    r.req.idiag_states = 1u << TCP_ESTABLISHED;

    iovec iov[3] = {{&r, sizeof(r)},
                    {&attr, NLA_HDRLEN},
                    {const_cast<inet_diag_bc_op*>(filter.data()), bc_bytes}};
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof(kernel);
    msg.msg_iov = iov;
    msg.msg_iovlen = bc_bytes ? 3 : 1;
    ssize_t sent;
    do
        sent = ::sendmsg(sock_.get(), &msg, 0);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        throw SystemError(fmt::format("sock_diag {} dump: sendmsg", fam), errno);

    char* buf = reinterpret_cast<char*>(buf_.data());
    const size_t size = buf_.size() * 4;
    for (;;) {
        ssize_t n = ::recv(sock_.get(), buf, size, MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw SystemError(fmt::format("sock_diag {} dump: recv", fam), errno);
        }
        if (size_t(n) > size)
            throw Error(fmt::format("sock_diag {} dump: reply of {} bytes truncated", fam, n));
        int len = int(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_seq != seq)
                continue; // left over from a dump an earlier error cut short
            if (h->nlmsg_type == NLMSG_DONE)
                return;
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
                    throw Error(fmt::format("sock_diag {} dump: short error message", fam));
                auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
                if (err->error == 0)
                    continue; // an acknowledgement
                // No IPv6 in this kernel: no IPv6 sockets either.
                if (family == AF_INET6 && (err->error == -ENOENT || err->error == -EAFNOSUPPORT))
                    return;
                throw SystemError(fmt::format("sock_diag {} dump", fam), -err->error);
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
                continue;
            auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
            if (m->idiag_state == TCP_ESTABLISHED)
                each(*m);
        }
    }
}

// Each test either falls through to the next instruction when true or jumps
// `no` bytes when false; falling off the end accepts, landing 4 bytes past
// it rejects. For an OR, a true test lands on a JMP to the end; a false one
// skips the JMP to the next test.
std::vector<inet_diag_bc_op> local_port_filter(std::span<const uint16_t> ports)
{
    std::vector<inet_diag_bc_op> bc;
    if (ports.size() > 4000)
        return bc; // jumps would not fit in 16 bits
    for (size_t i = 0; i < ports.size(); i++) {
        bc.push_back({INET_DIAG_BC_S_EQ, 8, 12});
        bc.push_back({0, 0, ports[i]});
        if (i + 1 < ports.size()) {
            // Past this JMP: the other tests (8 bytes) and their JMPs (4
            // bytes, all but the last test's).
            size_t rest = (ports.size() - i - 1) * 12 - 4;
            bc.push_back({INET_DIAG_BC_JMP, 4, uint16_t(rest + 4)});
        }
    }
    return bc;
}

} // namespace peerlb
