// Attaching the data plane to an interface, detaching it, and asking what is
// attached. Everything lives under <pin-root>/<ifname>/ on a bpf filesystem:
// the maps (which outlive agents, so flows survive restarts) and the XDP link.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace peerlb {

inline constexpr const char* kDefaultPinRoot = "/sys/fs/bpf/peerlb";
inline constexpr const char* kDefaultRunDir = "/run/peerlb";

enum class XdpMode { native, skb };

struct AttachOptions {
    std::string pin_root = kDefaultPinRoot;
    std::string iface;
    std::optional<uint32_t> forward; // enum lb_forward; unset keeps the pinned value
    XdpMode mode = XdpMode::native;
};

// One attached program and what the kernel's verifier reported of it.
struct AttachedProgram {
    std::string hook; // "xdp", "tc_egress", "tc_ingress"
    uint32_t id = 0;
    uint32_t verified_insns = 0;
};

struct AttachState {
    bool attached = false;
    uint32_t prog_id = 0;
    std::string mode; // "native", "skb" or "unknown"
    bool tc_attached = false;
    std::vector<AttachedProgram> programs; // those attached, XDP first
};

std::string pin_dir(const std::string& pin_root, const std::string& iface);

// Throws Error unless `path` (or its nearest existing parent) is on bpffs.
void require_bpffs(const std::string& path);

// Attaches XDP and TC programs; on any failure undoes what it did and throws.
void attach(const AttachOptions& opts);

// For the agent's start: keeps a data plane that is attached already (its
// link, program and maps untouched, so no flow is lost across agent
// restarts), else attaches. Returns true when it attached.
bool ensure_attached(const AttachOptions& opts);

// Detaches both programs and removes the interface's pinned maps.
void detach(const std::string& pin_root, const std::string& iface);

AttachState query(const std::string& pin_root, const std::string& iface);

// The interface whose data plane is pinned under pin_root when only one is;
// throws Error when none or several are (the user must pass --iface).
std::string only_attached_iface(const std::string& pin_root);

} // namespace peerlb
