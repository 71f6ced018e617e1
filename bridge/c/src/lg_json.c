/* lg_json.c - the two JSON documents a device reads: genesis.json
 * (protocol.md 8) and the reject message (14.3). A strict RFC 8259 reader
 * over caller bytes, no tree: values are read or skipped in place. */
#include "lg_internal.h"

#define JS_MAX_DEPTH 16

typedef struct js {
    const uint8_t *p;
    size_t len, pos;
} js;

static void ws(js *j)
{
    while (j->pos < j->len && (j->p[j->pos] == ' ' || j->p[j->pos] == '\t' ||
                               j->p[j->pos] == '\n' || j->p[j->pos] == '\r'))
        j->pos++;
}

/* Consume ch (after white space) if it is next. */
static bool eat(js *j, char ch)
{
    ws(j);
    if (j->pos < j->len && j->p[j->pos] == (uint8_t)ch) {
        j->pos++;
        return true;
    }
    return false;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool u4(js *j, uint32_t *v)
{
    if (j->len - j->pos < 4)
        return false;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[j->pos++]);
        if (h < 0)
            return false;
        *v = (*v << 4) | (uint32_t)h;
    }
    return true;
}

/* A string, decoded to UTF-8 into out (cap bytes, not NUL-terminated;
 * out NULL: only checked). *n is the decoded length; a string longer than
 * cap is refused. Raw bytes must be valid UTF-8, checked by the CBOR side's
 * rules through the escape-free path below. */
static bool str(js *j, uint8_t *out, size_t cap, size_t *n)
{
    *n = 0;
    if (!eat(j, '"'))
        return false;
    for (;;) {
        if (j->pos >= j->len)
            return false;
        uint8_t c = j->p[j->pos++];
        uint32_t cp;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\') {
            /* copy one raw byte; UTF-8 validity is checked per sequence */
            size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
                       (c & 0xf8) == 0xf0 ? 3 : 4;
            if (k == 4 || j->len - j->pos < k)
                return false;
            cp = k == 0 ? c : c & (0x3f >> k);
            for (size_t i = 0; i < k; i++) {
                uint8_t b = j->p[j->pos + i];
                if ((b & 0xc0) != 0x80)
                    return false;
                cp = (cp << 6) | (b & 0x3f);
            }
            static const uint32_t lo[4] = {0, 0x80, 0x800, 0x10000};
            if (cp < lo[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return false;
            if (out != NULL && cap - *n < k + 1)
                return false;
            if (out != NULL)
                memcpy(out + *n, j->p + j->pos - 1, k + 1);
            *n += k + 1;
            j->pos += k;
            continue;
        }
        if (j->pos >= j->len)
            return false;
        c = j->p[j->pos++];
        switch (c) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!u4(j, &cp))
                return false;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair */
                uint32_t lo;
                if (j->len - j->pos < 2 || j->p[j->pos] != '\\' || j->p[j->pos + 1] != 'u')
                    return false;
                j->pos += 2;
                if (!u4(j, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return false;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return false;
            }
            break;
        default:
            return false;
        }
        uint8_t u[4];
        size_t k;
        if (cp < 0x80)
            u[0] = (uint8_t)cp, k = 1;
        else if (cp < 0x800)
            u[0] = (uint8_t)(0xc0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3f)), k = 2;
        else if (cp < 0x10000)
            u[0] = (uint8_t)(0xe0 | cp >> 12), u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)),
            u[2] = (uint8_t)(0x80 | (cp & 0x3f)), k = 3;
        else
            u[0] = (uint8_t)(0xf0 | cp >> 18), u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f)),
            u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (uint8_t)(0x80 | (cp & 0x3f)), k = 4;
        if (out != NULL && cap - *n < k)
            return false;
        if (out != NULL)
            memcpy(out + *n, u, k);
        *n += k;
    }
}

