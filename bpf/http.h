/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The "http" mode's reading of a first data segment (DESIGN.md section 4):
 * the request line and Host header, and the URI rules' path patterns.
 * Pure logic, compiled into the XDP program (driven one byte / one step per
 * bpf_loop() callback, see http.bpf.h) and into the C++ tests and fuzzer.
 * No helpers, no maps, no globals, no libc: state in, state out.
 *
 * Accepted request line (RFC 9112 section 3, simplified), in bytes:
 *
 *   request-line   = method SP request-target SP version CRLF
 *   method         = "GET" / "HEAD" / "POST" / "PUT" / "DELETE" / "OPTIONS"
 *                    / "PATCH" / "CONNECT" / "TRACE"   ; case-sensitive
 *   request-target = origin-form / absolute-form / asterisk-form
 *   origin-form    = path [ "?" query ]
 *   absolute-form  = scheme "://" authority [ path ] [ "?" query ]
 *   asterisk-form  = "*"                        ; the path is empty
 *   scheme         = "http" / "https"           ; case-insensitive
 *   authority      = 1*achar                    ; the host, port included
 *   path           = "/" *pchar                 ; the path, whole
 *   query          = *vchar
 *   version        = "HTTP/1.0" / "HTTP/1.1"    ; case-sensitive
 *   vchar          = %x21-7E / %x80-FF          ; visible ASCII, obs-text
 *   pchar          = vchar except "?"
 *   achar          = vchar except "/" and "?"
 *
 * The request line must end within the first LB_HTTP_SCAN bytes. Data that
 * ends inside it and fits the grammar so far is INCOMPLETE ("GE", "GET /a");
 * anything else is NOT_HTTP, from the first byte that cannot continue a
 * request line (TLS and SSH at their first byte).
 *
 * Simplified: path and query bytes are not checked against RFC 3986 ('#',
 * '%', obs-text are plain bytes, as common servers take them); exactly one
 * SP between the parts; no empty line before the request line (RFC 9112 2.2
 * lets servers skip some); authority-form (CONNECT host:port) is refused;
 * the method/form pairing (OPTIONS *, CONNECT) is not checked; absolute-form
 * without a path gives an empty path (servers read "/").
 *
 * Then, unless the authority gave the host (RFC 9112 3.2.2), header lines
 * are read in order for the first Host line:
 *
 *   host-line      = "Host:" *blank host-value *blank CRLF
 *                                              ; name case-insensitive
 *   host-value     = any bytes but CR, LF and controls other than HTAB,
 *                    not starting or ending with a blank
 *   blank          = SP / HTAB
 *
 * The host is unknown (length 0) when the empty line, a bare CR or LF, a
 * control byte in the Host value, or the end of the data or of the scan
 * comes first. "Host :" is not a Host line; other lines are skipped whatever
 * they hold. Duplicate Host lines and obs-fold are not detected (servers
 * answer them with 400).
 *
 * Paths are matched raw: no percent-decoding, no dot-segment removal. This
 * is routing, not access control. */
#ifndef PEERLB_BPF_HTTP_H
#define PEERLB_BPF_HTTP_H

#include <linux/types.h>

#include "../maps/uri.h"

#define LB_HTTP_SCAN 512     /* bytes of a first segment examined (power of two) */
#define LB_HTTP_PATH_MAX 256 /* bytes of a path matched (power of two); a longer
			      * path is matched on its first LB_HTTP_PATH_MAX
			      * bytes, as if it ended there */

/* lb_http_feed returns MORE, DONE or NOT_HTTP; lb_http_finish's status is
 * COMPLETE, INCOMPLETE or NOT_HTTP. */
enum lb_http_result {
	LB_HTTP_MORE = 0,       /* feed the next byte */
	LB_HTTP_DONE = 1,       /* nothing more needed */
	LB_HTTP_NOT_HTTP = 2,   /* not an HTTP/1.x request (as accepted above) */
	LB_HTTP_COMPLETE = 3,   /* request line complete up to its CRLF */
	LB_HTTP_INCOMPLETE = 4, /* the data ended before that CRLF */
};

