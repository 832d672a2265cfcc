// The agent's configuration: TOML in, a validated Config out (config.h).
//
// Everything is checked before anything is used, and the first problem
// refuses the whole file with "FILE:LINE: KEY: what is wrong". KEY is the
// dotted key; array entries are counted from 0 ("service[1].port",
// "node.services[0]"). LINE is the offending value's line, or for a missing
// key the line of its table (1 when the table is missing too).
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "../dataplane/error.h"
#include "../dataplane/fd.h"
#include "heartbeat.h"
#include "load_period.h"

extern "C" {
#include "../../bpf/decision.h" // LB_MAX_CHOICES
#include "../../maps/common.h"
#include "../../maps/uri.h"
}

namespace peerlb {
namespace {

constexpr size_t kMinKeyBytes = 16;
constexpr size_t kMaxNodeIdLength = kMaxNodeIdLen;
constexpr size_t kMaxInterfaceName = 15; // IFNAMSIZ - 1

// ---------------------------------------------------------------------------
// Small pieces

// The one shape of every refusal.
[[noreturn]] void refuse(const std::string& path, uint32_t line, std::string_view key,
                         std::string_view what)
{
    throw Error(fmt::format("{}:{}: {}: {}", path, line, key, what));
}

uint32_t line_of(const toml::node& node)
{
    // Tables toml++ creates implicitly (from dotted keys) may have no line.
    return std::max<uint32_t>(node.source().begin.line, 1);
}

std::string_view type_name(toml::node_type type)
{
    switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

// All of path's bytes; throws SystemError naming `what` (e.g. "cannot read F").
std::string read_all(const std::string& path, const std::string& what)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw SystemError(what, errno);
    std::string data;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw SystemError(what, errno); // e.g. EISDIR
        if (n == 0)
            return data;
        data.append(buf, static_cast<size_t>(n));
    }
}

bool same_address(const IpAddress& a, const IpAddress& b)
{
    // IPv4 leaves the rest of lb_addr zero, so comparing all bytes is exact.
    return a.family == b.family && std::memcmp(&a.addr, &b.addr, sizeof(a.addr)) == 0;
}

bool same_endpoint(const Endpoint& a, const Endpoint& b)
{
    return same_address(a.address, b.address) && a.port == b.port;
}

const uint8_t* address_bytes(const IpAddress& ip)
{
    return reinterpret_cast<const uint8_t*>(&ip.addr);
}

bool is_multicast(const IpAddress& ip)
{
    const uint8_t first = address_bytes(ip)[0]; // network order
    return ip.family == LB_FAMILY_IPV4 ? (first & 0xf0) == 0xe0 : first == 0xff;
}

bool is_unspecified(const IpAddress& ip)
{
    static const lb_addr zero{};
    return std::memcmp(&ip.addr, &zero, sizeof(zero)) == 0;
}

std::string_view family_name(const IpAddress& ip)
{
    return ip.family == LB_FAMILY_IPV4 ? "IPv4" : "IPv6";
}

// "1".."65535", digits only.
uint16_t parse_port(const std::string& text, const std::string& whole)
{
    const bool digits =
        !text.empty() && text.size() <= 5 &&
        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    const unsigned long port = digits ? std::stoul(text) : 0;
    if (port < 1 || port > 65535)
        throw Error(fmt::format("'{}': the port must be a number 1..65535", whole));
    return static_cast<uint16_t>(port);
}

// "ADDR:PORT" or "[IPv6]:PORT". Without default_port the port is required;
// with it, "ADDR", "[IPv6]" and a bare IPv6 address are accepted too.
Endpoint parse_endpoint(const std::string& text, std::optional<uint16_t> default_port)
{
    std::string host = text;
    std::optional<std::string> port_text;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos)
            throw Error(fmt::format("'{}': missing ']'", text));
        host = text.substr(1, close - 1);
        const std::string rest = text.substr(close + 1);
        if (!rest.empty() && rest.front() == ':')
            port_text = rest.substr(1);
        else if (!rest.empty())
            throw Error(fmt::format("'{}': expected ':PORT' after ']'", text));
    } else if (const size_t colon = text.find(':');
               colon != std::string::npos && text.find(':', colon + 1) == std::string::npos) {
        // Exactly one colon: IPv4 with a port. More colons: a bare IPv6 address.
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }

    Endpoint ep;
    ep.address = parse_ip(host);
    if (text.starts_with('[') && ep.address.family != LB_FAMILY_IPV6)
        throw Error(fmt::format("'{}': only IPv6 addresses go in brackets", text));
    if (port_text)
        ep.port = parse_port(*port_text, text);
    else if (default_port)
        ep.port = *default_port;
    else
        throw Error(fmt::format("'{}' has no port (ADDR:PORT, or [IPv6]:PORT)", text));
    return ep;
}

// ---------------------------------------------------------------------------
// Typed, located access to one table's keys

class Section {
public:
    // `table` may be null (the table is absent): every key is then missing.
    Section(const std::string& path, std::string name, const toml::table* table)
        : path_(path), name_(std::move(name)), table_(table)
    {
    }

    uint32_t line() const { return table_ ? line_of(*table_) : 1; }
    bool present() const { return table_ != nullptr; }
    std::string key(std::string_view k) const { return fmt::format("{}.{}", name_, k); }

