#include "control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

constexpr size_t kMaxMessage = 64 * 1024;
// An answer may be larger than a request: `peerlb buckets` lists the owner
// of every bucket (up to LB_MAX_BUCKETS node ids).
constexpr size_t kMaxAnswer = 16 * 1024 * 1024;
// A client of the agent gets this long in all, from its connection to its
// answer written, however its bytes trickle: it holds one of the server's
// places meanwhile (never the loop).
constexpr auto kClientDeadline = std::chrono::milliseconds(1000);
// The CLI waits this long in all for the agent's answer.
constexpr int kRequestDeadlineMs = 2000;

using Clock = std::chrono::steady_clock;

sockaddr_un unix_address(const std::string& path)
{
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof(a.sun_path))
        throw Error(fmt::format("control socket path too long: {}", path));
    path.copy(a.sun_path, sizeof(a.sun_path) - 1);
    return a;
}

// Waits until fd is ready for `events` or the deadline passes; false then.
bool wait_ready(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return false;
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, int(left.count()));
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

// Reads up to a newline or EOF before the deadline (fd non-blocking);
// false on timeout, error or more than `limit` bytes.
bool read_line(int fd, std::string& out, Clock::time_point deadline, size_t limit)
{
    char buf[65536];
    while (out.size() < limit) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_ready(fd, POLLIN, deadline))
                return false;
            continue;
        }
        if (n < 0)
            return false;
        if (n == 0)
            return !out.empty();
        out.append(buf, static_cast<size_t>(n));
        if (auto nl = out.find('\n'); nl != std::string::npos) {
            out.resize(nl);
            return true;
        }
    }
    return false;
}

bool write_all(int fd, const std::string& text, Clock::time_point deadline)
{
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_ready(fd, POLLOUT, deadline))
                return false;
            continue;
        }
        if (n <= 0)
            return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

// An unconnected Fd when nothing answers; `error` (if given) gets connect's errno.
Fd connect_to(const std::string& path, int* error = nullptr)
{
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        throw SystemError("control socket", errno);
    sockaddr_un a = unix_address(path);
    // Blocking connect (a unix socket answers at once or refuses), then
    // non-blocking I/O against the request's deadline.
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a))) {
        if (error)
            *error = errno;
        return Fd();
    }
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
    return fd;
}

} // namespace

std::string control_socket_path(const std::string& run_dir)
{
    return run_dir + "/agent.sock";
}

ControlServer::ControlServer(const std::string& run_dir) : path_(control_socket_path(run_dir))
{
    std::error_code ec;
    if (std::filesystem::create_directories(run_dir, ec))
        created_dir_ = run_dir;
    if (ec)
        throw Error(fmt::format("create run directory {}: {}", run_dir, ec.message()));
    if (std::filesystem::exists(path_)) {
        if (connect_to(path_))
            throw Error(fmt::format("an agent is already running here (it answers on {})", path_));
        std::filesystem::remove(path_, ec); // left by an agent that died
    }
    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listen_)
        throw SystemError("control socket", errno);
    sockaddr_un a = unix_address(path_);
    // Only root talks to the agent: it changes thresholds and reads state.
    mode_t old = ::umask(0177);
    int err = ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) ? errno : 0;
    ::umask(old);
    if (err)
        throw SystemError(fmt::format("bind control socket {}", path_), err);
    if (::listen(listen_.get(), 16))
        throw SystemError(fmt::format("listen on {}", path_), errno);
}

ControlServer::~ControlServer()
{
    std::error_code ec;
    std::filesystem::remove(path_, ec);
    // Also when the agent failed to start after this: nothing of it is left.
    // remove() takes only an empty directory.
    if (!created_dir_.empty())
        std::filesystem::remove(created_dir_, ec);
}