/* An integer: -?(0|[1-9][0-9]*), no fraction or exponent, in int64. */
static bool integer(js *j, int64_t *v)
{
    bool neg = eat(j, '-');
    uint64_t a = 0;
    size_t at = j->pos;
    if (!neg)
        ws(j), at = j->pos;
    while (j->pos < j->len && j->p[j->pos] >= '0' && j->p[j->pos] <= '9') {
        unsigned d = j->p[j->pos] - '0';
        if (a > (UINT64_MAX - d) / 10)
            return false;
        a = a * 10 + d;
        j->pos++;
    }
    size_t nd = j->pos - at;
    if (nd == 0 || (nd > 1 && j->p[at] == '0'))
        return false;
    if (j->pos < j->len && (j->p[j->pos] == '.' || j->p[j->pos] == 'e' || j->p[j->pos] == 'E'))
        return false;
    if (a > (uint64_t)INT64_MAX + neg)
        return false;
    *v = neg ? (int64_t)(0 - a) : (int64_t)a;
    return true;
}

static bool lit(js *j, const char *w)
{
    size_t n = strlen(w);
    ws(j);
    if (j->len - j->pos < n || memcmp(j->p + j->pos, w, n) != 0)
        return false;
    j->pos += n;
    return true;
}

static bool skip(js *j, int depth)
{
    size_t n;
    if (depth > JS_MAX_DEPTH)
        return false;
    ws(j);
    if (j->pos >= j->len)
        return false;
    uint8_t c = j->p[j->pos];
    if (c == '"')
        return str(j, NULL, 0, &n);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->pos++;
        if (eat(j, close))
            return true;
        do {
            if (c == '{' && (!str(j, NULL, 0, &n) || !eat(j, ':')))
                return false;
            if (!skip(j, depth + 1))
                return false;
        } while (eat(j, ','));
        return eat(j, close);
    }
    if (c == 't')
        return lit(j, "true");
    if (c == 'f')
        return lit(j, "false");
    if (c == 'n')
        return lit(j, "null");
    /* a number (RFC 8259 6): -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
    size_t at = j->pos;
    if (c == '-')
        j->pos++;
    size_t d = j->pos;
    while (j->pos < j->len && j->p[j->pos] >= '0' && j->p[j->pos] <= '9')
        j->pos++;
    if (j->pos == d || (j->pos - d > 1 && j->p[d] == '0'))
        return false;
    if (j->pos < j->len && j->p[j->pos] == '.') {
        d = ++j->pos;
        while (j->pos < j->len && j->p[j->pos] >= '0' && j->p[j->pos] <= '9')
            j->pos++;
        if (j->pos == d)
            return false;
    }
    if (j->pos < j->len && (j->p[j->pos] == 'e' || j->p[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->len && (j->p[j->pos] == '+' || j->p[j->pos] == '-'))
            j->pos++;
        d = j->pos;
        while (j->pos < j->len && j->p[j->pos] >= '0' && j->p[j->pos] <= '9')
            j->pos++;
        if (j->pos == d)
            return false;
    }
    return j->pos > at;
}

/* Object iteration: call with *first true; returns false at the end or on
 * an error (then *err). key gets the member name (cap bytes). */
static bool member(js *j, bool *first, char *key, size_t cap, bool *err)
{
    size_t n;
    *err = false;
    if (*first) {
        *first = false;
        if (!eat(j, '{'))
            return !(*err = true);
        if (eat(j, '}'))
            return false;
    } else {
        if (eat(j, '}'))
            return false;
        if (!eat(j, ','))
            return !(*err = true);
    }
    js probe = *j;
    if (str(j, (uint8_t *)key, cap - 1, &n)) {
        key[n] = '\0';
    } else {
        /* a name too long for key is no name we know: "" */
        *j = probe;
        if (!str(j, NULL, 0, &n))
            return !(*err = true);
        key[0] = '\0';
    }
    if (!eat(j, ':'))
        return !(*err = true);
    return true;
}

/* Array iteration, the same way. */
static bool element(js *j, bool *first, bool *err)
{
    *err = false;
    if (*first) {
        *first = false;
        if (!eat(j, '['))
            return !(*err = true);
        return !eat(j, ']');
    }
    if (eat(j, ']'))
        return false;
    if (!eat(j, ','))
        return !(*err = true);
    return true;
}