    [[noreturn]] void fail_at(uint32_t line, std::string_view key, std::string_view what) const
    {
        refuse(path_, line, key, what);
    }
    [[noreturn]] void fail(const toml::node& node, std::string_view k, std::string_view what) const
    {
        fail_at(line_of(node), key(k), what);
    }
    [[noreturn]] void missing(std::string_view k, std::string_view why = "is required") const
    {
        fail_at(line(), key(k), why);
    }

    // Typos must not pass silently: refuses any key not listed.
    void allow_only(std::initializer_list<std::string_view> known) const
    {
        if (!table_)
            return;
        for (auto&& [k, node] : *table_) {
            if (std::find(known.begin(), known.end(), k.str()) == known.end())
                fail(node, k.str(),
                     fmt::format("unknown key (expected one of: {})", fmt::join(known, ", ")));
        }
    }

    const toml::node* find(std::string_view k) const { return table_ ? table_->get(k) : nullptr; }

    const toml::node* find(std::string_view k, toml::node_type type) const
    {
        const toml::node* node = find(k);
        if (node && node->type() != type)
            fail(*node, k,
                 fmt::format("expected {}, got {}", type_name(type), type_name(node->type())));
        return node;
    }

    std::optional<int64_t> integer(std::string_view k, int64_t lo, int64_t hi) const
    {
        const toml::node* node = find(k, toml::node_type::integer);
        if (!node)
            return std::nullopt;
        const int64_t v = node->as_integer()->get();
        if (v < lo || v > hi)
            fail(*node, k, fmt::format("{} is out of range {}..{}", v, lo, hi));
        return v;
    }

    uint32_t u32(std::string_view k, int64_t lo, int64_t hi, uint32_t fallback) const
    {
        return static_cast<uint32_t>(integer(k, lo, hi).value_or(fallback));
    }

    // A number; an integer is as good as a float here ("conn_cost = 1").
    double number(std::string_view k, double lo, double hi, double fallback) const
    {
        const toml::node* node = find(k);
        if (!node)
            return fallback;
        double v;
        if (auto i = node->as_integer())
            v = static_cast<double>(i->get());
        else if (auto f = node->as_floating_point())
            v = f->get();
        else
            fail(*node, k, fmt::format("expected a number, got {}", type_name(node->type())));
        if (!(v >= lo && v <= hi)) // also refuses nan
            fail(*node, k, fmt::format("{} is out of range {}..{}", v, lo, hi));
        return v;
    }

    bool boolean(std::string_view k, bool fallback) const
    {
        const toml::node* node = find(k, toml::node_type::boolean);
        return node ? node->as_boolean()->get() : fallback;
    }

    std::optional<std::string> string(std::string_view k) const
    {
        const toml::node* node = find(k, toml::node_type::string);
        if (!node)
            return std::nullopt;
        return node->as_string()->get();
    }

    std::string required_string(std::string_view k) const
    {
        auto s = string(k);
        if (!s)
            missing(k);
        if (s->empty())
            fail(*find(k), k, "must not be empty");
        return *s;
    }

    // One of a fixed set of words.
    template <typename T>
    T choice(std::string_view k, std::initializer_list<std::pair<std::string_view, T>> options,
             T fallback) const
    {
        auto s = string(k);
        if (!s)
            return fallback;
        for (const auto& [word, value] : options)
            if (*s == word)
                return value;
        std::vector<std::string> words;
        for (const auto& option : options)
            words.push_back(fmt::format("\"{}\"", option.first));
        fail(*find(k), k, fmt::format("\"{}\" is not one of {}", *s, fmt::join(words, ", ")));
    }

    // The strings of an array key, each with its node (for locating errors).
    std::optional<std::vector<std::pair<std::string, const toml::node*>>>
    strings(std::string_view k) const
    {
        const toml::node* node = find(k, toml::node_type::array);
        if (!node)
            return std::nullopt;
        std::vector<std::pair<std::string, const toml::node*>> out;
        const toml::array& array = *node->as_array();
        for (size_t i = 0; i < array.size(); i++) {
            const toml::node& item = *array.get(i);
            const std::string item_key = fmt::format("{}[{}]", k, i);
            if (!item.is_string())
                fail(item, item_key,
                     fmt::format("expected a string, got {}", type_name(item.type())));
            out.emplace_back(item.as_string()->get(), &item);
        }
        return out;
    }

    // Runs f(); an Error it throws (e.g. from parse_ip) gets the node's
    // line and `full_key`.
    template <typename F>
    auto located(const toml::node& node, std::string_view full_key, F&& f) const
    {
        try {
            return f();
        } catch (const Error& e) {
            fail_at(line_of(node), full_key, e.what());
        }
    }

private:
    const std::string& path_;
    std::string name_;
    const toml::table* table_;
};

// ---------------------------------------------------------------------------
// The tables

// Top-level names: every one that is present must have the right shape.
void check_top_level(const std::string& path, const toml::table& root)
{
    static constexpr std::string_view kTables[] = {"node", "cluster", "balance", "load",
                                                   "health", "metrics", "log", "http", "shared"};
    for (auto&& [k, node] : root) {
        const std::string_view name = k.str();
        if (name == "service" || name == "uri_rule") {
            if (!node.is_array_of_tables())
                refuse(path, line_of(node), name,
                       fmt::format("expected an array of tables ([[{}]]), got {}", name,
                                   type_name(node.type())));
            continue;
        }
        const bool known =
            std::find(std::begin(kTables), std::end(kTables), name) != std::end(kTables);
        if (known && !node.is_table())
            refuse(path, line_of(node), name,
                   fmt::format("expected a table, got {}", type_name(node.type())));
        if (!known)
            refuse(path, line_of(node), name,
                   fmt::format("unknown {} (expected one of: {}, service, uri_rule)",
                               node.is_table() || node.is_array_of_tables() ? "table" : "key",
                               fmt::join(kTables, ", ")));
    }
}

