#include "maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fmt/format.h>

#include "error.h"

namespace peerlb {
namespace {

constexpr uint32_t kZero = 0;

Fd open_pin(const std::string& dir, const char* name)
{
    std::string path = dir + "/" + name;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        throw SystemError(fmt::format("open pinned map {}", path), errno);
    return Fd(fd);
}

void lookup(const Fd& map, const void* key, void* value, const char* what)
{
    if (bpf_map_lookup_elem(map.get(), key, value))
        throw SystemError(fmt::format("read {}", what), errno);
}

void update(const Fd& map, const void* key, const void* value, const char* what)
{
    if (bpf_map_update_elem(map.get(), key, value, BPF_ANY))
        throw SystemError(fmt::format("write {}", what), errno);
}

void erase(const Fd& map, const void* key)
{
    // A missing key is already the wanted state.
    bpf_map_delete_elem(map.get(), key);
}

template <typename Key, typename Fn>
void for_each_key(const Fd& map, Fn&& fn)
{
    Key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(map.get(), prev, &next) == 0) {
        key = next;
        prev = &key;
        fn(key);
    }
}

int possible_cpus()
{
    int n = libbpf_num_possible_cpus();
    if (n <= 0)
        throw SystemError("count possible CPUs", n);
    return n;
}

// One lb_inflight entry (maps/load.h).
int64_t inflight_entry(const Fd& map, uint32_t key, const char* what)
{
    lb_inflight v{};
    lookup(map, &key, &v, what);
    return v.connections;
}

} // namespace

lb_config default_config()
{
    lb_config cfg{};
    cfg.accept_below_bp = 50 * 100;
    cfg.min_difference_bp = 20 * 100;
    cfg.pick = LB_PICK_WEIGHTED;
    cfg.forward = LB_FORWARD_L2;
    cfg.conn_cost_bp = 10; // 0.1 %: one of 1000 connections
    cfg.self_slot = 0;
    cfg.node_slots = 1;
    cfg.mtu = 1500;
    cfg.peer_stale_ns = 1'500'000'000ull; // 3 heartbeats of 500 ms
    cfg.self_stale_ns = 2'000'000'000ull;
    cfg.syn_cookies = LB_SYN_COOKIES_AUTO; // without an agent's keys, the kernel answers
    cfg.syn_cookie_rate = 1000;
    cfg.high_water_bp = LB_LOAD_FULL;
    cfg.overflow = LB_OVERFLOW_KEEP;
    cfg.choices = LB_CHOICES_DEFAULT;
    return cfg;
}

Maps Maps::open_pinned(const std::string& pin_dir)
{
    MapFds fds;
    fds.config = open_pin(pin_dir, LB_CONFIG_MAP);
    fds.nodes = open_pin(pin_dir, LB_NODES_MAP);
    fds.node_addrs = open_pin(pin_dir, LB_NODE_ADDRS_MAP);
    fds.node_macs = open_pin(pin_dir, LB_NODE_MACS_MAP);
    fds.services = open_pin(pin_dir, LB_SERVICES_MAP);
    fds.flows = open_pin(pin_dir, LB_FLOWS_MAP);
    fds.flows_new = open_pin(pin_dir, LB_FLOWS_NEW_MAP);
    fds.grace = open_pin(pin_dir, LB_GRACE_MAP);
    fds.stats = open_pin(pin_dir, LB_STATS_MAP);
    fds.node_stats = open_pin(pin_dir, LB_NODE_STATS_MAP);
    fds.cookie_keys = open_pin(pin_dir, LB_COOKIE_KEYS_MAP);
    fds.uri_rules = open_pin(pin_dir, LB_URI_RULES_MAP);
    fds.rule_stats = open_pin(pin_dir, LB_RULE_STATS_MAP);
    fds.pins = open_pin(pin_dir, LB_PINS_MAP);
    fds.pin_events = open_pin(pin_dir, LB_PIN_EVENTS_MAP);
    fds.inflight = open_pin(pin_dir, LB_INFLIGHT_MAP);
    fds.handed = open_pin(pin_dir, LB_HANDED_MAP);
    fds.buckets = open_pin(pin_dir, LB_BUCKETS_MAP);
    fds.candidates = open_pin(pin_dir, LB_CANDIDATES_MAP);
    return Maps(std::move(fds));
}

lb_cookie_key Maps::cookie_key(uint32_t slot) const
{
    lb_cookie_key k{};
    lookup(fds_.cookie_keys, &slot, &k, "cookie key");
    return k;
}

void Maps::set_cookie_key(uint32_t slot, const lb_cookie_key& key)
{
    update(fds_.cookie_keys, &slot, &key, "cookie key");
}

lb_uri_rule Maps::uri_rule(uint32_t index) const
{
    lb_uri_rule r{};
    lookup(fds_.uri_rules, &index, &r, "URI rule");
    return r;
}

