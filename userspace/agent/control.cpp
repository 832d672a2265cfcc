#include "control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include "../dataplane/error.h"

namespace peerlb {
namespace {

constexpr size_t kMaxMessage = 64 * 1024;
constexpr int kTimeoutMs = 2000;

sockaddr_un unix_address(const std::string& path)
{
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof(a.sun_path))
        throw Error(fmt::format("control socket path too long: {}", path));
    path.copy(a.sun_path, sizeof(a.sun_path) - 1);
    return a;
}

void set_timeouts(int fd)
{
    timeval tv{kTimeoutMs / 1000, (kTimeoutMs % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Reads up to a newline or EOF; false on timeout, error or oversize.
bool read_line(int fd, std::string& out)
{
    char buf[4096];
    while (out.size() < kMaxMessage) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
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

bool write_all(int fd, const std::string& text)
{
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
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
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a))) {
        if (error)
            *error = errno;
        return Fd();
    }
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

void ControlServer::serve_one(const Handler& handler)
{
    Fd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client)
        return;
    set_timeouts(client.get());
    std::string line;
    nlohmann::json reply;
    if (!read_line(client.get(), line)) {
        reply = {{"error", "no complete request"}};
    } else {
        try {
            reply = handler(nlohmann::json::parse(line));
        } catch (const nlohmann::json::exception& e) {
            reply = {{"error", fmt::format("bad request: {}", e.what())}};
        } catch (const std::exception& e) {
            reply = {{"error", e.what()}};
        }
    }
    // Replaced, not thrown: a stray byte in a string must not end the agent.
    write_all(client.get(), reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
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
    set_timeouts(fd.get());
    std::string line;
    if (!write_all(fd.get(), request.dump() + "\n") || !read_line(fd.get(), line))
        throw Error(fmt::format("no answer from the agent on {}", path));
    nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
    if (reply.is_discarded())
        throw Error(fmt::format("unreadable answer from the agent on {}", path));
    if (reply.is_object() && reply.contains("error"))
        throw Error(reply["error"].get<std::string>());
    return reply;
}

} // namespace peerlb