enum lb_http_method {
	LB_HTTP_NO_METHOD = 0,
	LB_HTTP_GET = 1,
	LB_HTTP_HEAD,
	LB_HTTP_POST,
	LB_HTTP_PUT,
	LB_HTTP_DELETE,
	LB_HTTP_OPTIONS,
	LB_HTTP_PATCH,
	LB_HTTP_CONNECT,
	LB_HTTP_TRACE,
	LB_HTTP_METHODS = LB_HTTP_TRACE, /* the last one */
};

enum lb_http_version {
	LB_HTTP_1_0 = 10,
	LB_HTTP_1_1 = 11,
};

enum lb_http_form {
	LB_HTTP_ORIGIN_FORM = 1,   /* "/path?query" */
	LB_HTTP_ABSOLUTE_FORM = 2, /* "http://authority/path?query" */
	LB_HTTP_ASTERISK_FORM = 3, /* "*" */
};

/* What lb_http_finish reports. Every field but status is 0 unless status is
 * LB_HTTP_COMPLETE. Offsets are from the first byte fed, so they and the
 * lengths lie within the first LB_HTTP_SCAN bytes. */
struct lb_http_request {
	__u32 status;   /* LB_HTTP_COMPLETE, LB_HTTP_INCOMPLETE, LB_HTTP_NOT_HTTP */
	__u8 method;    /* enum lb_http_method */
	__u8 version;   /* enum lb_http_version */
	__u8 form;      /* enum lb_http_form */
	__u8 pad;
	__u16 path_off; /* path: up to '?' or SP; may exceed LB_HTTP_PATH_MAX */
	__u16 path_len;
	__u16 host_off; /* authority (absolute-form) or Host value; length 0: */
	__u16 host_len; /* absent, empty, cut off by the data, or malformed */
};

/* Parser states; S_DONE and S_BAD are final. */
enum lb_http_state {
	LB_HTTP_S_METHOD = 0,
	LB_HTTP_S_TARGET,    /* first byte of the request-target */
	LB_HTTP_S_SCHEME,    /* "https://", idx bytes matched, 's' optional */
	LB_HTTP_S_AUTH0,     /* first byte of the authority */
	LB_HTTP_S_AUTH,
	LB_HTTP_S_PATH,
	LB_HTTP_S_QUERY,
	LB_HTTP_S_ASTERISK,  /* after '*': SP */
	LB_HTTP_S_VERSION,   /* "HTTP/1.x\r", idx bytes matched */
	LB_HTTP_S_LINE_LF,
	LB_HTTP_S_LINE0,     /* start of a header line */
	LB_HTTP_S_NAME,      /* "host:", idx bytes matched */
	LB_HTTP_S_HOST_OWS,  /* blanks before the Host value */
	LB_HTTP_S_HOST,      /* the Host value */
	LB_HTTP_S_HOST_LF,
	LB_HTTP_S_SKIP,      /* a header line that is not Host */
	LB_HTTP_S_SKIP_LF,
	LB_HTTP_S_DONE,
	LB_HTTP_S_BAD,
};

#define LB_HTTP_PF_LINE 0x1 /* request line complete */
#define LB_HTTP_PF_HOST 0x2 /* Host line complete */

/* No pointers: the BPF side keeps it on the stack across bpf_loop()
 * callbacks, and a copy taken after k bytes is the parse of those k bytes. */
struct lb_http_parser {
	__u64 token;    /* method bytes so far, the first one highest */
	__u16 pos;      /* bytes fed */
	__u16 path_off;
	__u16 path_len;
	__u16 host_off;
	__u16 host_end; /* one past the last non-blank byte of the host */
	__u8 state;     /* enum lb_http_state */
	__u8 idx;       /* bytes matched in the current literal or method */
	__u8 method;
	__u8 version;
	__u8 form;
	__u8 flags;     /* LB_HTTP_PF_* */
};

/* Literals as big-endian words, not strings: a string would be a global
 * (.rodata) in the BPF object. */
#define LB_HTTP_LIT_SCHEME 0x68747470733a2f2full /* "https://" */
#define LB_HTTP_LIT_VERSION 0x485454502f312eull  /* "HTTP/1." */
#define LB_HTTP_LIT_HOST 0x686f73743aull         /* "host:" */

/* Byte i of a literal of n bytes. */
static inline __u8 lb_http_lit(__u64 lit, __u32 n, __u32 i)
{
	return (__u8)(lit >> (8 * ((n - 1 - i) & 7)));
}