/* RFC 4648 4, padded; at most cap bytes out. */
static bool base64(const uint8_t *s, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n % 4 != 0)
        return false;
    *len = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        size_t pad = 0;
        for (size_t k = 0; k < 4; k++) {
            uint8_t c = s[i + k];
            const char *f = c != '=' && c != 0 ? strchr(a, c) : NULL;
            if (c == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (f == NULL || pad > 0)
                return false;
            v = (v << 6) | (uint32_t)(f - a);
        }
        size_t m = 3 - pad;
        if (cap - *len < m)
            return false;
        for (size_t k = 0; k < m; k++)
            out[(*len)++] = (uint8_t)(v >> (16 - 8 * k));
    }
    return true;
}

/* A JSON string holding base64 of at most cap bytes. */
static bool b64str(js *j, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t text[4 * ((LG_SPKI_MAX + 2) / 3)];
    size_t n;
    return str(j, text, sizeof text, &n) && base64(text, n, out, cap, len);
}

static bool idstr(js *j, char *out)
{
    size_t n;
    if (!str(j, (uint8_t *)out, LG_ID_MAX, &n) || !lg_valid_id((const uint8_t *)out, n))
        return false;
    out[n] = '\0';
    return true;
}

/* ---- genesis ------------------------------------------------------------------ */

static const uint8_t p256_spki_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                             0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                             0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t ed_spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                           0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

static void spki_enc(lg_cbw *w, const lg_pubkey *k)
{
    if (k->alg == LG_ALG_ES256) {
        cbw_head(w, CB_BYTES, 91);
        cbw_raw(w, p256_spki_prefix, 26);
        cbw_raw(w, k->key, 65);
    } else {
        cbw_head(w, CB_BYTES, 44);
        cbw_raw(w, ed_spki_prefix, 12);
        cbw_raw(w, k->key, 32);
    }
}

/* {"id", "public_key", ?"addrs"} or {"id", "public_key"}. With w NULL: parse
 * into id and key, counting addrs. With w: encode the addrs only. */
static lg_err party(js *j, bool node, char *id, lg_pubkey *key, size_t *n_addrs, lg_cbw *w)
{
    char name[16];
    bool first = true, err, have_id = false, have_key = false, have_addrs = false;
    *n_addrs = 0;
    while (member(j, &first, name, sizeof name, &err)) {
        if (strcmp(name, "id") == 0 && !have_id) {
            have_id = true;
            if (!idstr(j, id))
                return LG_ERR_GENESIS;
        } else if (strcmp(name, "public_key") == 0 && !have_key) {
            uint8_t der[LG_SPKI_MAX];
            size_t n;
            have_key = true;
            if (!b64str(j, der, sizeof der, &n) || lg_pubkey_from_spki(der, n, key) != LG_OK)
                return LG_ERR_GENESIS;
        } else if (node && strcmp(name, "addrs") == 0 && !have_addrs) {
            bool f2 = true, e2;
            have_addrs = true;
            while (element(j, &f2, &e2)) {
                uint8_t a[LG_URI_MAX];
                size_t n;
                if (!str(j, w != NULL ? a : NULL, sizeof a, &n))
                    return LG_ERR_GENESIS;
                if (w != NULL)
                    cbw_text(w, (const char *)a, n);
                (*n_addrs)++;
            }
            if (e2)
                return LG_ERR_GENESIS;
        } else {
            return LG_ERR_GENESIS; /* unknown or repeated key */
        }
    }
    if (err || !have_id || !have_key)
        return LG_ERR_GENESIS;
    return LG_OK;
}