void Maps::set_uri_rule(uint32_t index, const lb_uri_rule& rule)
{
    update(fds_.uri_rules, &index, &rule, "URI rule");
}

lb_candidates Maps::candidates(uint32_t list) const
{
    lb_candidates c{};
    lookup(fds_.candidates, &list, &c, "candidate list");
    return c;
}

void Maps::set_candidates(uint32_t list, const lb_candidates& value)
{
    update(fds_.candidates, &list, &value, "candidate list");
}

lb_config Maps::config() const
{
    lb_config cfg{};
    lookup(fds_.config, &kZero, &cfg, "config");
    return cfg;
}

void Maps::set_config(const lb_config& cfg)
{
    update(fds_.config, &kZero, &cfg, "config");
}

lb_node Maps::node(uint32_t slot) const
{
    lb_node n{};
    lookup(fds_.nodes, &slot, &n, "node table");
    return n;
}

void Maps::set_node(uint32_t slot, const lb_node& n)
{
    if (slot >= LB_MAX_NODES)
        throw Error(fmt::format("node slot {} out of range (0..{})", slot, LB_MAX_NODES - 1));
    // Drop the old slot's lookup entries first: its address or MAC may change.
    lb_node old = node(slot);
    if (old.state != LB_NODE_EMPTY) {
        lb_node_addr_key ak{};
        ak.addr = old.addr;
        ak.family = old.family;
        erase(fds_.node_addrs, &ak);
        lb_node_mac_key mk{};
        std::copy(std::begin(old.mac), std::end(old.mac), mk.mac);
        erase(fds_.node_macs, &mk);
    }
    update(fds_.nodes, &slot, &n, "node table");
    if (n.state == LB_NODE_EMPTY)
        return;
    lb_node_addr_key ak{};
    ak.addr = n.addr;
    ak.family = n.family;
    update(fds_.node_addrs, &ak, &slot, "node address map");
    lb_node_mac_key mk{};
    std::copy(std::begin(n.mac), std::end(n.mac), mk.mac);
    update(fds_.node_macs, &mk, &slot, "node MAC map");
}

void Maps::set_node_entry(uint32_t slot, const lb_node& n)
{
    update(fds_.nodes, &slot, &n, "node table");
}

void Maps::clear_node(uint32_t slot)
{
    set_node(slot, lb_node{});
}

void Maps::add_service(const lb_service_key& key, const lb_service& svc)
{
    update(fds_.services, &key, &svc, "service map");
}

void Maps::remove_service(const lb_service_key& key)
{
    erase(fds_.services, &key);
}

std::vector<std::pair<lb_service_key, lb_service>> Maps::services() const
{
    std::vector<std::pair<lb_service_key, lb_service>> out;
    for_each_key<lb_service_key>(fds_.services, [&](const lb_service_key& k) {
        lb_service v{};
        if (bpf_map_lookup_elem(fds_.services.get(), &k, &v) == 0)
            out.emplace_back(k, v);
    });
    return out;
}

std::vector<FlowEntry> Maps::flows() const
{
    std::vector<FlowEntry> out;
    // Batch reads would be faster; flows are listed by hand, not hot.
    for (const Fd* table : {&fds_.flows, &fds_.flows_new}) {
        const bool established = table == &fds_.flows;
        for_each_key<lb_flow_key>(*table, [&](const lb_flow_key& k) {
            lb_flow v{};
            if (bpf_map_lookup_elem(table->get(), &k, &v) == 0)
                out.push_back({k, v, established});
        });
    }
    return out;
}

std::optional<lb_flow> Maps::flow(const lb_flow_key& key) const
{
    lb_flow v{};
    if (bpf_map_lookup_elem(fds_.flows.get(), &key, &v) == 0 ||
        bpf_map_lookup_elem(fds_.flows_new.get(), &key, &v) == 0)
        return v;
    return std::nullopt;
}

void Maps::add_flow(const lb_flow_key& key, const lb_flow& flow)
{
    update(fds_.flows, &key, &flow, "flow table");
}

void Maps::set_grace(const IpAddress& address, uint64_t until_ns, uint32_t previous)
{
    lb_grace_key key{};
    key.addr = address.addr;
    key.family = address.family;
    lb_grace value{};
    value.until_ns = until_ns;
    value.previous = previous;
    if (until_ns == 0)
        erase(fds_.grace, &key);
    else
        update(fds_.grace, &key, &value, "grace map");
}

const char* counter_kind_name(lb_counter_kind kind)
{
    switch (kind) {
    case LB_KIND_PASSED:
        return "passed";
    case LB_KIND_KEPT:
        return "kept";
    case LB_KIND_FORWARDED:
        return "forwarded";
    case LB_KIND_SENT:
        return "sent";
    case LB_KIND_DROPPED:
        return "dropped";
    case LB_KIND_OTHER:
        break;
    }
    return "other";
}

