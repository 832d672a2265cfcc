// libFuzzer target: the "http" mode's request parser and path patterns
// (bpf/http.h, the code the XDP program runs).
//
// Input: the first data segment of a connection, as is. The parser is fed
// byte by byte from a heap copy of exactly the input (ASan sees any read
// past it). Patterns come from the input too: its query string ("GET
// /a/b?/a/* HTTP/1.1") is tried as a glob against its path, and its last
// bytes against its first ones, so seeds can hold interesting pairs.
//
// Properties (a violation aborts, libFuzzer keeps the input):
//   - statuses over the prefixes: INCOMPLETE, then either COMPLETE or
//     NOT_HTTP for good; once DONE or NOT_HTTP, feeding stays so; at most
//     LB_HTTP_SCAN bytes are taken
//   - COMPLETE: every prefix that ends before the request line's CRLF is
//     INCOMPLETE (parsed again from scratch at the edges), the one ending
//     with it is COMPLETE with the same request line; offsets + lengths lie
//     within the input and the scan; the input starts with the method's
//     token and a space; the path starts with '/', or is empty for '*' and
//     absolute-form without a path; no '?' or SP in it; the host has no
//     blank at either end; other statuses leave every field 0
//   - glob: decided within LB_GLOB_MAX_STEPS + 1 steps; within the bound it
//     agrees with a dynamic-programming reference, past it says NOMATCH; a
//     prefix pattern equal to the path's first k bytes matches, and so does
//     the glob "first k bytes *"
//   - the rule host made of the request's host (lower case) matches it.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.h"

extern "C" {
#include "bpf/http.h"
}

namespace peerlb::fuzz {
namespace {

// A heap copy of exactly n bytes: ASan flags a read of byte n.
std::unique_ptr<uint8_t[]> exact_copy(const uint8_t* data, size_t n)
{
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n ? n : 1]);
    if (n)
        std::memcpy(copy.get(), data, n);
    return copy;
}

std::string show(const lb_http_request& r)
{
    return "status " + std::to_string(r.status) + " method " + std::to_string(r.method) +
           " version " + std::to_string(r.version) + " form " + std::to_string(r.form) + " path " +
           std::to_string(r.path_off) + "+" + std::to_string(r.path_len) + " host " +
           std::to_string(r.host_off) + "+" + std::to_string(r.host_len);
}

lb_http_request parse_exact(const uint8_t* data, size_t n)
{
    auto copy = exact_copy(data, n);
    lb_http_parser p;
    lb_http_init(&p);
    for (size_t i = 0; i < n; i++)
        if (lb_http_feed(&p, copy[i]) != LB_HTTP_MORE)
            break;
    lb_http_request r;
    lb_http_finish(&p, &r);
    return r;
}

bool same_line(const lb_http_request& a, const lb_http_request& b)
{
    return a.status == b.status && a.method == b.method && a.version == b.version &&
           a.form == b.form && a.path_off == b.path_off && a.path_len == b.path_len;
}

// Not instrumented: its compares took 70 % of the time, and its coverage
// would only steer the fuzzer toward the reference's branches.
__attribute__((noinline, no_sanitize("coverage"))) bool glob_reference(const uint8_t* text, size_t n,
                                                             const uint8_t* pat, size_t m)
{
    std::vector<uint8_t> row(m + 1), next(m + 1);
    // row[j]: text[0, i) matches pat[0, j), for the current i
    row[0] = 1;
    for (size_t j = 1; j <= m; j++)
        row[j] = row[j - 1] && pat[j - 1] == '*';
    for (size_t i = 1; i <= n; i++) {
        next[0] = 0;
        for (size_t j = 1; j <= m; j++)
            next[j] = pat[j - 1] == '*' ? (next[j - 1] || row[j])
                                        : (row[j - 1] && pat[j - 1] == text[i - 1]);
        row.swap(next);
    }
    return row[m];
}

