/* vectors.c - runs every file of docs/vectors against the library.
 *
 *   vectors DIR            check every case of every file; exit 1 on a mismatch
 *   vectors DIR --seeds D  also write each case's bytes as fuzz seeds under D/<target>/
 *   vectors DIR --no-truncations  skip the truncation checks (for valgrind:
 *                          the ASan runs do them; they are about half of its time)
 *
 * For each case the verdict must be the library's result exactly; positive
 * cases must reproduce outputs (and, for the txs a device signs and for
 * tokens, the hex byte for byte); every truncation of a positive case must
 * be refused. Built without LG_WITH_ED25519, a case that needs Ed25519 must
 * end in LG_ERR_UNSUPPORTED_ALG (or in its own verdict when that comes
 * first) and is counted apart. Test code: cJSON and malloc are fine here. */
#include "lg.h"
#include "lg_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/ecp.h>

#ifdef LG_WITH_ED25519
#include <sodium.h>
#define HAVE_ED 1
#else
#define HAVE_ED 0
#endif

enum { R_PASS, R_UNSUP, R_SKIP, R_FAIL };

static const char *cur_file, *cur_case;
static const char *seed_dir;
static bool no_truncations; /* --no-truncations: the valgrind run; ASan runs do them */
static const char *vec_dir;  /* the vectors' directory */

#define FAILF(...)                                                         \
    do {                                                                   \
        fprintf(stderr, "FAIL %s / %s: ", cur_file, cur_case);             \
        fprintf(stderr, __VA_ARGS__);                                      \
        fputc('\n', stderr);                                               \
        return R_FAIL;                                                     \
    } while (0)
#define CHECK(cond, ...)          \
    do {                          \
        if (!(cond))              \
            FAILF(__VA_ARGS__);   \
    } while (0)

/* ---- JSON and hex helpers ---------------------------------------------------- */

static cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t geti(const cJSON *o, const char *k) { return (int64_t)cJSON_GetNumberValue(get(o, k)); }

/* hex to a malloc'd buffer of exactly the decoded length (so ASan sees a
 * read past it); *n its length. */
static uint8_t *unhex(const char *h, size_t *n)
{
    size_t l = h ? strlen(h) : 0;
    uint8_t *b = malloc(l / 2 ? l / 2 : 1);
    for (size_t i = 0; i < l / 2; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        b[i] = (uint8_t)v;
    }
    *n = l / 2;
    return b;
}

static bool hexeq(const uint8_t *p, size_t n, const char *h)
{
    size_t m;
    if (h == NULL)
        return false;
    uint8_t *b = unhex(h, &m);
    bool eq = m == n && (n == 0 || memcmp(p, b, n) == 0);
    free(b);
    return eq;
}