std::vector<CounterTotal> Maps::counters() const
{
    struct Described {
        const char* name;
        lb_counter_kind kind;
    };
    static const Described described[] = {
#define LB_COUNTER_DESCRIBED(name, text, kind) {text, LB_KIND_##kind},
        LB_COUNTERS(LB_COUNTER_DESCRIBED)
#undef LB_COUNTER_DESCRIBED
    };
    static_assert(std::size(described) == LB_C_MAX);

    std::vector<lb_counter_value> per_cpu(possible_cpus());
    std::vector<CounterTotal> out;
    for (uint32_t i = 0; i < LB_C_MAX; i++) {
        lookup(fds_.stats, &i, per_cpu.data(), "counters");
        CounterTotal t{described[i].name, described[i].kind};
        for (const auto& c : per_cpu) {
            t.packets += c.packets;
            t.bytes += c.bytes;
        }
        out.push_back(t);
    }
    return out;
}

std::vector<lb_node_counters> Maps::node_counters() const
{
    std::vector<lb_node_counters> per_cpu(possible_cpus());
    std::vector<lb_node_counters> out(LB_MAX_NODES);
    for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++) {
        lookup(fds_.node_stats, &slot, per_cpu.data(), "node counters");
        for (const auto& c : per_cpu) {
            out[slot].conns_forwarded += c.conns_forwarded;
            out[slot].packets_forwarded += c.packets_forwarded;
            out[slot].bytes_forwarded += c.bytes_forwarded;
        }
    }
    return out;
}

int64_t Maps::inflight_counted() const
{
    return inflight_entry(fds_.inflight, LB_INFLIGHT_COUNTED, "inflight count");
}

int64_t Maps::inflight_correction() const
{
    return inflight_entry(fds_.inflight, LB_INFLIGHT_CORRECTION, "inflight correction");
}

uint64_t Maps::inflight_changes() const
{
    return uint64_t(inflight_entry(fds_.inflight, LB_INFLIGHT_CHANGES, "inflight changes"));
}

void Maps::set_inflight_correction(int64_t connections)
{
    uint32_t key = LB_INFLIGHT_CORRECTION;
    lb_inflight v{connections};
    update(fds_.inflight, &key, &v, "inflight correction");
}

uint32_t Maps::handed_open(uint32_t slot) const
{
    lb_handed v{};
    lookup(fds_.handed, &slot, &v, "handed connections");
    return v.open;
}

lb_bucket Maps::bucket(uint32_t index) const
{
    lb_bucket b{};
    lookup(fds_.buckets, &index, &b, "bucket");
    return b;
}

void Maps::set_bucket(uint32_t index, const lb_bucket& bucket)
{
    update(fds_.buckets, &index, &bucket, "bucket");
}

void Maps::set_buckets(const std::vector<lb_bucket>& table)
{
    if (table.size() > LB_MAX_BUCKETS)
        throw Error(fmt::format("bucket table: {} buckets, at most {}", table.size(), LB_MAX_BUCKETS));
    // One system call for the whole table (an array map takes batches);
    // each entry is written whole, so a packet sees an old or a new entry.
    std::vector<uint32_t> keys(table.size());
    for (uint32_t i = 0; i < keys.size(); i++)
        keys[i] = i;
    uint32_t count = uint32_t(table.size());
    if (count == 0)
        return;
    if (bpf_map_update_batch(fds_.buckets.get(), keys.data(), table.data(), &count, nullptr) == 0)
        return;
    for (uint32_t i = 0; i < table.size(); i++)
        set_bucket(i, table[i]);
}

std::vector<lb_rule_counters> Maps::rule_counters() const
{
    std::vector<lb_rule_counters> per_cpu(possible_cpus());
    std::vector<lb_rule_counters> out(LB_MAX_URI_RULES);
    for (uint32_t i = 0; i < LB_MAX_URI_RULES; i++) {
        lookup(fds_.rule_stats, &i, per_cpu.data(), "rule counters");
        for (const auto& c : per_cpu) {
            out[i].hits += c.hits;
            out[i].spilled += c.spilled;
        }
    }
    return out;
}

void Maps::set_pin(const lb_pin_key& key, const lb_pin& pin)
{
    update(fds_.pins, &key, &pin, "pin");
}

void Maps::delete_pin(const lb_pin_key& key)
{
    bpf_map_delete_elem(fds_.pins.get(), &key); // gone already: nothing to end
}

std::vector<std::pair<lb_pin_key, lb_pin>> Maps::pins() const
{
    std::vector<std::pair<lb_pin_key, lb_pin>> out;
    lb_pin_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fds_.pins.get(), prev, &next) == 0) {
        lb_pin pin{};
        if (bpf_map_lookup_elem(fds_.pins.get(), &next, &pin) == 0)
            out.emplace_back(next, pin);
        key = next;
        prev = &key;
    }
    return out;
}

} // namespace peerlb