namespace {

// The answer line to one request line; a bad request gets {"error": ...}.
std::string answer(const ControlServer::Handler& handler, const std::string& line)
{
    nlohmann::json reply;
    try {
        reply = handler(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
        reply = {{"error", fmt::format("bad request: {}", e.what())}};
    } catch (const std::exception& e) {
        reply = {{"error", e.what()}};
    }
    // Replaced, not thrown: a stray byte in a string must not end the agent.
    return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string error_line(const char* what)
{
    return nlohmann::json({{"error", what}}).dump() + "\n";
}

} // namespace

void ControlServer::add_poll_fds(std::vector<pollfd>& fds) const
{
    if (clients_.size() < kMaxClients)
        fds.push_back({listen_.get(), POLLIN, 0});
    for (const auto& c : clients_)
        fds.push_back({c.fd.get(), short(c.out.empty() ? POLLIN : POLLOUT), 0});
}

std::optional<ControlServer::Clock::time_point> ControlServer::next_deadline() const
{
    std::optional<Clock::time_point> next;
    for (const auto& c : clients_)
        if (!next || c.deadline < *next)
            next = c.deadline;
    return next;
}

void ControlServer::serve(const Handler& handler)
{
    while (clients_.size() < kMaxClients) {
        Fd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd)
            break; // nobody waiting (or a failed accept, tried again at the next wake-up)
        clients_.push_back(Client{std::move(fd), Clock::now() + kClientDeadline, {}, {}, 0});
    }
    std::erase_if(clients_, [&](Client& c) { return !step(c, handler); });
}

bool ControlServer::step(Client& c, const Handler& handler)
{
    const auto now = Clock::now();
    if (c.out.empty()) { // reading the request
        bool eof = false;
        char buf[4096];
        while (c.in.find('\n') == std::string::npos && c.in.size() <= kMaxMessage) {
            const ssize_t n = ::read(c.fd.get(), buf, sizeof(buf));
            if (n > 0) {
                c.in.append(buf, size_t(n));
                continue;
            }
            if (n == 0) {
                eof = true;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return false; // the client is gone
        }
        if (const size_t nl = c.in.find('\n'); nl != std::string::npos && nl <= kMaxMessage) {
            c.in.resize(nl);
            c.out = answer(handler, c.in);
        } else if (c.in.size() > kMaxMessage) {
            c.out = error_line("request too large");
        } else if (eof && !c.in.empty()) {
            c.out = answer(handler, c.in); // the last line needs no newline
        } else if (eof) {
            return false; // left without a word
        } else if (now >= c.deadline) {
            c.out = error_line("no complete request");
        } else {
            return true; // more to come
        }
    }
    while (c.written < c.out.size()) { // writing the answer
        const ssize_t n =
            ::send(c.fd.get(), c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
        if (n > 0) {
            c.written += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return now < c.deadline; // the rest when the socket takes it, if in time
        return false;
    }
    return false; // answered
}

nlohmann::json control_request(const std::string& run_dir, const nlohmann::json& request)
{
    const std::string path = control_socket_path(run_dir);
    int err = 0;
    Fd fd = connect_to(path, &err);
    // The socket is root's (mode 0600): not being allowed is not "not running".
    if (!fd && (err == EACCES || err == EPERM))
        throw Error(fmt::format("permission denied on {}: only root talks to the agent", path));
    if (!fd)
        throw Error(fmt::format("the agent is not running (nothing answers on {})", path));
    const auto deadline = Clock::now() + std::chrono::milliseconds(kRequestDeadlineMs);
    std::string line;
    if (!write_all(fd.get(), request.dump() + "\n", deadline) ||
        !read_line(fd.get(), line, deadline, kMaxAnswer))
        throw Error(fmt::format("no answer from the agent on {}", path));
    nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
    if (reply.is_discarded())
        throw Error(fmt::format("unreadable answer from the agent on {}", path));
    if (reply.is_object() && reply.contains("error"))
        throw Error(reply["error"].get<std::string>());
    return reply;
}

} // namespace peerlb