/* The parties of a "nodes" or "admins" array: parse (w NULL) or encode. */
static lg_err parties(js *j, lg_genesis *g, bool node, lg_cbw *w)
{
    bool first = true, err;
    size_t i = 0, na;
    lg_err e;
    while (element(j, &first, &err)) {
        char id[LG_ID_MAX + 1];
        lg_pubkey k;
        if (w == NULL && i == (node ? LG_MAX_NODES : LG_MAX_ADMINS))
            return LG_ERR_LIMIT;
        if (w == NULL) {
            if ((e = party(j, node, id, &k, &na, NULL)) != LG_OK)
                return e;
            if (node && k.alg != LG_ALG_ES256)
                return LG_ERR_GENESIS; /* node keys are P-256 only */
            if (node) {
                memcpy(g->nodes[i].id, id, sizeof id);
                memcpy(g->nodes[i].pub, k.key, 65);
            } else {
                memcpy(g->admins[i].id, id, sizeof id);
                g->admins[i].key = k;
            }
        } else {
            /* Node = {1: id, 2: spki, ? 3: [+ addr]}, Admin = {1: id, 2: spki} */
            js probe = *j;
            lg_pubkey pk;
            if ((e = party(&probe, node, id, &pk, &na, NULL)) != LG_OK)
                return e;
            cbw_head(w, CB_MAP, na > 0 ? 3 : 2);
            cbw_uint(w, 1), cbw_textz(w, id);
            cbw_uint(w, 2), spki_enc(w, &pk);
            if (na > 0) {
                cbw_uint(w, 3);
                cbw_head(w, CB_ARRAY, na);
            }
            if ((e = party(j, node, id, &pk, &na, w)) != LG_OK)
                return e;
        }
        i++;
    }
    if (err)
        return LG_ERR_GENESIS;
    if (w == NULL) {
        if (node)
            g->n_nodes = i;
        else
            g->n_admins = i;
    }
    return LG_OK;
}

lg_err lg_genesis_parse(const uint8_t *json, size_t len, lg_genesis *g)
{
    js j = {json, len, 0};
    char name[16];
    bool first = true, err;
    unsigned seen = 0;
    size_t nodes_at = 0, admins_at = 0;
    int64_t max_tx = 0;
    lg_err e;
    if (json == NULL || g == NULL)
        return LG_ERR_ARG;
    memset(g, 0, sizeof *g);
    /* pass 1: read and validate */
    while (member(&j, &first, name, sizeof name, &err)) {
        static const char *const keys[5] = {"chain_id", "time", "nodes", "admins", "params"};
        unsigned k = 0;
        while (k < 5 && strcmp(name, keys[k]) != 0)
            k++;
        if (k == 5 || (seen & (1u << k)))
            return LG_ERR_GENESIS; /* unknown keys are refused; so are repeated ones */
        seen |= 1u << k;
        if (k == 0) {
            if (!idstr(&j, g->chain_id))
                return LG_ERR_GENESIS;
        } else if (k == 1) {
            if (!integer(&j, &g->time_ms))
                return LG_ERR_GENESIS;
        } else if (k == 2 || k == 3) {
            ws(&j);
            *(k == 2 ? &nodes_at : &admins_at) = j.pos;
            if ((e = parties(&j, g, k == 2, NULL)) != LG_OK)
                return e;
        } else {
            bool f2 = true, e2, have = false;
            while (member(&j, &f2, name, sizeof name, &e2)) {
                if (strcmp(name, "max_tx_bytes") != 0 || have || !integer(&j, &max_tx))
                    return LG_ERR_GENESIS;
                have = true;
            }
            if (e2 || !have)
                return LG_ERR_GENESIS;
        }
    }
    ws(&j);
    if (err || j.pos != j.len || seen != 0x1f)
        return LG_ERR_GENESIS;
    /* validity (protocol.md 8) */
    if (g->n_nodes == 0 || g->n_admins == 0 || max_tx < 512 || max_tx > 1048576)
        return LG_ERR_GENESIS;
    for (size_t a = 0; a < g->n_nodes + g->n_admins; a++)
        for (size_t b = a + 1; b < g->n_nodes + g->n_admins; b++) {
            const char *x = a < g->n_nodes ? g->nodes[a].id : g->admins[a - g->n_nodes].id;
            const char *y = b < g->n_nodes ? g->nodes[b].id : g->admins[b - g->n_nodes].id;
            if (strcmp(x, y) == 0)
                return LG_ERR_GENESIS;
        }
    g->max_tx_bytes = (uint32_t)max_tx;
    size_t n = g->n_nodes, f = (n - 1) / 3;
    g->quorum = (n + f) / 2 + 1;
    /* pass 2: the genesis hash, H(deterministic CBOR), streamed */
    mbedtls_sha256_context sha;
    lg_cbw w;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    cbw_init(&w, NULL, 0);
    w.sha = &sha;
    cbw_head(&w, CB_MAP, 5);
    cbw_uint(&w, 1), cbw_textz(&w, g->chain_id);
    cbw_uint(&w, 2), cbw_int(&w, g->time_ms);
    cbw_uint(&w, 3), cbw_head(&w, CB_ARRAY, g->n_nodes);
    j.pos = nodes_at;
    e = parties(&j, g, true, &w);
    cbw_uint(&w, 4), cbw_head(&w, CB_ARRAY, g->n_admins);
    j.pos = admins_at;
    if (e == LG_OK)
        e = parties(&j, g, false, &w);
    cbw_uint(&w, 5), cbw_head(&w, CB_MAP, 1), cbw_uint(&w, 1), cbw_int(&w, max_tx);
    mbedtls_sha256_finish_ret(&sha, g->hash);
    mbedtls_sha256_free(&sha);
    return e;
}

