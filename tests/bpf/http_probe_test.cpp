// bpf/http.bpf.h, the XDP drivers of the "http" mode's request parser and
// URI rules, against bpf/http.h run as C++: the probe program
// (progs/http_probe.bpf.c) goes through BPF_PROG_TEST_RUN with a frame of
// 14 filler bytes and a payload, and must give exactly what the header
// gives here, for a table of requests and for generated and mutated ones.
// Loading the probe is itself the verifier's verdict on the drivers.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

extern "C" {
#include "bpf/http.h"
}
#include "fixture.h"
#include "http_probe.skel.h"
#include "packet.h"

namespace peerlb::test {
namespace {

using namespace std::literals;
using Rules = std::array<lb_uri_rule, LB_MAX_URI_RULES>;

constexpr uint64_t kSeed = 0x6874'7470'7072'6f62ull;
constexpr int kGenerated = 10000;
constexpr int kRulesEvery = 250; // inputs between two rule sets

Bytes to_bytes(std::string_view s)
{
    return Bytes(s.begin(), s.end());
}

std::string show(const Bytes& payload)
{
    std::string s;
    for (uint8_t c : payload.size() > 200 ? slice(payload, 0, 200) : payload) {
        if (c >= 0x20 && c < 0x7f && c != '\\')
            s += char(c);
        else {
            static const char digits[] = "0123456789abcdef";
            s += "\\x";
            s += digits[c >> 4];
            s += digits[c & 0xf];
        }
    }
    return "\"" + s + (payload.size() > 200 ? "\"... (" + std::to_string(payload.size()) + " bytes)" : "\"");
}

struct Outcome {
    lb_http_request req{};
    uint32_t entry_bits = 0;
    uint32_t exit_bits = 0;
    uint32_t first_entry = ~0u;
    int32_t read_ret = 0;
};

bool operator==(const lb_http_request& a, const lb_http_request& b)
{
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

std::string show(const lb_http_request& r)
{
    return "{status " + std::to_string(r.status) + ", method " + std::to_string(r.method) +
           ", version " + std::to_string(r.version) + ", form " + std::to_string(r.form) +
           ", path " + std::to_string(r.path_off) + "+" + std::to_string(r.path_len) + ", host " +
           std::to_string(r.host_off) + "+" + std::to_string(r.host_len) + "}";
}

// What http.h says, the way the drivers use it: every byte fed until the
// parser stops asking (it never takes more than LB_HTTP_SCAN), each rule
// tried in order.
Outcome expected(const Rules& rules, const Bytes& payload)
{
    Outcome o;
    lb_http_parser p;
    lb_http_init(&p);
    for (uint8_t c : payload)
        if (lb_http_feed(&p, c) != LB_HTTP_MORE)
            break;
    lb_http_finish(&p, &o.req);
    for (uint32_t i = 0; i < LB_MAX_URI_RULES; i++) {
        if (lb_http_rule_matches(&rules[i], LB_URI_ENTRY, payload.data(), &o.req)) {
            o.entry_bits |= 1u << i;
            o.first_entry = std::min(o.first_entry, i);
        }
        if (lb_http_rule_matches(&rules[i], LB_URI_EXIT, payload.data(), &o.req))
            o.exit_bits |= 1u << i;
    }
    return o;
}

::testing::AssertionResult same(const Outcome& bpf, const Outcome& cpp, const Bytes& payload)
{
    if (bpf.req == cpp.req && bpf.entry_bits == cpp.entry_bits && bpf.exit_bits == cpp.exit_bits &&
        bpf.first_entry == cpp.first_entry && bpf.read_ret == 0)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "payload " << show(payload) << "\n  bpf: " << show(bpf.req) << " entry "
           << std::hex << bpf.entry_bits << " exit " << bpf.exit_bits << " first " << std::dec
           << int(bpf.first_entry) << " read " << bpf.read_ret << "\n  c++: " << show(cpp.req)
           << " entry " << std::hex << cpp.entry_bits << " exit " << cpp.exit_bits << " first "
           << std::dec << int(cpp.first_entry);
}

template <size_t N>
uint16_t put(uint8_t (&field)[N], std::string_view s)
{
    std::copy(s.begin(), s.begin() + std::min(s.size(), N), field);
    return uint16_t(std::min(s.size(), N));
}

lb_uri_rule make_rule(std::string_view pattern, uint32_t flags = 0, std::string_view host = {},
                      std::string_view exit = {})
{
    lb_uri_rule r{};
    r.pattern_len = put(r.pattern, pattern);
    r.exit_len = put(r.exit_pattern, exit);
    r.host_len = put(r.host, host);
    r.flags = flags;
    return r;
}

// Rules the table is tried against; the unused slots stay empty (an empty
// prefix: every complete request).
Rules table_rules()
{
    Rules r{};
    r[0] = make_rule("/api/", 0, "api.example");
    r[1] = make_rule("/static/*.png", LB_URI_GLOB);
    r[2] = make_rule("/shop", LB_URI_STATEFUL | LB_URI_EXIT_GLOB, {}, "*/checkout");
    r[3] = make_rule("*admin*", LB_URI_GLOB, "example.com");
    r[4] = make_rule("", LB_URI_GLOB); // only the empty path: '*', absolute-form
    r[5] = make_rule("*" + std::string(62, 'a') + "b", LB_URI_GLOB); // the step bound
    r[6] = make_rule("/" + std::string(63, 'p'));                    // a full-size pattern
    r[7] = make_rule("/", 0, "www.example.com:8080");
    return r;
}

class HttpProbeTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "needs root to load BPF programs (BPF_PROG_TEST_RUN)";
        skel_.reset(http_probe_bpf__open_and_load());
        ASSERT_TRUE(skel_) << "loading the http probe (the verifier's log is above): "
                           << std::strerror(errno);
    }