static inline __u8 lb_http_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? (__u8)(c + ('a' - 'A')) : c;
}

static inline int lb_http_is_ctl(__u8 c)
{
	return c < 0x20 || c == 0x7f;
}

/* A byte of a request-target: visible ASCII or obs-text. */
static inline int lb_http_is_tchar(__u8 c)
{
	return c > 0x20 && c != 0x7f;
}

static inline int lb_http_is_blank(__u8 c)
{
	return c == ' ' || c == '\t';
}

/* The method's token as a big-endian word; *len its length. */
static inline __u64 lb_http_method_word(__u32 m, __u32 *len)
{
	switch (m) {
	case LB_HTTP_GET: *len = 3; return 0x474554ull;
	case LB_HTTP_HEAD: *len = 4; return 0x48454144ull;
	case LB_HTTP_POST: *len = 4; return 0x504f5354ull;
	case LB_HTTP_PUT: *len = 3; return 0x505554ull;
	case LB_HTTP_DELETE: *len = 6; return 0x44454c455445ull;
	case LB_HTTP_OPTIONS: *len = 7; return 0x4f5054494f4e53ull;
	case LB_HTTP_PATCH: *len = 5; return 0x5041544348ull;
	case LB_HTTP_CONNECT: *len = 7; return 0x434f4e4e454354ull;
	case LB_HTTP_TRACE: *len = 5; return 0x5452414345ull;
	}
	*len = 0;
	return 0;
}

/* A method whose first n bytes are `token` (exact: whose whole token is),
 * or LB_HTTP_NO_METHOD. An exact match is unique; a prefix one is not
 * ("P": POST, PUT, PATCH), and then any will do. */
static inline __u32 lb_http_method_match(__u64 token, __u32 n, int exact)
{
	__u32 m, len, found = LB_HTTP_NO_METHOD;
	__u64 word;

	for (m = LB_HTTP_GET; m <= LB_HTTP_METHODS; m++) {
		word = lb_http_method_word(m, &len);
		if (n > len || (exact && n != len))
			continue;
		if (word >> (8 * ((len - n) & 7)) == token)
			found = m;
	}
	return found;
}

static inline void lb_http_init(struct lb_http_parser *p)
{
	p->token = 0;
	p->pos = 0;
	p->path_off = 0;
	p->path_len = 0;
	p->host_off = 0;
	p->host_end = 0;
	p->state = LB_HTTP_S_METHOD;
	p->idx = 0;
	p->method = LB_HTTP_NO_METHOD;
	p->version = 0;
	p->form = 0;
	p->flags = 0;
}