const toml::table* table_at(const toml::table& root, std::string_view name)
{
    const toml::node* node = root.get(name);
    return node ? node->as_table() : nullptr;
}

// A unicast address a node can have: not multicast, not 0.0.0.0 / ::.
IpAddress host_address(const Section& s, const toml::node& node, std::string_view full_key,
                       const std::string& text)
{
    IpAddress ip = s.located(node, full_key, [&] { return parse_ip(text); });
    if (is_multicast(ip) || is_unspecified(ip))
        s.fail_at(line_of(node), full_key, fmt::format("{} is not a unicast address", text));
    return ip;
}

// [node] weight and standby: settable at run time (announced in heartbeats).
void parse_node_capacity(const Section& s, Config& cfg)
{
    cfg.weight = s.number("weight", 0.01, 100, cfg.weight);
    cfg.standby = s.boolean("standby", cfg.standby);
}

void parse_node(const Section& s, Config& cfg)
{
    s.allow_only({"id", "interface", "address", "services", "state_dir", "weight", "standby"});
    parse_node_capacity(s, cfg);

    cfg.node_id = s.required_string("id");
    const bool id_ok = cfg.node_id.size() <= kMaxNodeIdLength &&
                       std::all_of(cfg.node_id.begin(), cfg.node_id.end(), [](char c) {
                           // ASCII only, whatever the locale: ids travel in heartbeats.
                           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
                       });
    if (!id_ok)
        s.fail(*s.find("id"), "id",
               fmt::format("\"{}\" must be 1..{} characters of A-Z a-z 0-9 _ . -", cfg.node_id,
                           kMaxNodeIdLength));

    // The kernel's rule for device names (dev_valid_name).
    cfg.interface = s.required_string("interface");
    const bool if_ok =
        cfg.interface.size() <= kMaxInterfaceName && cfg.interface != "." &&
        cfg.interface != ".." &&
        std::none_of(cfg.interface.begin(), cfg.interface.end(), [](char c) {
            return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
        });
    if (!if_ok)
        s.fail(*s.find("interface"), "interface",
               fmt::format("\"{}\" is not an interface name", cfg.interface));

    const std::string address = s.required_string("address");
    cfg.node_address = host_address(s, *s.find("address"), s.key("address"), address);

    // Required, but may be empty: a node need not own a service address.
    auto services = s.strings("services");
    if (!services)
        s.missing("services", "is required (it may be an empty list)");
    // What a heartbeat can carry (and, with as many held for a dead peer,
    // still fit in one datagram).
    if (services->size() > kMaxOwnedServices)
        s.fail(*s.find("services"), "services",
               fmt::format("{} service addresses; a node owns at most {}", services->size(),
                           kMaxOwnedServices));
    for (size_t i = 0; i < services->size(); i++) {
        const auto& [text, node] = (*services)[i];
        const std::string k = s.key(fmt::format("services[{}]", i));
        IpAddress ip = host_address(s, *node, k, text);
        if (same_address(ip, cfg.node_address))
            s.fail_at(line_of(*node), k,
                      fmt::format("{} is node.address; a service address must differ", text));
        for (size_t j = 0; j < cfg.owned_services.size(); j++)
            if (same_address(ip, cfg.owned_services[j]))
                s.fail_at(line_of(*node), k,
                          fmt::format("{} is listed twice (also services[{}])", text, j));
        cfg.owned_services.push_back(ip);
    }

    // Where the incarnation counter lives (incarnation.h); one per node id,
    // so that test nodes sharing a machine never share it.
    cfg.state_dir = kDefaultStateRoot + cfg.node_id;
    if (auto dir = s.string("state_dir")) {
        if (dir->find('\0') != std::string::npos)
            s.fail(*s.find("state_dir"), "state_dir", "must not contain a NUL character");
        if (dir->empty() || dir->front() != '/')
            s.fail(*s.find("state_dir"), "state_dir",
                   fmt::format("\"{}\" is not an absolute path", *dir));
        cfg.state_dir = *dir;
    }
}

// The keys of each table that may also change at run time (apply_setting):
// absent keys keep cfg's value.
void parse_cluster_timing(const Section& s, Config& cfg)
{
    cfg.interval_ms = s.u32("interval_ms", 10, 60000, cfg.interval_ms);
    cfg.dead_after = s.u32("dead_after", 2, 100, cfg.dead_after);
    cfg.load_step = s.u32("load_step", 1, 100, cfg.load_step);
    cfg.replay_window_ms = s.u32("replay_window_ms", 100, 3600000, cfg.replay_window_ms);
    cfg.hold_down_ms = s.u32("hold_down_ms", 0, 3600000, cfg.hold_down_ms);
    cfg.grace_ms = s.u32("grace_ms", 0, 600000, cfg.grace_ms);
}

