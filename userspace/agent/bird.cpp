#include "bird.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "../dataplane/fd.h"
#include "io_util.h"

namespace peerlb {
namespace {

bool is_code(std::string_view line)
{
    if (line.size() < 5)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (line[i] < '0' || line[i] > '9')
            return false;
    return line[4] == '-' || line[4] == ' ';
}

// Reads until `received` holds a whole reply or the deadline passes.
std::optional<BirdReply> read_reply(int fd, std::string& received, io_util::Clock::time_point deadline,
                                    std::string& problem)
{
    char buf[4096];
    for (;;) {
        if (auto reply = parse_bird_reply(received))
            return reply;
        pollfd p{fd, POLLIN, 0};
        const int ready = poll(&p, 1, io_util::ms_until(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            problem = ready == 0 ? "no answer in time" : fmt::format("poll: {}", strerror(errno));
            return std::nullopt;
        }
        const ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            problem = n == 0 ? "BIRD closed the connection" : fmt::format("read: {}", strerror(errno));
            return std::nullopt;
        }
        received.append(buf, size_t(n));
        if (received.size() > 65536) {
            problem = "reply too long";
            return std::nullopt;
        }
    }
}

} // namespace

std::optional<BirdReply> parse_bird_reply(std::string_view received)
{
    BirdReply reply;
    bool told = false;
    size_t start = 0;
    for (size_t end; (end = received.find('\n', start)) != std::string_view::npos; start = end + 1) {
        const std::string_view line = received.substr(start, end - start);
        if (!is_code(line))
            continue; // " text": a continuation of the line before
        const int code = std::stoi(std::string(line.substr(0, 4)));
        // 0000 only closes a reply; 1xxx/2xxx are table rows and headers.
        if (!told && code != 0 && (code < 1000 || code >= 8000)) {
            reply.code = code;
            reply.text = std::string(line.substr(5));
            reply.error = code >= 8000;
            told = true;
        }
        if (line[4] == ' ')
            return reply;
    }
    return std::nullopt;
}

BirdControl::BirdControl(std::string socket_path, std::string protocol, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), protocol_(std::move(protocol)), timeout_(timeout)
{
}

BirdControl::Result BirdControl::set_announced(bool announce) const
{
    const auto deadline = io_util::Clock::now() + timeout_;
    Result result;
    Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
        result.message = fmt::format("socket: {}", strerror(errno));
        return result;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof(addr.sun_path)) {
        result.message = fmt::format("{}: path too long", socket_path_);
        return result;
    }
    std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
        result.message = fmt::format("connect to BIRD at {}: {}", socket_path_, strerror(errno));
        return result;
    }
    std::string received, problem;
    auto greeting = read_reply(fd.get(), received, deadline, problem);
    if (!greeting || greeting->code != 1) {
        result.message = greeting ? fmt::format("unexpected greeting {} {}", greeting->code, greeting->text)
                                  : problem;
        return result;
    }
    const std::string command = fmt::format("{} {}\n", announce ? "enable" : "disable", protocol_);
    // A unix stream socket takes a few bytes at once unless BIRD is stuck.
    if (send(fd.get(), command.data(), command.size(), MSG_NOSIGNAL) != ssize_t(command.size())) {
        result.message = fmt::format("send: {}", strerror(errno));
        return result;
    }
    received.clear();
    auto reply = read_reply(fd.get(), received, deadline, problem);
    if (!reply) {
        result.message = problem;
        return result;
    }
    result.message = fmt::format("{:04d} {}", reply->code, reply->text);
    const int changed = announce ? 11 : 9, unchanged = announce ? 10 : 8;
    if (reply->code == changed)
        result.outcome = Outcome::changed;
    else if (reply->code == unchanged)
        result.outcome = Outcome::unchanged;
    else if (reply->error)
        result.message = fmt::format("BIRD refused '{}' (is protocol {} in its configuration?): {}",
                                     command.substr(0, command.size() - 1), protocol_, result.message);
    return result;
}

BirdAnnouncer::BirdAnnouncer(BirdControl control, std::chrono::milliseconds reassert,
                             std::chrono::milliseconds retry)
    : control_(std::move(control)), reassert_ms_(uint64_t(reassert.count())),
      retry_ms_(uint64_t(retry.count()))
{
}

std::optional<BirdControl::Result> BirdAnnouncer::update(bool announce, uint64_t now_ms)
{
    const bool changed = wanted_ != announce;
    const uint64_t wait = confirmed_ == announce ? reassert_ms_ : retry_ms_;
    if (!changed && now_ms - last_try_ms_ < wait)
        return std::nullopt;
    wanted_ = announce;
    last_try_ms_ = now_ms;
    BirdControl::Result r = control_.set_announced(announce);
    if (r.outcome == BirdControl::Outcome::failed)
        confirmed_.reset();
    else
        confirmed_ = announce;
    return r;
}

namespace {
uint64_t steady_ms()
{
    return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count());
}
} // namespace

BirdWorker::BirdWorker(BirdAnnouncer announcer)
    : announcer_(std::move(announcer)), thread_([this] { loop(); })
{
}

BirdWorker::~BirdWorker()
{
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

void BirdWorker::want(bool announce)
{
    {
        std::lock_guard lock(mu_);
        if (want_ == announce)
            return;
        want_ = announce;
    }
    cv_.notify_all();
}

std::optional<bool> BirdWorker::announced() const
{
    std::lock_guard lock(mu_);
    return confirmed_;
}

std::string BirdWorker::last_error() const
{
    std::lock_guard lock(mu_);
    return error_;
}

void BirdWorker::record(const BirdControl::Result& r, bool announce)
{
    const auto& c = announcer_.control();
    std::lock_guard lock(mu_);
    if (r.outcome == BirdControl::Outcome::failed) {
        // Once per distinct failure: BIRD down is retried every second.
        if (r.message != error_)
            spdlog::warn("BIRD ({}): could not {} the shared addresses: {}", c.socket_path(),
                         announce ? "announce" : "withdraw", r.message);
        error_ = r.message;
        confirmed_.reset();
        return;
    }
    if (r.outcome == BirdControl::Outcome::changed || !error_.empty() || confirmed_ != announce)
        spdlog::info("BIRD: shared addresses {} (protocol {} {})", announce ? "announced" : "withdrawn",
                     c.protocol(), announce ? "enabled" : "disabled");
    error_.clear();
    confirmed_ = announce;
}

void BirdWorker::loop()
{
    std::unique_lock lock(mu_);
    while (!stop_) {
        const bool announce = want_;
        lock.unlock();
        if (auto r = announcer_.update(announce, steady_ms()))
            record(*r, announce);
        lock.lock();
        // Woken by a change; otherwise the announcer's own pace (reassert, retry).
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_ || want_ != announce; });
    }
}

BirdControl::Result BirdWorker::withdraw_and_stop()
{
    {
        std::lock_guard lock(mu_);
        stop_ = true;
        want_ = false;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
    BirdControl::Result r = announcer_.control().set_announced(false);
    record(r, false);
    return r;
}

} // namespace peerlb
