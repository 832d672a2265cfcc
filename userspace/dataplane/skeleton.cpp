#include "skeleton.h"

#include <bpf/libbpf.h>

#include "error.h"

namespace peerlb {

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
    if (int err = peerlb_bpf__load(skel_.get()))
        throw SystemError("load BPF programs (run with --verbose for the verifier log)", err);
}

} // namespace peerlb