void parse_cluster(const Section& s, Config& cfg, uint32_t& key_file_line)
{
    s.allow_only({"group", "peers", "key_file", "interval_ms", "dead_after", "load_step",
                  "replay_window_ms", "takeover", "hold_down_ms", "grace_ms"});

    const toml::node* group = s.find("group", toml::node_type::string);
    const toml::node* peers = s.find("peers", toml::node_type::array);
    if (group && peers)
        s.fail(*peers, "peers", "give either cluster.group or cluster.peers, not both");
    if (!group && !peers)
        s.missing("group", "is required (or cluster.peers)");

    auto check_family = [&](const toml::node& node, std::string_view k, const Endpoint& ep) {
        if (ep.address.family != cfg.node_address.family)
            s.fail_at(line_of(node), k,
                      fmt::format("an {} address, but node.address is {}", family_name(ep.address),
                                  family_name(cfg.node_address)));
    };

    if (group) {
        const std::string text = group->as_string()->get();
        Endpoint ep =
            s.located(*group, s.key("group"), [&] { return parse_endpoint(text, std::nullopt); });
        if (!is_multicast(ep.address))
            s.fail(*group, "group",
                   fmt::format("'{}' is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)",
                               text));
        check_family(*group, s.key("group"), ep);
        cfg.group = ep;
    } else {
        auto list = s.strings("peers");
        if (list->empty())
            s.fail(*peers, "peers", "must list at least one peer");
        if (list->size() > LB_MAX_NODES)
            s.fail(*peers, "peers", fmt::format("at most {} peers", LB_MAX_NODES));
        for (size_t i = 0; i < list->size(); i++) {
            const auto& [text, node] = (*list)[i];
            const std::string k = s.key(fmt::format("peers[{}]", i));
            // Captured by name: clang before 16 cannot capture a structured binding.
            const std::string& peer_text = text;
            Endpoint ep = s.located(*node, k, [&] { return parse_endpoint(peer_text, kHeartbeatPort); });
            if (is_multicast(ep.address) || is_unspecified(ep.address))
                s.fail_at(line_of(*node), k, fmt::format("'{}' is not a unicast address", text));
            check_family(*node, k, ep);
            for (size_t j = 0; j < cfg.peers.size(); j++)
                if (same_endpoint(ep, cfg.peers[j]))
                    s.fail_at(line_of(*node), k,
                              fmt::format("'{}' is listed twice (also peers[{}])", text, j));
            cfg.peers.push_back(ep);
        }
    }

    cfg.takeover = s.boolean("takeover", cfg.takeover);
    cfg.key_file = s.required_string("key_file");
    key_file_line = line_of(*s.find("key_file"));

    parse_cluster_timing(s, cfg);
}

void parse_balance(const Section& s, Config& cfg)
{
    s.allow_only({"accept_below", "min_difference", "pick", "forward", "conn_cost",
                  "failsafe_after_ms", "syn_cookies", "syn_cookie_rate", "high_water", "overflow",
                  "choices"});
    cfg.accept_below = s.u32("accept_below", 0, 100, cfg.accept_below);
    cfg.min_difference = s.u32("min_difference", 0, 100, cfg.min_difference);
    cfg.pick_least = s.choice<bool>("pick", {{"weighted", false}, {"least", true}}, cfg.pick_least);
    cfg.forward_ipip = s.choice<bool>("forward", {{"l2", false}, {"ipip", true}}, cfg.forward_ipip);
    cfg.conn_cost = s.number("conn_cost", 0, 100, cfg.conn_cost);
    cfg.failsafe_after_ms = s.u32("failsafe_after_ms", 10, UINT32_MAX, cfg.failsafe_after_ms);
    cfg.syn_cookies = s.choice<uint32_t>("syn_cookies",
                                         {{"auto", LB_SYN_COOKIES_AUTO},
                                          {"always", LB_SYN_COOKIES_ALWAYS},
                                          {"off", LB_SYN_COOKIES_OFF}},
                                         cfg.syn_cookies);
    cfg.syn_cookie_rate = s.u32("syn_cookie_rate", 1, 10'000'000, cfg.syn_cookie_rate);
    cfg.high_water = s.u32("high_water", 1, 100, cfg.high_water);
    cfg.overflow_refuse =
        s.choice<bool>("overflow", {{"keep", false}, {"refuse", true}}, cfg.overflow_refuse);
    cfg.choices = s.u32("choices", 0, LB_MAX_CHOICES, cfg.choices);
}

void parse_load_tuning(const Section& s, Config& cfg)
{
    cfg.capacity = s.u32("capacity", 1, UINT32_MAX, cfg.capacity);
    cfg.update_ms = s.u32("update_ms", 1, 1000, cfg.update_ms);
    cfg.smoothing_ms = s.u32("smoothing_ms", 0, 3600000, cfg.smoothing_ms);
}

void parse_load(const Section& s, Config& cfg)
{
    s.allow_only({"source", "capacity", "file", "command", "cgroup", "update_ms", "smoothing_ms"});
    cfg.source = s.choice<LoadSource>("source",
                                      {{"inflight", LoadSource::inflight},
                                       {"connections", LoadSource::connections},
                                       {"cpu", LoadSource::cpu},
                                       {"cgroup", LoadSource::cgroup},
                                       {"file", LoadSource::file},
                                       {"exec", LoadSource::exec}},
                                      cfg.source);
    parse_load_tuning(s, cfg);

    // Each source that reads something needs to be told what; the others'
    // keys are read (so their types are checked) but not needed.
    struct Needs {
        LoadSource source;
        std::string_view key, source_name;
        std::string Config::*field;
    };
    static const Needs kNeeds[] = {{LoadSource::file, "file", "file", &Config::load_file},
                                   {LoadSource::exec, "command", "exec", &Config::load_command},
                                   {LoadSource::cgroup, "cgroup", "cgroup", &Config::cgroup}};
    for (const Needs& n : kNeeds) {
        cfg.*n.field = s.string(n.key).value_or("");
        if (cfg.source == n.source && (cfg.*n.field).empty())
            s.missing(n.key, fmt::format("is required when load.source = \"{}\"", n.source_name));
    }
}

