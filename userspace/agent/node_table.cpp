#include "node_table.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "../dataplane/error.h"

namespace peerlb {

SlotTable::SlotTable(std::vector<std::optional<IpAddress>> occupied)
{
    slots_.resize(LB_MAX_NODES);
    for (size_t i = 0; i < occupied.size() && i < slots_.size(); i++)
        if (occupied[i])
            slots_[i] = Slot{*occupied[i], 0}; // dead since ever, until heard again
}

std::optional<uint32_t> SlotTable::find(const IpAddress& address) const
{
    for (uint32_t i = 0; i < slots_.size(); i++)
        if (slots_[i] && slots_[i]->address == address)
            return i;
    return std::nullopt;
}

std::optional<uint32_t> SlotTable::slot_for(const IpAddress& address, std::optional<IpAddress>* evicted)
{
    if (auto slot = find(address))
        return *slot;
    std::optional<uint32_t> chosen;
    for (uint32_t i = 0; i < slots_.size() && !chosen; i++)
        if (!slots_[i])
            chosen = i;
    if (!chosen) {
        for (uint32_t i = 0; i < slots_.size(); i++) {
            const auto& dead = slots_[i]->dead_since_ns;
            if (dead && (!chosen || *dead < *slots_[*chosen]->dead_since_ns))
                chosen = i;
        }
        if (!chosen)
            return std::nullopt;
        if (evicted)
            *evicted = slots_[*chosen]->address;
    }
    slots_[*chosen] = Slot{address, std::nullopt};
    return chosen;
}

void SlotTable::mark_live(const IpAddress& address)
{
    if (auto slot = find(address))
        slots_[*slot]->dead_since_ns.reset();
}

void SlotTable::mark_dead(const IpAddress& address, uint64_t since_ns)
{
    if (auto slot = find(address))
        if (!slots_[*slot]->dead_since_ns)
            slots_[*slot]->dead_since_ns = since_ns;
}

uint32_t SlotTable::slots_in_use() const
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < slots_.size(); i++)
        if (slots_[i])
            n = i + 1;
    return n;
}

lb_config dataplane_config(const Config& cfg, const lb_config& base, uint32_t self_slot,
                           uint32_t node_slots, uint32_t peer_interval_ms)
{
    lb_config out = base;
    out.accept_below_bp = cfg.accept_below * 100;
    out.min_difference_bp = cfg.min_difference * 100;
    out.pick = cfg.pick_least ? LB_PICK_LEAST : LB_PICK_WEIGHTED;
    out.forward = cfg.forward_ipip ? LB_FORWARD_IPIP : LB_FORWARD_L2;
    out.conn_cost_bp = cfg.conn_cost_bp();
    out.inflight_capacity = cfg.source == LoadSource::inflight ? cfg.capacity : 0;
    out.high_water_bp = cfg.high_water * 100;
    out.overflow = cfg.overflow_refuse ? LB_OVERFLOW_REFUSE : LB_OVERFLOW_KEEP;
    out.choices = cfg.choices;
    out.self_slot = self_slot;
    out.node_slots = node_slots;
    // The membership marks silent peers itself; this is the backstop for
    // entries this agent stopped rewriting: as long as the membership would
    // take to call the slowest peer dead.
    out.peer_stale_ns =
        uint64_t(cfg.dead_after) * std::max(cfg.interval_ms, peer_interval_ms) * 1'000'000ull;
    out.self_stale_ns = uint64_t(cfg.failsafe_after_ms) * 1'000'000ull;
    // Fenced once peers would call this node dead: its own information
    // stops at its agent, as its heartbeats do.
    out.fence_after_ns = uint64_t(cfg.dead_after) * cfg.interval_ms * 1'000'000ull;
    out.http_wscale = cfg.window_scale;
    out.syn_cookies = cfg.syn_cookies;
    out.syn_cookie_rate = cfg.syn_cookie_rate;
    return out;
}

uint8_t dataplane_state(const Peer& p)
{
    switch (p.state) {
    case PeerState::alive:
        return p.routable() ? LB_NODE_ALIVE : LB_NODE_UNROUTABLE;
    case PeerState::suspect:
        return LB_NODE_SUSPECT;
    case PeerState::dead:
        return LB_NODE_DEAD;
    }
    return LB_NODE_DEAD;
}

namespace {

std::vector<std::optional<IpAddress>> pinned_slots(const Maps& maps)
{
    std::vector<std::optional<IpAddress>> out(LB_MAX_NODES);
    for (uint32_t i = 0; i < LB_MAX_NODES; i++) {
        lb_node n = maps.node(i);
        if (n.state != LB_NODE_EMPTY)
            out[i] = IpAddress{n.addr, n.family};
    }
    return out;
}

uint64_t monotonic_now_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// Every slot recovered from the pinned table is held by no known node yet,
// so there is always one for this node.
uint32_t claim_self_slot(SlotTable& slots, const IpAddress& self)
{
    std::optional<IpAddress> evicted;
    auto slot = slots.slot_for(self, &evicted);
    if (!slot)
        throw Error(fmt::format("no node slot for this node ({})", format_ip(self)));
    if (evicted)
        spdlog::info("node slot {} of {} (not heard from) reused for this node", *slot, format_ip(*evicted));
    slots.mark_live(self);
    return *slot;
}

constexpr uint64_t kRefusalLogPeriodNs = 10'000'000'000ull;

} // namespace