/* The request line, byte c at position pos. */
static inline int lb_http_line_step(struct lb_http_parser *p, __u8 c, __u16 pos)
{
	switch (p->state) {
	case LB_HTTP_S_METHOD:
		if (c == ' ') {
			p->method = (__u8)lb_http_method_match(p->token, p->idx, 1);
			if (p->method == LB_HTTP_NO_METHOD)
				return LB_HTTP_NOT_HTTP;
			p->state = LB_HTTP_S_TARGET;
			p->idx = 0; /* for S_VERSION */
			return LB_HTTP_MORE;
		}
		if (p->idx >= 7) /* longer than any method */
			return LB_HTTP_NOT_HTTP;
		/* Refused at the first byte no method starts with (TLS, SSH
		 * and the like stop at once), so a method cut by the end of
		 * data ("GE") is INCOMPLETE. */
		p->token = p->token << 8 | c;
		p->idx++;
		if (lb_http_method_match(p->token, p->idx, 0) == LB_HTTP_NO_METHOD)
			return LB_HTTP_NOT_HTTP;
		return LB_HTTP_MORE;
	case LB_HTTP_S_TARGET:
		p->path_off = pos;
		if (c == '/') {
			p->form = LB_HTTP_ORIGIN_FORM;
			p->state = LB_HTTP_S_PATH;
		} else if (c == '*') {
			p->form = LB_HTTP_ASTERISK_FORM;
			p->state = LB_HTTP_S_ASTERISK;
		} else if (lb_http_lower(c) == 'h') {
			p->form = LB_HTTP_ABSOLUTE_FORM;
			p->state = LB_HTTP_S_SCHEME;
			p->idx = 1;
		} else {
			return LB_HTTP_NOT_HTTP;
		}
		return LB_HTTP_MORE;
	case LB_HTTP_S_SCHEME:
		if (p->idx == 4 && c == ':')
			p->idx = 5; /* "http": no 's' */
		if (lb_http_lower(c) != lb_http_lit(LB_HTTP_LIT_SCHEME, 8, p->idx))
			return LB_HTTP_NOT_HTTP;
		if (++p->idx == 8) {
			p->state = LB_HTTP_S_AUTH0;
			p->idx = 0; /* for S_VERSION */
		}
		return LB_HTTP_MORE;
	case LB_HTTP_S_AUTH0:
		if (!lb_http_is_tchar(c) || c == '/' || c == '?')
			return LB_HTTP_NOT_HTTP; /* empty or malformed authority */
		p->host_off = pos;
		p->state = LB_HTTP_S_AUTH;
		return LB_HTTP_MORE;
	case LB_HTTP_S_AUTH:
		p->host_end = pos;
		p->path_off = pos;
		if (c == '/')
			p->state = LB_HTTP_S_PATH;
		else if (c == '?')
			p->state = LB_HTTP_S_QUERY;
		else if (c == ' ')
			p->state = LB_HTTP_S_VERSION;
		else if (!lb_http_is_tchar(c))
			return LB_HTTP_NOT_HTTP;
		return LB_HTTP_MORE;
	case LB_HTTP_S_PATH:
		if (c == '?' || c == ' ') {
			p->path_len = pos - p->path_off;
			p->state = c == ' ' ? LB_HTTP_S_VERSION : LB_HTTP_S_QUERY;
		} else if (!lb_http_is_tchar(c)) {
			return LB_HTTP_NOT_HTTP;
		}
		return LB_HTTP_MORE;
	case LB_HTTP_S_QUERY:
		if (c == ' ')
			p->state = LB_HTTP_S_VERSION;
		else if (!lb_http_is_tchar(c))
			return LB_HTTP_NOT_HTTP;
		return LB_HTTP_MORE;
	case LB_HTTP_S_ASTERISK:
		if (c != ' ')
			return LB_HTTP_NOT_HTTP;
		p->state = LB_HTTP_S_VERSION;
		return LB_HTTP_MORE;
	case LB_HTTP_S_VERSION:
		/* idx: 0-6 "HTTP/1.", 7 the minor digit, 8 CR */
		if (p->idx < 7) {
			if (c != lb_http_lit(LB_HTTP_LIT_VERSION, 7, p->idx))
				return LB_HTTP_NOT_HTTP;
		} else if (p->idx == 7) {
			if (c != '0' && c != '1')
				return LB_HTTP_NOT_HTTP;
			p->version = c == '0' ? LB_HTTP_1_0 : LB_HTTP_1_1;
		} else {
			if (c != '\r')
				return LB_HTTP_NOT_HTTP;
			p->state = LB_HTTP_S_LINE_LF;
		}
		p->idx++;
		return LB_HTTP_MORE;
	case LB_HTTP_S_LINE_LF:
		if (c != '\n')
			return LB_HTTP_NOT_HTTP;
		p->flags |= LB_HTTP_PF_LINE;
		/* absolute-form: the authority is the host (RFC 9112 3.2.2) */
		if (p->form == LB_HTTP_ABSOLUTE_FORM)
			return LB_HTTP_DONE;
		p->state = LB_HTTP_S_LINE0;
		return LB_HTTP_MORE;
	}
	return LB_HTTP_NOT_HTTP;
}

/* The header lines, looking for Host. Never NOT_HTTP: the request line
 * was fine; whatever is odd here only stops the search. */