// Well-known ports of protocols where the server sends first (a greeting):
// a connection that waits for the client's request would never start.
const char* server_speaks_first(uint16_t port)
{
    switch (port) {
    case 21: return "FTP";
    case 22: return "SSH";
    case 23: return "Telnet";
    case 25: return "SMTP";
    case 110: return "POP3";
    case 119: return "NNTP";
    case 143: return "IMAP";
    case 587: return "SMTP submission";
    case 3306: return "MySQL";
    case 5900: return "VNC";
    default: return nullptr;
    }
}

void parse_services(const std::string& path, const toml::table& root, Config& cfg)
{
    const toml::node* node = root.get("service");
    if (!node || node->as_array()->empty())
        refuse(path, 1, "service", "at least one [[service]] is required");

    const toml::array& array = *node->as_array();
    for (size_t i = 0; i < array.size(); i++) {
        Section s(path, fmt::format("service[{}]", i), array.get(i)->as_table());
        s.allow_only({"port", "mode"});
        ServiceConfig service;
        auto port = s.integer("port", 1, 65535);
        if (!port)
            s.missing("port");
        service.port = static_cast<uint16_t>(*port);
        service.mode = s.choice<ServiceMode>(
            "mode", {{"l4", ServiceMode::l4}, {"http", ServiceMode::http}}, service.mode);
        if (service.mode == ServiceMode::http)
            if (const char* protocol = server_speaks_first(service.port))
                s.fail(*s.find("mode"), "mode",
                       fmt::format("port {} is {}, whose server speaks first; \"http\" waits for "
                                   "the client's first request (use \"l4\")",
                                   service.port, protocol));
        for (size_t j = 0; j < cfg.services.size(); j++)
            if (cfg.services[j].port == service.port)
                s.fail(*s.find("port"), "port",
                       fmt::format("port {} is already service[{}]", service.port, j));
        cfg.services.push_back(service);
    }
}

void parse_health_timing(const Section& s, Config& cfg)
{
    cfg.health_enabled = s.boolean("enabled", cfg.health_enabled);
    cfg.health_interval_ms = s.u32("interval_ms", 10, 3600000, cfg.health_interval_ms);
    cfg.health_timeout_ms = s.u32("timeout_ms", 1, 3600000, cfg.health_timeout_ms);
    cfg.health_fail_after = s.u32("fail_after", 1, 100, cfg.health_fail_after);
}

void parse_health(const Section& s, Config& cfg)
{
    s.allow_only({"enabled", "port", "http_path", "interval_ms", "timeout_ms", "fail_after"});
    cfg.health_port = static_cast<uint16_t>(s.integer("port", 0, 65535).value_or(0));
    if (cfg.health_port == 0)
        cfg.health_port = cfg.services.front().port;

    // It goes into a request line: one absolute path, no spaces.
    cfg.health_http_path = s.string("http_path").value_or("");
    const std::string& p = cfg.health_http_path;
    if (!p.empty() && (p.front() != '/' || std::any_of(p.begin(), p.end(), [](char c) {
                           return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
                       })))
        s.fail(*s.find("http_path"), "http_path",
               fmt::format("\"{}\" must be a path such as \"/health\"", p));

    parse_health_timing(s, cfg);
}

void parse_metrics(const Section& s, Config& cfg)
{
    s.allow_only({"listen"});
    if (auto listen = s.string("listen"))
        cfg.metrics_listen = s.located(*s.find("listen"), s.key("listen"),
                                       [&] { return parse_endpoint(*listen, std::nullopt); });
}

void parse_log(const Section& s, Config& cfg)
{
    s.allow_only({"level"});
    cfg.log_level = s.choice<std::string_view>("level",
                                               {{"trace", "trace"},
                                                {"debug", "debug"},
                                                {"info", "info"},
                                                {"warn", "warn"},
                                                {"error", "error"}},
                                               cfg.log_level);
}

void parse_http(const Section& s, Config& cfg)
{
    s.allow_only({"cookie_epoch_s", "window_scale", "pin_timeout_s"});
    cfg.cookie_epoch_s = s.u32("cookie_epoch_s", 8, 3600, cfg.cookie_epoch_s);
    cfg.window_scale = s.u32("window_scale", 0, 14, cfg.window_scale);
    cfg.pin_timeout_s = s.u32("pin_timeout_s", 1, 86400, cfg.pin_timeout_s);
}

// A path pattern of a rule: bytes a request line can hold, within the data
// plane's limit (maps/uri.h); a '*' makes it a glob.
std::string path_pattern(const Section& s, std::string_view k, const std::string& text, bool& glob)
{
    const toml::node& node = *s.find(k);
    if (text.empty() || text.size() > LB_URI_PATTERN_MAX)
        s.fail(node, k, fmt::format("must be 1..{} bytes", LB_URI_PATTERN_MAX));
    if (text[0] != '/' && text[0] != '*')
        s.fail(node, k, fmt::format("\"{}\" must start with '/' (or '*')", text));
    for (char c : text)
        if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f ||
            c == '?' || c == '#')
            s.fail(node, k, fmt::format("\"{}\": a path holds no spaces, control bytes, '?' or '#'",
                                        text));
    glob = text.find('*') != std::string::npos;
    return text;
}