static uint8_t *readfile(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static void seed(const char *target, const uint8_t *p, size_t n)
{
    char path[512];
    if (seed_dir == NULL)
        return;
    snprintf(path, sizeof path, "%s/%s", seed_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s-%s", seed_dir, target, cur_file, cur_case);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* ---- verdicts ------------------------------------------------------------------ */

static const struct {
    const char *name;
    lg_err err;
} verdicts[] = {
    {"ok", LG_OK},
    {"ledger.ErrMalformed", LG_ERR_MALFORMED},
    {"ledger.ErrUnknownKind", LG_ERR_UNKNOWN_KIND},
    {"ledger.ErrTooLarge", LG_ERR_TOO_LARGE},
    {"ledger.ErrBadSignature", LG_ERR_BAD_SIGNATURE},
    {"ledger.ErrNotCanonical", LG_ERR_NOT_CANONICAL},
    {"ledger.ErrToken", LG_ERR_TOKEN},
    {"ledger.ErrGenesis", LG_ERR_GENESIS},
    {"ledger.ErrProof", LG_ERR_MERKLE},
    {"ledger.ErrCert", LG_ERR_CERT},
    {"ledger.ErrReceipt", LG_ERR_RECEIPT},
    {"device.ErrProof", LG_ERR_PROOF},
    {"device.ErrStaleHead", LG_ERR_STALE_HEAD},
    {"device.ErrRollback", LG_ERR_ROLLBACK},
    {"device.ErrNotCurrent", LG_ERR_NOT_CURRENT},
    {"device.ErrNoConfig", LG_ERR_NO_CONFIG},
    {"device.ErrVendorSignature", LG_ERR_VENDOR_SIGNATURE},
    {"device.ErrWrongModel", LG_ERR_WRONG_MODEL},
    {"device.ErrFirmwareRollback", LG_ERR_FIRMWARE_ROLLBACK},
    {"device.ErrExpired", LG_ERR_EXPIRED},
    {"device.ErrReleaseRevoked", LG_ERR_RELEASE_REVOKED},
    {"device.ErrPolicy", LG_ERR_POLICY},
    {"device.ErrImage", LG_ERR_IMAGE},
    {"device.ErrNotRecipient", LG_ERR_NOT_RECIPIENT},
    {"device.ErrSealed", LG_ERR_SEALED},
    {"ledger.ErrMembers", LG_ERR_MEMBERS},
};

/* R_PASS if got is the case's verdict; R_UNSUP if Ed25519 is off, the case
 * needs it and got says so; else R_FAIL. */
static int verdict(const cJSON *c, lg_err got, bool needs_ed)
{
    const char *want = jstr(c, "verdict");
    for (size_t i = 0; want && i < sizeof verdicts / sizeof verdicts[0]; i++) {
        if (strcmp(verdicts[i].name, want) != 0)
            continue;
        if (got == verdicts[i].err)
            return R_PASS;
        if (!HAVE_ED && needs_ed && got == LG_ERR_UNSUPPORTED_ALG)
            return R_UNSUP;
        FAILF("verdict %s, got %s (%s)", want, lg_strerror(got), needs_ed ? "needs Ed25519" : "ES256 only");
    }
    FAILF("unknown verdict %s", want ? want : "(none)");
}

/* Every proper prefix of a positive case must be refused. */
typedef lg_err (*decoder)(const uint8_t *p, size_t n, const void *ctx);

static int truncations(const uint8_t *p, size_t n, decoder fn, const void *ctx)
{
    if (no_truncations)
        return R_PASS;
    for (size_t k = 0; k < n; k++) {
        uint8_t *t = malloc(k ? k : 1);
        memcpy(t, p, k);
        lg_err e = fn(t, k, ctx);
        free(t);
        CHECK(e != LG_OK, "the first %zu of %zu bytes were accepted", k, n);
    }
    return R_PASS;
}

/* ---- keys and genesis, by name --------------------------------------------------- */

typedef struct key {
    char name[32];
    char alg[8];
    uint8_t priv[32];
    uint8_t spki[LG_SPKI_MAX];
    size_t spki_len;
} key;

static key keys[32];
static size_t n_keys;

typedef struct gen {
    char name[32];
    lg_genesis g;
} gen;

static gen gens[8];
static size_t n_gens;

static const key *key_named(const char *name)
{
    for (size_t i = 0; name && i < n_keys; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static const lg_genesis *genesis_named(const char *name)
{
    for (size_t i = 0; name && i < n_gens; i++)
        if (strcmp(gens[i].name, name) == 0)
            return &gens[i].g;
    return NULL;
}

static bool is_ed_spki(const char *hex) { return hex && strncmp(hex, "302a300506032b6570", 18) == 0; }

/* A sequence hook that hands out a fixed next number. */
typedef struct seqctx {
    uint64_t last;
    uint64_t persisted;
} seqctx;

static lg_err seq_load(void *ctx, uint64_t *last)
{
    *last = ((seqctx *)ctx)->last;
    return LG_OK;
}

static lg_err seq_persist(void *ctx, uint64_t seq)
{
    ((seqctx *)ctx)->persisted = seq;
    return LG_OK;
}

/* ---- keys.json --------------------------------------------------------------------- */

static int case_keys(const cJSON *c)
{
    const cJSON *in = get(c, "inputs");
    const char *alg = jstr(in, "alg"), *name = jstr(in, "name");
    size_t n, sn;
    CHECK(alg && name && n_keys < sizeof keys / sizeof keys[0], "bad key case");
    key *k = &keys[n_keys++];
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->alg, sizeof k->alg, "%s", alg);
    uint8_t *sec = unhex(jstr(in, strcmp(alg, "EdDSA") == 0 ? "seed" : "scalar"), &n);
    uint8_t *spki = unhex(jstr(in, "spki"), &sn);
    uint8_t *pkcs8 = unhex(jstr(in, "pkcs8"), &n);
    memcpy(k->priv, sec, 32);
    memcpy(k->spki, spki, sn);
    k->spki_len = sn;
    int r = R_PASS;
    /* the spki is the public key of the secret; the pkcs8 holds the secret */
    bool in8 = false;
    for (size_t i = 0; i + 32 <= n; i++)
        in8 |= memcmp(pkcs8 + i, sec, 32) == 0;
    if (!in8) {
        fprintf(stderr, "FAIL keys / %s: pkcs8 does not hold the secret\n", name);
        r = R_FAIL;
    } else if (strcmp(alg, "X25519") == 0) {
        uint8_t pk[32];
        if (lg_x25519_public(sec, pk) != LG_OK || sn != 44 || memcmp(spki + 12, pk, 32) != 0) {
            fprintf(stderr, "FAIL keys / %s: X25519 public key\n", name);
            r = R_FAIL;
        }
    } else {
        lg_pubkey pub;
        if (lg_pubkey_from_spki(spki, sn, &pub) != LG_OK) {
            fprintf(stderr, "FAIL keys / %s: spki does not parse\n", name);
            r = R_FAIL;
        } else if (strcmp(alg, "ES256") == 0) {
            /* sign a digest with the scalar; it must verify with the spki */
            uint8_t d[32] = {1}, rs[64];
            if (lg_p256_sign(sec, d, NULL, NULL, rs) != LG_OK ||
                lg_p256_verify_rs(pub.key, d, rs) != LG_OK) {
                fprintf(stderr, "FAIL keys / %s: scalar and spki differ\n", name);
                r = R_FAIL;
            }
        } else {
            uint8_t sig[64];
            lg_err e = lg_ed25519_sign(sec, (const uint8_t *)"m", 1, sig);
            if (e == LG_OK)
                e = lg_ed25519_verify(pub.key, (const uint8_t *)"m", 1, sig);
            if (e == LG_ERR_UNSUPPORTED_ALG && !HAVE_ED) {
                r = R_UNSUP;
            } else if (e != LG_OK) {
                fprintf(stderr, "FAIL keys / %s: seed and spki differ\n", name);
                r = R_FAIL;
            }
        }
    }
    /* lg_key_from_pkcs8 reads the secret back, and refuses every
     * truncation as malformed (each in a buffer of exactly its length) */
    lg_key_type kt;
    uint8_t got[32];
    lg_key_type want = strcmp(alg, "ES256") == 0 ? LG_KEY_P256 : strcmp(alg, "EdDSA") == 0 ? LG_KEY_ED25519 : LG_KEY_X25519;
    lg_err ke = lg_key_from_pkcs8(pkcs8, n, &kt, got);
    if (r != R_FAIL && (ke != LG_OK || kt != want || memcmp(got, sec, 32) != 0)) {
        fprintf(stderr, "FAIL keys / %s: lg_key_from_pkcs8: %s\n", name, lg_strerror(ke));
        r = R_FAIL;
    }
    for (size_t k = 0; r != R_FAIL && k < n; k++) {
        uint8_t *t = malloc(k ? k : 1);
        memcpy(t, pkcs8, k);
        ke = lg_key_from_pkcs8(t, k, &kt, got);
        free(t);
        if (ke != LG_ERR_MALFORMED) {
            fprintf(stderr, "FAIL keys / %s: lg_key_from_pkcs8 of the first %zu of %zu bytes: %s\n", name, k, n,
                    lg_strerror(ke));
            r = R_FAIL;
        }
    }
    seed("pkcs8", pkcs8, n);
    free(sec), free(spki), free(pkcs8);
    return r;
}

/* ---- genesis.json -------------------------------------------------------------------- */

static lg_err dec_genesis(const uint8_t *p, size_t n, const void *ctx)
{
    lg_genesis g;
    (void)ctx;
    return lg_genesis_parse(p, n, &g);
}

static int case_genesis(const cJSON *c)
{
    size_t n;
    uint8_t *js = unhex(jstr(c, "hex"), &n);
    lg_genesis *g = &gens[n_gens].g;
    lg_err e = lg_genesis_parse(js, n, g);
    seed("genesis", js, n);
    int r = verdict(c, e, false);
    if (r == R_PASS && e == LG_OK) {
        const cJSON *out = get(c, "outputs");
        size_t cn, close = n;
        uint8_t *cbor = unhex(jstr(out, "cbor"), &cn), h[32];
        lg_sha256(cbor, cn, h);
        free(cbor);
        if (!hexeq(g->hash, 32, jstr(out, "hash")) || memcmp(h, g->hash, 32) != 0 ||
            (size_t)geti(out, "quorum") != g->quorum ||
            (size_t)geti(out, "nodes") != g->n_nodes) {
            fprintf(stderr, "FAIL genesis / %s: hash, quorum or nodes\n", cur_case);
            r = R_FAIL;
        } else {
            /* a cut inside the object; white space after it is not the document */
            while (close > 0 && js[close - 1] != '}')
                close--;
            r = truncations(js, close, dec_genesis, NULL);
            snprintf(gens[n_gens++].name, sizeof gens[0].name, "%s", cur_case);
        }
    }
    free(js);
    return r;
}

/* ---- tx-*.json ----------------------------------------------------------------------- */

static lg_err dec_tx(const uint8_t *p, size_t n, const void *ctx)
{
    lg_tx tx;
    (void)ctx;
    return lg_tx_decode(p, n, 0, &tx);
}

static char *zdup(lg_str s)
{
    char *z = malloc(s.n + 1);
    if (s.n > 0)
        memcpy(z, s.p, s.n);
    z[s.n] = 0;
    return z;
}

/* Sign the same tx again through the API; the bytes must be the vector's. */
static int reproduce(const lg_tx *tx, const uint8_t *want, size_t n, const key *k)
{
    seqctx sc = {0, 0};
    lg_seq_hook hook = {seq_load, seq_persist, &sc};
    lg_device dev = {0};
    lg_signed res;
    uint8_t out[2048];
    char *id = zdup(tx->kid), *chain = zdup(tx->chain_id);
    dev.id = id;
    dev.chain_id = chain;
    dev.alg = tx->alg;
    dev.key = k->priv;
    dev.seq = &hook;
    lg_err e = LG_ERR_ARG;
    char *a = NULL, *b = NULL;
    switch (tx->kind) {
    case LG_KIND_DATA_RECORD: {
        lg_record rec = {0};
        sc.last = tx->u.record.seq - 1;
        rec.stream = a = zdup(tx->u.record.stream);
        rec.time_ms = tx->u.record.time_ms;
        rec.content_type = b = zdup(tx->u.record.content_type);
        rec.payload = tx->u.record.payload.p;
        rec.payload_len = tx->u.record.payload.n;
        e = lg_sign_record(&dev, &rec, out, sizeof out, &res);
        break;
    }
    case LG_KIND_CONFIG_REPORT:
        sc.last = tx->u.config_report.seq - 1;
        e = lg_sign_config_report(&dev, tx->u.config_report.version,
                                  tx->u.config_report.sha256.p, out, sizeof out, &res);
        break;
    case LG_KIND_FIRMWARE_REPORT:
        sc.last = tx->u.fw_report.seq - 1;
        a = zdup(tx->u.fw_report.model);
        b = zdup(tx->u.fw_report.detail);
        e = lg_sign_firmware_report(&dev, a, tx->u.fw_report.version, tx->u.fw_report.ok, b, out,
                                    sizeof out, &res);
        break;
    default: /* LG_KIND_DEVICE_REKEY */
        sc.last = tx->u.rekey.seq - 1;
        e = lg_sign_rekey(&dev, tx->u.rekey.public_key.p, tx->u.rekey.public_key.n,
                          tx->u.rekey.enc_key.n ? tx->u.rekey.enc_key.p : NULL,
                          tx->u.rekey.enc_key.n, out, sizeof out, &res);
    }
    free(id), free(chain), free(a), free(b);
    if (e == LG_ERR_UNSUPPORTED_ALG && !HAVE_ED && tx->alg == LG_ALG_EDDSA)
        return R_UNSUP;
    CHECK(e == LG_OK, "signing again: %s", lg_strerror(e));
    if (!(res.len == n && memcmp(out, want, n) == 0) && tx->alg == LG_ALG_ES256 && res.len == n &&
        memcmp(out, want, n - 32) == 0) {
        /* 5.1: the vector may carry (r, n - s) of the RFC 6979 signature */
        mbedtls_ecp_group grp;
        mbedtls_mpi s;
        uint8_t high[32];
        mbedtls_ecp_group_init(&grp);
        mbedtls_mpi_init(&s);
        mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
        mbedtls_mpi_read_binary(&s, out + n - 32, 32);
        mbedtls_mpi_sub_mpi(&s, &grp.N, &s);
        mbedtls_mpi_write_binary(&s, high, 32);
        mbedtls_mpi_free(&s);
        mbedtls_ecp_group_free(&grp);
        CHECK(memcmp(high, want + n - 32, 32) == 0, "signed again, s is neither s nor n - s");
        return R_PASS;
    }
    CHECK(res.len == n && memcmp(out, want, n) == 0, "signed again, the bytes differ");
    CHECK(memcmp(res.tx_id, tx->id, 32) == 0 && res.seq == sc.persisted && res.seq == sc.last + 1,
          "tx id or seq of the signed tx");
    return R_PASS;
}

static int case_tx(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *out = get(c, "outputs");
    size_t n, sn;
    uint8_t *env = unhex(jstr(c, "hex"), &n);
    uint8_t *spki = unhex(jstr(in, "author_spki"), &sn);
    lg_tx tx;
    lg_pubkey pub;
    seed("tx", env, n);
    lg_err e = lg_tx_decode(env, n, (size_t)geti(in, "max_tx_bytes"), &tx);
    bool needs_ed = is_ed_spki(jstr(in, "author_spki")) || (e == LG_OK && tx.alg == LG_ALG_EDDSA);
    if (e == LG_OK)
        e = lg_pubkey_from_spki(spki, sn, &pub);
    if (e == LG_OK)
        e = lg_tx_verify(&tx, &pub);
    int r = verdict(c, e, needs_ed);
    if (r != R_FAIL && e == LG_OK) {
        uint8_t tbs[2048];
        lg_cbw w;
        cbw_init(&w, tbs, sizeof tbs);
        lg_tbs(&w, tx.protected_hdr, tx.payload);
        const char *kind = jstr(out, "kind");
        if (!hexeq(tx.id, 32, jstr(out, "tx_id")) || !hexeq(tx.payload.p, tx.payload.n, jstr(out, "payload")) ||
            !hexeq(tx.protected_hdr.p, tx.protected_hdr.n, jstr(out, "protected")) ||
            !hexeq(tx.signature.p, tx.signature.n, jstr(out, "signature")) ||
            !hexeq(tbs, w.len, jstr(out, "to_be_signed")) || kind == NULL ||
            !lg_str_eq(tx.chain_id, "vectors-1")) {
            fprintf(stderr, "FAIL %s / %s: outputs differ\n", cur_file, cur_case);
            r = R_FAIL;
        }
        if (r != R_FAIL)
            r = truncations(env, n, dec_tx, NULL);
        /* the kinds a device signs: sign again, byte for byte */
        if (r == R_PASS || r == R_UNSUP) {
            bool device = tx.kind == LG_KIND_DATA_RECORD || tx.kind == LG_KIND_CONFIG_REPORT ||
                          tx.kind == LG_KIND_FIRMWARE_REPORT || tx.kind == LG_KIND_DEVICE_REKEY;
            const key *k = key_named(jstr(in, "author_key"));
            if (device) {
                CHECK(k != NULL, "no key %s", jstr(in, "author_key"));
                int rr = reproduce(&tx, env, n, k);
                r = rr == R_FAIL ? R_FAIL : (r == R_UNSUP || rr == R_UNSUP) ? R_UNSUP : R_PASS;
            }
        }
    }
    free(env), free(spki);
    return r;
}

/* ---- token.json ---------------------------------------------------------------------- */

typedef struct token_ctx {
    const char *chain;
    int64_t now;
    const lg_pubkey *key;
} token_ctx;

static lg_err dec_token(const uint8_t *p, size_t n, const void *ctx)
{
    const token_ctx *t = ctx;
    return lg_token_check((const char *)p, n, t->chain, t->now, t->key);
}

static int case_token(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *out = get(c, "outputs");
    const char *tok = jstr(out, "token");
    size_t n, sn;
    uint8_t *env = unhex(jstr(c, "hex"), &n);
    uint8_t *spki = unhex(jstr(in, "key_spki"), &sn);
    lg_pubkey pub;
    CHECK(tok != NULL, "no token");
    seed("tx", env, n);
    lg_err e = lg_pubkey_from_spki(spki, sn, &pub);
    if (e == LG_OK)
        e = lg_token_check(tok, strlen(tok), jstr(in, "chain"), geti(in, "now"), &pub);
    int r = verdict(c, e, is_ed_spki(jstr(in, "key_spki")));
    if (r == R_PASS && e == LG_OK) {
        /* make it again from its claims with the signer's key */
        lg_tx tx;
        lg_cbor cb;
        size_t m;
        uint64_t prev = UINT64_MAX, k;
        int64_t exp = 0, iat = 0;
        lg_str s;
        const key *ky = key_named(jstr(in, "key"));
        CHECK(ky != NULL && lg_envelope_decode(env, n, &tx) == LG_OK, "token envelope");
        cb_init(&cb, tx.payload.p, tx.payload.n);
        cb_map(&cb, &m);
        for (size_t i = 0; i < m; i++) {
            cb_key(&cb, &prev, &k);
            if (k == 4 || k == 6)
                cb_int(&cb, k == 4 ? &exp : &iat);
            else
                cb_text(&cb, &s);
        }
        lg_device dev = {0};
        char *id = zdup(tx.kid), text[LG_TOKEN_MAX + 1];
        dev.id = id;
        dev.chain_id = jstr(in, "chain");
        dev.alg = tx.alg;
        dev.key = ky->priv;
        e = lg_token_make(&dev, iat, exp, text, sizeof text, &m);
        free(id);
        if (e == LG_ERR_UNSUPPORTED_ALG && !HAVE_ED)
            r = R_UNSUP;
        else
            CHECK(e == LG_OK && m == strlen(tok) && strcmp(text, tok) == 0, "token made again differs");
        token_ctx tc = {jstr(in, "chain"), geti(in, "now"), &pub};
        if (r == R_PASS)
            r = truncations((const uint8_t *)tok, strlen(tok), dec_token, &tc);
    }
    free(env), free(spki);
    return r;
}

/* ---- header.json, cert.json, merkle.json, receipt.json ------------------------------ */

static lg_err dec_header(const uint8_t *p, size_t n, const void *ctx)
{
    lg_cbor cb;
    lg_header h;
    (void)ctx;
    cb_init(&cb, p, n);
    lg_err e = lg_header_decode(&cb, &h);
    return e == LG_OK && !cb_done(&cb) ? LG_ERR_MALFORMED : e;
}

static int case_header(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *hd = get(in, "header"), *out = get(c, "outputs");
    size_t n;
    uint8_t *b = unhex(jstr(c, "hex"), &n), vote[256];
    lg_cbor cb;
    lg_header h;
    lg_cbw w;
    cb_init(&cb, b, n);
    lg_err e = lg_header_decode(&cb, &h);
    int r = verdict(c, e == LG_OK && !cb_done(&cb) ? LG_ERR_MALFORMED : e, false);
    if (r == R_PASS) {
        cbw_init(&w, vote, sizeof vote);
        lg_vote(&w, &h, (uint64_t)geti(in, "cert_view"));
        uint8_t d[32];
        lg_sha256(vote, w.len, d);
        if (!lg_str_eq(h.chain_id, jstr(hd, "chain_id")) || h.height != (uint64_t)geti(hd, "height") ||
            !hexeq(h.prev.p, h.prev.n, jstr(hd, "prev")) || !hexeq(h.tx_root.p, h.tx_root.n, jstr(hd, "tx_root")) ||
            h.num_txs != (uint64_t)geti(hd, "num_txs") || h.time_ms != geti(hd, "time") ||
            h.view != (uint64_t)geti(hd, "view") || !lg_str_eq(h.proposer, jstr(hd, "proposer")) ||
            !hexeq(h.hash, 32, jstr(out, "hash")) || !hexeq(vote, w.len, jstr(out, "vote")) ||
            !hexeq(d, 32, jstr(out, "vote_digest"))) {
            fprintf(stderr, "FAIL header / %s: fields, hash or vote differ\n", cur_case);
            r = R_FAIL;
        } else {
            r = truncations(b, n, dec_header, NULL);
        }
    }
    free(b);
    return r;
}

static lg_err dec_head(const uint8_t *p, size_t n, const void *ctx)
{
    lg_header h;
    return lg_head_verify(ctx, (lg_str){p, n}, &h);
}

static int case_cert(const cJSON *c)
{
    size_t n;
    uint8_t *b = unhex(jstr(c, "hex"), &n);
    const lg_genesis *g = genesis_named(jstr(get(c, "inputs"), "genesis"));
    CHECK(g != NULL, "no genesis");
    seed("receipt", b, n);
    lg_err e = dec_head(b, n, g);
    int r = verdict(c, e, false);
    if (r == R_PASS && e == LG_OK)
        r = truncations(b, n, dec_head, g);
    free(b);
    return r;
}

static int case_merkle(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *proof = get(in, "proof");
    size_t n, rn;
    if (get(in, "index") == NULL)
        return R_SKIP; /* the tree head of a whole block is the gateway's to compute */
    uint8_t *leaf = unhex(jstr(c, "hex"), &n), lh[32], *root = unhex(jstr(in, "root"), &rn);
    size_t count = (size_t)cJSON_GetArraySize(proof);
    uint8_t *path = malloc(32 * count + 1);
    for (size_t i = 0; i < count; i++) {
        size_t pn;
        uint8_t *p = unhex(cJSON_GetArrayItem(proof, (int)i)->valuestring, &pn);
        memcpy(path + 32 * i, p, 32);
        free(p);
    }
    uint8_t *pre = malloc(n + 1);
    pre[0] = 0;
    memcpy(pre + 1, leaf, n);
    lg_sha256(pre, n + 1, lh);
    lg_err e = lg_merkle_verify(lh, (uint64_t)geti(in, "index"), (uint64_t)geti(in, "size"), path,
                                count, root);
    int r = hexeq(lh, 32, jstr(in, "leaf_hash")) ? verdict(c, e, false) : R_FAIL;
    if (r == R_FAIL && e == LG_OK)
        fprintf(stderr, "FAIL merkle / %s: leaf hash\n", cur_case);
    free(leaf), free(root), free(path), free(pre);
    return r;
}

static lg_err dec_receipt(const uint8_t *p, size_t n, const void *ctx)
{
    lg_receipt r;
    return lg_receipt_verify(p, n, ctx, &r);
}

static int case_receipt(const cJSON *c)
{
    size_t n;
    uint8_t *b = unhex(jstr(c, "hex"), &n);
    const lg_genesis *g = genesis_named(jstr(get(c, "inputs"), "genesis"));
    const cJSON *out = get(c, "outputs");
    lg_receipt rc;
    CHECK(g != NULL, "no genesis");
    seed("receipt", b, n);
    lg_err e = lg_receipt_verify(b, n, g, &rc);
    int r = verdict(c, e, false);
    if (r == R_PASS && e == LG_OK) {
        if (get(out, "tx_id") && (!hexeq(rc.tx.id, 32, jstr(out, "tx_id")) ||
                                  rc.header.height != (uint64_t)geti(out, "height") ||
                                  rc.index != (uint64_t)geti(out, "index")))
            FAILF("tx id, height or index");
        r = truncations(b, n, dec_receipt, g);
    }
    free(b);
    return r;
}

/* ---- membership proofs (protocol.md 10.2) ------------------------------------------------ */

static lg_members members_buf; /* about 4 KB: off the stack */

static lg_err dec_membership(const uint8_t *p, size_t n, const void *ctx)
{
    lg_err e = lg_members_init_genesis(&members_buf, ctx);
    return e != LG_OK ? e : lg_members_follow_proof(&members_buf, p, n, NULL);
}

/* The proof's verdict is its own (ledger.ErrMembers on a link), then the
 * receipt's with the sets it leaves (ledger.ErrReceipt: the Go side wraps
 * every receipt failure so). outputs.sets are compared with what is kept:
 * the newest LG_MEMBER_SETS of them. A device following the proof again
 * skips what it followed. */
static int case_membership(const cJSON *c)
{
    size_t n, rn = 0;
    const cJSON *in = get(c, "inputs"), *sets = get(get(c, "outputs"), "sets");
    const lg_genesis *g = genesis_named(jstr(in, "genesis"));
    uint8_t *b = unhex(jstr(c, "hex"), &n), *rb = NULL;
    lg_receipt rc;
    size_t followed = 0;
    CHECK(g != NULL, "no genesis");
    seed("membership", b, n);
    lg_err e = lg_members_init_genesis(&members_buf, g);
    if (e == LG_OK)
        e = lg_members_follow_proof(&members_buf, b, n, &followed);
    if (e == LG_OK && jstr(in, "receipt") != NULL) {
        rb = unhex(jstr(in, "receipt"), &rn);
        e = lg_receipt_verify_members(rb, rn, &members_buf, &rc);
        if (e != LG_OK && e != LG_ERR_NOT_CANONICAL && e != LG_ERR_CRYPTO)
            e = LG_ERR_RECEIPT;
    }
    int r = verdict(c, e, false);
    if (r == R_PASS && e == LG_OK) {
        int ns = cJSON_GetArraySize(sets);
        size_t kept = members_buf.n_sets, first = (size_t)ns - kept;
        if (sets != NULL && (ns < 1 || (size_t)ns < kept || followed != (size_t)ns - 1))
            FAILF("%d sets, %zu kept, %zu followed", ns, kept, followed);
        for (size_t i = 0; sets != NULL && i < kept; i++) {
            const cJSON *want = cJSON_GetArrayItem(sets, (int)(first + i)), *ids = get(want, "nodes");
            const lg_member_set *got = &members_buf.sets[i];
            if (got->start != (uint64_t)geti(want, "start") || got->quorum != (size_t)geti(want, "quorum") ||
                got->n != (size_t)cJSON_GetArraySize(ids))
                FAILF("set %zu: start %llu, %zu nodes, quorum %zu", first + i, (unsigned long long)got->start, got->n, got->quorum);
            for (size_t j = 0; j < got->n; j++)
                if (strcmp(got->nodes[j].id, cJSON_GetArrayItem(ids, (int)j)->valuestring) != 0)
                    FAILF("set %zu member %zu: %s", first + i, j, got->nodes[j].id);
        }
        /* following the same proof again follows nothing and changes nothing */
        static lg_members before; /* memcpy: padding too, for memcmp */
        memcpy(&before, &members_buf, sizeof before);
        CHECK(lg_members_follow_proof(&members_buf, b, n, &followed) == LG_OK && followed == 0 &&
                  memcmp(&before, &members_buf, sizeof before) == 0,
              "the proof followed twice changed the sets");
        r = truncations(b, n, dec_membership, g);
    }
    free(b);
    free(rb);
    return r;
}

/* ---- answers ---------------------------------------------------------------------------- */

typedef struct groups {
    const char *v[LG_MAX_GROUPS];
    size_t n;
} groups;

/* inputs.groups: absent or null gives NULL (the device keeps none) */
static const char *const *groups_of(const cJSON *in, groups *gr)
{
    const cJSON *a = get(in, "groups");
    gr->n = 0;
    if (!cJSON_IsArray(a))
        return NULL;
    for (int i = 0; i < cJSON_GetArraySize(a) && gr->n < LG_MAX_GROUPS; i++)
        gr->v[gr->n++] = cJSON_GetArrayItem(a, i)->valuestring;
    return gr->v;
}

/* The answer checks again with member sets (lg_*_answer_verify_members):
 * for genesis "main" the sets after the first change of membership.json
 * (the genesis set, which still certifies the answers' blocks 1 to 6, and
 * the set from 81); the verdict must be the same. (After both changes an
 * lg_members of 2 sets has dropped the genesis set: blocks 1 to 6 then
 * verify no more, as lg_members documents.) */
static lg_members answer_members;

static const lg_members *members_for(const lg_genesis *g)
{
    char path[1024];
    size_t n, proof_n = 0, followed = 0;
    uint8_t *proof = NULL;
    if (lg_members_init_genesis(&answer_members, g) != LG_OK)
        return NULL;
    if (g != genesis_named("main"))
        return &answer_members;
    snprintf(path, sizeof path, "%s/membership.json", vec_dir);
    uint8_t *text = readfile(path, &n);
    cJSON *doc = text ? cJSON_Parse((const char *)text) : NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, get(doc, "cases"))
        if (strcmp(jstr(c, "name"), "one-change") == 0)
            proof = unhex(jstr(c, "hex"), &proof_n);
    cJSON_Delete(doc);
    free(text);
    lg_err e = proof ? lg_members_follow_proof(&answer_members, proof, proof_n, &followed) : LG_ERR_ARG;
    free(proof);
    return e == LG_OK && followed == 1 && answer_members.n_sets == 2 ? &answer_members : NULL;
}

typedef struct config_ctx {
    const lg_genesis *g;
    const lg_config_check *chk;
} config_ctx;

static lg_err dec_config(const uint8_t *p, size_t n, const void *ctx)
{
    const config_ctx *cc = ctx;
    lg_config_set cs;
    lg_config_state st;
    return lg_config_answer_verify(p, n, cc->g, cc->chk, &cs, &st);
}

static int case_answer_config(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *last = get(in, "last");
    size_t n, hn;
    uint8_t *b = unhex(jstr(c, "hex"), &n), *hash = unhex(jstr(in, "hash"), &hn);
    groups gr;
    lg_config_state st = {0}, acc;
    lg_config_set cs;
    lg_config_check chk = {0};
    config_ctx cc;
    chk.device = jstr(in, "device");
    chk.groups = groups_of(in, &gr);
    chk.n_groups = gr.n;
    chk.hash = hash;
    chk.now_ms = geti(in, "now_ms");
    chk.max_age_ms = geti(in, "max_age_ms");
    if (cJSON_IsObject(last)) {
        size_t sn;
        uint8_t *s = unhex(jstr(last, "sha256"), &sn);
        st.valid = true;
        snprintf(st.target, sizeof st.target, "%s", jstr(last, "target"));
        st.version = (uint64_t)geti(last, "version");
        st.height = (uint64_t)geti(last, "height");
        memcpy(st.sha256, s, 32);
        free(s);
        chk.last = &st;
    }
    cc.g = genesis_named(jstr(in, "genesis"));
    cc.chk = &chk;
    CHECK(cc.g != NULL, "no genesis");
    seed("config", b, n);
    lg_err e = lg_config_answer_verify(b, n, cc.g, &chk, &cs, &acc);
    int r = verdict(c, e, false);
    /* the same answer to a device that holds no configuration (hash NULL,
     * 11.2 step 7): only the last step differs, and it says download */
    lg_config_set cs0;
    lg_config_state acc0;
    chk.hash = NULL;
    lg_err e0 = lg_config_answer_verify(b, n, cc.g, &chk, &cs0, &acc0);
    chk.hash = hash;
    const lg_members *m = members_for(cc.g);
    CHECK(m != NULL, "member sets");
    lg_err em = lg_config_answer_verify_members(b, n, m, &chk, &cs0, &acc0);
    if (em != e)
        FAILF("with member sets: %s, with the genesis: %s", lg_strerror(em), lg_strerror(e));
    if (r != R_FAIL && e0 != (e == LG_OK ? LG_ERR_NOT_CURRENT : e)) {
        fprintf(stderr, "FAIL %s / %s: hash NULL: %s, want %s\n", cur_file, cur_case, lg_strerror(e0),
                lg_strerror(e == LG_OK ? LG_ERR_NOT_CURRENT : e));
        r = R_FAIL;
    }
    if (r == R_PASS && e == LG_OK) {
        const cJSON *a = get(get(c, "outputs"), "accepted");
        if (a != NULL && (strcmp(acc.target, jstr(a, "target")) != 0 ||
                          acc.version != (uint64_t)geti(a, "version") ||
                          acc.height != (uint64_t)geti(a, "height") ||
                          !hexeq(acc.sha256, 32, jstr(a, "sha256"))))
            FAILF("accepted differs");
        r = truncations(b, n, dec_config, &cc);
    }
    free(b), free(hash);
    return r;
}

static int case_answer_keys(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *out = get(c, "outputs");
    size_t n;
    uint8_t *b = unhex(jstr(c, "hex"), &n);
    const lg_genesis *g = genesis_named(jstr(in, "genesis"));
    lg_keys k;
    CHECK(g != NULL, "no genesis");
    seed("config", b, n);
    lg_err e = lg_keys_answer_verify(b, n, g, jstr(in, "device"), geti(in, "now_ms"),
                                     geti(in, "max_age_ms"), &k);
    int r = verdict(c, e, false);
    const lg_members *m = members_for(g);
    lg_keys km;
    CHECK(m != NULL, "member sets");
    lg_err em = lg_keys_answer_verify_members(b, n, m, jstr(in, "device"), geti(in, "now_ms"),
                                              geti(in, "max_age_ms"), &km);
    if (em != e)
        FAILF("with member sets: %s, with the genesis: %s", lg_strerror(em), lg_strerror(e));
    if (r == R_PASS && e == LG_OK) {
        const cJSON *ga = get(out, "groups");
        bool ok = hexeq(k.signing_key.p, k.signing_key.n, jstr(out, "signing_key")) &&
                  hexeq(k.enc_key.p, k.enc_key.n, jstr(out, "enc_key")) &&
                  lg_str_eq(k.model, jstr(out, "model")) &&
                  k.revoked == cJSON_IsTrue(get(out, "revoked")) &&
                  k.height == (uint64_t)geti(out, "height") &&
                  lg_str_eq(k.reason, jstr(out, "reason") ? jstr(out, "reason") : "") &&
                  k.groups.count == (size_t)cJSON_GetArraySize(ga);
        for (size_t i = 0; ok && i < k.groups.count; i++) {
            lg_str s;
            ok = lg_list_id_at(&k.groups, i, &s) == LG_OK &&
                 lg_str_eq(s, cJSON_GetArrayItem(ga, (int)i)->valuestring);
        }
        CHECK(ok, "keys differ from outputs");
    }
    free(b);
    return r;
}

typedef struct fw_ctx {
    const lg_genesis *g;
    const lg_fw_check *chk;
} fw_ctx;

static lg_err dec_firmware(const uint8_t *p, size_t n, const void *ctx)
{
    const fw_ctx *fc = ctx;
    lg_fw_release rel;
    return lg_firmware_answer_verify(p, n, fc->g, fc->chk, &rel);
}

static int case_answer_firmware(const cJSON *c)
{
    const cJSON *in = get(c, "inputs");
    size_t n, vn, in_n;
    uint8_t *b = unhex(jstr(c, "hex"), &n), *vk = unhex(jstr(in, "vendor_spki"), &vn);
    uint8_t *img = unhex(jstr(in, "image"), &in_n);
    groups gr;
    lg_pubkey vendor;
    lg_fw_check chk = {0};
    lg_fw_release rel;
    fw_ctx fc;
    CHECK(lg_pubkey_from_spki(vk, vn, &vendor) == LG_OK, "vendor key");
    chk.device = jstr(in, "device");
    chk.model = jstr(in, "model");
    chk.groups = groups_of(in, &gr);
    chk.n_groups = gr.n;
    chk.installed = (uint64_t)geti(in, "installed");
    chk.vendor_key = &vendor;
    chk.now_ms = geti(in, "now_ms");
    chk.max_age_ms = geti(in, "max_age_ms");
    fc.g = genesis_named(jstr(in, "genesis"));
    fc.chk = &chk;
    CHECK(fc.g != NULL, "no genesis");
    seed("firmware", b, n);
    lg_err e = lg_firmware_answer_verify(b, n, fc.g, &chk, &rel);
    const lg_members *m = members_for(fc.g);
    lg_fw_release relm;
    CHECK(m != NULL, "member sets");
    lg_err em = lg_firmware_answer_verify_members(b, n, m, &chk, &relm);
    if (em != e)
        FAILF("with member sets: %s, with the genesis: %s", lg_strerror(em), lg_strerror(e));
    if (e == LG_OK) {
        /* the image as a device writes it to flash: in 4 KB chunks */
        lg_image im;
        e = lg_image_init(&im, &rel);
        for (size_t off = 0; e == LG_OK && off < in_n; off += 4096)
            e = lg_image_update(&im, img + off, in_n - off < 4096 ? in_n - off : 4096);
        lg_err f = lg_image_final(&im);
        e = e != LG_OK ? e : f;
    }
    int r = verdict(c, e, is_ed_spki(jstr(in, "vendor_spki")));
    if (r == R_PASS && strcmp(jstr(c, "verdict"), "ok") == 0)
        r = truncations(b, n, dec_firmware, &fc);
    free(b), free(vk), free(img);
    return r;
}

/* ---- hpke.json, sealed.json ----------------------------------------------------------- */

static int case_hpke(const cJSON *c)
{
    const cJSON *in = get(c, "inputs");
    size_t n, a, i, e1, sk, pk, ske, pt;
    uint8_t *ct = unhex(jstr(c, "hex"), &n), *aad = unhex(jstr(in, "aad"), &a);
    uint8_t *info = unhex(jstr(in, "info"), &i), *enc = unhex(jstr(in, "enc"), &e1);
    uint8_t *skR = unhex(jstr(in, "skRm"), &sk), *pkR = unhex(jstr(in, "pkRm"), &pk);
    uint8_t *skE = unhex(jstr(in, "skEm"), &ske), *want = unhex(jstr(in, "pt"), &pt);
    uint8_t out[256], pub[32];
    size_t on = 0;
    CHECK(geti(in, "mode") == 0 && geti(in, "kem_id") == 32 && geti(in, "kdf_id") == 1 &&
              geti(in, "aead_id") == 2, "not suite 1");
    lg_err e = lg_hpke_open(skR, enc, info, i, aad, a, ct, n, out, sizeof out, &on);
    int r = verdict(c, e, false);
    if (r == R_PASS) {
        CHECK(on == pt && memcmp(out, want, pt) == 0, "plaintext differs");
        CHECK(lg_x25519_public(skE, pub) == LG_OK && memcmp(pub, enc, 32) == 0, "X25519(skEm) != enc");
        CHECK(lg_x25519_public(skR, pub) == LG_OK && memcmp(pub, pkR, 32) == 0, "X25519(skRm) != pkRm");
        ct[0] ^= 1;
        CHECK(lg_hpke_open(skR, enc, info, i, aad, a, ct, n, out, sizeof out, &on) == LG_ERR_SEALED,
              "a changed ciphertext opens");
    }
    free(ct), free(aad), free(info), free(enc), free(skR), free(pkR), free(skE), free(want);
    return r;
}

static lg_err dec_sealed(const uint8_t *p, size_t n, const void *ctx)
{
    uint8_t out[512];
    size_t on;
    return lg_sealed_open(p, n, ctx, NULL, out, sizeof out, &on);
}

static int case_sealed(const cJSON *c)
{
    const cJSON *in = get(c, "inputs"), *csj = get(in, "config_set");
    size_t n, t;
    uint8_t *b = unhex(jstr(c, "hex"), &n), out[512];
    const key *k = key_named(jstr(in, "key"));
    lg_config_set cs = {0};
    size_t on = 0;
    CHECK(k != NULL, "no key");
    uint8_t *x = unhex(jstr(csj, "blob"), &t);
    memcpy(cs.blob, x, 32);
    free(x);
    x = unhex(jstr(csj, "sha256"), &t);
    memcpy(cs.sha256, x, 32);
    free(x);
    cs.size = (uint64_t)geti(csj, "size");
    seed("sealed", b, n);
    lg_err e = lg_sealed_open(b, n, k->priv, &cs, out, sizeof out, &on);
    int r = verdict(c, e, false);
    CHECK(e == LG_OK || on == 0, "an error that leaves %zu bytes of plaintext", on);
    if (r == R_PASS) {
        uint8_t fp[32];
        lg_sha256(k->spki, k->spki_len, fp);
        CHECK(hexeq(fp, 32, jstr(in, "recipient_id")) && hexeq(k->spki, k->spki_len, jstr(in, "key_spki")),
              "recipient id");
    }
    if (r == R_PASS && e == LG_OK) {
        const char *pt = jstr(in, "plaintext");
        CHECK(on == strlen(pt) && memcmp(out, pt, on) == 0, "plaintext differs");
        r = truncations(b, n, dec_sealed, k->priv);
    }
    free(b);
    return r;
}

/* ---- reasons.json ---------------------------------------------------------------------- */

static int case_reason(const cJSON *c)
{
    static const char *const acts[] = {"fix", "resend", "resync", "rekey", "give_up"};
    const char *want = jstr(get(c, "inputs"), "action");
    char js[256];
    lg_refusal rf;
    lg_action a = lg_reason_action(cur_case, strlen(cur_case));
    CHECK(want && strcmp(acts[a], want) == 0, "action %s, want %s", acts[a], want);
    /* the same through the three refusal forms (14.1, 14.3) */
    int l = snprintf(js, sizeof js, "{\"tx_id\": \"\", \"reason\": \"%s\", \"error\": \"x\", \"last_seq\": 41, \"new\": [1.5e3, {\"a\": null}]}", cur_case);
    CHECK(lg_refusal_parse_json((const uint8_t *)js, (size_t)l, &rf) == LG_OK && rf.action == a &&
              strcmp(rf.reason, cur_case) == 0 && rf.has_last_seq && rf.last_seq == 41,
          "reject JSON");
    seed("refusal", (const uint8_t *)js, (size_t)l);
    l = snprintf(js, sizeof js, "%s: last_seq=41: detail", cur_case);
    CHECK(lg_refusal_parse_coap((const uint8_t *)js, (size_t)l, &rf) == LG_OK && rf.action == a &&
              rf.has_last_seq && rf.last_seq == 41, "CoAP diagnostic");
    CHECK(lg_refusal_parse_mqtt5(cur_case, strlen(cur_case), NULL, 0, &rf) == LG_OK &&
              rf.action == a && !rf.has_last_seq, "MQTT 5 reason string");
    return R_PASS;
}

/* ---- the files ---------------------------------------------------------------------------- */

typedef struct handler {
    const char *structure;
    int (*fn)(const cJSON *c);
    const char *skip_why; /* non-NULL: the whole structure is not the device's */
} handler;

static const handler handlers[] = {
    {"keys", case_keys, NULL},
    {"genesis", case_genesis, NULL},
    {"tx", case_tx, NULL},
    {"token", case_token, NULL},
    {"header", case_header, NULL},
    {"cert", case_cert, NULL},
    {"merkle", case_merkle, NULL},
    {"receipt", case_receipt, NULL},
    {"membership", case_membership, NULL},
    {"answer-config", case_answer_config, NULL},
    {"answer-keys", case_answer_keys, NULL},
    {"answer-firmware", case_answer_firmware, NULL},
    {"hpke", case_hpke, NULL},
    {"sealed", case_sealed, NULL},
    {"reasons", case_reason, NULL},
    {"schema", NULL, "the Go types' key lists; the C field tables are checked through every tx, receipt and answer vector"},
};

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* keys and genesis first: the others refer to them by name */
static int order(const char *f)
{
    return strcmp(f, "keys.json") == 0 ? 0 : strcmp(f, "genesis.json") == 0 ? 1 : 2;
}

static int cmp_files(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int d = order(x) - order(y);
    return d != 0 ? d : cmp(a, b);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: vectors DIR [--seeds DIR] [--no-truncations]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
            seed_dir = argv[++i];
            mkdir(seed_dir, 0755);
        } else if (strcmp(argv[i], "--no-truncations") == 0) {
            no_truncations = true;
        } else {
            fprintf(stderr, "vectors: unknown option %s\n", argv[i]);
            return 2;
        }
    }
#ifdef LG_WITH_ED25519
    if (sodium_init() < 0)
        return 2;
#endif
    vec_dir = argv[1];
    DIR *d = opendir(argv[1]);
    if (d == NULL) {
        fprintf(stderr, "vectors: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    char *files[64];
    size_t nf = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0 && nf < 64)
            files[nf++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(files, nf, sizeof files[0], cmp_files);
    printf("vectors (%s, Ed25519 %s):\n", argv[1], HAVE_ED ? "on" : "off");
    int bad = 0, total = 0;
    for (size_t i = 0; i < nf; i++) {
        char path[1024];
        size_t n;
        snprintf(path, sizeof path, "%s/%s", argv[1], files[i]);
        uint8_t *text = readfile(path, &n);
        cJSON *doc = text ? cJSON_Parse((const char *)text) : NULL;
        const char *st = doc ? jstr(doc, "structure") : NULL;
        const handler *h = NULL;
        for (size_t k = 0; st && k < sizeof handlers / sizeof handlers[0]; k++)
            if (strcmp(handlers[k].structure, st) == 0)
                h = &handlers[k];
        cur_file = files[i];
        if (h == NULL) {
            printf("  %-24s FAIL: no handler for structure %s\n", files[i], st ? st : "(unreadable)");
            bad++;
        } else {
            int cnt[4] = {0};
            const cJSON *c;
            cJSON_ArrayForEach(c, get(doc, "cases"))
            {
                cur_case = jstr(c, "name");
                int r = h->fn ? h->fn(c) : R_SKIP;
                cnt[r]++;
                total++;
            }
            printf("  %-24s %3d passed", files[i], cnt[R_PASS]);
            if (cnt[R_UNSUP])
                printf(", %d Ed25519 (LG_ERR_UNSUPPORTED_ALG as required)", cnt[R_UNSUP]);
            if (cnt[R_SKIP])
                printf(", %d skipped: %s", cnt[R_SKIP],
                       h->skip_why ? h->skip_why : "tree heads of whole blocks are computed by gateways");
            if (cnt[R_FAIL])
                printf(", %d FAILED", cnt[R_FAIL]);
            printf("\n");
            bad += cnt[R_FAIL];
        }
        cJSON_Delete(doc);
        free(text);
        free(files[i]);
    }
    printf("%d files, %d cases, %d failures\n", (int)nf, total, bad);
    return bad == 0 && nf > 0 ? 0 : 1;
}