static inline int lb_http_header_step(struct lb_http_parser *p, __u8 c, __u16 pos)
{
	switch (p->state) {
	case LB_HTTP_S_LINE0:
		if (c == '\r' || c == '\n')
			return LB_HTTP_DONE; /* end of the headers (or a bare LF) */
		if (lb_http_lower(c) == 'h') {
			p->state = LB_HTTP_S_NAME;
			p->idx = 1;
		} else {
			p->state = LB_HTTP_S_SKIP;
		}
		return LB_HTTP_MORE;
	case LB_HTTP_S_NAME:
		if (lb_http_lower(c) == lb_http_lit(LB_HTTP_LIT_HOST, 5, p->idx)) {
			if (++p->idx == 5)
				p->state = LB_HTTP_S_HOST_OWS;
			return LB_HTTP_MORE;
		}
		p->state = LB_HTTP_S_SKIP;
		break; /* c is a byte of that other line */
	case LB_HTTP_S_HOST_OWS:
		if (lb_http_is_blank(c))
			return LB_HTTP_MORE;
		p->host_off = pos;
		p->host_end = pos;
		p->state = LB_HTTP_S_HOST;
		break; /* c is the value's first byte, or its end */
	case LB_HTTP_S_HOST_LF:
		if (c != '\n')
			return LB_HTTP_DONE; /* bare CR */
		p->flags |= LB_HTTP_PF_HOST;
		return LB_HTTP_DONE;
	case LB_HTTP_S_SKIP_LF:
		if (c != '\n')
			return LB_HTTP_DONE;
		p->state = LB_HTTP_S_LINE0;
		return LB_HTTP_MORE;
	}

	if (p->state == LB_HTTP_S_HOST) {
		if (c == '\r')
			p->state = LB_HTTP_S_HOST_LF;
		else if (lb_http_is_ctl(c) && c != '\t')
			return LB_HTTP_DONE; /* bare LF, or not a field value */
		else if (!lb_http_is_blank(c))
			p->host_end = pos + 1;
		return LB_HTTP_MORE;
	}
	/* LB_HTTP_S_SKIP */
	if (c == '\r')
		p->state = LB_HTTP_S_SKIP_LF;
	else if (c == '\n')
		return LB_HTTP_DONE;
	return LB_HTTP_MORE;
}

/* Feeds the next byte. Once DONE or NOT_HTTP, it stays so. The byte at
 * LB_HTTP_SCAN - 1 is the last one read: a request line not ended by then is
 * not one this mode can route. */
static inline int lb_http_feed(struct lb_http_parser *p, __u8 c)
{
	int r;

	if (p->state == LB_HTTP_S_DONE)
		return LB_HTTP_DONE;
	if (p->state == LB_HTTP_S_BAD)
		return LB_HTTP_NOT_HTTP;
	if (p->flags & LB_HTTP_PF_LINE)
		r = lb_http_header_step(p, c, p->pos);
	else
		r = lb_http_line_step(p, c, p->pos);
	p->pos++;
	if (r == LB_HTTP_MORE && p->pos >= LB_HTTP_SCAN)
		r = (p->flags & LB_HTTP_PF_LINE) ? LB_HTTP_DONE : LB_HTTP_NOT_HTTP;
	if (r == LB_HTTP_DONE)
		p->state = LB_HTTP_S_DONE;
	else if (r == LB_HTTP_NOT_HTTP)
		p->state = LB_HTTP_S_BAD;
	return r;
}

/* The request as far as the bytes fed tell. */
static inline void lb_http_finish(const struct lb_http_parser *p, struct lb_http_request *out)
{
	out->status = LB_HTTP_INCOMPLETE;
	out->method = LB_HTTP_NO_METHOD;
	out->version = 0;
	out->form = 0;
	out->pad = 0;
	out->path_off = 0;
	out->path_len = 0;
	out->host_off = 0;
	out->host_len = 0;
	if (p->state == LB_HTTP_S_BAD) {
		out->status = LB_HTTP_NOT_HTTP;
		return;
	}
	if (!(p->flags & LB_HTTP_PF_LINE))
		return;
	out->status = LB_HTTP_COMPLETE;
	out->method = p->method;
	out->version = p->version;
	out->form = p->form;
	out->path_off = p->path_off;
	out->path_len = p->path_len;
	if (p->form == LB_HTTP_ABSOLUTE_FORM || (p->flags & LB_HTTP_PF_HOST)) {
		out->host_off = p->host_off;
		out->host_len = p->host_end - p->host_off;
	}
}

