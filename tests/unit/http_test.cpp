// The "http" mode's request parser and URI pattern matching of bpf/http.h:
// the very code the XDP program runs, compiled here as C++.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include "bpf/http.h"
}

namespace {

using namespace std::literals;

const uint8_t* bytes(std::string_view s)
{
    return reinterpret_cast<const uint8_t*>(s.data());
}

struct Parsed {
    lb_http_request req{};
    size_t fed = 0;                 // bytes fed until the parser stopped asking
    int last = LB_HTTP_MORE;        // the last lb_http_feed result
    std::string path, host;         // the bytes req points at
};

Parsed parse(std::string_view s)
{
    Parsed r;
    lb_http_parser p;
    lb_http_init(&p);
    while (r.fed < s.size() && r.last == LB_HTTP_MORE)
        r.last = lb_http_feed(&p, uint8_t(s[r.fed++]));
    lb_http_finish(&p, &r.req);
    r.path = std::string(s.substr(r.req.path_off, r.req.path_len));
    r.host = std::string(s.substr(r.req.host_off, r.req.host_len));
    return r;
}

uint32_t status(std::string_view s)
{
    return parse(s).req.status;
}

// Test names for statuses, so failures read well.
std::string name(uint32_t status)
{
    switch (status) {
    case LB_HTTP_COMPLETE: return "COMPLETE";
    case LB_HTTP_INCOMPLETE: return "INCOMPLETE";
    case LB_HTTP_NOT_HTTP: return "NOT_HTTP";
    }
    return "status " + std::to_string(status);
}

#define EXPECT_STATUS(input, expected) EXPECT_EQ(name(status(input)), name(expected)) << (input)

bool glob(std::string_view text, std::string_view pat, bool is_glob = true)
{
    return lb_glob_match(bytes(text), uint32_t(text.size()), bytes(pat), uint32_t(pat.size()),
                         is_glob) != 0;
}

// Steps lb_glob_step takes to decide, and its result.
std::pair<uint32_t, int> glob_steps(std::string_view text, std::string_view pat, bool is_glob = true)
{
    lb_glob g;
    lb_glob_init(&g, is_glob);
    uint32_t calls = 0;
    int r;
    do {
        r = lb_glob_step(&g, bytes(text), uint32_t(text.size()), bytes(pat), uint32_t(pat.size()));
        calls++;
    } while (r == LB_GLOB_MORE && calls < 1'000'000);
    return {calls, r};
}

// Reference for the glob: dynamic programming over (text, pattern) prefixes.
bool glob_reference(std::string_view text, std::string_view pat)
{
    const size_t n = text.size(), m = pat.size();
    // ok[i][j]: text[0, i) matches pat[0, j)
    std::vector<std::vector<bool>> ok(n + 1, std::vector<bool>(m + 1, false));
    ok[0][0] = true;
    for (size_t j = 1; j <= m; j++)
        ok[0][j] = ok[0][j - 1] && pat[j - 1] == '*';
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++)
            ok[i][j] = pat[j - 1] == '*' ? ok[i][j - 1] || ok[i - 1][j]
                                         : ok[i - 1][j - 1] && pat[j - 1] == text[i - 1];
    return ok[n][m];
}

bool host_matches(std::string_view rule, std::string_view host)
{
    return lb_http_host_matches(bytes(rule), uint32_t(rule.size()), bytes(host), 0,
                                uint32_t(host.size())) != 0;
}

template <size_t N>
uint16_t put(uint8_t (&field)[N], std::string_view s)
{
    std::copy(s.begin(), s.begin() + std::min(s.size(), N), field);
    return uint16_t(s.size());
}

lb_uri_rule rule(std::string_view pattern, uint32_t flags = 0, std::string_view host = {},
                 std::string_view exit = {})
{
    lb_uri_rule r{};
    r.pattern_len = put(r.pattern, pattern);
    r.exit_len = put(r.exit_pattern, exit);
    r.host_len = put(r.host, host);
    r.flags = flags;
    return r;
}