/* ---- refusals (protocol.md 14) ------------------------------------------------ */

/* ledger.Reasons, in order (vectors/reasons.json), with their action and
 * their codes: protocol.md 14.1, the MQTT 5 PUBACK and CoAP columns
 * (bridge/mqtt pubackCodes, bridge/coap responseCodes). A CoAP code is
 * class << 5 | detail (4.03 is 0x83). */
static const struct {
    const char *reason;
    lg_action action;
    uint8_t puback, coap;
} reasons[] = {
    {"malformed", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 0)},
    {"too_large", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 13)},
    {"wrong_chain", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 0)},
    {"wrong_topic", LG_ACT_FIX, 0x87, LG_COAP_CODE(4, 3)},
    {"not_record", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 0)},
    {"not_report", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 0)},
    {"wrong_cert", LG_ACT_REKEY, 0x87, LG_COAP_CODE(4, 3)},
    {"unknown_author", LG_ACT_REKEY, 0x87, LG_COAP_CODE(4, 1)},
    {"bad_signature", LG_ACT_REKEY, 0x87, LG_COAP_CODE(4, 1)},
    {"forbidden", LG_ACT_FIX, 0x87, LG_COAP_CODE(4, 3)},
    {"revoked", LG_ACT_GIVE_UP, 0x87, LG_COAP_CODE(4, 3)},
    {"replay", LG_ACT_RESYNC, 0x83, LG_COAP_CODE(4, 3)},
    {"exists", LG_ACT_FIX, 0x83, LG_COAP_CODE(4, 3)},
    {"unknown_device", LG_ACT_FIX, 0x83, LG_COAP_CODE(4, 4)},
    {"stale_version", LG_ACT_FIX, 0x83, LG_COAP_CODE(4, 3)},
    {"unknown_release", LG_ACT_FIX, 0x83, LG_COAP_CODE(4, 4)},
    {"not_found", LG_ACT_FIX, 0x83, LG_COAP_CODE(4, 4)},
    {"policy", LG_ACT_FIX, 0x87, LG_COAP_CODE(4, 3)},
    {"bad_option", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 2)},
    {"method_not_allowed", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 5)},
    {"not_acceptable", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 6)},
    {"incomplete", LG_ACT_RESEND, 0x99, LG_COAP_CODE(4, 8)},
    {"content_format", LG_ACT_FIX, 0x99, LG_COAP_CODE(4, 15)},
    {"proxy", LG_ACT_FIX, 0x99, LG_COAP_CODE(5, 5)},
    {"overloaded", LG_ACT_RESEND, 0x97, LG_COAP_CODE(4, 29)},
    {"unavailable", LG_ACT_RESEND, 0x80, LG_COAP_CODE(5, 3)},
    {"storage_full", LG_ACT_RESEND, 0x97, LG_COAP_CODE(5, 3)},
    {"internal", LG_ACT_RESEND, 0x80, LG_COAP_CODE(5, 0)},
};

#define N_REASONS (sizeof reasons / sizeof reasons[0])

/* The index of a known reason, or N_REASONS. */
static size_t reason_index(const char *reason, size_t len)
{
    for (size_t i = 0; reason != NULL && i < N_REASONS; i++)
        if (strlen(reasons[i].reason) == len && memcmp(reasons[i].reason, reason, len) == 0)
            return i;
    return N_REASONS;
}

