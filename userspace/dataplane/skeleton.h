// RAII owner of the generated peerlb skeleton (bpftool gen skeleton).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "peerlb.skel.h"

namespace peerlb {

class Skeleton {
public:
    // Opens the object; with pin_dir, pinned maps are reused from or created
    // in that directory, without it nothing is pinned (unit tests).
    explicit Skeleton(const std::optional<std::string>& pin_dir);
    Skeleton(const Skeleton&) = delete;
    Skeleton& operator=(const Skeleton&) = delete;

    void load();
    peerlb_bpf* operator->() const { return skel_.get(); }
    peerlb_bpf* get() const { return skel_.get(); }

private:
    struct Destroy {
        void operator()(peerlb_bpf* s) const { peerlb_bpf__destroy(s); }
    };
    std::unique_ptr<peerlb_bpf, Destroy> skel_;
};

} // namespace peerlb