bool rule_matches(const lb_uri_rule& r, uint32_t which, std::string_view segment)
{
    Parsed p = parse(segment);
    return lb_http_rule_matches(&r, which, bytes(segment), &p.req) != 0;
}

const char kBrowserRequest[] =
    "GET /static/app.js?v=3 HTTP/1.1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    "Accept: */*\r\n"
    "Host: www.example.com\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

} // namespace

// --- request lines that are HTTP -----------------------------------------

TEST(HttpRequest, EveryMethod)
{
    const std::pair<const char*, uint32_t> methods[] = {
        {"GET", LB_HTTP_GET},         {"HEAD", LB_HTTP_HEAD},   {"POST", LB_HTTP_POST},
        {"PUT", LB_HTTP_PUT},         {"DELETE", LB_HTTP_DELETE}, {"OPTIONS", LB_HTTP_OPTIONS},
        {"PATCH", LB_HTTP_PATCH},     {"CONNECT", LB_HTTP_CONNECT}, {"TRACE", LB_HTTP_TRACE},
    };
    for (auto [token, method] : methods) {
        const std::string line = std::string(token) + " /x HTTP/1.1\r\n\r\n";
        Parsed p = parse(line);
        EXPECT_EQ(name(p.req.status), "COMPLETE") << line;
        EXPECT_EQ(p.req.method, method) << line;
        EXPECT_EQ(p.path, "/x") << line;
        EXPECT_EQ(p.req.form, LB_HTTP_ORIGIN_FORM);
        EXPECT_EQ(p.req.version, LB_HTTP_1_1);
    }
}

TEST(HttpRequest, BrowserRequest)
{
    Parsed p = parse(kBrowserRequest);
    EXPECT_EQ(name(p.req.status), "COMPLETE");
    EXPECT_EQ(p.req.method, LB_HTTP_GET);
    EXPECT_EQ(p.path, "/static/app.js");
    EXPECT_EQ(p.host, "www.example.com");
    EXPECT_EQ(p.req.version, LB_HTTP_1_1);
    // Stops at the Host line: the rest is not needed.
    EXPECT_EQ(p.last, LB_HTTP_DONE);
    EXPECT_EQ(p.fed, std::string_view(kBrowserRequest).find("Connection"));
}

TEST(HttpRequest, QueryStringIsNotPath)
{
    EXPECT_EQ(parse("GET /a/b?x=1&y=/z HTTP/1.1\r\n").path, "/a/b");
    EXPECT_EQ(parse("GET /?q HTTP/1.1\r\n").path, "/");
    EXPECT_EQ(parse("GET /a? HTTP/1.1\r\n").path, "/a");
    EXPECT_EQ(parse("GET /a??b?c HTTP/1.1\r\n").path, "/a");
    EXPECT_EQ(parse("GET / HTTP/1.1\r\n").path, "/");
    // '#', '%' and obs-text are plain path bytes; nothing is decoded.
    EXPECT_EQ(parse("GET /a%20b#frag HTTP/1.1\r\n").path, "/a%20b#frag");
    EXPECT_EQ(parse("GET /caf\xc3\xa9 HTTP/1.1\r\n").path, "/caf\xc3\xa9");
    EXPECT_EQ(parse("GET /../etc/./x HTTP/1.1\r\n").path, "/../etc/./x");
}

TEST(HttpRequest, AbsoluteForm)
{
    Parsed p = parse("GET http://example.com/a/b?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n");
    EXPECT_EQ(name(p.req.status), "COMPLETE");
    EXPECT_EQ(p.req.form, LB_HTTP_ABSOLUTE_FORM);
    EXPECT_EQ(p.path, "/a/b");
    EXPECT_EQ(p.host, "example.com"); // the authority wins over Host (RFC 9112 3.2.2)
    EXPECT_EQ(p.last, LB_HTTP_DONE);

    p = parse("POST HTTPS://Example.COM:8443/x HTTP/1.0\r\n");
    EXPECT_EQ(p.host, "Example.COM:8443");
    EXPECT_EQ(p.path, "/x");
    EXPECT_EQ(p.req.version, LB_HTTP_1_0);

    // No path: empty (servers read "/").
    p = parse("GET http://h HTTP/1.1\r\n");
    EXPECT_EQ(name(p.req.status), "COMPLETE");
    EXPECT_EQ(p.path, "");
    EXPECT_EQ(p.host, "h");
    p = parse("GET http://h?x=/y HTTP/1.1\r\n");
    EXPECT_EQ(p.path, "");
    EXPECT_EQ(p.host, "h");

    EXPECT_STATUS("GET ftp://h/ HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("GET http:/h/ HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("GET http:///x HTTP/1.1\r\n", LB_HTTP_NOT_HTTP); // empty authority
    EXPECT_STATUS("GET http:// HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("GET httpx://h/ HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("GET h HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("CONNECT example.com:443 HTTP/1.1\r\n", LB_HTTP_NOT_HTTP); // authority-form
}

TEST(HttpRequest, AsteriskForm)
{
    Parsed p = parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(name(p.req.status), "COMPLETE");
    EXPECT_EQ(p.req.form, LB_HTTP_ASTERISK_FORM);
    EXPECT_EQ(p.req.path_len, 0);
    EXPECT_EQ(p.host, "h");
    EXPECT_STATUS("OPTIONS *x HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
    EXPECT_STATUS("OPTIONS ** HTTP/1.1\r\n", LB_HTTP_NOT_HTTP);
}

TEST(HttpRequest, Versions)
{
    EXPECT_EQ(parse("GET / HTTP/1.0\r\n").req.version, LB_HTTP_1_0);
    EXPECT_EQ(parse("GET / HTTP/1.1\r\n").req.version, LB_HTTP_1_1);
    for (const char* v : {"HTTP/2.0", "HTTP/1.2", "HTTP/1.10", "HTTP/0.9", "http/1.1", "HTTP/1",
                          "HTTP/1.", "HTTP/11", "HTTPS/1.1", "HTTP /1.1"})
        EXPECT_STATUS(std::string("GET / ") + v + "\r\n", LB_HTTP_NOT_HTTP);
}

TEST(HttpRequest, Host)
{
    auto host = [](std::string_view headers) {
        Parsed p = parse(std::string("GET / HTTP/1.1\r\n") + std::string(headers));
        EXPECT_EQ(name(p.req.status), "COMPLETE") << headers;
        return p.host;
    };
    EXPECT_EQ(host("Host: example.com\r\n\r\n"), "example.com");
    EXPECT_EQ(host("hOsT: example.com\r\n"), "example.com");
    EXPECT_EQ(host("HOST:example.com\r\n"), "example.com");
    EXPECT_EQ(host("Host: \t example.com \t\r\n"), "example.com");
    EXPECT_EQ(host("Host: a b\r\n"), "a b"); // inner blanks are the value's
    EXPECT_EQ(host("Host: [::1]:8080\r\n"), "[::1]:8080");
    EXPECT_EQ(host("Accept: */*\r\nX-Host: no\r\nHostname: no\r\nHost: yes\r\n"), "yes");
    EXPECT_EQ(host("Host: first\r\nHost: second\r\n"), "first");
    EXPECT_EQ(host("Host: caf\xc3\xa9\r\n"), "caf\xc3\xa9");

    // Absent, empty, cut off or malformed: length 0.
    EXPECT_EQ(host(""), "");
    EXPECT_EQ(host("\r\n"), "");
    EXPECT_EQ(host("Accept: */*\r\n\r\n"), "");
    EXPECT_EQ(host("\r\nHost: in-the-body\r\n"), "");
    EXPECT_EQ(host("Host:\r\n"), "");
    EXPECT_EQ(host("Host:   \r\n"), "");
    EXPECT_EQ(host("Host: example.com"), "");
    EXPECT_EQ(host("Host: example.com\r"), "");
    EXPECT_EQ(host("Host : example.com\r\n"), "");
    EXPECT_EQ(host("Host: example.com\n"), "");          // bare LF
    EXPECT_EQ(host("Host: exa\x01mple.com\r\n"), "");     // control byte
    EXPECT_EQ(host("Host: example.com\rX\n"), "");       // bare CR
    EXPECT_EQ(host("Accept: */*\nHost: example.com\r\n"), ""); // bare LF before it
    EXPECT_EQ(host("Accept: */*\rHost: example.com\r\n"), "");
    EXPECT_EQ(host("Ho"), "");
}