    void set_rules(const Rules& rules)
    {
        const int fd = bpf_map__fd(skel_->maps.probe_rules);
        for (uint32_t i = 0; i < LB_MAX_URI_RULES; i++)
            ASSERT_EQ(bpf_map_update_elem(fd, &i, &rules[i], BPF_ANY), 0)
                << "rule " << i << ": " << std::strerror(errno);
        rules_ = rules;
    }

    Outcome run(const Bytes& payload)
    {
        const Bytes frame = ethernet_frame(Ethernet{}, kEthIpv4, payload);
        const uint32_t runs = skel_->bss->probe_runs;
        const RunResult r =
            try_run(bpf_program__fd(skel_->progs.http_probe), frame);
        EXPECT_EQ(r.error, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(r.error);
        EXPECT_EQ(r.verdict, uint32_t(XDP_PASS));
        EXPECT_EQ(skel_->bss->probe_runs, runs + 1);
        Outcome o;
        o.req = skel_->bss->probe_req;
        o.entry_bits = skel_->bss->probe_entry_bits;
        o.exit_bits = skel_->bss->probe_exit_bits;
        o.first_entry = skel_->bss->probe_first_entry;
        o.read_ret = skel_->bss->probe_read_ret;
        return o;
    }

    // Runs the payload and compares with http.h; returns the C++ outcome.
    Outcome check(const Bytes& payload)
    {
        const Outcome cpp = expected(rules_, payload);
        EXPECT_TRUE(same(run(payload), cpp, payload));
        return cpp;
    }
    Outcome check(std::string_view payload) { return check(to_bytes(payload)); }

    struct Destroy {
        void operator()(http_probe_bpf* s) const { http_probe_bpf__destroy(s); }
    };
    std::unique_ptr<http_probe_bpf, Destroy> skel_;
    Rules rules_{};
};

TEST_F(HttpProbeTest, Table)
{
    set_rules(table_rules());
    const std::string long_path = "/" + std::string(300, 'p');
    struct Case {
        std::string payload;
        uint32_t status;
        uint32_t entry_bits; // for table_rules()
    };
    const Case cases[] = {
        {"GET /api/v1 HTTP/1.1\r\nHost: API.example:8443\r\n\r\n", LB_HTTP_COMPLETE, 0xff01},
        {"GET /api/v1 HTTP/1.1\r\nHost: other\r\n\r\n", LB_HTTP_COMPLETE, 0xff00},
        {"GET /static/img/logo.png?v=2 HTTP/1.0\r\n\r\n", LB_HTTP_COMPLETE, 0xff02},
        {"POST /shop/cart/checkout HTTP/1.1\r\n\r\n", LB_HTTP_COMPLETE, 0xff04},
        {"GET /x/admin/y HTTP/1.1\r\nhost:\texample.com \r\n", LB_HTTP_COMPLETE, 0xff08},
        {"GET /x/admin/y HTTP/1.1\r\nHost: example.org\r\n", LB_HTTP_COMPLETE, 0xff00},
        {"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", LB_HTTP_COMPLETE, 0xff10},
        {"GET http://example.com HTTP/1.1\r\n", LB_HTTP_COMPLETE, 0xff10},
        {"GET https://Example.COM/admin HTTP/1.1\r\nHost: x\r\n", LB_HTTP_COMPLETE, 0xff08},
        {"GET /" + std::string(80, 'a') + "b HTTP/1.1\r\n", LB_HTTP_COMPLETE, 0xff20},
        {"GET " + std::string(255, 'a') + "b HTTP/1.1\r\n", LB_HTTP_NOT_HTTP, 0},
        {"GET /" + std::string(254, 'a') + "b HTTP/1.1\r\n", LB_HTTP_COMPLETE, 0xff00}, // > steps
        {"GET /" + std::string(63, 'p') + " HTTP/1.1\r\n", LB_HTTP_COMPLETE, 0xff40},
        {"GET " + long_path + " HTTP/1.1\r\n\r\n", LB_HTTP_COMPLETE, 0xff40},
        {"GET / HTTP/1.1\r\nHost: www.example.com:8080\r\n", LB_HTTP_COMPLETE, 0xff80},
        {"GET / HTTP/1.1\r\nHost: www.example.com\r\n", LB_HTTP_COMPLETE, 0xff00},
        {"GET /api/v1 HTTP/1.1\r\nHost: api.example", LB_HTTP_COMPLETE, 0xff00}, // Host cut
        {"GET /api/v1 HTTP/1.1", LB_HTTP_INCOMPLETE, 0},
        {"", LB_HTTP_INCOMPLETE, 0},
        {"G", LB_HTTP_INCOMPLETE, 0},
        {"GET / HTTP/1.", LB_HTTP_INCOMPLETE, 0},        // 13 bytes
        {"GET / HTTP/1.1", LB_HTTP_INCOMPLETE, 0},       // 14
        {"GET / HTTP/1.1\r\n", LB_HTTP_COMPLETE, 0xff00}, // 16
        {"GET / HTTP/2.0\r\n", LB_HTTP_NOT_HTTP, 0},
        {"get / HTTP/1.1\r\n", LB_HTTP_NOT_HTTP, 0},
        {"GET / HTTP/1.1\n", LB_HTTP_NOT_HTTP, 0},
        {"GET /a\x01 HTTP/1.1\r\n", LB_HTTP_NOT_HTTP, 0},
        {"SSH-2.0-OpenSSH_9.2p1\r\n", LB_HTTP_NOT_HTTP, 0},
        {std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"sv), LB_HTTP_NOT_HTTP, 0},
        {std::string(1400, '\0'), LB_HTTP_NOT_HTTP, 0},
        // Longer than the scan: the request line must end within it.
        {"GET / HTTP/1.1\r\nHost: api.example\r\n\r\n" + std::string(1400, 'B'), LB_HTTP_COMPLETE,
         0xff00},
        {"GET /" + std::string(600, 'x') + " HTTP/1.1\r\n", LB_HTTP_NOT_HTTP, 0},
        // The Host line ends at byte 512, then one past it.
        {"GET /api/" + std::string(473, 'x') + " HTTP/1.1\r\nHost: api.example\r\n",
         LB_HTTP_COMPLETE, 0xff01},
        {"GET /api/" + std::string(474, 'x') + " HTTP/1.1\r\nHost: api.example\r\n",
         LB_HTTP_COMPLETE, 0xff00},
        {"GET /api/" + std::string(487, 'x') + " HTTP/1.1\r\n" + std::string(100, 'H'),
         LB_HTTP_COMPLETE, 0xff00},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(show(to_bytes(c.payload)));
        const Outcome o = check(c.payload);
        EXPECT_EQ(o.req.status, c.status);
        EXPECT_EQ(o.entry_bits, c.entry_bits) << std::hex << o.entry_bits;
    }
}

TEST_F(HttpProbeTest, EveryCutOfARequest)
{
    set_rules(table_rules());
    const std::string full =
        "GET /static/v2/logo.png?x=1 HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\n\r\nbody";
    for (size_t cut = 0; cut <= full.size(); cut++) {
        SCOPED_TRACE(cut);
        const Outcome o = check(std::string_view(full).substr(0, cut));
        EXPECT_NE(o.req.status, uint32_t(LB_HTTP_NOT_HTTP));
    }
}

// --- generated inputs -------------------------------------------------------

class Generator {
public:
    explicit Generator(uint64_t seed) : rng_(seed) {}

    size_t below(size_t n) { return n ? size_t(rng_() % n) : 0; }
    bool chance(int percent) { return below(100) < size_t(percent); }
    template <typename T, size_t N>
    const T& pick(const T (&a)[N]) { return a[below(N)]; }

    std::string path()
    {
        static const char* const segments[] = {"api", "v1", "static", "img", "shop", "cart",
                                               "checkout", "admin", "a", "b", "logo.png", "x.jpg",
                                               "", "..", "%2F", "caf\xc3\xa9"};
        std::string p;
        const size_t n = 1 + below(5);
        for (size_t i = 0; i < n; i++) {
            // Two appends: GCC 12 -O3 warns (-Wrestrict, a false positive)
            // on "/" + std::string(...).
            p += '/';
            p += pick(segments);
        }
        if (chance(10))
            p += std::string(below(400), char('a' + below(3)));
        return p;
    }

    std::string host()
    {
        static const char* const hosts[] = {"example.com", "Example.COM", "api.example",
                                            "www.example.com", "shop.example", "[::1]", "h"};
        static const char* const ports[] = {"", "", ":80", ":8080", ":", ":123456", ":8a"};
        return std::string(pick(hosts)) + pick(ports);
    }

    std::string request()
    {
        static const char* const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                              "PATCH", "CONNECT", "TRACE", "GET", "GET"};
        static const char* const bad_methods[] = {"get", "GETS", "PRI", "G"};
        static const char* const versions[] = {"HTTP/1.1", "HTTP/1.1", "HTTP/1.0"};
        static const char* const bad_versions[] = {"HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1"};
        static const char* const headers[] = {"Accept: */*", "User-Agent: curl/8.0",
                                              "Connection: keep-alive", "X-Host: nope",
                                              "Hostname: nope", "Content-Length: 0", ""};
        static const char* const blanks[] = {"", " ", "\t", "  \t"};
        std::string target;
        const size_t form = below(10);
        if (form < 7)
            target = path();
        else if (form < 9)
            target = std::string(chance(50) ? "http://" : "HTTPS://") + host() +
                     (chance(80) ? path() : "");
        else
            target = "*";
        if (chance(30))
            target += "?q=" + path();
        const char* eol = chance(95) ? "\r\n" : "\n";
        std::string s = std::string(chance(5) ? pick(bad_methods) : pick(methods)) + " " + target +
                        " " + (chance(5) ? pick(bad_versions) : pick(versions)) + eol;
        const size_t n = below(4);
        const size_t host_at = chance(80) ? below(n + 1) : n + 1;
        for (size_t i = 0; i <= n; i++) {
            if (i == host_at)
                s += std::string(chance(70) ? "Host:" : "hOST:") + pick(blanks) + host() +
                     pick(blanks) + "\r\n";
            else if (i < n)
                s += std::string(pick(headers)) + "\r\n";
        }
        s += "\r\n";
        if (chance(20))
            s += std::string(below(1200), 'B');
        return s;
    }

    Bytes mutate(Bytes b)
    {
        static const uint8_t interesting[] = {' ', '\r', '\n', '\t', 0, '*', '/', '?', ':',
                                              'H', 0x7f, 0x80, 0xff, 'a'};
        const size_t n = 1 + below(3);
        for (size_t k = 0; k < n; k++) {
            const size_t at = below(b.size() + 1);
            switch (below(5)) {
            case 0:
                if (at < b.size())
                    b[at] = chance(50) ? pick(interesting) : uint8_t(rng_());
                break;
            case 1:
                b.insert(b.begin() + at, chance(50) ? pick(interesting) : uint8_t(rng_()));
                break;
            case 2:
                if (at < b.size())
                    b.erase(b.begin() + at);
                break;
            case 3:
                b.resize(at); // cut
                break;
            case 4: { // a run repeated
                const Bytes run = slice(b, at, below(20));
                b.insert(b.begin() + at, run.begin(), run.end());
                break;
            }
            }
        }
        return b;
    }

    Bytes random_bytes()
    {
        Bytes b(below(chance(50) ? 14 : 700));
        for (uint8_t& c : b)
            c = uint8_t(rng_());
        return b;
    }

    Bytes input()
    {
        const size_t kind = below(10);
        if (kind < 4)
            return to_bytes(request());
        if (kind < 8)
            return mutate(to_bytes(request()));
        if (kind < 9) { // short: under 14 bytes of payload
            Bytes b = to_bytes(request());
            b.resize(std::min(b.size(), below(14)));
            return b;
        }
        return random_bytes();
    }

    std::string pattern()
    {
        static const char* const usual[] = {"/api", "/api/", "/static/*", "*.png", "/shop*",
                                            "*/checkout", "/", "*admin*", "/a/*/b", "*", ""};
        if (chance(40))
            return pick(usual);
        std::string p = path();
        // globs: stars in place of some bytes, or added at either end
        for (size_t i = 0, n = below(3); i < n && !p.empty(); i++)
            p[below(p.size())] = '*';
        if (chance(20))
            p = "*" + p;
        if (chance(20))
            p += "*";
        if (chance(10))
            p = p.substr(0, below(p.size() + 1));
        if (chance(5))
            p = "*" + std::string(62, 'a') + "b";
        return p;
    }

    Rules rules()
    {
        Rules r{};
        for (lb_uri_rule& rule : r) {
            static const char* const rule_hosts[] = {"", "", "", "", "example.com", "api.example",
                                                     "www.example.com:8080", "[::1]", "h"};
            uint32_t flags = 0;
            if (chance(50))
                flags |= LB_URI_GLOB;
            if (chance(60))
                flags |= LB_URI_STATEFUL;
            if (chance(50))
                flags |= LB_URI_EXIT_GLOB;
            rule = make_rule(pattern(), flags, pick(rule_hosts), chance(70) ? pattern() : "");
            if (chance(3))
                rule.pattern_len = uint16_t(below(0x10000)); // beyond the buffer: clamped
        }
        return r;
    }

private:
    std::mt19937_64 rng_;
};

TEST_F(HttpProbeTest, GeneratedAndMutated)
{
    Generator gen(kSeed);
    int by_status[5] = {}, matched = 0, exits = 0, long_inputs = 0, short_inputs = 0, failures = 0;
    for (int i = 0; i < kGenerated && failures < 5; i++) {
        if (i % kRulesEvery == 0)
            set_rules(gen.rules());
        const Bytes payload = gen.input();
        const Outcome cpp = expected(rules_, payload);
        const Outcome bpf = run(payload);
        const ::testing::AssertionResult ok = same(bpf, cpp, payload);
        if (!ok) {
            failures++;
            ADD_FAILURE() << "input " << i << " (seed " << kSeed << "): " << ok.message();
        }
        by_status[cpp.req.status]++;
        matched += cpp.entry_bits != 0;
        exits += cpp.exit_bits != 0;
        long_inputs += payload.size() > LB_HTTP_SCAN;
        short_inputs += payload.size() < 14;
    }
    // The generator reaches every outcome, or the comparison proves little.
    EXPECT_GT(by_status[LB_HTTP_COMPLETE], kGenerated / 5);
    EXPECT_GT(by_status[LB_HTTP_INCOMPLETE], kGenerated / 20);
    EXPECT_GT(by_status[LB_HTTP_NOT_HTTP], kGenerated / 5);
    EXPECT_GT(matched, kGenerated / 10);
    EXPECT_GT(exits, kGenerated / 50);
    EXPECT_GT(long_inputs, kGenerated / 50);
    EXPECT_GT(short_inputs, kGenerated / 50);
    std::printf("  %d inputs: %d complete, %d incomplete, %d not HTTP; %d matched a rule, %d an "
                "exit; %d longer than %d bytes, %d under 14\n",
                kGenerated, by_status[LB_HTTP_COMPLETE], by_status[LB_HTTP_INCOMPLETE],
                by_status[LB_HTTP_NOT_HTTP], matched, exits, long_inputs, LB_HTTP_SCAN,
                short_inputs);
}

} // namespace
} // namespace peerlb::test
