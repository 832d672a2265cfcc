#include "candidates.h"

#include <algorithm>
#include <cstring>

namespace peerlb {

CandidateLists::CandidateLists(Write write) : write_(std::move(write)), peers_(LB_MAX_NODES) {}

bool CandidateLists::member(uint32_t list, uint32_t slot) const
{
    if (slot == self_)
        return false;
    if (list == LB_CANDIDATES_ANY)
        return true;
    return list - 1 < rules_.size() && rules_[list - 1][slot];
}

bool CandidateLists::listed(uint32_t list, uint32_t slot) const
{
    const CandidatePeer& p = peers_[slot];
    // The gate: no usable active member under T1.
    return member(list, slot) && p.usable && (!p.standby || lists_[list].active_below == 0);
}

void CandidateLists::count(uint32_t list, uint32_t slot, int sign)
{
    const CandidatePeer& p = peers_[slot];
    if (!p.usable)
        return;
    List& l = lists_[list];
    if (p.standby)
        l.standby += sign;
    else if (p.load_bp < t1_bp_)
        l.active_below += sign;
}

void CandidateLists::recount(uint32_t list)
{
    List& l = lists_[list];
    l.active_below = l.standby = 0;
    for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++)
        if (member(list, slot))
            count(list, slot, 1);
    l.dirty = true;
}

void CandidateLists::set_self(uint32_t slot)
{
    if (slot == self_)
        return;
    self_ = slot;
    for (uint32_t list = 0; list < LB_CANDIDATE_LISTS; list++)
        recount(list);
}

void CandidateLists::set_accept_below(uint32_t t1_bp)
{
    if (t1_bp == t1_bp_)
        return;
    t1_bp_ = t1_bp;
    for (uint32_t list = 0; list < LB_CANDIDATE_LISTS; list++)
        recount(list);
}

// Constant time: the slot belongs to list 0 and to at most every rule's.
void CandidateLists::set_peer(uint32_t slot, const CandidatePeer& peer)
{
    if (slot >= LB_MAX_NODES)
        return;
    struct Before {
        uint32_t list;
        bool listed, gate_open;
        uint32_t standby;
    };
    std::array<Before, LB_CANDIDATE_LISTS> before;
    size_t n = 0;
    for (uint32_t list = 0; list < LB_CANDIDATE_LISTS; list++) {
        if (!member(list, slot))
            continue;
        const List& l = lists_[list];
        before[n++] = {list, listed(list, slot), l.active_below == 0, l.standby};
        count(list, slot, -1);
    }
    peers_[slot] = peer;
    for (size_t i = 0; i < n; i++) {
        const Before& b = before[i];
        count(b.list, slot, 1);
        List& l = lists_[b.list];
        // The slot came or went, or the gate let the standby members in or out.
        const bool gate_moved = (l.active_below == 0) != b.gate_open && (l.standby || b.standby);
        if (listed(b.list, slot) != b.listed || gate_moved)
            l.dirty = true;
    }
}

void CandidateLists::set_rules(const std::vector<NodeSet>& members)
{
    std::vector<NodeSet> next(members.begin(),
                              members.begin() + std::min<size_t>(members.size(), LB_MAX_URI_RULES));
    const std::vector<NodeSet> old = std::move(rules_);
    rules_ = std::move(next);
    for (uint32_t r = 0; r < LB_MAX_URI_RULES; r++) {
        const NodeSet was = r < old.size() ? old[r] : NodeSet{};
        const NodeSet is = r < rules_.size() ? rules_[r] : NodeSet{};
        if (was != is)
            recount(lb_rule_candidates(r));
    }
}

bool CandidateLists::in_a_rule(uint32_t slot) const
{
    return slot < LB_MAX_NODES &&
           std::any_of(rules_.begin(), rules_.end(), [&](const NodeSet& r) { return r[slot]; });
}

void CandidateLists::flush()
{
    std::vector<uint16_t> content;
    for (uint32_t list = 0; list < LB_CANDIDATE_LISTS; list++) {
        List& l = lists_[list];
        if (!l.dirty)
            continue;
        l.dirty = false;
        rebuilds_++;
        content.clear();
        for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++)
            if (listed(list, slot))
                content.push_back(uint16_t(slot));
        if (l.written && content == l.content)
            continue;
        lb_candidates value{};
        value.count = uint32_t(content.size());
        std::copy(content.begin(), content.end(), value.slots);
        write_(list, value);
        l.content = content;
        l.written = true;
        writes_++;
    }
}

void sync_candidates(Maps& maps)
{
    const lb_config cfg = maps.config();
    CandidateLists lists([&maps](uint32_t list, const lb_candidates& value) {
        const lb_candidates now = maps.candidates(list);
        if (std::memcmp(&now, &value, sizeof(value)) != 0)
            maps.set_candidates(list, value);
    });
    lists.set_self(cfg.self_slot);
    lists.set_accept_below(cfg.accept_below_bp);
    for (uint32_t slot = 0; slot < cfg.node_slots && slot < LB_MAX_NODES; slot++) {
        const lb_node n = maps.node(slot);
        lists.set_peer(slot, {n.state == LB_NODE_ALIVE, (n.flags & LB_NODE_STANDBY) != 0, n.load_bp});
    }
    std::vector<NodeSet> rules;
    for (uint32_t r = 0; r < cfg.uri_rules && r < LB_MAX_URI_RULES; r++) {
        const lb_uri_rule rule = maps.uri_rule(r);
        NodeSet& members = rules.emplace_back();
        for (uint32_t slot = 0; slot < LB_MAX_NODES; slot++)
            members[slot] = lb_node_set_has(rule.nodes, slot);
    }
    lists.set_rules(rules);
    lists.flush();
}

} // namespace peerlb