TEST(HttpRequest, StopsAsSoonAsNothingMoreIsNeeded)
{
    const std::string line = "GET / HTTP/1.1\r\n";
    Parsed p = parse(line + "\r\nBODY");
    EXPECT_EQ(p.last, LB_HTTP_DONE);
    EXPECT_EQ(p.fed, line.size() + 1); // the empty line's CR
    p = parse(line + "Host: h\r\nAccept: */*\r\n\r\n");
    EXPECT_EQ(p.fed, line.size() + 9);
    // TLS, SSH: refused at the first byte.
    p = parse("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"sv);
    EXPECT_EQ(p.last, LB_HTTP_NOT_HTTP);
    EXPECT_EQ(p.fed, 1u);
    p = parse("GEX / HTTP/1.1\r\n");
    EXPECT_EQ(p.fed, 3u);

    // Once final, it stays so.
    lb_http_parser parser;
    lb_http_init(&parser);
    for (char c : std::string("GET / HTTP/1.1\r\n\r"))
        lb_http_feed(&parser, uint8_t(c));
    EXPECT_EQ(lb_http_feed(&parser, 'x'), LB_HTTP_DONE);
    lb_http_init(&parser);
    EXPECT_EQ(lb_http_feed(&parser, 'x'), LB_HTTP_NOT_HTTP);
    EXPECT_EQ(lb_http_feed(&parser, 'G'), LB_HTTP_NOT_HTTP);
}