void parse_uri_rules(const std::string& path, const toml::table& root, Config& cfg)
{
    const toml::node* node = root.get("uri_rule");
    if (!node)
        return;
    const toml::array& array = *node->as_array();
    if (!cfg.has_http_service())
        refuse(path, line_of(*node), "uri_rule",
               "URI rules apply to services with mode = \"http\"; there is none");
    if (array.size() > LB_MAX_URI_RULES)
        refuse(path, line_of(*array.get(LB_MAX_URI_RULES)), "uri_rule",
               fmt::format("at most {} rules", LB_MAX_URI_RULES));
    for (size_t i = 0; i < array.size(); i++) {
        Section s(path, fmt::format("uri_rule[{}]", i), array.get(i)->as_table());
        s.allow_only({"prefix", "path", "host", "port", "nodes", "stateful", "exit", "timeout_s"});
        UriRuleConfig rule;
        rule.line = s.line();
        auto prefix = s.string("prefix");
        auto glob = s.string("path");
        if (prefix && glob)
            s.fail(*s.find("path"), "path", "give either prefix or path, not both");
        if (!prefix && !glob)
            s.missing("prefix", "is required (or path, a glob with '*')");
        if (prefix) {
            bool has_star = false;
            rule.pattern = path_pattern(s, "prefix", *prefix, has_star);
            if (has_star)
                s.fail(*s.find("prefix"), "prefix", "a prefix has no '*' (use path = \"...*...\")");
        } else {
            rule.pattern = path_pattern(s, "path", *glob, rule.glob);
            rule.glob = true;
        }
        if (auto host = s.string("host")) {
            if (host->empty() || host->size() > LB_URI_HOST_MAX)
                s.fail(*s.find("host"), "host", fmt::format("must be 1..{} bytes", LB_URI_HOST_MAX));
            for (char c : *host)
                if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
                    c != '[' && c != ']')
                    s.fail(*s.find("host"), "host", fmt::format("\"{}\" is not a host name", *host));
            rule.host = *host;
            std::transform(rule.host.begin(), rule.host.end(), rule.host.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        }
        if (auto port = s.integer("port", 1, 65535)) {
            rule.port = static_cast<uint16_t>(*port);
            const bool http_port = std::any_of(cfg.services.begin(), cfg.services.end(), [&](auto& sv) {
                return sv.port == rule.port && sv.mode == ServiceMode::http;
            });
            if (!http_port)
                s.fail(*s.find("port"), "port",
                       fmt::format("{} is not the port of a service with mode = \"http\"", rule.port));
        }
        auto nodes = s.strings("nodes");
        if (!nodes || nodes->empty())
            s.missing("nodes", "must list at least one node id");
        if (nodes->size() > LB_MAX_NODES)
            s.fail(*s.find("nodes"), "nodes", fmt::format("at most {} nodes", LB_MAX_NODES));
        for (size_t j = 0; j < nodes->size(); j++) {
            const auto& [id, item] = (*nodes)[j];
            const bool id_ok = !id.empty() && id.size() <= kMaxNodeIdLength &&
                               std::all_of(id.begin(), id.end(), [](char c) {
                                   return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                                          c == '.' || c == '-';
                               });
            if (!id_ok)
                s.fail_at(line_of(*item), s.key(fmt::format("nodes[{}]", j)),
                          fmt::format("\"{}\" is not a node id", id));
            if (std::find(rule.nodes.begin(), rule.nodes.end(), id) != rule.nodes.end())
                s.fail_at(line_of(*item), s.key(fmt::format("nodes[{}]", j)),
                          fmt::format("\"{}\" is listed twice", id));
            rule.nodes.push_back(id);
        }
        rule.stateful = s.boolean("stateful", false);
        auto exit = s.string("exit");
        if (rule.stateful && !exit)
            s.missing("exit", "is required when stateful = true (the request that ends the pin)");
        if (!rule.stateful && exit)
            s.fail(*s.find("exit"), "exit", "only a stateful rule has an exit");
        if (exit)
            rule.exit = path_pattern(s, "exit", *exit, rule.exit_glob);
        if (!rule.stateful && s.find("timeout_s"))
            s.fail(*s.find("timeout_s"), "timeout_s", "only a stateful rule has a timeout");
        rule.timeout_s = s.u32("timeout_s", 1, 86400, cfg.pin_timeout_s);
        cfg.uri_rules.push_back(rule);
    }
}

