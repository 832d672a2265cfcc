#include "dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "fd.h"
#include "maps.h"
#include "skeleton.h"

namespace fs = std::filesystem;

namespace peerlb {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
// Our TC filter's identity on clsact egress, so detach removes only ours.
constexpr uint32_t kTcHandle = 0x1b;
constexpr uint32_t kTcPriority = 0xb1;

const char* const kPinnedMaps[] = {
    LB_CONFIG_MAP, LB_NODES_MAP, LB_NODE_ADDRS_MAP, LB_NODE_MACS_MAP,
    LB_SERVICES_MAP, LB_FLOWS_MAP, LB_FLOWS_NEW_MAP, LB_GRACE_MAP, LB_STATS_MAP,
    LB_NODE_STATS_MAP, LB_COOKIE_KEYS_MAP, LB_URI_RULES_MAP,
    LB_RULE_STATS_MAP, LB_PINS_MAP, LB_PIN_EVENTS_MAP, LB_INFLIGHT_MAP, LB_HANDED_MAP,
    LB_BUCKETS_MAP, LB_CANDIDATES_MAP,
};
// Pins of earlier layouts (maps/common.h: a changed layout is a new pin
// name), removed at detach so that an upgraded node leaves none behind.
const char* const kRetiredMaps[] = {
    "lb_uri_rules", // node sets of 64 bits
};

unsigned ifindex_of(const std::string& iface)
{
    unsigned idx = if_nametoindex(iface.c_str());
    if (!idx)
        throw Error(fmt::format("interface '{}' does not exist", iface));
    return idx;
}

uint32_t mtu_of(const std::string& iface)
{
    Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock)
        throw SystemError("socket for interface query", errno);
    ifreq req{};
    iface.copy(req.ifr_name, IFNAMSIZ - 1);
    if (ioctl(sock.get(), SIOCGIFMTU, &req))
        throw SystemError(fmt::format("read MTU of {}", iface), errno);
    return static_cast<uint32_t>(req.ifr_mtu);
}

// Serialises attach/detach on one pin root (bpffs directories take flock).
class PinRootLock {
public:
    explicit PinRootLock(const std::string& root)
        : fd_(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC))
    {
        if (!fd_)
            throw SystemError(fmt::format("open pin root {}", root), errno);
        if (flock(fd_.get(), LOCK_EX))
            throw SystemError(fmt::format("lock pin root {}", root), errno);
    }

private:
    Fd fd_;
};

bpf_tc_hook tc_hook(unsigned ifindex, bpf_tc_attach_point where)
{
    bpf_tc_hook hook{};
    hook.sz = sizeof(hook);
    hook.ifindex = static_cast<int>(ifindex);
    hook.attach_point = where;
    return hook;
}

// Both TC programs: tc_mss_clamp on egress, tc_ingress on ingress.
void tc_detach(unsigned ifindex)
{
    for (auto where : {BPF_TC_EGRESS, BPF_TC_INGRESS}) {
        bpf_tc_hook hook = tc_hook(ifindex, where);
        LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
        bpf_tc_detach(&hook, &opts); // absent already: nothing to undo
    }
}

// The id of our TC program on that hook, 0 when none is attached.
uint32_t tc_program(unsigned ifindex, bpf_tc_attach_point where)
{
    bpf_tc_hook hook = tc_hook(ifindex, where);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    return bpf_tc_query(&hook, &opts) == 0 ? opts.prog_id : 0;
}

// The program of a pinned link, 0 when there is none.
uint32_t link_program(const std::string& pin)
{
    Fd link(bpf_obj_get(pin.c_str()));
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (!link || bpf_obj_get_info_by_fd(link.get(), &info, &len))
        return 0;
    return info.prog_id;
}

// Undoes a partial attach unless dismissed.
class AttachRollback {
public:
    AttachRollback(std::string dir, unsigned ifindex) : dir_(std::move(dir)), ifindex_(ifindex) {}
    ~AttachRollback()
    {
        if (done_)
            return;
        if (tc_attached_)
            tc_detach(ifindex_);
        std::error_code ec;
        fs::remove(dir_ + "/" + LB_PIN_XDP_LINK, ec);
        fs::remove(dir_ + "/" + LB_PIN_SOCK_STATE_LINK, ec);
        for (const auto& name : created_maps_)
            fs::remove(dir_ + "/" + name, ec);
        if (created_dir_)
            fs::remove(dir_, ec);
    }
    void created_dir() { created_dir_ = true; }
    void created_map(const std::string& name) { created_maps_.push_back(name); }
    void attached_tc() { tc_attached_ = true; }
    void dismiss() { done_ = true; }

private:
    std::string dir_;
    unsigned ifindex_;
    std::vector<std::string> created_maps_;
    bool created_dir_ = false;
    bool tc_attached_ = false;
    bool done_ = false;
};

} // namespace