// --- cut by the end of the data ------------------------------------------

TEST(HttpRequest, EveryCutOfARealRequest)
{
    const std::string requests[] = {
        kBrowserRequest,
        "POST http://api.example.com:8080/v1/items?x=1 HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
        "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "DELETE /a HTTP/1.1\r\nhost:\tb \r\n\r\n",
    };
    for (const std::string& full : requests) {
        const size_t line_end = full.find("\r\n") + 2;
        const Parsed whole = parse(full);
        ASSERT_EQ(name(whole.req.status), "COMPLETE") << full;
        for (size_t cut = 0; cut <= full.size(); cut++) {
            const std::string prefix = full.substr(0, cut);
            Parsed p = parse(prefix);
            if (cut < line_end) {
                EXPECT_EQ(name(p.req.status), "INCOMPLETE") << "cut at " << cut << ": " << prefix;
                continue;
            }
            EXPECT_EQ(name(p.req.status), "COMPLETE") << "cut at " << cut << ": " << prefix;
            EXPECT_EQ(p.req.method, whole.req.method);
            EXPECT_EQ(p.path, whole.path);
            EXPECT_EQ(p.req.version, whole.req.version);
            // The host only once its line is complete.
            if (p.host != whole.host) {
                EXPECT_EQ(p.host, "") << "cut at " << cut;
            }
        }
    }
}

TEST(HttpRequest, MethodPrefixesAreIncomplete)
{
    for (const char* s : {"", "G", "GE", "GET", "GET ", "GET /", "GET /a?b", "GET / HTTP/1.",
                          "GET / HTTP/1.1", "GET / HTTP/1.1\r", "H", "HEA", "P", "PO", "PU",
                          "PAT", "D", "DELET", "O", "OPTION", "C", "CONNEC", "T", "TRAC",
                          "GET http://", "GET http://h", "GET https", "OPTIONS *"})
        EXPECT_STATUS(s, LB_HTTP_INCOMPLETE);
}

// --- not HTTP ------------------------------------------------------------

