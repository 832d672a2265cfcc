// The verifier budget (DESIGN.md section 2): every peerlb program verifies in
// at most kVerifierBudgetInsns processed instructions, in the configuration
// the agent loads. Prints each program's count and verification time, and
// the time of a fresh attach (load + verify + attach) to a veth in a
// private network namespace; fails when a program is over the budget or
// does not load. Exit 77 (skipped) without root.
#include <sched.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "userspace/dataplane/dataplane.h"
#include "userspace/dataplane/error.h"
#include "userspace/dataplane/skeleton.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// This process alone moves into a new network and mount namespace, with a
// veth pair and a bpffs of its own: the namespaces go away when it exits,
// the mount point when this object does.
class PrivateTestBed {
public:
    PrivateTestBed()
    {
        if (unshare(CLONE_NEWNET | CLONE_NEWNS))
            throw peerlb::SystemError("unshare network and mount namespaces", errno);
        if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr))
            throw peerlb::SystemError("make mounts private", errno);
        if (!mkdtemp(dir_))
            throw peerlb::SystemError("create a bpffs mount point", errno);
        if (mount("bpf", dir_, "bpf", 0, nullptr)) {
            rmdir(dir_);
            throw peerlb::SystemError("mount bpffs", errno);
        }
        mounted_ = true;
        if (std::system("ip link add budget0 type veth peer name budget1 && "
                        "ip link set budget0 up && ip link set budget1 up"))
            throw peerlb::Error("create the test veth pair");
    }
    ~PrivateTestBed()
    {
        if (mounted_)
            umount2(dir_, MNT_DETACH);
        rmdir(dir_);
    }
    PrivateTestBed(const PrivateTestBed&) = delete;
    PrivateTestBed& operator=(const PrivateTestBed&) = delete;
    std::string bpffs() const { return dir_; }

private:
    char dir_[32] = "/tmp/peerlb-budget.XXXXXX";
    bool mounted_ = false;
};

} // namespace

int main(int argc, char** argv)
{
    // --budget N: another budget, so that a test shows this one can fail.
    uint32_t budget = peerlb::kVerifierBudgetInsns;
    if (argc == 3 && std::string(argv[1]) == "--budget")
        budget = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
    else if (argc != 1) {
        std::fprintf(stderr, "usage: verifier_budget [--budget INSNS]\n");
        return 2;
    }
    if (geteuid() != 0) {
        std::puts("verifier budget: skipped (needs root to load BPF programs)");
        return 77;
    }
    utsname u{};
    uname(&u);
    std::printf("verifier budget: %u processed instructions per program (kernel %s %s)\n",
                budget, u.release, u.version);
    int failures = 0;
    try {
        const auto start = Clock::now();
        peerlb::Skeleton skel(std::nullopt);
        skel.load();
        const double load_s = seconds_since(start);
        std::printf("%-14s %12s %10s %8s\n", "program", "processed", "verify_ms", "budget");
        for (const auto& s : skel.verifier_stats()) {
            const bool over = s.verified_insns == 0 || s.verified_insns > budget;
            failures += over;
            std::printf("%-14s %12u %10.1f %8s\n", s.program.c_str(), s.verified_insns,
                        double(s.verification_us) / 1000.0, over ? "OVER" : "ok");
        }
        std::printf("load (open + verify all programs): %.3f s\n", load_s);

        PrivateTestBed bed;
        peerlb::AttachOptions opts;
        opts.pin_root = bed.bpffs() + "/peerlb";
        opts.iface = "budget0";
        const auto attach_start = Clock::now();
        peerlb::attach(opts);
        const double attach_s = seconds_since(attach_start);
        const auto st = peerlb::query(opts.pin_root, opts.iface);
        std::printf("fresh attach (load + verify + attach XDP and TC): %.3f s, xdp_peerlb "
                    "verified_insns %u as attached\n",
                    attach_s, peerlb::verified_insns_of(st.prog_id));
        peerlb::detach(opts.pin_root, opts.iface);
    } catch (const std::exception& e) {
        std::printf("FAILED: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::printf("FAILED: %d program(s) over the budget or not loaded\n", failures);
        return 1;
    }
    std::puts("verifier budget: every program within it");
    return 0;
}