std::string pin_dir(const std::string& pin_root, const std::string& iface)
{
    return pin_root + "/" + iface;
}

void require_bpffs(const std::string& path)
{
    fs::path p = fs::absolute(path);
    while (!p.empty() && !fs::exists(p) && p != p.root_path())
        p = p.parent_path();
    struct statfs st {};
    if (statfs(p.c_str(), &st) || st.f_type != kBpfFsMagic)
        throw Error(fmt::format("{} is not on a bpf filesystem (mount one: mount -t bpf bpf DIR)",
                                path));
}

void attach(const AttachOptions& opts)
{
    unsigned ifindex = ifindex_of(opts.iface);
    require_bpffs(opts.pin_root);
    std::error_code ec;
    const bool created_root = fs::create_directories(opts.pin_root, ec);
    if (ec)
        throw Error(fmt::format("create pin root {}: {}", opts.pin_root, ec.message()));
    // A failed first attach leaves no empty pin root behind either.
    struct RootCleanup {
        const std::string& root;
        bool armed;
        ~RootCleanup()
        {
            std::error_code ignored;
            if (armed && fs::is_empty(root, ignored))
                fs::remove(root, ignored);
        }
    } root_cleanup{opts.pin_root, created_root};
    PinRootLock lock(opts.pin_root);

    const std::string dir = pin_dir(opts.pin_root, opts.iface);
    const std::string link_pin = dir + "/" + LB_PIN_XDP_LINK;
    if (fs::exists(link_pin))
        throw Error(fmt::format("peerlb is already attached to {} ({} exists); detach it first",
                                opts.iface, link_pin));
    uint32_t other = 0;
    if (bpf_xdp_query_id(static_cast<int>(ifindex), 0, &other) == 0 && other != 0)
        throw Error(fmt::format("another XDP program (id {}) is attached to {}; remove it first",
                                other, opts.iface));
    uint32_t mtu = mtu_of(opts.iface);

    AttachRollback rollback(dir, ifindex);
    if (!fs::exists(dir)) {
        if (!fs::create_directory(dir, ec))
            throw Error(fmt::format("create {}: {}", dir, ec.message()));
        rollback.created_dir();
    }
    const bool fresh = !fs::exists(dir + "/" + LB_CONFIG_MAP);
    for (const char* name : kPinnedMaps)
        if (!fs::exists(dir + "/" + name))
            rollback.created_map(name);

    Skeleton skel(dir);
    skel.load();

    Maps maps = Maps::open_pinned(dir);
    lb_config cfg = fresh ? default_config() : maps.config();
    if (opts.forward)
        cfg.forward = *opts.forward;
    cfg.mtu = mtu;
    // The socket state tracepoint sees the whole kernel: it counts the
    // sockets of this namespace only (inflight.bpf.h).
    struct stat netns {};
    if (stat("/proc/self/ns/net", &netns))
        throw SystemError("stat /proc/self/ns/net", errno);
    cfg.netns_ino = static_cast<uint32_t>(netns.st_ino);
    maps.set_config(cfg);

    LIBBPF_OPTS(bpf_link_create_opts, link_opts);
    link_opts.flags = opts.mode == XdpMode::skb ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    Fd link(bpf_link_create(bpf_program__fd(skel->progs.xdp_peerlb), static_cast<int>(ifindex),
                            BPF_XDP, &link_opts));
    if (!link)
        throw SystemError(fmt::format("attach XDP to {} in {} mode", opts.iface,
                                      opts.mode == XdpMode::skb ? "skb" : "native"),
                          errno);
    if (bpf_obj_pin(link.get(), link_pin.c_str()))
        throw SystemError(fmt::format("pin XDP link at {}", link_pin), errno);

    // One clsact qdisc holds both hooks; creating it for egress makes both.
    bpf_tc_hook hook = tc_hook(ifindex, BPF_TC_EGRESS);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST)
        throw SystemError(fmt::format("create clsact on {}", opts.iface), err);
    rollback.attached_tc();
    const struct {
        bpf_tc_attach_point where;
        int prog_fd;
        const char* name;
    } tc_programs[] = {
        {BPF_TC_EGRESS, bpf_program__fd(skel->progs.tc_mss_clamp), "egress"},
        {BPF_TC_INGRESS, bpf_program__fd(skel->progs.tc_ingress), "ingress"},
    };
    for (const auto& t : tc_programs) {
        bpf_tc_hook h = tc_hook(ifindex, t.where);
        LIBBPF_OPTS(bpf_tc_opts, tc_opts, .prog_fd = t.prog_fd, .flags = BPF_TC_F_REPLACE,
                    .handle = kTcHandle, .priority = kTcPriority);
        if ((err = bpf_tc_attach(&h, &tc_opts)))
            throw SystemError(fmt::format("attach TC {} to {}", t.name, opts.iface), err);
    }
    // Load in real time: the connections on the services, counted at each
    // TCP state change. Pinned like the XDP link, so it outlives the agent.
    bpf_link* sock_state = bpf_program__attach(skel->progs.lb_sock_state);
    if (!sock_state)
        throw SystemError("attach the socket state tracepoint", errno);
    err = bpf_link__pin(sock_state, (dir + "/" + LB_PIN_SOCK_STATE_LINK).c_str());
    bpf_link__destroy(sock_state); // the pin holds it, or nothing does
    if (err)
        throw SystemError(fmt::format("pin the tracepoint link in {}", dir), -err);
    rollback.dismiss();
    // The link fds close here; the pins keep the programs attached.
}