lg_action lg_reason_action(const char *reason, size_t len)
{
    size_t i = reason_index(reason, len);
    return i < N_REASONS ? reasons[i].action : LG_ACT_FIX; /* 14.1: an unknown reason is fix */
}

/* The action a transport code alone says, with no reason to go by: the
 * action all reasons of that code share in 14.1's table (its "not sent"
 * entries included), else fix. MQTT 5 0x80 and 0x97 and CoAP 4.08, 4.29,
 * 5.00 and 5.03 are resend, CoAP 4.01 is rekey; 0x83, 0x87 and 4.03 mix
 * actions. */
static lg_action code_action(bool coap, uint8_t code)
{
    bool seen = false;
    lg_action a = LG_ACT_FIX;
    for (size_t i = 0; i < N_REASONS; i++) {
        if ((coap ? reasons[i].coap : reasons[i].puback) != code)
            continue;
        if (seen && reasons[i].action != a)
            return LG_ACT_FIX;
        a = reasons[i].action;
        seen = true;
    }
    return a;
}

static void set_reason(lg_refusal *out, const char *r, size_t n)
{
    /* a reason too long to keep is unknown anyway: "" and fix */
    if (n >= sizeof out->reason)
        n = 0;
    memcpy(out->reason, r, n);
    out->reason[n] = '\0';
    out->action = lg_reason_action(r, n);
}

static bool decimal(const char *s, size_t n, uint64_t *v)
{
    *v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return *v <= (uint64_t)INT64_MAX;
}

/* A JSON string in place: its raw bytes between the quotes (escapes not
 * decoded), checked as str() checks it. */
static bool rawstr(js *j, lg_str *raw)
{
    size_t n;
    ws(j);
    size_t at = j->pos + 1; /* after the opening quote */
    if (!str(j, NULL, 0, &n))
        return false;
    raw->p = j->p + at;
    raw->n = j->pos - 1 - at;
    return true;
}

lg_err lg_refusal_parse_json(const uint8_t *json, size_t len, lg_refusal *out)
{
    js j = {json, len, 0};
    char name[16];
    bool first = true, err, have_reason = false;
    if (json == NULL || out == NULL)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    while (member(&j, &first, name, sizeof name, &err)) {
        if (strcmp(name, "reason") == 0) {
            uint8_t r[64];
            size_t n;
            js probe = j;
            if (!str(&j, r, sizeof r, &n)) {
                /* longer than any reason: unknown, keep reading */
                if (!str(&probe, NULL, 0, &n))
                    return LG_ERR_MALFORMED;
                j = probe;
                n = sizeof r;
            }
            set_reason(out, (const char *)r, n);
            have_reason = true;
        } else if (strcmp(name, "last_seq") == 0) {
            int64_t v;
            if (!integer(&j, &v) || v < 0)
                return LG_ERR_MALFORMED;
            out->has_last_seq = true;
            out->last_seq = (uint64_t)v;
        } else if (strcmp(name, "tx_id") == 0) {
            /* 14.3: 64 hex digits, or "" if the payload was not read as a tx */
            lg_str h;
            if (!rawstr(&j, &h) || (h.n != 0 && h.n != 2 * LG_HASH_LEN))
                return LG_ERR_MALFORMED;
            for (size_t i = 0; i < h.n; i += 2) {
                int hi = hexval(h.p[i]), lo = hexval(h.p[i + 1]);
                if (hi < 0 || lo < 0)
                    return LG_ERR_MALFORMED;
                out->tx_id[i / 2] = (uint8_t)(hi << 4 | lo);
            }
            out->has_tx_id = h.n != 0;
        } else if (strcmp(name, "error") == 0) {
            if (!rawstr(&j, &out->detail))
                return LG_ERR_MALFORMED;
        } else if (!skip(&j, 1)) { /* 14.3: ignore unknown fields */
            return LG_ERR_MALFORMED;
        }
    }
    ws(&j);
    if (err || j.pos != j.len || !have_reason)
        return LG_ERR_MALFORMED;
    return LG_OK;
}

