// RAII owner of the generated peerlb skeleton (bpftool gen skeleton).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peerlb.skel.h"

namespace peerlb {

// What the verifier reported for one loaded program.
struct VerifierStats {
    std::string program;
    uint32_t verified_insns = 0; // bpf_prog_info.verified_insns
    uint64_t verification_us = 0; // "verification time" of the stats log
};

// The verifier's budget for every peerlb program (DESIGN.md section 2): five
// times under the kernel's limit, because the count varies between builds.
inline constexpr uint32_t kVerifierBudgetInsns = 200'000;

class Skeleton {
public:
    // Opens the object; with pin_dir, pinned maps are reused from or created
    // in that directory, without it nothing is pinned (unit tests).
    explicit Skeleton(const std::optional<std::string>& pin_dir);
    Skeleton(const Skeleton&) = delete;
    Skeleton& operator=(const Skeleton&) = delete;

    // Loads (verifies) every program. When the verifier refuses one, throws
    // an Error that names the program, quotes the verifier's last lines
    // (its reason and the "processed N insns" summary) and gives the path of
    // a file holding the whole log; libbpf does not print the log.
    void load();
    // Per program, after load(): what the verifier reported.
    std::vector<VerifierStats> verifier_stats() const;

    peerlb_bpf* operator->() const { return skel_.get(); }
    peerlb_bpf* get() const { return skel_.get(); }

private:
    struct Destroy {
        void operator()(peerlb_bpf* s) const { peerlb_bpf__destroy(s); }
    };
    std::unique_ptr<peerlb_bpf, Destroy> skel_;
    // One log buffer per program, filled by the kernel at load.
    std::vector<std::unique_ptr<char[]>> logs_;
};

// verified_insns of a loaded program, by id (0 when it cannot be read).
uint32_t verified_insns_of(uint32_t prog_id);

} // namespace peerlb