/* Path patterns of the URI rules (maps/uri.h), matched one step at a time
 * so that the XDP program can drive them with bpf_loop().
 *   prefix (not LB_URI_GLOB): the path starts with the pattern;
 *   glob: the pattern matches the whole path, '*' any run of bytes ('/'
 *   included), every other byte itself (no '?', no classes, no escapes).
 * The glob is the greedy two-pointer match that remembers only the last
 * '*' (later stars never need an earlier one to take more): linear memory,
 * O(path * pattern) steps at worst. A match that needs more than
 * LB_GLOB_MAX_STEPS steps is NOMATCH: that bounds the per-packet cost a
 * client can cause with a crafted path ("*a*a*a*b" against "aaaa..."); real
 * patterns need about path + pattern steps. */
#define LB_GLOB_MAX_STEPS 4096
#define LB_GLOB_NO_STAR 0xffffffffu

enum lb_glob_result {
	LB_GLOB_MORE = 0,
	LB_GLOB_MATCH = 1,
	LB_GLOB_NOMATCH = 2,
};

struct lb_glob {
	__u32 t;      /* next text byte */
	__u32 p;      /* next pattern byte */
	__u32 star_p; /* the last '*' seen, or LB_GLOB_NO_STAR */
	__u32 star_t; /* where the text that '*' covers ends now */
	__u32 steps;
	__u32 glob;   /* 0: prefix pattern */
};

static inline void lb_glob_init(struct lb_glob *g, __u32 glob)
{
	g->t = 0;
	g->p = 0;
	g->star_p = LB_GLOB_NO_STAR;
	g->star_t = 0;
	g->steps = 0;
	g->glob = glob;
}

/* One step. text: a buffer of LB_HTTP_PATH_MAX bytes, pat: one of
 * LB_URI_PATTERN_MAX bytes; only text[0, text_len) and pat[0, pat_len) are
 * read (lengths clamped to the sizes). Indexes are masked with size - 1 for
 * the verifier; below the lengths the masks change nothing. */
static inline int lb_glob_step(struct lb_glob *g, const __u8 *text, __u32 text_len,
			       const __u8 *pat, __u32 pat_len)
{
	__u32 t = g->t, p = g->p;
	__u8 pc = 0;

	if (text_len > LB_HTTP_PATH_MAX)
		text_len = LB_HTTP_PATH_MAX;
	if (pat_len > LB_URI_PATTERN_MAX)
		pat_len = LB_URI_PATTERN_MAX;
	if (g->steps >= LB_GLOB_MAX_STEPS)
		return LB_GLOB_NOMATCH;
	g->steps++;
	if (p < pat_len)
		pc = pat[p & (LB_URI_PATTERN_MAX - 1)];

	if (!g->glob) {
		if (p >= pat_len)
			return LB_GLOB_MATCH;
		if (t >= text_len || text[t & (LB_HTTP_PATH_MAX - 1)] != pc)
			return LB_GLOB_NOMATCH;
		g->t = t + 1;
		g->p = p + 1;
		return LB_GLOB_MORE;
	}

	if (p < pat_len && pc == '*') {
		/* '*' covers nothing for now */
		g->star_p = p;
		g->star_t = t;
		g->p = p + 1;
		return LB_GLOB_MORE;
	}
	if (t < text_len) {
		if (p < pat_len && pc == text[t & (LB_HTTP_PATH_MAX - 1)]) {
			g->t = t + 1;
			g->p = p + 1;
			return LB_GLOB_MORE;
		}
		if (g->star_p == LB_GLOB_NO_STAR)
			return LB_GLOB_NOMATCH;
		/* mismatch: the last '*' covers one byte more, retry after it */
		g->star_t++;
		g->t = g->star_t;
		g->p = g->star_p + 1;
		return LB_GLOB_MORE;
	}
	/* Text consumed: only stars may be left, taken one step each above.
	 * A later start of the last '*' leaves less text, so no retry. */
	return p >= pat_len ? LB_GLOB_MATCH : LB_GLOB_NOMATCH;
}

/* The steps in a plain loop (userspace, tests): 1 when the pattern matches. */
static inline int lb_glob_match(const __u8 *text, __u32 text_len, const __u8 *pat,
				__u32 pat_len, __u32 glob)
{
	struct lb_glob g;
	int r;

	lb_glob_init(&g, glob);
	do
		r = lb_glob_step(&g, text, text_len, pat, pat_len);
	while (r == LB_GLOB_MORE);
	return r == LB_GLOB_MATCH;
}