NodeTable::NodeTable(Maps& maps, const Config& cfg, const Mac& self_mac)
    : maps_(maps), cfg_(cfg), self_address_(cfg.node_address), self_mac_(self_mac),
      slots_(pinned_slots(maps)), self_slot_(claim_self_slot(slots_, cfg.node_address)),
      candidates_([&maps](uint32_t list, const lb_candidates& value) {
          maps.set_candidates(list, value);
      })
{
    // Peers are listed as they are heard (within a heartbeat period); the
    // first flush (apply_config) empties the lists a previous run left.
    candidates_.set_self(self_slot_);
    // The self slot exists before the settings point at it; its load is
    // written as stale (updated_ns 0) so the fail-safe holds until the
    // first measurement.
    lb_node self = maps_.node(self_slot_);
    self.addr = self_address_.addr;
    self.family = self_address_.family;
    std::copy(self_mac_.begin(), self_mac_.end(), self.mac);
    if (self.state == LB_NODE_EMPTY)
        self.state = LB_NODE_ALIVE;
    maps_.set_node(self_slot_, self);
    apply_config(cfg);
    for (const auto& address : cfg.owned_services)
        add_service_address(address);
}

void NodeTable::apply_config(const Config& cfg)
{
    cfg_ = cfg;
    self_cost_bp_ = cfg.conn_cost_bp();
    self_weight_ = cfg.weight_hundredths();
    self_standby_ = cfg.standby;
    maps_.set_config(dataplane_config(cfg, maps_.config(), self_slot_, slots_.slots_in_use(),
                                      peer_interval_ms_));
    candidates_.set_accept_below(cfg.accept_below * 100);
    candidates_.flush();
}

void NodeTable::write_self(uint32_t load_bp, bool healthy, uint64_t now_ns)
{
    lb_node n{};
    n.addr = self_address_.addr;
    n.family = self_address_.family;
    std::copy(self_mac_.begin(), self_mac_.end(), n.mac);
    n.state = healthy ? LB_NODE_ALIVE : LB_NODE_UNROUTABLE;
    n.load_bp = load_bp;
    // The new measure includes what this node kept so far: only what it
    // keeps from now on is added to it.
    n.handed_at_report = maps_.handed_open(self_slot_);
    n.updated_ns = now_ns;
    // Not from cfg_: this runs on the meter's thread.
    n.conn_cost_bp = self_cost_bp_;
    n.weight = self_weight_;
    n.flags = self_standby_ ? LB_NODE_STANDBY : 0;
    maps_.set_node_entry(self_slot_, n);
}

std::optional<uint32_t> NodeTable::write_peer(const Peer& p)
{
    const IpAddress& address = p.last.node_address;
    const uint64_t now = monotonic_now_ns();
    // A node that moved to another address no longer holds its old slot.
    auto [known, inserted] = peer_addresses_.try_emplace(p.last.node_id, address);
    if (!inserted && known->second != address) {
        if (auto old = slots_.find(known->second)) {
            slots_.mark_dead(known->second, now);
            lb_node gone = maps_.node(*old);
            gone.state = LB_NODE_DEAD;
            maps_.set_node(*old, gone);
            candidates_.set_peer(*old, CandidatePeer{});
            candidates_.flush();
        }
        known->second = address;
    }
    // A dead peer that lost its slot does not take another from the living,
    // and no peer takes this node's own slot (a peer announcing our address).
    if ((p.state == PeerState::dead && !slots_.find(address)) || address == self_address_)
        return std::nullopt;
    const uint32_t before = slots_.slots_in_use();
    std::optional<IpAddress> evicted;
    const auto found = slots_.slot_for(address, &evicted);
    if (!found) {
        // Every slot belongs to a live node: this one is left out of the
        // data plane (no new connection goes to it) until one dies.
        slots_refused_++;
        if (!refusal_logged_ns_ || now - refusal_logged_ns_ >= kRefusalLogPeriodNs) {
            spdlog::warn("no node slot for peer {} ({}): all {} belong to live nodes ({} refused so far)",
                         p.last.node_id, format_ip(address), LB_MAX_NODES, slots_refused_.load());
            refusal_logged_ns_ = now;
        }
        return std::nullopt;
    }
    const uint32_t slot = *found;
    if (evicted)
        spdlog::info("node slot {} of {} (dead or gone) reused for peer {} ({})", slot,
                     format_ip(*evicted), p.last.node_id, format_ip(address));
    if (p.state == PeerState::dead)
        slots_.mark_dead(address, p.state_since_ns ? p.state_since_ns : now);
    else
        slots_.mark_live(address);
    lb_node n{};
    n.addr = p.last.node_address.addr;
    n.family = p.last.node_address.family;
    std::copy(p.last.mac.begin(), p.last.mac.end(), n.mac);
    n.state = dataplane_state(p);
    n.load_bp = p.last.load_bp_exact ? p.last.load_bp_exact : p.last.load_bp;
    // The report includes the connections this node handed the peer so far
    // (those still open): the data plane corrects it by the changes since.
    n.handed_at_report = maps_.handed_open(slot);
    // A peer that does not announce its cost is taken to cost what one
    // connection costs here.
    n.conn_cost_bp = p.last.conn_cost_bp ? p.last.conn_cost_bp : cfg_.conn_cost_bp();
    n.weight = p.last.weight;
    n.flags = p.last.standby ? LB_NODE_STANDBY : 0;
    // Freshness is when we heard the peer, on the data plane's clock.
    n.updated_ns = p.last_heard_ns ? p.last_heard_ns : monotonic_now_ns();
    maps_.set_node(slot, n);
    candidates_.set_peer(slot, {n.state == LB_NODE_ALIVE, p.last.standby, n.load_bp});
    candidates_.flush(); // only the lists that change: most heartbeats change none
    const bool slower = p.last.interval_ms > peer_interval_ms_;
    peer_interval_ms_ = std::max(peer_interval_ms_, p.last.interval_ms);
    if (slots_.slots_in_use() != before || slower)
        apply_config(cfg_);
    return slot;
}