// [shared] (DESIGN.md section 5b). After [node]: a shared address must
// differ from the node's own addresses.
void parse_shared(const Section& s, Config& cfg)
{
    s.allow_only({"addresses", "delivery", "buckets", "hash", "daisy_chain_s", "announce",
                  "bird_socket", "bird_protocol"});
    if (!s.present())
        return;
    auto addresses = s.strings("addresses");
    if (!addresses)
        s.missing("addresses", "is required in [shared]");
    if (addresses->empty())
        s.fail(*s.find("addresses"), "addresses", "must list at least one shared address");
    if (addresses->size() > kMaxSharedAddresses)
        s.fail(*s.find("addresses"), "addresses",
               fmt::format("{} addresses; at most {}", addresses->size(), kMaxSharedAddresses));
    for (size_t i = 0; i < addresses->size(); i++) {
        const auto& [text, node] = (*addresses)[i];
        const std::string k = s.key(fmt::format("addresses[{}]", i));
        IpAddress ip = host_address(s, *node, k, text);
        if (same_address(ip, cfg.node_address))
            s.fail_at(line_of(*node), k,
                      fmt::format("{} is node.address; a shared address must differ", text));
        for (const IpAddress& owned : cfg.owned_services)
            if (same_address(ip, owned))
                s.fail_at(line_of(*node), k,
                          fmt::format("{} is also in node.services: an address is either owned by "
                                      "one node or shared by all",
                                      text));
        for (size_t j = 0; j < cfg.shared_addresses.size(); j++)
            if (same_address(ip, cfg.shared_addresses[j]))
                s.fail_at(line_of(*node), k,
                          fmt::format("{} is listed twice (also addresses[{}])", text, j));
        cfg.shared_addresses.push_back(ip);
    }
    cfg.shared_delivery = s.choice<SharedDelivery>(
        "delivery", {{"ecmp", SharedDelivery::ecmp}, {"flood", SharedDelivery::flood}},
        cfg.shared_delivery);
    cfg.shared_buckets = s.u32("buckets", 1, LB_MAX_BUCKETS, cfg.shared_buckets);
    cfg.shared_hash_port = s.choice<bool>("hash", {{"address", false}, {"address+port", true}},
                                          cfg.shared_hash_port);
    cfg.daisy_chain_s = s.u32("daisy_chain_s", 0, 86400, cfg.daisy_chain_s);
    cfg.announce_bird =
        s.choice<bool>("announce", {{"bird", true}, {"none", false}}, cfg.announce_bird);
    if (auto sock = s.string("bird_socket")) {
        if (sock->empty() || sock->front() != '/' || sock->find('\0') != std::string::npos ||
            sock->size() >= sizeof(sockaddr_un::sun_path))
            s.fail(*s.find("bird_socket"), "bird_socket",
                   fmt::format("\"{}\" is not an absolute path of a unix socket", *sock));
        cfg.bird_socket = *sock;
    }
    if (auto proto = s.string("bird_protocol")) {
        const bool ok = !proto->empty() && proto->size() <= 64 &&
                        std::all_of(proto->begin(), proto->end(), [](char c) {
                            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                   (c >= '0' && c <= '9') || c == '_';
                        }) &&
                        !(proto->front() >= '0' && proto->front() <= '9');
        if (!ok)
            s.fail(*s.find("bird_protocol"), "bird_protocol",
                   fmt::format("\"{}\" is not a BIRD protocol name (A-Z a-z 0-9 _, not starting "
                               "with a digit)",
                               *proto));
        cfg.bird_protocol = *proto;
    }
}

// Own load older than failsafe_after_ms makes the node keep everything: it
// must outlast two readings, or a node falls into the fail-safe between two
// ordinary ones. What is wrong ("key: why"), or "".
std::string failsafe_after_problem(const Config& cfg)
{
    const uint32_t period = load_period_ms(cfg);
    if (cfg.failsafe_after_ms >= 2 * period)
        return "";
    return fmt::format("balance.failsafe_after_ms: {} ms is under two readings of the load "
                       "source ({} ms apart): the node would fall into the fail-safe between "
                       "readings",
                       cfg.failsafe_after_ms, period);
}

// parse_config, also telling load_config where key_file was.
Config parse(const std::string& text, const std::string& path, uint32_t& key_file_line)
{
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        throw Error(fmt::format("{}:{}: parse error: {}", path,
                                std::max<uint32_t>(e.source().begin.line, 1), e.description()));
    }

    check_top_level(path, root);
    Config cfg;
    cfg.path = path;
    parse_node(Section(path, "node", table_at(root, "node")), cfg);
    parse_cluster(Section(path, "cluster", table_at(root, "cluster")), cfg, key_file_line);
    parse_balance(Section(path, "balance", table_at(root, "balance")), cfg);
    parse_load(Section(path, "load", table_at(root, "load")), cfg);
    parse_services(path, root, cfg); // before [health]: its port defaults to the first one
    parse_health(Section(path, "health", table_at(root, "health")), cfg);
    parse_metrics(Section(path, "metrics", table_at(root, "metrics")), cfg);
    parse_log(Section(path, "log", table_at(root, "log")), cfg);
    parse_http(Section(path, "http", table_at(root, "http")), cfg);
    parse_uri_rules(path, root, cfg);
    parse_shared(Section(path, "shared", table_at(root, "shared")), cfg);
    if (const std::string problem = failsafe_after_problem(cfg); !problem.empty()) {
        const toml::table* balance = table_at(root, "balance");
        const toml::node* at = balance ? balance->get("failsafe_after_ms") : nullptr;
        throw Error(fmt::format("{}:{}: {}", path, at ? at->source().begin.line : 1, problem));
    }
    return cfg;
}