/* Host comparison. The rule's host is lower case (maps/uri.h); the request's
 * is host_len bytes at data[host_off], data a buffer of LB_HTTP_SCAN bytes
 * (indexes masked for the verifier). Case-insensitive; a ":port" (':' and at
 * most 5 digits) after the request's host is ignored, so a rule host without
 * a port matches every port and one with a port only that port. An empty rule
 * host matches any request, with a host or without. Checked byte by byte
 * (lb_http_host_byte_ok) so that the XDP side can use bpf_loop(). */
#define LB_HTTP_PORT_MAX 6 /* ":65535" */

/* Whether a request host of host_len bytes can match a rule host of
 * rule_len (> 0) bytes. */
static inline int lb_http_host_len_ok(__u32 rule_len, __u32 host_len)
{
	return rule_len <= LB_URI_HOST_MAX && host_len >= rule_len &&
	       host_len <= rule_len + LB_HTTP_PORT_MAX;
}

/* Whether byte i (c) of the request's host fits a rule host of rule_len
 * bytes: the host itself, then ':', then digits. */
static inline int lb_http_host_byte_ok(const __u8 *rule_host, __u32 rule_len, __u32 i, __u8 c)
{
	if (i < rule_len)
		return lb_http_lower(c) == rule_host[i & (LB_URI_HOST_MAX - 1)];
	if (i == rule_len)
		return c == ':';
	return c >= '0' && c <= '9';
}

static inline int lb_http_host_matches(const __u8 *rule_host, __u32 rule_len, const __u8 *data,
				       __u32 host_off, __u32 host_len)
{
	__u32 i;

	if (rule_len == 0)
		return 1;
	if (!lb_http_host_len_ok(rule_len, host_len))
		return 0;
	for (i = 0; i < host_len; i++)
		if (!lb_http_host_byte_ok(rule_host, rule_len, i,
					  data[(host_off + i) & (LB_HTTP_SCAN - 1)]))
			return 0;
	return 1;
}

/* Which of a rule's patterns lb_http_rule_pattern gives. */
enum lb_uri_which {
	LB_URI_ENTRY = 0, /* pattern: the rule applies */
	LB_URI_EXIT = 1,  /* exit_pattern: a stateful rule's pin ends */
};

/* The length of the rule's pattern for `which`, *glob whether it is a glob;
 * -1 when the rule has none: an exit only on a stateful rule with a
 * non-empty exit pattern (empty: the pin ends by timeout only). */
static inline int lb_http_rule_pattern(const struct lb_uri_rule *rule, __u32 which, __u32 *glob)
{
	if (which == LB_URI_EXIT) {
		*glob = (rule->flags & LB_URI_EXIT_GLOB) != 0;
		if (!(rule->flags & LB_URI_STATEFUL) || rule->exit_len == 0)
			return -1;
		return rule->exit_len > LB_URI_PATTERN_MAX ? LB_URI_PATTERN_MAX : rule->exit_len;
	}
	*glob = (rule->flags & LB_URI_GLOB) != 0;
	return rule->pattern_len > LB_URI_PATTERN_MAX ? LB_URI_PATTERN_MAX : rule->pattern_len;
}

/* Whether a complete request matches the rule's host and its pattern for
 * `which`; data holds the segment as fed to the parser. The rule's port and
 * nodes are the caller's business. http.bpf.h's lb_uri_rule_matches is the
 * same with bpf_loop(). */
static inline int lb_http_rule_matches(const struct lb_uri_rule *rule, __u32 which,
				       const __u8 *data, const struct lb_http_request *req)
{
	__u32 glob, path_len = req->path_len;
	int pat_len;

	if (req->status != LB_HTTP_COMPLETE)
		return 0;
	if (!lb_http_host_matches(rule->host, rule->host_len, data, req->host_off,
				  req->host_len))
		return 0;
	pat_len = lb_http_rule_pattern(rule, which, &glob);
	if (pat_len < 0)
		return 0;
	if (path_len > LB_HTTP_PATH_MAX)
		path_len = LB_HTTP_PATH_MAX;
	return lb_glob_match(data + req->path_off, path_len,
			     which == LB_URI_EXIT ? rule->exit_pattern : rule->pattern,
			     (__u32)pat_len, glob);
}

#endif