TEST(HttpRequest, Malformed)
{
    const std::string_view bad[] = {
        "get / HTTP/1.1\r\n",      // methods are case-sensitive
        "GETS / HTTP/1.1\r\n",     // not a method
        "GEX",                     // no method starts so
        "OPTIONSS / HTTP/1.1\r\n", // longer than any method
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", // HTTP/2 preface
        " GET / HTTP/1.1\r\n",
        "\r\nGET / HTTP/1.1\r\n",  // empty line first (simplified away)
        "GET  / HTTP/1.1\r\n",     // two spaces
        "GET /  HTTP/1.1\r\n",
        "GET\t/ HTTP/1.1\r\n",
        "GET / HTTP/1.1 \r\n",
        "GET /\r\n",               // HTTP/0.9: no version
        "GET / \r\n",
        "GET /a b HTTP/1.1\r\n",
        "GET / HTTP/1.1\n",        // bare LF
        "GET / HTTP/1.1\rX",       // bare CR
        "GET / HTTP/1.1\r\r\n",
        "GET /a\x01 HTTP/1.1\r\n", // control bytes
        "GET /a\x7f HTTP/1.1\r\n",
        "GET /a\tb HTTP/1.1\r\n",
        "GET /a?b\x00 HTTP/1.1\r\n"sv,
        "GET /a\r\n HTTP/1.1\r\n",
        "GET a HTTP/1.1\r\n",      // not a request-target form
        "GET ?a HTTP/1.1\r\n",
        "GET  HTTP/1.1\r\n",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"sv, // TLS ClientHello
        "\0\0\0\0"sv,
    };
    for (std::string_view s : bad)
        EXPECT_STATUS(s, LB_HTTP_NOT_HTTP);
}

TEST(HttpRequest, RequestLineMustEndWithinTheScan)
{
    auto request = [](size_t line_len) {
        // "GET /xxx HTTP/1.1\r\n" of line_len bytes
        return "GET /" + std::string(line_len - 16, 'x') + " HTTP/1.1\r\n";
    };
    std::string fits = request(LB_HTTP_SCAN);
    ASSERT_EQ(fits.size(), size_t(LB_HTTP_SCAN));
    Parsed p = parse(fits + "Host: h\r\n\r\n");
    EXPECT_EQ(name(p.req.status), "COMPLETE");
    EXPECT_EQ(p.req.path_len, LB_HTTP_SCAN - 15);
    EXPECT_EQ(p.host, ""); // the Host line is past the scan
    EXPECT_EQ(p.fed, size_t(LB_HTTP_SCAN));

    // One byte more: not HTTP, with or without the rest of the data, since
    // no later segment is read.
    std::string longer = request(LB_HTTP_SCAN + 1);
    EXPECT_STATUS(longer, LB_HTTP_NOT_HTTP);
    EXPECT_STATUS(longer.substr(0, LB_HTTP_SCAN), LB_HTTP_NOT_HTTP);
    EXPECT_STATUS(longer.substr(0, LB_HTTP_SCAN - 1), LB_HTTP_INCOMPLETE);
    EXPECT_STATUS("GET /" + std::string(4000, 'a'), LB_HTTP_NOT_HTTP);

    // The Host line must end within the scan too.
    std::string line = "GET / HTTP/1.1\r\n";
    std::string pad = "X: " + std::string(LB_HTTP_SCAN - line.size() - 5 - 9, 'p') + "\r\n";
    EXPECT_EQ(parse(line + pad + "Host: h\r\n").host, "h");   // ends at byte 512
    EXPECT_EQ(parse(line + pad + "Host: hh\r\n").host, "");   // one past
}

TEST(HttpRequest, LongPathIsReportedWhole)
{
    // Here and below, std::string("/").append(n, c), not "/" + std::string(n, c):
    // GCC 12's Release build sees a false -Wrestrict overlap in the latter.
    const std::string path = std::string("/").append(299, 'p');
    Parsed p = parse("GET " + path + " HTTP/1.1\r\n");
    EXPECT_EQ(p.req.path_len, 300);
    EXPECT_EQ(p.path, path);
}