void NodeTable::add_service_address(const IpAddress& address)
{
    for (const auto& svc : cfg_.services) {
        lb_service_key key{};
        key.addr = address.addr;
        key.family = address.family;
        key.port = htons(svc.port);
        maps_.add_service(key, lb_service{svc.mode == ServiceMode::http ? LB_MODE_HTTP : LB_MODE_L4, 0, 0});
    }
}

void NodeTable::remove_service_address(const IpAddress& address)
{
    for (const auto& svc : cfg_.services) {
        lb_service_key key{};
        key.addr = address.addr;
        key.family = address.family;
        key.port = htons(svc.port);
        maps_.remove_service(key);
    }
}

void NodeTable::add_shared_address(const IpAddress& address)
{
    for (const auto& svc : cfg_.services) {
        lb_service_key key{};
        key.addr = address.addr;
        key.family = address.family;
        key.port = htons(svc.port);
        // l4 whatever the service's mode: the owner of the client's bucket
        // decides at the SYN.
        maps_.add_service(key, lb_service{LB_MODE_L4, 0, LB_SERVICE_SHARED});
    }
}

std::vector<IpAddress> NodeTable::remove_other_shared(const std::vector<IpAddress>& keep)
{
    std::vector<IpAddress> removed;
    for (const auto& [key, svc] : maps_.services()) {
        if (!(svc.flags & LB_SERVICE_SHARED))
            continue;
        const IpAddress address{key.addr, key.family};
        if (std::find(keep.begin(), keep.end(), address) != keep.end())
            continue;
        maps_.remove_service(key);
        if (std::find(removed.begin(), removed.end(), address) == removed.end())
            removed.push_back(address);
    }
    return removed;
}

void NodeTable::write_uri_rules(const std::vector<UriRuleConfig>& rules,
                                const std::map<std::string, IpAddress>& addresses)
{
    auto copy_bytes = [](uint8_t* to, size_t room, const std::string& from) {
        std::memset(to, 0, room);
        std::memcpy(to, from.data(), std::min(room, from.size()));
        return static_cast<uint16_t>(std::min(room, from.size()));
    };
    std::vector<NodeSet> members;
    for (uint32_t i = 0; i < rules.size() && i < LB_MAX_URI_RULES; i++) {
        const UriRuleConfig& r = rules[i];
        lb_uri_rule out{};
        out.pattern_len = copy_bytes(out.pattern, sizeof(out.pattern), r.pattern);
        out.exit_len = copy_bytes(out.exit_pattern, sizeof(out.exit_pattern), r.exit);
        out.host_len = copy_bytes(out.host, sizeof(out.host), r.host);
        out.port = htons(r.port);
        out.flags = (r.glob ? LB_URI_GLOB : 0) | (r.exit_glob ? LB_URI_EXIT_GLOB : 0) |
                    (r.stateful ? LB_URI_STATEFUL : 0);
        out.pin_timeout_s = r.timeout_s;
        for (const auto& id : r.nodes) {
            auto it = addresses.find(id);
            if (it == addresses.end())
                continue;
            if (it->second == self_address_)
                out.flags |= LB_URI_SELF;
            if (auto slot = slot_of(it->second))
                lb_node_set_add(out.nodes, *slot);
        }
        maps_.set_uri_rule(i, out);
        NodeSet& set = members.emplace_back();
        for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++)
            set[slot] = lb_node_set_has(out.nodes, slot);
    }
    lb_config cfg = maps_.config();
    cfg.uri_rules = static_cast<uint32_t>(std::min<size_t>(rules.size(), LB_MAX_URI_RULES));
    maps_.set_config(cfg);
    // After the rules: the data plane takes a listed slot only if the
    // rule names it.
    candidates_.set_rules(members);
    candidates_.flush();
}

} // namespace peerlb