// Settable at run time, and the parser of the table each belongs to. Not
// here: identity, addresses, the key, forwarding and the load source's kind
// (a restart applies those).
struct RuntimeSetting {
    std::string_view key;
    void (*parse)(const Section&, Config&);
};
const RuntimeSetting kRuntimeSettings[] = {
    {"balance.accept_below", parse_balance},   {"balance.min_difference", parse_balance},
    {"balance.pick", parse_balance},           {"balance.conn_cost", parse_balance},
    {"balance.failsafe_after_ms", parse_balance},
    {"balance.syn_cookies", parse_balance},    {"balance.syn_cookie_rate", parse_balance},
    {"balance.high_water", parse_balance},     {"balance.overflow", parse_balance},
    {"balance.choices", parse_balance},
    {"node.weight", parse_node_capacity},      {"node.standby", parse_node_capacity},
    {"cluster.interval_ms", parse_cluster_timing}, {"cluster.dead_after", parse_cluster_timing},
    {"cluster.load_step", parse_cluster_timing},
    {"cluster.replay_window_ms", parse_cluster_timing},
    {"cluster.hold_down_ms", parse_cluster_timing}, {"cluster.grace_ms", parse_cluster_timing},
    {"load.capacity", parse_load_tuning},      {"load.update_ms", parse_load_tuning},
    {"load.smoothing_ms", parse_load_tuning},
    {"health.enabled", parse_health_timing},   {"health.interval_ms", parse_health_timing},
    {"health.timeout_ms", parse_health_timing}, {"health.fail_after", parse_health_timing},
    {"log.level", parse_log},
};

} // namespace

uint32_t Config::conn_cost_bp() const
{
    double bp = source == LoadSource::inflight ? double(LB_LOAD_FULL) / capacity : conn_cost * 100;
    return uint32_t(std::clamp(std::lround(bp), 1l, long(LB_LOAD_FULL)));
}

uint16_t Config::weight_hundredths() const
{
    return uint16_t(std::clamp(std::lround(weight * 100), 1l, 10000l));
}

bool Config::has_http_service() const
{
    return std::any_of(services.begin(), services.end(),
                       [](const ServiceConfig& s) { return s.mode == ServiceMode::http; });
}

const std::vector<std::string>& runtime_settings()
{
    static const std::vector<std::string> keys = [] {
        std::vector<std::string> out;
        for (const auto& s : kRuntimeSettings)
            out.emplace_back(s.key);
        return out;
    }();
    return keys;
}

Config apply_setting(const Config& cfg, const std::string& key, const std::string& value)
{
    const RuntimeSetting* setting = nullptr;
    for (const auto& s : kRuntimeSettings)
        if (s.key == key)
            setting = &s;
    if (!setting)
        throw Error(fmt::format("{}: not a setting that changes at run time (one of: {})", key,
                                fmt::join(runtime_settings(), ", ")));
    const size_t dot = key.find('.');
    const std::string table = key.substr(0, dot), name = key.substr(dot + 1);

    // The value as TOML (40, 0.5, true), else as a bare word ("least").
    toml::table root;
    try {
        root = toml::parse(fmt::format("{} = {}", name, value));
    } catch (const toml::parse_error&) {
        const bool plain_word = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
        });
        if (!plain_word)
            throw Error(fmt::format("{}: '{}' is not a value", key, value));
        root = toml::parse(fmt::format("{} = \"{}\"", name, value));
    }
    // One value for one key: "least\nforward = ..." must not set a second one.
    if (root.size() != 1 || !root.contains(name) || root.get(name)->is_table())
        throw Error(fmt::format("{}: '{}' is not a single value", key, value));
    // The file's checks, with the file's messages less their "FILE:LINE: ".
    const std::string where = "set";
    Config next = cfg;
    try {
        setting->parse(Section(where, table, &root), next);
    } catch (const Error& e) {
        const std::string_view msg = e.what();
        const size_t key_at = msg.find(key);
        throw Error(std::string(key_at == std::string_view::npos ? msg : msg.substr(key_at)));
    }
    if (const std::string problem = failsafe_after_problem(next); !problem.empty())
        throw Error(problem);
    return next;
}

Config parse_config(const std::string& text, const std::string& path)
{
    uint32_t key_file_line = 1;
    return parse(text, path, key_file_line);
}

Config load_config(const std::string& path)
{
    const std::string text = read_all(path, "cannot read " + path);
    // It names the key file and the addresses to take: only its owner may
    // change it.
    struct stat st {};
    if (stat(path.c_str(), &st) == 0 && (st.st_mode & 022))
        throw Error(fmt::format("{}: mode {:04o} lets other users change it (chmod go-w {})", path,
                                st.st_mode & 07777, path));
    uint32_t key_file_line = 1;
    Config cfg = parse(text, path, key_file_line);
    // A missing or short key would only show at the first heartbeat; refuse now.
    try {
        load_key(cfg.key_file);
    } catch (const Error& e) {
        throw Error(fmt::format("{}:{}: cluster.key_file: {}", path, key_file_line, e.what()));
    }
    return cfg;
}

std::vector<uint8_t> load_key(const std::string& key_file)
{
    std::string bytes = read_all(key_file, "key file " + key_file);
    // Whoever reads the key is a member of the cluster: only its owner may.
    struct stat st {};
    if (stat(key_file.c_str(), &st) == 0 && (st.st_mode & 077))
        throw Error(fmt::format("key file {}: mode {:04o} lets other users read or change it "
                                "(chmod 600 {})",
                                key_file, st.st_mode & 07777, key_file));
    // Editors and `echo` add a newline; it is not part of the key.
    if (bytes.ends_with("\r\n"))
        bytes.resize(bytes.size() - 2);
    else if (bytes.ends_with('\n'))
        bytes.pop_back();
    if (bytes.size() < kMinKeyBytes)
        throw Error(fmt::format("key file {}: needs at least {} bytes", key_file, kMinKeyBytes));
    return {bytes.begin(), bytes.end()};
}

} // namespace peerlb