bool ensure_attached(const AttachOptions& opts)
{
    if (query(opts.pin_root, opts.iface).attached)
        return false;
    // A link pin whose interface went away is detached already; the maps
    // next to it are still good.
    std::error_code ec;
    fs::remove(pin_dir(opts.pin_root, opts.iface) + "/" + LB_PIN_XDP_LINK, ec);
    attach(opts);
    return true;
}

void detach(const std::string& pin_root, const std::string& iface)
{
    require_bpffs(pin_root);
    const std::string dir = pin_dir(pin_root, iface);
    const std::string link_pin = dir + "/" + LB_PIN_XDP_LINK;
    if (!fs::exists(link_pin))
        throw Error(fmt::format("peerlb is not attached to {} (no {})", iface, link_pin));
    PinRootLock lock(pin_root);

    Fd link(bpf_obj_get(link_pin.c_str()));
    if (!link)
        throw SystemError(fmt::format("open {}", link_pin), errno);
    // A link whose device is gone is already detached: only the pin is left.
    if (bpf_link_detach(link.get()) && errno != ENOLINK && errno != ENODEV)
        throw SystemError(fmt::format("detach XDP from {}", iface), errno);
    if (unsigned ifindex = if_nametoindex(iface.c_str()))
        tc_detach(ifindex);

    std::error_code ec;
    fs::remove(link_pin, ec);
    fs::remove(dir + "/" + LB_PIN_SOCK_STATE_LINK, ec); // the last reference: detached
    for (const char* name : kPinnedMaps)
        fs::remove(dir + "/" + name, ec);
    for (const char* name : kRetiredMaps)
        fs::remove(dir + "/" + name, ec);
    fs::remove(dir, ec);
    if (ec)
        throw Error(fmt::format("remove {}: {} (something else is pinned there?)", dir,
                                ec.message()));
}

AttachState query(const std::string& pin_root, const std::string& iface)
{
    AttachState st;
    const std::string link_pin = pin_dir(pin_root, iface) + "/" + LB_PIN_XDP_LINK;
    Fd link(bpf_obj_get(link_pin.c_str()));
    if (!link)
        return st;
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(link.get(), &info, &len))
        throw SystemError(fmt::format("read {}", link_pin), errno);
    st.prog_id = info.prog_id;
    st.attached = info.xdp.ifindex != 0;
    st.mode = "unknown";
    if (st.attached) {
        LIBBPF_OPTS(bpf_xdp_query_opts, q);
        if (bpf_xdp_query(static_cast<int>(info.xdp.ifindex), 0, &q) == 0)
            st.mode = q.attach_mode == XDP_ATTACHED_SKB ? "skb"
                      : q.attach_mode == XDP_ATTACHED_DRV ? "native"
                                                          : "unknown";
        st.programs.push_back({"xdp", st.prog_id, verified_insns_of(st.prog_id)});
        const uint32_t egress = tc_program(info.xdp.ifindex, BPF_TC_EGRESS);
        const uint32_t ingress = tc_program(info.xdp.ifindex, BPF_TC_INGRESS);
        st.tc_attached = egress && ingress;
        if (egress)
            st.programs.push_back({"tc_egress", egress, verified_insns_of(egress)});
        if (ingress)
            st.programs.push_back({"tc_ingress", ingress, verified_insns_of(ingress)});
        if (uint32_t id = link_program(pin_dir(pin_root, iface) + "/" + LB_PIN_SOCK_STATE_LINK))
            st.programs.push_back({"sock_state", id, verified_insns_of(id)});
    }
    return st;
}

std::string only_attached_iface(const std::string& pin_root)
{
    require_bpffs(pin_root);
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(pin_root, ec))
        if (entry.is_directory() && fs::exists(entry.path() / LB_CONFIG_MAP))
            found.push_back(entry.path().filename());
    if (found.size() == 1)
        return found.front();
    if (found.empty())
        throw Error(fmt::format("no peerlb data plane under {} (attach one, or pass --pin-root)",
                                pin_root));
    throw Error(fmt::format("several interfaces under {} ({}): pass --iface", pin_root,
                            fmt::join(found, ", ")));
}

} // namespace peerlb