TEST(HttpRequest, LayoutIsFixed)
{
    static_assert(sizeof(lb_http_request) == 16);
    static_assert(sizeof(lb_http_parser) == 24);
    static_assert((LB_HTTP_SCAN & (LB_HTTP_SCAN - 1)) == 0);
    static_assert((LB_HTTP_PATH_MAX & (LB_HTTP_PATH_MAX - 1)) == 0);
    static_assert((LB_URI_PATTERN_MAX & (LB_URI_PATTERN_MAX - 1)) == 0);
    static_assert((LB_URI_HOST_MAX & (LB_URI_HOST_MAX - 1)) == 0);
    static_assert(LB_HTTP_SCAN <= 0xffff); // offsets are __u16
}

// --- paths against patterns ----------------------------------------------

TEST(HttpGlob, Prefix)
{
    EXPECT_TRUE(glob("/api/v1", "", false)); // empty: every path
    EXPECT_TRUE(glob("", "", false));
    EXPECT_TRUE(glob("/api", "/api", false));
    EXPECT_TRUE(glob("/api/v1", "/api", false));
    EXPECT_TRUE(glob("/apix", "/api", false)); // bytes, not path segments
    EXPECT_FALSE(glob("/ap", "/api", false));  // pattern longer than path
    EXPECT_FALSE(glob("/API", "/api", false)); // case-sensitive
    EXPECT_FALSE(glob("/a*", "/a*x", false));
    EXPECT_TRUE(glob("/a*x/y", "/a*x", false)); // '*' is literal in a prefix
}

TEST(HttpGlob, Glob)
{
    EXPECT_TRUE(glob("", ""));
    EXPECT_FALSE(glob("/", ""));
    EXPECT_TRUE(glob("", "*"));
    EXPECT_TRUE(glob("/a/b/c", "*"));
    EXPECT_TRUE(glob("/a/b/c", "**"));
    EXPECT_TRUE(glob("", "***"));
    EXPECT_TRUE(glob("/a/", "/a/*"));
    EXPECT_TRUE(glob("/a/b/c", "/a/*")); // '*' crosses '/'
    EXPECT_FALSE(glob("/a", "/a/*"));
    EXPECT_TRUE(glob("/img/x/y.jpg", "*.jpg"));
    EXPECT_FALSE(glob("/img/x.jpg.bak", "*.jpg"));
    EXPECT_TRUE(glob("/x.jpg.jpg", "*.jpg"));
    EXPECT_TRUE(glob("/abc", "/a*b*c"));
    EXPECT_TRUE(glob("/aXbYbZc", "/a*b*c"));
    EXPECT_FALSE(glob("/aXbYbZcd", "/a*b*c"));
    EXPECT_TRUE(glob("/x/admin/y", "*admin*"));
    EXPECT_TRUE(glob("admin", "*admin*"));
    EXPECT_FALSE(glob("/x/admi/y", "*admin*"));
    EXPECT_TRUE(glob("/static/v2/img/logo.png", "/static/*/img/*.png"));
    EXPECT_FALSE(glob("/static/v2/css/logo.png", "/static/*/img/*.png"));
    EXPECT_TRUE(glob("aab", "*ab"));      // needs a retry
    EXPECT_TRUE(glob("abababc", "*ab*c"));
    EXPECT_FALSE(glob("/a", "/a/b/c/d")); // pattern longer than path
    EXPECT_FALSE(glob("/a", "/a*b"));
    EXPECT_TRUE(glob("/a?b", "/a?b"));    // '?' and '[' are literal
    EXPECT_FALSE(glob("/axb", "/a?b"));
    EXPECT_TRUE(glob("/[x]", "/[x]"));
    EXPECT_FALSE(glob("/A", "/a"));
}

TEST(HttpGlob, AgreesWithReference)
{
    std::mt19937 rng(20240611);
    const char alphabet[] = "ab/*";
    for (int k = 0; k < 20000; k++) {
        std::string text, pat;
        const int tn = int(rng() % 12), pn = int(rng() % 8);
        for (int i = 0; i < tn; i++)
            text += alphabet[rng() % 3];
        for (int i = 0; i < pn; i++)
            pat += alphabet[rng() % 4];
        ASSERT_EQ(glob(text, pat), glob_reference(text, pat)) << text << " vs " << pat;
        // prefix
        const bool prefix = text.compare(0, pat.size(), pat) == 0 && pat.size() <= text.size();
        ASSERT_EQ(glob(text, pat, false), prefix) << text << " vs " << pat;
    }
}