// The glob (or prefix) of pat over text, both copied to exact buffers:
// checks termination and, for globs, the reference. Returns the result.
bool check_glob(const uint8_t* text_in, size_t n, const uint8_t* pat_in, size_t m, bool glob)
{
    n = std::min<size_t>(n, LB_HTTP_PATH_MAX);
    m = std::min<size_t>(m, LB_URI_PATTERN_MAX);
    auto text = exact_copy(text_in, n);
    auto pat = exact_copy(pat_in, m);
    lb_glob g;
    lb_glob_init(&g, glob);
    uint32_t calls = 0;
    int r;
    do {
        r = lb_glob_step(&g, text.get(), uint32_t(n), pat.get(), uint32_t(m));
        calls++;
        FUZZ_CHECK(calls <= LB_GLOB_MAX_STEPS + 1u,
                   "glob not decided within the step bound: text " + hex({text.get(), n}) +
                       " pattern " + hex({pat.get(), m}));
    } while (r == LB_GLOB_MORE);
    FUZZ_CHECK(r == LB_GLOB_MATCH || r == LB_GLOB_NOMATCH, "glob result " + std::to_string(r));
    const bool match = r == LB_GLOB_MATCH;
    FUZZ_CHECK(match == (lb_glob_match(text.get(), uint32_t(n), pat.get(), uint32_t(m), glob) != 0),
               "lb_glob_match differs from its steps");
    if (!glob) {
        const bool prefix = m <= n && std::memcmp(text.get(), pat.get(), m) == 0;
        FUZZ_CHECK(match == prefix, "prefix: text " + hex({text.get(), n}) + " pattern " +
                                        hex({pat.get(), m}));
    } else if (calls <= LB_GLOB_MAX_STEPS) {
        FUZZ_CHECK(match == glob_reference(text.get(), n, pat.get(), m),
                   "glob differs from the reference: text " + hex({text.get(), n}) + " pattern " +
                       hex({pat.get(), m}) + " says " + (match ? "match" : "no match"));
    } else {
        FUZZ_CHECK(!match, "a match past the step bound");
    }
    return match;
}

bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

