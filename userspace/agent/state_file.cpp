#include "state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string_view>

#include <fmt/format.h>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"

namespace peerlb {
namespace {

void write_all(int fd, std::string_view data, const std::string& what)
{
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw SystemError(what, errno);
        data.remove_prefix(static_cast<size_t>(n));
    }
}

// The rename or unlink of an entry survives a crash only once its
// directory is synced.
void sync_dir(const std::string& dir)
{
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d || ::fsync(d.get()) != 0)
        throw SystemError(fmt::format("state directory {}: cannot sync it", dir), errno);
}

std::string drain_path(const std::string& state_dir)
{
    return (std::filesystem::path(state_dir) / kDrainFileName).string();
}

} // namespace

void write_state_file(const std::string& dir, const std::string& path, const std::string& text,
                      const std::string& what)
{
    const std::string tmp = path + ".tmp";
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd)
        throw SystemError(fmt::format("{} ({})", what, tmp), errno);
    try {
        write_all(fd.get(), text, what);
        if (::fsync(fd.get()) != 0)
            throw SystemError(what, errno);
        fd.reset();
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            throw SystemError(what, errno);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    sync_dir(dir);
}

bool read_drain_flag(const std::string& state_dir)
{
    struct stat st {};
    const std::string path = drain_path(state_dir);
    if (::lstat(path.c_str(), &st) == 0)
        return true;
    if (errno == ENOENT)
        return false;
    throw SystemError(fmt::format("drain flag {}: cannot read it", path), errno);
}

void write_drain_flag(const std::string& state_dir, bool draining)
{
    const std::string path = drain_path(state_dir);
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec)
        throw Error(fmt::format("state directory {}: cannot create it: {}", state_dir, ec.message()));
    if (draining) {
        write_state_file(state_dir, path, "1\n", fmt::format("drain flag {}: cannot write it", path));
        return;
    }
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT)
            return;
        throw SystemError(fmt::format("drain flag {}: cannot remove it", path), errno);
    }
    sync_dir(state_dir);
}

} // namespace peerlb