TEST(HttpGlob, StepBound)
{
    // "*" + 62 'a' + "b" against 'a'... + "b": a match, but the last '*' is
    // retried from every position, each taking ~62 steps.
    const std::string pat = std::string("*").append(62, 'a') + "b";
    ASSERT_EQ(pat.size(), size_t(LB_URI_PATTERN_MAX));
    const std::string slow = std::string(255, 'a') + "b";
    ASSERT_TRUE(glob_reference(slow, pat));
    auto [calls, r] = glob_steps(slow, pat);
    EXPECT_EQ(r, LB_GLOB_NOMATCH);
    EXPECT_EQ(calls, LB_GLOB_MAX_STEPS + 1u); // the last call says NOMATCH
    EXPECT_FALSE(glob(slow, pat));

    // Shorter: within the bound, so a match.
    const std::string quick = std::string(80, 'a') + "b";
    std::tie(calls, r) = glob_steps(quick, pat);
    EXPECT_EQ(r, LB_GLOB_MATCH);
    EXPECT_LE(calls, uint32_t(LB_GLOB_MAX_STEPS));

    // A typical pattern takes about path + pattern steps.
    std::tie(calls, r) = glob_steps("/static/v2/img/logo.png", "/static/*/img/*.png");
    EXPECT_EQ(r, LB_GLOB_MATCH);
    EXPECT_LT(calls, 60u);

    // The worst case within the sizes never loops past the bound.
    std::tie(calls, r) = glob_steps(std::string(256, 'a'), std::string(63, '*') + "b");
    EXPECT_LE(calls, LB_GLOB_MAX_STEPS + 1u);
    EXPECT_EQ(r, LB_GLOB_NOMATCH);
}

TEST(HttpGlob, LengthsAreClamped)
{
    // A path is matched on its first LB_HTTP_PATH_MAX bytes, as if it ended
    // there.
    const std::string path = std::string("/").append(LB_HTTP_PATH_MAX - 2, 'p') + "xy";
    ASSERT_EQ(path.size(), size_t(LB_HTTP_PATH_MAX + 1));
    EXPECT_TRUE(glob(path, "*x"));
    EXPECT_FALSE(glob(path, "*y"));
    EXPECT_TRUE(glob(path, path.substr(0, LB_HTTP_PATH_MAX), false));
    EXPECT_TRUE(glob(path, path, false)); // the pattern is cut at LB_URI_PATTERN_MAX
    // A pattern on its first LB_URI_PATTERN_MAX bytes.
    const std::string pat = std::string("/").append(LB_URI_PATTERN_MAX - 1, 'p') + "zzz";
    EXPECT_TRUE(glob(std::string("/").append(LB_URI_PATTERN_MAX - 1, 'p') + "q", pat, false));
}

// --- hosts and rules ------------------------------------------------------

TEST(HttpHost, Compare)
{
    EXPECT_TRUE(host_matches("example.com", "example.com"));
    EXPECT_TRUE(host_matches("example.com", "Example.COM"));
    EXPECT_TRUE(host_matches("example.com", "example.com:8080"));
    EXPECT_TRUE(host_matches("example.com", "example.com:"));
    EXPECT_TRUE(host_matches("example.com", "example.com:65535"));
    EXPECT_FALSE(host_matches("example.com", "example.com:123456"));
    EXPECT_FALSE(host_matches("example.com", "example.com:80a"));
    EXPECT_FALSE(host_matches("example.com", "example.com."));
    EXPECT_FALSE(host_matches("example.com", "example.co"));
    EXPECT_FALSE(host_matches("example.com", "www.example.com"));
    EXPECT_FALSE(host_matches("example.com", ""));
    EXPECT_TRUE(host_matches("", ""));
    EXPECT_TRUE(host_matches("", "anything"));
    EXPECT_TRUE(host_matches("example.com:8080", "EXAMPLE.com:8080"));
    EXPECT_FALSE(host_matches("example.com:8080", "example.com"));
    EXPECT_FALSE(host_matches("example.com:8080", "example.com:8081"));
    EXPECT_TRUE(host_matches("[::1]", "[::1]:80"));
    EXPECT_FALSE(host_matches("Example.com", "example.com")); // the rule's host is lower case
    EXPECT_FALSE(host_matches(std::string(LB_URI_HOST_MAX + 1, 'a'),
                              std::string(LB_URI_HOST_MAX + 1, 'a')));
}

