/* lg_cbor.c - strict deterministic CBOR (protocol.md 2): a reader that
 * refuses every non-canonical form while it reads, and a writer that can
 * only produce the canonical one.
 *
 * Why not libcbor's streaming decoder: cbor_stream_decode reports string,
 * array and map lengths as size_t without the width they were encoded
 * with, so it cannot refuse 0x78 0x05 "hello" (a non-shortest length,
 * rule 1). Measured with libcbor 0.8.0: both encodings reach the
 * string callback identically (docs/c-library.md). Checking the head
 * ourselves is 30 lines, so the whole reader is ours. */
#include "lg_internal.h"

void cb_init(lg_cbor *c, const uint8_t *p, size_t len)
{
    c->p = p;
    c->len = len;
    c->pos = 0;
}

bool cb_done(const lg_cbor *c) { return c->pos == c->len; }

lg_err cb_head(lg_cbor *c, int *major, uint64_t *arg)
{
    if (c->pos >= c->len)
        return LG_ERR_MALFORMED;
    uint8_t ib = c->p[c->pos++];
    unsigned ai = ib & 0x1f;
    *major = ib >> 5;
    if (ai < 24) {
        *arg = ai;
        return LG_OK;
    }
    if (ai > 27)
        /* 28..30 reserved; 31 indefinite length (rule 2) or break */
        return ai == 31 ? LG_ERR_NOT_CANONICAL : LG_ERR_MALFORMED;
    size_t n = (size_t)1 << (ai - 24); /* 1, 2, 4, 8 bytes */
    if (c->len - c->pos < n)
        return LG_ERR_MALFORMED;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | c->p[c->pos++];
    /* rule 1: the shortest form. Simple values 24..255 (0xf8 xx) and
     * floats (0xf9..0xfb) are refused by the callers (rule 10). */
    static const uint64_t min[4] = {24, 0x100, 0x10000, 0x100000000ull};
    if (*major != CB_SIMPLE && v < min[ai - 24])
        return LG_ERR_NOT_CANONICAL;
    *arg = v;
    return LG_OK;
}

static lg_err expect(lg_cbor *c, int want, uint64_t *arg)
{
    int major;
    size_t at = c->pos;
    lg_err e = cb_head(c, &major, arg);
    if (e != LG_OK)
        return e;
    if (major != want) {
        c->pos = at;
        return LG_ERR_MALFORMED;
    }
    return LG_OK;
}

lg_err cb_uint(lg_cbor *c, uint64_t *v) { return expect(c, CB_UINT, v); }

lg_err cb_int(lg_cbor *c, int64_t *v)
{
    int major;
    uint64_t a;
    lg_err e = cb_head(c, &major, &a);
    if (e != LG_OK)
        return e;
    if ((major != CB_UINT && major != CB_NINT) || a > (uint64_t)INT64_MAX)
        return LG_ERR_MALFORMED;
    *v = major == CB_UINT ? (int64_t)a : -1 - (int64_t)a;
    return LG_OK;
}

static lg_err string(lg_cbor *c, int major, lg_str *s)
{
    uint64_t n;
    lg_err e = expect(c, major, &n);
    if (e != LG_OK)
        return e;
    if (n > c->len - c->pos)
        return LG_ERR_MALFORMED;
    s->p = c->p + c->pos;
    s->n = (size_t)n;
    c->pos += (size_t)n;
    return LG_OK;
}

lg_err cb_bytes(lg_cbor *c, lg_str *s) { return string(c, CB_BYTES, s); }

