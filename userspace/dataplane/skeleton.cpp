#include "skeleton.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>
#include <algorithm>

#include <fmt/format.h>

#include "error.h"
#include "fd.h"

namespace peerlb {
namespace {

// Room for the verifier's statistics, or for the tail of a failed load's
// log (the kernel keeps the last bytes when it does not fit).
constexpr size_t kLogSize = 1u << 20;

// libbpf prints the whole verifier log of a failed load (tens of thousands of
// lines); while loading, that one message is dropped, the rest goes on to
// the print function in force.
libbpf_print_fn_t g_outer_print = nullptr;

int drop_program_logs(libbpf_print_level level, const char* format, va_list args)
{
    if (std::strstr(format, "-- BEGIN PROG LOAD LOG --"))
        return 0;
    return g_outer_print ? g_outer_print(level, format, args) : 0;
}

int drop_all(libbpf_print_level, const char*, va_list) { return 0; }

// What to keep from libbpf's messages during a load: all but the program
// logs, or nothing (a load whose failure
// has been reported already).
enum class Quiet { program_logs, everything };

class QuietProgramLogs {
public:
    explicit QuietProgramLogs(Quiet what = Quiet::program_logs)
    {
        g_outer_print = libbpf_set_print(what == Quiet::everything ? drop_all : drop_program_logs);
    }
    ~QuietProgramLogs() { libbpf_set_print(g_outer_print); }
    QuietProgramLogs(const QuietProgramLogs&) = delete;
    QuietProgramLogs& operator=(const QuietProgramLogs&) = delete;
};

// The verifier's reason and its summary ("processed N insns ..."): the last
// line before its statistics, and the statistics' last line.
std::string verifier_summary(std::string_view log)
{
    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos < log.size();) {
        size_t nl = std::min(log.find('\n', pos), log.size());
        if (nl > pos)
            lines.push_back(log.substr(pos, nl - pos));
        pos = nl + 1;
    }
    std::string_view reason, summary;
    for (auto line : lines) {
        if (line.starts_with("processed "))
            summary = line;
        else if (!line.starts_with("verification time") && !line.starts_with("stack depth"))
            reason = line;
    }
    return summary.empty() ? std::string(reason) : fmt::format("{}; {}", reason, summary);
}

// The whole verifier log of one program: loaded again, alone and unpinned,
// with the instruction trace (level 1; the kernel keeps the log's tail when
// it does not fit). Written beside the other temporary files; returns its
// path.
std::string save_full_log(const char* program)
{
    constexpr size_t kFullLogSize = 64u << 20;
    std::unique_ptr<peerlb_bpf, void (*)(peerlb_bpf*)> again(peerlb_bpf__open(), peerlb_bpf__destroy);
    if (!again)
        return "(not available: the object did not open again)";
    bpf_map* map;
    bpf_object__for_each_map(map, again->obj) bpf_map__set_pin_path(map, nullptr);
    auto log = std::make_unique<char[]>(kFullLogSize);
    log[0] = '\0';
    bpf_program* prog;
    bpf_object__for_each_program(prog, again->obj)
    {
        if (std::strcmp(bpf_program__name(prog), program) != 0) {
            bpf_program__set_autoload(prog, false);
            continue;
        }
        bpf_program__set_log_buf(prog, log.get(), kFullLogSize);
        bpf_program__set_log_level(prog, 1);
    }
    {
        QuietProgramLogs quiet(Quiet::everything);
        peerlb_bpf__load(again.get()); // fails again: its log is what we want
    }
    std::error_code ec;
    auto dir = std::filesystem::temp_directory_path(ec);
    if (ec)
        dir = "/tmp";
    const auto path = dir / fmt::format("peerlb-verifier-{}-{}.log", program, ::getpid());
    std::ofstream out(path);
    out << log.get();
    return out ? path.string() : "(not available: could not be written)";
}

uint64_t verification_us(std::string_view log)
{
    constexpr std::string_view key = "verification time ";
    size_t at = log.rfind(key);
    return at == std::string_view::npos ? 0 : std::strtoull(log.data() + at + key.size(), nullptr, 10);
}

} // namespace

Skeleton::Skeleton(const std::optional<std::string>& pin_dir)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts);
    if (pin_dir)
        opts.pin_root_path = pin_dir->c_str();
    peerlb_bpf* skel = peerlb_bpf__open_opts(&opts);
    int err = errno; // save before anything else can touch it
    if (!skel)
        throw SystemError("open BPF object", err);
    skel_.reset(skel);
    if (!pin_dir) {
        bpf_map* map;
        bpf_object__for_each_map(map, skel->obj)
        {
            if (int e = bpf_map__set_pin_path(map, nullptr))
                throw SystemError("unpin map for a private load", e);
        }
    }
}

void Skeleton::load()
{
    // Statistics only (BPF_LOG_STATS): the verifier's time and counts and,
    // when it refuses a program, its reason; no instruction trace.
    logs_.clear();
    bpf_program* prog;
    bpf_object__for_each_program(prog, skel_->obj)
    {
        logs_.push_back(std::make_unique<char[]>(kLogSize));
        logs_.back()[0] = '\0';
        bpf_program__set_log_buf(prog, logs_.back().get(), kLogSize);
        bpf_program__set_log_level(prog, 4);
    }
    int err;
    {
        QuietProgramLogs quiet;
        err = peerlb_bpf__load(skel_.get());
    }
    if (!err)
        return;
    // The program the verifier refused: libbpf loads them in order and stops
    // there, closing those it loaded before (their logs are filled too), so
    // it is the last one whose log is.
    const char* refused = nullptr;
    std::string_view refused_log;
    size_t i = 0;
    bpf_object__for_each_program(prog, skel_->obj)
    {
        std::string_view log(logs_[i++].get());
        if (bpf_program__fd(prog) >= 0 || log.empty())
            continue;
        refused = bpf_program__name(prog);
        refused_log = log;
    }
    if (refused)
        throw Error(fmt::format("the kernel's verifier refused BPF program {}: {} (whole log: {})",
                                refused, verifier_summary(refused_log), save_full_log(refused)));
    throw SystemError("load BPF programs (run with --verbose for libbpf's messages)", err);
}

std::vector<VerifierStats> Skeleton::verifier_stats() const
{
    std::vector<VerifierStats> out;
    size_t i = 0;
    bpf_program* prog;
    bpf_object__for_each_program(prog, skel_->obj)
    {
        VerifierStats s{bpf_program__name(prog)};
        bpf_prog_info info{};
        uint32_t len = sizeof(info);
        if (int fd = bpf_program__fd(prog); fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len))
            s.verified_insns = info.verified_insns;
        if (i < logs_.size())
            s.verification_us = verification_us(logs_[i].get());
        i++;
        out.push_back(s);
    }
    return out;
}

uint32_t verified_insns_of(uint32_t prog_id)
{
    Fd fd(bpf_prog_get_fd_by_id(prog_id));
    if (!fd)
        return 0;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    return bpf_obj_get_info_by_fd(fd.get(), &info, &len) ? 0 : info.verified_insns;
}

} // namespace peerlb
