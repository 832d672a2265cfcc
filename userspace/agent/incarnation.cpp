// The persisted incarnation counter (see incarnation.h).
#include "incarnation.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"
#include "state_file.h"

namespace peerlb {

namespace {

// Longest decimal uint64_t.
constexpr size_t kMaxDigits = 20;

// The file's bytes; `found` false when it does not exist.
std::string read_counter_file(const std::string& path, bool& found)
{
    found = false;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        if (errno == ENOENT)
            return {};
        throw SystemError(fmt::format("incarnation file {}: cannot read it", path), errno);
    }
    found = true;
    std::string data;
    char buf[64];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw SystemError(fmt::format("incarnation file {}: cannot read it", path), errno);
        if (n == 0)
            return data;
        data.append(buf, static_cast<size_t>(n));
        if (data.size() > kMaxDigits + 1) // no valid file is this long: stop reading
            return data;
    }
}

// What a corrupt file holds, shown safely in one line.
std::string shown(std::string_view text)
{
    std::string out;
    for (char c : text.substr(0, kMaxDigits + 1))
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return text.size() > kMaxDigits + 1 ? out + "..." : out;
}

// Digits only, one optional trailing newline; below UINT64_MAX so that
// the next one fits.
uint64_t parse_counter(const std::string& path, std::string_view text)
{
    std::string_view digits = text;
    if (digits.ends_with('\n'))
        digits.remove_suffix(1);
    uint64_t value = 0;
    bool ok = !digits.empty() && digits.size() <= kMaxDigits;
    for (char c : digits) {
        if (!ok)
            break;
        ok = c >= '0' && c <= '9' && !__builtin_mul_overflow(value, 10, &value) &&
             !__builtin_add_overflow(value, uint64_t(c - '0'), &value);
    }
    if (!ok)
        throw Error(fmt::format("incarnation file {}: \"{}\" is not a decimal number (fix it, or "
                                "remove it to start again from 1)",
                                path, shown(digits)));
    if (value == UINT64_MAX)
        throw Error(fmt::format("incarnation file {}: {} has no successor", path, value));
    return value;
}

} // namespace

std::string incarnation_path(const std::string& state_dir)
{
    return (std::filesystem::path(state_dir) / kIncarnationFileName).string();
}

uint64_t next_incarnation(const std::string& state_dir)
{
    if (state_dir.empty())
        throw Error("state directory: empty path");
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec)
        throw Error(fmt::format("state directory {}: cannot create it: {}", state_dir, ec.message()));
    if (!std::filesystem::is_directory(state_dir, ec))
        throw Error(fmt::format("state directory {}: not a directory", state_dir));

    const std::string path = incarnation_path(state_dir);
    bool found = false;
    const std::string text = read_counter_file(path, found);
    const uint64_t next = (found ? parse_counter(path, text) : 0) + 1;
    write_state_file(state_dir, path, fmt::format("{}\n", next),
                     fmt::format("incarnation file {}: cannot write it", path));
    return next;
}

} // namespace peerlb