TEST(HttpRule, EntryExitAndHost)
{
    const std::string req = "GET /shop/cart/checkout?x HTTP/1.1\r\nHost: Shop.Example:443\r\n\r\n";
    EXPECT_TRUE(rule_matches(rule("/shop"), LB_URI_ENTRY, req));
    EXPECT_FALSE(rule_matches(rule("/shop"), LB_URI_EXIT, req)); // not stateful
    EXPECT_FALSE(rule_matches(rule("/shop", LB_URI_GLOB), LB_URI_ENTRY, req));
    EXPECT_TRUE(rule_matches(rule("/shop/*", LB_URI_GLOB), LB_URI_ENTRY, req));
    EXPECT_TRUE(rule_matches(rule("", 0), LB_URI_ENTRY, req));
    EXPECT_TRUE(rule_matches(rule("/shop", 0, "shop.example"), LB_URI_ENTRY, req));
    EXPECT_FALSE(rule_matches(rule("/shop", 0, "other.example"), LB_URI_ENTRY, req));

    // Exits: stateful rules with an exit pattern only.
    EXPECT_TRUE(rule_matches(rule("/shop", LB_URI_STATEFUL, {}, "/shop/cart/check"), LB_URI_EXIT,
                             req));
    EXPECT_FALSE(rule_matches(rule("/shop", LB_URI_STATEFUL, {}, "*checkout"), LB_URI_EXIT, req));
    EXPECT_TRUE(rule_matches(rule("/shop", LB_URI_STATEFUL | LB_URI_EXIT_GLOB, {}, "*checkout"),
                             LB_URI_EXIT, req));
    EXPECT_FALSE(rule_matches(rule("/x", LB_URI_STATEFUL | LB_URI_EXIT_GLOB, "x.example",
                                   "*checkout"),
                              LB_URI_EXIT, req));
    EXPECT_FALSE(rule_matches(rule("/shop", LB_URI_STATEFUL, {}, {}), LB_URI_EXIT, req));
    EXPECT_FALSE(rule_matches(rule("/shop", LB_URI_EXIT_GLOB, {}, "*"), LB_URI_EXIT, req));

    // Only complete requests match, even the empty pattern.
    EXPECT_FALSE(rule_matches(rule(""), LB_URI_ENTRY, "GET /shop"));
    EXPECT_FALSE(rule_matches(rule(""), LB_URI_ENTRY, "\x16\x03\x01"));
    // '*': an empty path.
    EXPECT_TRUE(rule_matches(rule("", LB_URI_GLOB), LB_URI_ENTRY, "OPTIONS * HTTP/1.1\r\n"));
    EXPECT_FALSE(rule_matches(rule("/", 0), LB_URI_ENTRY, "OPTIONS * HTTP/1.1\r\n"));
    // absolute-form: its authority is the host.
    EXPECT_TRUE(rule_matches(rule("/a", 0, "h.example"), LB_URI_ENTRY,
                             "GET http://H.example/a HTTP/1.1\r\nHost: x\r\n"));
    // No Host: only rules without a host.
    EXPECT_FALSE(rule_matches(rule("/", 0, "h"), LB_URI_ENTRY, "GET / HTTP/1.0\r\n\r\n"));
    EXPECT_TRUE(rule_matches(rule("/", 0), LB_URI_ENTRY, "GET / HTTP/1.0\r\n\r\n"));
}