void check_request(const uint8_t* data, size_t size)
{
    auto input = exact_copy(data, size);
    const std::span<const uint8_t> all{data, size};

    // Byte by byte; the status of every prefix from a copy of the state.
    lb_http_parser p;
    lb_http_init(&p);
    std::vector<lb_http_request> prefix(1);
    lb_http_finish(&p, &prefix[0]);
    int last = LB_HTTP_MORE;
    size_t fed = 0;
    while (fed < size && last == LB_HTTP_MORE) {
        last = lb_http_feed(&p, input[fed++]);
        lb_http_request r;
        lb_http_finish(&p, &r);
        prefix.push_back(r);
    }
    FUZZ_CHECK(fed <= LB_HTTP_SCAN, "took " + std::to_string(fed) + " bytes");
    if (last != LB_HTTP_MORE) {
        const int again = lb_http_feed(&p, 'x');
        FUZZ_CHECK(again == last, "a final result changed: " + hex(all));
    }
    const lb_http_request req = prefix.back();

    // INCOMPLETE, then COMPLETE or NOT_HTTP for good.
    FUZZ_CHECK(prefix[0].status == LB_HTTP_INCOMPLETE, "empty input: " + show(prefix[0]));
    for (size_t k = 1; k < prefix.size(); k++) {
        const uint32_t before = prefix[k - 1].status, now = prefix[k].status;
        FUZZ_CHECK(before == LB_HTTP_INCOMPLETE || before == now,
                   "prefix " + std::to_string(k) + " went from " + show(prefix[k - 1]) + " to " +
                       show(prefix[k]) + ": " + hex(all));
    }
    if (req.status != LB_HTTP_COMPLETE) {
        lb_http_request zero{};
        zero.status = req.status;
        FUZZ_CHECK(std::memcmp(&zero, &req, sizeof(req)) == 0, "fields set: " + show(req));
        if (req.status == LB_HTTP_INCOMPLETE)
            FUZZ_CHECK(last == LB_HTTP_MORE && fed == size && size < LB_HTTP_SCAN,
                       "INCOMPLETE before the data ended: " + hex(all));
        return;
    }

    // The request line ends at the first LF (a bare one is refused).
    const uint8_t* lf = static_cast<const uint8_t*>(std::memchr(data, '\n', size));
    FUZZ_CHECK(lf && lf > data && lf[-1] == '\r', "COMPLETE without CRLF: " + hex(all));
    const size_t line_end = size_t(lf - data) + 1;
    FUZZ_CHECK(line_end <= LB_HTTP_SCAN, "request line past the scan");
    for (size_t k = 0; k < line_end; k++)
        FUZZ_CHECK(prefix[k].status == LB_HTTP_INCOMPLETE,
                   "prefix " + std::to_string(k) + " before the CRLF: " + show(prefix[k]));
    for (size_t k = line_end; k < prefix.size(); k++) {
        FUZZ_CHECK(same_line(prefix[k], req), "prefix " + std::to_string(k) + ": " +
                                                   show(prefix[k]) + " vs " + show(req));
        FUZZ_CHECK(prefix[k].host_len == 0 ||
                       (prefix[k].host_off == req.host_off && prefix[k].host_len == req.host_len),
                   "the host changed: " + show(prefix[k]) + " vs " + show(req));
    }
    // The same from scratch, at the edges, from exact buffers.
    FUZZ_CHECK(parse_exact(data, line_end - 1).status == LB_HTTP_INCOMPLETE, "before the LF");
    FUZZ_CHECK(same_line(parse_exact(data, line_end), req), "up to the LF");

    // Where the fields point.
    const size_t end = std::min<size_t>(size, LB_HTTP_SCAN);
    FUZZ_CHECK(size_t(req.path_off) + req.path_len <= line_end, "path: " + show(req));
    FUZZ_CHECK(size_t(req.host_off) + req.host_len <= end, "host: " + show(req));
    uint32_t token_len = 0;
    lb_http_method_word(req.method, &token_len);
    FUZZ_CHECK(token_len > 0 && token_len < size && data[token_len] == ' ', "method: " + show(req));
    for (uint32_t i = 0; i < token_len; i++) {
        uint32_t len;
        const uint64_t word = lb_http_method_word(req.method, &len);
        FUZZ_CHECK(data[i] == uint8_t(word >> (8 * (len - 1 - i))), "method bytes: " + show(req));
    }
    FUZZ_CHECK(req.version == LB_HTTP_1_0 || req.version == LB_HTTP_1_1, "version");
    const uint8_t* path = data + req.path_off;
    switch (req.form) {
    case LB_HTTP_ORIGIN_FORM:
        FUZZ_CHECK(req.path_len >= 1 && path[0] == '/', "origin-form path: " + show(req));
        break;
    case LB_HTTP_ABSOLUTE_FORM:
        FUZZ_CHECK(req.path_len == 0 || path[0] == '/', "absolute-form path: " + show(req));
        FUZZ_CHECK(req.host_len > 0, "absolute-form without a host");
        break;
    case LB_HTTP_ASTERISK_FORM:
        FUZZ_CHECK(req.path_len == 0 && data[req.path_off] == '*', "asterisk-form: " + show(req));
        break;
    default:
        FUZZ_CHECK(false, "form: " + show(req));
    }
    for (uint32_t i = 0; i < req.path_len; i++)
        FUZZ_CHECK(path[i] > 0x20 && path[i] != 0x7f && path[i] != '?', "path byte: " + show(req));
    if (req.host_len > 0) {
        const uint8_t* host = data + req.host_off;
        FUZZ_CHECK(!is_blank(host[0]) && !is_blank(host[req.host_len - 1]),
                   "host not trimmed: " + show(req));
        for (uint32_t i = 0; i < req.host_len; i++)
            FUZZ_CHECK(host[i] != '\r' && host[i] != '\n', "CR/LF in the host: " + show(req));
        if (req.host_len <= LB_URI_HOST_MAX) {
            std::vector<uint8_t> lower(host, host + req.host_len);
            for (uint8_t& c : lower)
                c = lb_http_lower(c);
            FUZZ_CHECK(lb_http_host_matches(lower.data(), uint32_t(lower.size()), data,
                                            req.host_off, req.host_len),
                       "its own host does not match: " + show(req));
        }
    }

    // Patterns: the path's own first bytes, as a prefix and as "k bytes *".
    const size_t text_len = std::min<size_t>(req.path_len, LB_HTTP_PATH_MAX);
    for (size_t k : {size_t(0), size_t(1), text_len / 2, text_len}) {
        k = std::min({k, text_len, size_t(LB_URI_PATTERN_MAX - 1)});
        FUZZ_CHECK(check_glob(path, text_len, path, k, false), "own prefix of " + std::to_string(k));
        std::vector<uint8_t> star(path, path + k);
        star.push_back('*');
        FUZZ_CHECK(check_glob(path, text_len, star.data(), star.size(), true),
                   "own prefix then * of " + std::to_string(k));
        lb_uri_rule rule{};
        std::copy(path, path + k, rule.pattern);
        rule.pattern_len = uint16_t(k);
        FUZZ_CHECK(lb_http_rule_matches(&rule, LB_URI_ENTRY, data, &req), "rule of own prefix");
    }
    // The query as a glob against the path.
    const uint8_t* query = path + req.path_len;
    if (req.form != LB_HTTP_ASTERISK_FORM && query < data + line_end && *query == '?') {
        const uint8_t* q_end =
            static_cast<const uint8_t*>(std::memchr(query, ' ', size_t(data + line_end - query)));
        const size_t q_len = q_end ? size_t(q_end - query - 1) : 0;
        check_glob(path, text_len, query + 1, q_len, true);
        check_glob(path, text_len, query + 1, q_len, false);
    }
}

} // namespace
} // namespace peerlb::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace peerlb::fuzz;
    check_request(data, size);
    // Any input as text and pattern: its first bytes against its last.
    if (size > 0) {
        const size_t m = std::min<size_t>(size, LB_URI_PATTERN_MAX);
        check_glob(data, size, data + size - m, m, true);
        check_glob(data, size, data + size - m, m, false);
    }
    return 0;
}