/* The diagnostic payload "<reason>: <detail>" or "replay: last_seq=N:
 * <detail>" into out (reason, action, last_seq, detail). */
static lg_err diagnostic(const uint8_t *diag, size_t len, lg_refusal *out)
{
    const char *s = (const char *)diag;
    size_t r = 0;
    while (r < len && s[r] != ':')
        r++;
    if (r == 0)
        return LG_ERR_MALFORMED;
    set_reason(out, s, r);
    size_t d = r; /* where the detail starts */
    static const char key[] = ": last_seq=";
    size_t k = sizeof key - 1;
    if (len - r > k && memcmp(s + r, key, k) == 0) {
        size_t e = r + k;
        while (e < len && s[e] >= '0' && s[e] <= '9')
            e++;
        if (!decimal(s + r + k, e - (r + k), &out->last_seq))
            return LG_ERR_MALFORMED;
        out->has_last_seq = true;
        d = e;
    }
    if (d < len && s[d] == ':')
        d++;
    if (d < len && s[d] == ' ')
        d++;
    out->detail.p = diag + d;
    out->detail.n = len - d;
    return LG_OK;
}

lg_err lg_refusal_parse_coap(const uint8_t *diag, size_t len, lg_refusal *out)
{
    if (diag == NULL || out == NULL)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    return diagnostic(diag, len, out);
}

lg_err lg_refusal_parse_coap_code(uint8_t code, const uint8_t *diag, size_t len, lg_refusal *out)
{
    if (out == NULL || (diag == NULL && len != 0) || code < LG_COAP_CODE(4, 0))
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (len == 0) {
        out->action = code_action(true, code);
        return LG_OK;
    }
    lg_err e = diagnostic(diag, len, out);
    if (e != LG_OK)
        return e;
    /* the reason decides; a known one must have come with its own code */
    size_t i = reason_index(out->reason, strlen(out->reason));
    return i < N_REASONS && reasons[i].coap != code ? LG_ERR_MALFORMED : LG_OK;
}

lg_err lg_refusal_parse_mqtt5(const char *reason, size_t reason_len, const char *last_seq,
                              size_t last_seq_len, lg_refusal *out)
{
    if (reason == NULL || out == NULL)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    set_reason(out, reason, reason_len);
    if (last_seq != NULL) {
        if (!decimal(last_seq, last_seq_len, &out->last_seq))
            return LG_ERR_MALFORMED;
        out->has_last_seq = true;
    }
    return LG_OK;
}

lg_err lg_refusal_parse_puback(uint8_t code, const char *reason, size_t reason_len,
                               const char *last_seq, size_t last_seq_len, lg_refusal *out)
{
    if (out == NULL || code < 0x80)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (last_seq != NULL) {
        if (!decimal(last_seq, last_seq_len, &out->last_seq))
            return LG_ERR_MALFORMED;
        out->has_last_seq = true;
    }
    if (reason == NULL || reason_len == 0) {
        /* no Reason String: the code says what it can (14.1); a last_seq
         * comes with replay only (14.3) */
        out->action = code_action(false, code);
        if (out->has_last_seq && code == reasons[reason_index("replay", 6)].puback)
            out->action = LG_ACT_RESYNC;
        return LG_OK;
    }
    set_reason(out, reason, reason_len);
    /* the reason decides; a known one must have come with its own code */
    size_t i = reason_index(out->reason, strlen(out->reason));
    return i < N_REASONS && reasons[i].puback != code ? LG_ERR_MALFORMED : LG_OK;
}

lg_err lg_seq_resync(const lg_seq_hook *seq, uint64_t last_seq)
{
    uint64_t cur;
    if (seq == NULL || seq->load == NULL || seq->persist == NULL || last_seq > (uint64_t)INT64_MAX)
        return LG_ERR_ARG;
    if (seq->load(seq->ctx, &cur) != LG_OK)
        return LG_ERR_SEQ_LOAD;
    if (cur >= last_seq)
        return LG_OK;
    return seq->persist(seq->ctx, last_seq) == LG_OK ? LG_OK : LG_ERR_SEQ_PERSIST;
}