/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1, cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2, cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3, cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        static const uint32_t lo[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < lo[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

lg_err cb_text(lg_cbor *c, lg_str *s)
{
    lg_err e = string(c, CB_TEXT, s);
    if (e == LG_OK && !utf8_ok(s->p, s->n))
        return LG_ERR_MALFORMED;
    return e;
}

lg_err cb_bool(lg_cbor *c, bool *b)
{
    if (c->pos >= c->len)
        return LG_ERR_MALFORMED;
    uint8_t v = c->p[c->pos];
    if (v != 0xf4 && v != 0xf5)
        return LG_ERR_MALFORMED;
    c->pos++;
    *b = v == 0xf5;
    return LG_OK;
}

bool cb_null(lg_cbor *c)
{
    if (c->pos < c->len && c->p[c->pos] == 0xf6) {
        c->pos++;
        return true;
    }
    return false;
}

lg_err cb_array(lg_cbor *c, size_t *n)
{
    uint64_t a;
    lg_err e = expect(c, CB_ARRAY, &a);
    if (e != LG_OK)
        return e;
    /* rule 12, and every element takes at least one byte */
    if (a > LG_CBOR_MAX_ARRAY || a > c->len - c->pos)
        return LG_ERR_MALFORMED;
    *n = (size_t)a;
    return LG_OK;
}

lg_err cb_map(lg_cbor *c, size_t *n)
{
    uint64_t a;
    lg_err e = expect(c, CB_MAP, &a);
    if (e != LG_OK)
        return e;
    if (a > LG_CBOR_MAX_MAP || a > (c->len - c->pos) / 2)
        return LG_ERR_MALFORMED;
    *n = (size_t)a;
    return LG_OK;
}

lg_err cb_key(lg_cbor *c, uint64_t *prev, uint64_t *key)
{
    int major;
    size_t at = c->pos;
    lg_err e = cb_head(c, &major, key);
    if (e != LG_OK)
        return e;
    if (major != CB_UINT) {
        c->pos = at;
        /* a text or negative key sorts after every uint key; whether
         * sorted or not, no structure here has one: unknown (rule 5) */
        return LG_ERR_MALFORMED;
    }
    if (*prev != UINT64_MAX && *key <= *prev)
        return LG_ERR_NOT_CANONICAL; /* rules 3 and 4 */
    *prev = *key;
    return LG_OK;
}

lg_err cb_want_key(lg_cbor *c, uint64_t *prev, uint64_t want)
{
    uint64_t key;
    lg_err e = cb_key(c, prev, &key);
    if (e != LG_OK)
        return e;
    return key == want ? LG_OK : LG_ERR_MALFORMED;
}

/* Bytewise order of two encoded keys (RFC 8949 4.2.1). */
static int keycmp(lg_str a, lg_str b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int r = memcmp(a.p, b.p, n);
    if (r != 0)
        return r;
    return a.n < b.n ? -1 : a.n > b.n;
}

static lg_err item(lg_cbor *c, int depth)
{
    int major;
    uint64_t a;
    if (depth > LG_CBOR_MAX_DEPTH)
        return LG_ERR_MALFORMED;
    size_t at = c->pos;
    lg_err e = cb_head(c, &major, &a);
    if (e != LG_OK)
        return e;
    lg_str s;
    switch (major) {
    case CB_UINT:
        return LG_OK;
    case CB_NINT:
        return LG_OK;
    case CB_BYTES:
    case CB_TEXT:
        c->pos = at;
        return major == CB_TEXT ? cb_text(c, &s) : cb_bytes(c, &s);
    case CB_ARRAY:
        if (a > LG_CBOR_MAX_ARRAY || a > c->len - c->pos)
            return LG_ERR_MALFORMED;
        for (uint64_t i = 0; i < a; i++)
            if ((e = item(c, depth + 1)) != LG_OK)
                return e;
        return LG_OK;
    case CB_MAP: {
        if (a > LG_CBOR_MAX_MAP || a > (c->len - c->pos) / 2)
            return LG_ERR_MALFORMED;
        lg_str prev = {NULL, 0};
        for (uint64_t i = 0; i < a; i++) {
            lg_str k;
            k.p = c->p + c->pos;
            size_t kat = c->pos;
            if ((e = item(c, depth + 1)) != LG_OK)
                return e;
            k.n = c->pos - kat;
            if (prev.p != NULL && keycmp(prev, k) >= 0)
                return LG_ERR_NOT_CANONICAL;
            prev = k;
            if ((e = item(c, depth + 1)) != LG_OK)
                return e;
        }
        return LG_OK;
    }
    case CB_TAG:
        return LG_ERR_MALFORMED; /* rule 6 */
    default: /* CB_SIMPLE: false, true, null only (rule 10) */
        return (a == 20 || a == 21 || a == 22) && c->pos == at + 1 ? LG_OK : LG_ERR_MALFORMED;
    }
}

lg_err cb_item(lg_cbor *c, lg_str *span)
{
    size_t at = c->pos;
    lg_err e = item(c, 1);
    if (e != LG_OK)
        return e;
    span->p = c->p + at;
    span->n = c->pos - at;
    return LG_OK;
}

/* ---- ids and strings --------------------------------------------------- */

bool lg_valid_id(const uint8_t *p, size_t n)
{
    if (n < 1 || n > LG_ID_MAX)
        return false;
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        bool ok = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') ||
                  b == '.' || b == '_' || b == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool lg_str_eq(lg_str s, const char *z)
{
    size_t n = strlen(z);
    return s.n == n && (n == 0 || memcmp(s.p, z, n) == 0);
}

bool lg_str_eq_str(lg_str a, lg_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool lg_str_copy(char *dst, size_t cap, lg_str s)
{
    if (s.n >= cap)
        return false;
    if (s.n > 0)
        memcpy(dst, s.p, s.n);
    dst[s.n] = '\0';
    return true;
}

lg_err lg_list_id_at(const lg_list *l, size_t i, lg_str *out)
{
    lg_cbor c;
    size_t n;
    if (l == NULL || out == NULL || i >= l->count)
        return LG_ERR_ARG;
    cb_init(&c, l->p, l->n);
    lg_err e = cb_array(&c, &n);
    for (size_t k = 0; e == LG_OK && k <= i; k++)
        e = cb_text(&c, out);
    return e;
}

lg_err lg_list_uint_at(const lg_list *l, size_t i, uint64_t *out)
{
    lg_cbor c;
    size_t n;
    if (l == NULL || out == NULL || i >= l->count)
        return LG_ERR_ARG;
    cb_init(&c, l->p, l->n);
    lg_err e = cb_array(&c, &n);
    for (size_t k = 0; e == LG_OK && k <= i; k++)
        e = cb_uint(&c, out);
    return e;
}

/* ---- writer -------------------------------------------------------------- */

void cbw_init(lg_cbw *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->sha = NULL;
    w->err = LG_OK;
}

void cbw_raw(lg_cbw *w, const void *p, size_t n)
{
    if (w->err != LG_OK)
        return;
    if (w->sha != NULL)
        mbedtls_sha256_update_ret(w->sha, p, n);
    if (w->buf != NULL) {
        if (w->cap - w->len < n) {
            w->err = LG_ERR_BUFFER;
            return;
        }
        if (n > 0)
            memcpy(w->buf + w->len, p, n);
    }
    w->len += n;
}

void cbw_head(lg_cbw *w, int major, uint64_t arg)
{
    uint8_t h[9];
    size_t n;
    uint8_t m = (uint8_t)(major << 5);
    if (arg < 24) {
        h[0] = m | (uint8_t)arg;
        n = 1;
    } else if (arg <= 0xff) {
        h[0] = m | 24;
        n = 2;
    } else if (arg <= 0xffff) {
        h[0] = m | 25;
        n = 3;
    } else if (arg <= 0xffffffffull) {
        h[0] = m | 26;
        n = 5;
    } else {
        h[0] = m | 27;
        n = 9;
    }
    for (size_t i = 1; i < n; i++)
        h[i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
    cbw_raw(w, h, n);
}

void cbw_uint(lg_cbw *w, uint64_t v) { cbw_head(w, CB_UINT, v); }

void cbw_int(lg_cbw *w, int64_t v)
{
    if (v >= 0)
        cbw_head(w, CB_UINT, (uint64_t)v);
    else
        cbw_head(w, CB_NINT, (uint64_t)(-1 - v));
}

void cbw_bytes(lg_cbw *w, const void *p, size_t n)
{
    cbw_head(w, CB_BYTES, n);
    cbw_raw(w, p, n);
}

void cbw_text(lg_cbw *w, const char *p, size_t n)
{
    cbw_head(w, CB_TEXT, n);
    cbw_raw(w, p, n);
}

void cbw_textz(lg_cbw *w, const char *z) { cbw_text(w, z, strlen(z)); }

void cbw_bool(lg_cbw *w, bool b)
{
    uint8_t v = b ? 0xf5 : 0xf4;
    cbw_raw(w, &v, 1);
}
