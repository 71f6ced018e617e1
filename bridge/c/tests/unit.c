/* unit.c - what the vectors do not pin: the incremental image check, the
 * sequence hook's persist-before-sign rule, refusals, tokens, the strict
 * CBOR reader's refusals, and lg_strerror. */
#include "lg.h"
#include "lg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecp.h>

#ifdef LG_WITH_ED25519
#include <sodium.h>
#endif

static int failures;

#define EXPECT(cond)                                                   \
    do {                                                               \
        if (!(cond)) {                                                 \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                \
        }                                                              \
    } while (0)

/* ---- image ------------------------------------------------------------------ */

static void test_image(void)
{
    static uint8_t img[10000];
    lg_fw_release rel = {0};
    lg_image im;
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)(i * 7 + 3);
    rel.size = sizeof img;
    lg_sha256(img, sizeof img, rel.sha256);
    const size_t chunks[] = {1, 7, 4096, sizeof img};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        lg_err e = lg_image_init(&im, &rel);
        for (size_t off = 0; e == LG_OK && off < sizeof img; off += chunks[c]) {
            size_t n = sizeof img - off < chunks[c] ? sizeof img - off : chunks[c];
            e = lg_image_update(&im, img + off, n);
        }
        EXPECT(e == LG_OK);
        EXPECT(lg_image_final(&im) == LG_OK);
    }
    /* one byte past the size is refused at once: stop the download */
    EXPECT(lg_image_init(&im, &rel) == LG_OK);
    EXPECT(lg_image_update(&im, img, sizeof img) == LG_OK);
    EXPECT(lg_image_update(&im, img, 1) == LG_ERR_IMAGE);
    EXPECT(lg_image_final(&im) == LG_OK); /* what was taken is still the image */
    /* short, and changed */
    EXPECT(lg_image_init(&im, &rel) == LG_OK);
    EXPECT(lg_image_update(&im, img, sizeof img - 1) == LG_OK);
    EXPECT(lg_image_final(&im) == LG_ERR_IMAGE);
    img[5000] ^= 1;
    EXPECT(lg_image_init(&im, &rel) == LG_OK);
    EXPECT(lg_image_update(&im, img, sizeof img) == LG_OK);
    EXPECT(lg_image_final(&im) == LG_ERR_IMAGE);
}

/* ---- the sequence hook ------------------------------------------------------- */

typedef struct store {
    uint64_t last;
    bool fail_load, fail_persist;
    int persists;
    const uint8_t *out; /* the caller's buffer, watched at persist time */
    bool out_untouched_at_persist;
} store;

static lg_err load(void *ctx, uint64_t *last)
{
    store *s = ctx;
    if (s->fail_load)
        return LG_ERR_SEQ_LOAD;
    *last = s->last;
    return LG_OK;
}

static lg_err persist(void *ctx, uint64_t seq)
{
    store *s = ctx;
    s->persists++;
    if (s->out != NULL) {
        bool clean = true;
        for (size_t i = 0; i < 512; i++)
            clean &= s->out[i] == 0xaa;
        s->out_untouched_at_persist = clean;
    }
    if (s->fail_persist)
        return LG_ERR_SEQ_PERSIST;
    s->last = seq;
    return LG_OK;
}

static const uint8_t scalar[32] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                   0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01,
                                   0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
                                   0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11};

/* The P-256 public key of scalar, as lg_pubkey. */
static lg_pubkey pub_of_scalar(void)
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi d;
    lg_pubkey k = {LG_ALG_ES256, {0}};
    size_t n;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    mbedtls_mpi_read_binary(&d, scalar, 32);
    mbedtls_ecp_mul(&grp, &q, &d, &grp.G, NULL, NULL);
    mbedtls_ecp_point_write_binary(&grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &n, k.key, 65);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return k;
}

static int counter_rng(void *p, unsigned char *buf, size_t n)
{
    uint32_t *c = p;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)((*c)++ * 2654435761u >> 24);
    return 0;
}

static void test_seq(void)
{
    store st = {41, false, false, 0, NULL, false};
    lg_seq_hook hook = {load, persist, &st};
    lg_device dev = {"sensor-1", "vectors-1", LG_ALG_ES256, scalar, &hook, NULL, NULL};
    lg_record rec = {"temp", 1767225600000, "application/json", (const uint8_t *)"{}", 2};
    uint8_t out[512];
    lg_signed res;
    lg_tx tx;
    lg_pubkey pub = pub_of_scalar();

    /* normal: persist sees the buffer untouched (nothing released yet) */
    memset(out, 0xaa, sizeof out);
    st.out = out;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_OK);
    EXPECT(st.out_untouched_at_persist && st.persists == 1 && st.last == 42 && res.seq == 42);
    EXPECT(lg_tx_decode(out, res.len, 0, &tx) == LG_OK && tx.u.record.seq == 42);
    EXPECT(lg_tx_verify(&tx, &pub) == LG_OK);
    EXPECT(memcmp(res.tx_id, tx.id, 32) == 0);

    /* persist fails: no signature is released, the buffer is untouched */
    memset(out, 0xaa, sizeof out);
    memset(&res, 0x55, sizeof res);
    st.fail_persist = true;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_ERR_SEQ_PERSIST);
    bool clean = true;
    for (size_t i = 0; i < sizeof out; i++)
        clean &= out[i] == 0xaa;
    EXPECT(clean && st.last == 42);
    EXPECT(res.len == (size_t)0x5555555555555555ull);
    EXPECT(lg_sign_config_report(&dev, 1, scalar, out, sizeof out, &res) == LG_ERR_SEQ_PERSIST);
    EXPECT(lg_sign_firmware_report(&dev, "th-2", 2, true, NULL, out, sizeof out, &res) ==
           LG_ERR_SEQ_PERSIST);
    st.fail_persist = false;

    /* load fails */
    st.fail_load = true;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_ERR_SEQ_LOAD);
    st.fail_load = false;

    /* a buffer too small uses up no number */
    int before = st.persists;
    EXPECT(lg_sign_record(&dev, &rec, out, 50, &res) == LG_ERR_BUFFER);
    EXPECT(st.persists == before && st.last == 42);

    /* the last number */
    st.last = (uint64_t)INT64_MAX;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_ERR_SEQ_EXHAUSTED);
    st.last = (uint64_t)INT64_MAX - 1;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_OK && res.seq == (uint64_t)INT64_MAX);

    /* resync after a replay refusal */
    st.last = 5;
    EXPECT(lg_seq_resync(&hook, 41) == LG_OK && st.last == 41);
    EXPECT(lg_seq_resync(&hook, 3) == LG_OK && st.last == 41);
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_OK && res.seq == 42);

    /* random k: another signature that verifies too */
    uint32_t ctr = 1;
    uint8_t det[512];
    size_t dlen = res.len;
    memcpy(det, out, dlen);
    st.last = 41;
    dev.f_rng = counter_rng;
    dev.p_rng = &ctr;
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_OK && res.len == dlen);
    EXPECT(memcmp(out, det, dlen - 64) == 0 && memcmp(out + dlen - 64, det + dlen - 64, 64) != 0);
    EXPECT(lg_tx_decode(out, res.len, 0, &tx) == LG_OK && lg_tx_verify(&tx, &pub) == LG_OK);

    /* an Ed25519 device without LG_WITH_ED25519 */
    dev.alg = LG_ALG_EDDSA;
#ifdef LG_WITH_ED25519
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_OK);
#else
    EXPECT(lg_sign_record(&dev, &rec, out, sizeof out, &res) == LG_ERR_UNSUPPORTED_ALG);
#endif
}

/* ---- tokens -------------------------------------------------------------------- */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* RFC 4648 5 without padding; the input is known to be valid */
static size_t b64url_dec(const char *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 6 | (uint32_t)(strchr(b64u, s[i]) - b64u);
        if ((bits += 6) >= 8)
            out[o++] = (uint8_t)(acc >> (bits -= 8));
    }
    return o;
}

static size_t b64url_enc(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | p[i];
        for (bits += 8; bits >= 6; bits -= 6)
            out[o++] = b64u[(acc >> (bits - 6)) & 63];
    }
    if (bits > 0)
        out[o++] = b64u[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

static void test_token(void)
{
    lg_device dev = {"sensor-1", "vectors-1", LG_ALG_ES256, scalar, NULL, NULL, NULL};
    lg_pubkey pub = pub_of_scalar();
    char tok[LG_TOKEN_MAX + 1];
    size_t n;
    EXPECT(lg_token_make(&dev, 1000, 4600, tok, sizeof tok, &n) == LG_OK && n == strlen(tok));
    EXPECT(lg_token_check(tok, n, "vectors-1", 1000, &pub) == LG_OK);
    EXPECT(lg_token_check(tok, n, "vectors-1", 4600, &pub) == LG_ERR_TOKEN);  /* expired at exp */
    EXPECT(lg_token_check(tok, n, "vectors-1", 699, &pub) == LG_ERR_TOKEN);   /* iat > now + 300 */
    EXPECT(lg_token_check(tok, n, "vectors-2", 1000, &pub) == LG_ERR_TOKEN);
    EXPECT(lg_token_check(tok, n - 1, "vectors-1", 1000, &pub) != LG_OK);
    EXPECT(lg_token_make(&dev, 1000, 1000 + 86401, tok, sizeof tok, &n) == LG_ERR_ARG);
    EXPECT(lg_token_make(&dev, 1000, 4600, tok, 20, &n) == LG_ERR_BUFFER);

    /* the longest: ids of LG_ID_MAX; made in place in a buffer of exactly
     * the length plus the NUL, the same text as in a large one */
    char id[LG_ID_MAX + 1], chain[LG_ID_MAX + 1], tight[LG_TOKEN_MAX + 1];
    memset(id, 'd', LG_ID_MAX), id[LG_ID_MAX] = '\0';
    memset(chain, 'c', LG_ID_MAX), chain[LG_ID_MAX] = '\0';
    dev.id = id, dev.chain_id = chain;
    size_t m;
    EXPECT(lg_token_make(&dev, 1000, 4600, tok, sizeof tok, &n) == LG_OK);
    EXPECT(lg_token_check(tok, n, chain, 1000, &pub) == LG_OK);
    EXPECT(lg_token_make(&dev, 1000, 4600, tight, n + 1, &m) == LG_OK && m == n &&
           strcmp(tight, tok) == 0);
    EXPECT(lg_token_make(&dev, 1000, 4600, tight, n, &m) == LG_ERR_BUFFER);
    uint8_t env[1026];
    size_t len = b64url_dec(tok, n, env);
    EXPECT(len <= 298 && env[len - 66] == 0x58 && env[len - 65] == 64);

    /* a longer signature: refused at the signature while the envelope is
     * within 320 bytes, as no token (before it is decoded) beyond */
    dev.id = "sensor-1", dev.chain_id = "vectors-1";
    EXPECT(lg_token_make(&dev, 1000, 4600, tok, sizeof tok, &n) == LG_OK);
    len = b64url_dec(tok, n, env) - 66; /* up to the signature's bstr */
    env[len] = 0x58, env[len + 1] = 100;
    memset(env + len + 2, 0x5a, 100);
    EXPECT(len + 2 + 100 <= 320);
    n = b64url_enc(env, len + 2 + 100, tok);
    EXPECT(lg_token_check(tok, n, "vectors-1", 1000, &pub) == LG_ERR_BAD_SIGNATURE);
    env[len] = 0x59, env[len + 1] = 0x01, env[len + 2] = 0x2c;
    memset(env + len + 3, 0x5a, 300);
    EXPECT(len + 3 + 300 > 320);
    n = b64url_enc(env, len + 3 + 300, tok);
    EXPECT(lg_token_check(tok, n, "vectors-1", 1000, &pub) == LG_ERR_TOKEN);
}

/* ---- refusals ------------------------------------------------------------------- */

static void test_refusal(void)
{
    lg_refusal r;
    const char *j1 = "{\"tx_id\":\"\",\"reason\":\"replay\",\"error\":\"seq 3 not above 41\",\"last_seq\":41}";
    EXPECT(lg_refusal_parse_json((const uint8_t *)j1, strlen(j1), &r) == LG_OK);
    EXPECT(r.action == LG_ACT_RESYNC && r.has_last_seq && r.last_seq == 41);
    const char *j2 = " {\"a_field_name_longer_than_sixteen\": [true, false, null, -0.5e-3, \"\\u00e9\\ud83d\\ude00\"], \"reason\": \"brand_new\"} ";
    EXPECT(lg_refusal_parse_json((const uint8_t *)j2, strlen(j2), &r) == LG_OK);
    EXPECT(r.action == LG_ACT_FIX && strcmp(r.reason, "brand_new") == 0 && !r.has_last_seq);
    const char *bad[] = {"{\"reason\":\"x\"", "{\"reason\":\"x\",}", "{\"reason\":01}",
                         "{\"reason\":\"x\"} x", "{\"reason\":\"\\ud800\"}", "[]", "{}",
                         "{\"reason\":\"x\",\"last_seq\":-1}", "{\"reason\":\"x\",\"last_seq\":1.5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(lg_refusal_parse_json((const uint8_t *)bad[i], strlen(bad[i]), &r) == LG_ERR_MALFORMED);
    const char *c1 = "unavailable: no quorum";
    EXPECT(lg_refusal_parse_coap((const uint8_t *)c1, strlen(c1), &r) == LG_OK &&
           r.action == LG_ACT_RESEND && !r.has_last_seq);
    EXPECT(lg_refusal_parse_mqtt5("replay", 6, "77", 2, &r) == LG_OK && r.last_seq == 77 &&
           r.action == LG_ACT_RESYNC);
    EXPECT(lg_refusal_parse_mqtt5("replay", 6, "7x", 2, &r) == LG_ERR_MALFORMED);
    EXPECT(lg_reason_action("revoked", 7) == LG_ACT_GIVE_UP);
    EXPECT(lg_reason_action("revoke", 6) == LG_ACT_FIX);
}

/* protocol.md 14.1, the MQTT 5 and CoAP columns, transcribed: each reason
 * with its own code parses; with another code it is malformed. */
static const struct {
    const char *reason;
    uint8_t puback, coap;
} table14[] = {
    {"malformed", 0x99, LG_COAP_CODE(4, 0)},       {"too_large", 0x99, LG_COAP_CODE(4, 13)},
    {"wrong_chain", 0x99, LG_COAP_CODE(4, 0)},     {"wrong_topic", 0x87, LG_COAP_CODE(4, 3)},
    {"not_record", 0x99, LG_COAP_CODE(4, 0)},      {"not_report", 0x99, LG_COAP_CODE(4, 0)},
    {"wrong_cert", 0x87, LG_COAP_CODE(4, 3)},      {"unknown_author", 0x87, LG_COAP_CODE(4, 1)},
    {"bad_signature", 0x87, LG_COAP_CODE(4, 1)},   {"forbidden", 0x87, LG_COAP_CODE(4, 3)},
    {"revoked", 0x87, LG_COAP_CODE(4, 3)},         {"replay", 0x83, LG_COAP_CODE(4, 3)},
    {"exists", 0x83, LG_COAP_CODE(4, 3)},          {"unknown_device", 0x83, LG_COAP_CODE(4, 4)},
    {"stale_version", 0x83, LG_COAP_CODE(4, 3)},   {"unknown_release", 0x83, LG_COAP_CODE(4, 4)},
    {"not_found", 0x83, LG_COAP_CODE(4, 4)},       {"bad_option", 0x99, LG_COAP_CODE(4, 2)},
    {"method_not_allowed", 0x99, LG_COAP_CODE(4, 5)}, {"not_acceptable", 0x99, LG_COAP_CODE(4, 6)},
    {"incomplete", 0x99, LG_COAP_CODE(4, 8)},      {"content_format", 0x99, LG_COAP_CODE(4, 15)},
    {"proxy", 0x99, LG_COAP_CODE(5, 5)},           {"overloaded", 0x97, LG_COAP_CODE(4, 29)},
    {"unavailable", 0x80, LG_COAP_CODE(5, 3)},     {"storage_full", 0x97, LG_COAP_CODE(5, 3)},
    {"internal", 0x80, LG_COAP_CODE(5, 0)},        {"policy", 0x87, LG_COAP_CODE(4, 3)},
};

static void test_refusal_codes(void)
{
    lg_refusal r;
    for (size_t i = 0; i < sizeof table14 / sizeof table14[0]; i++) {
        const char *s = table14[i].reason;
        lg_action a = lg_reason_action(s, strlen(s));
        char diag[64];
        int n = snprintf(diag, sizeof diag, "%s: detail", s);
        EXPECT(lg_refusal_parse_puback(table14[i].puback, s, strlen(s), NULL, 0, &r) == LG_OK &&
               r.action == a && strcmp(r.reason, s) == 0);
        EXPECT(lg_refusal_parse_puback(table14[i].puback ^ 0x01, s, strlen(s), NULL, 0, &r) ==
                   LG_ERR_MALFORMED && r.action == a && strcmp(r.reason, s) == 0);
        EXPECT(lg_refusal_parse_coap_code(table14[i].coap, (const uint8_t *)diag, (size_t)n, &r) == LG_OK &&
               r.action == a && r.detail.n == 6 && memcmp(r.detail.p, "detail", 6) == 0);
        EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(5, 4), (const uint8_t *)diag, (size_t)n, &r) ==
               LG_ERR_MALFORMED && r.action == a);
    }
    /* no Reason String: the retry codes are resend (the gap: they were fix) */
    EXPECT(lg_refusal_parse_puback(0x80, NULL, 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND &&
           r.reason[0] == '\0');
    EXPECT(lg_refusal_parse_puback(0x97, "", 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND);
    EXPECT(lg_refusal_parse_puback(0x99, NULL, 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_puback(0x87, NULL, 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_puback(0x83, NULL, 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_puback(0x83, NULL, 0, "41", 2, &r) == LG_OK && r.action == LG_ACT_RESYNC &&
           r.has_last_seq && r.last_seq == 41);
    EXPECT(lg_refusal_parse_puback(0x87, NULL, 0, "41", 2, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_puback(0x90, NULL, 0, NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_puback(0x00, NULL, 0, NULL, 0, &r) == LG_ERR_ARG);
    EXPECT(lg_refusal_parse_puback(0x10, "replay", 6, NULL, 0, &r) == LG_ERR_ARG);
    EXPECT(lg_refusal_parse_puback(0x83, "replay", 6, "4x", 2, &r) == LG_ERR_MALFORMED);
    /* an unknown reason string is fix whatever the code (14.1 MUST) */
    EXPECT(lg_refusal_parse_puback(0x97, "brand_new", 9, NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    /* CoAP without a diagnostic payload */
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(5, 3), NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 29), NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 8), NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(5, 0), NULL, 0, &r) == LG_OK && r.action == LG_ACT_RESEND);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 1), NULL, 0, &r) == LG_OK && r.action == LG_ACT_REKEY);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 3), NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 0), NULL, 0, &r) == LG_OK && r.action == LG_ACT_FIX);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(2, 4), NULL, 0, &r) == LG_ERR_ARG);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 0), NULL, 3, &r) == LG_ERR_ARG);
    const char *c2 = "replay: last_seq=41: seq 3 is not above 41";
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 3), (const uint8_t *)c2, strlen(c2), &r) == LG_OK &&
           r.action == LG_ACT_RESYNC && r.last_seq == 41 && r.detail.p == (const uint8_t *)c2 + 21 &&
           r.detail.n == strlen(c2) - 21);
    EXPECT(lg_refusal_parse_coap_code(LG_COAP_CODE(4, 3), (const uint8_t *)": x", 3, &r) == LG_ERR_MALFORMED);
}

/* The reject JSON's tx id and detail (14.3): a device with several records
 * in flight matches the message to its tx. */
static void test_refusal_tx(void)
{
    lg_refusal r;
    const char *j = "{\"tx_id\": \"00ff2a0000000000000000000000000000000000000000000000000000000001\", "
                    "\"reason\": \"replay\", \"error\": \"seq 3 \\\"old\\\"\", \"last_seq\": 41}";
    EXPECT(lg_refusal_parse_json((const uint8_t *)j, strlen(j), &r) == LG_OK);
    EXPECT(r.has_tx_id && r.tx_id[0] == 0x00 && r.tx_id[1] == 0xff && r.tx_id[2] == 0x2a && r.tx_id[31] == 0x01);
    EXPECT(r.detail.n == 13 && memcmp(r.detail.p, "seq 3 \\\"old\\\"", 13) == 0 &&
           r.detail.p > (const uint8_t *)j && r.detail.p + r.detail.n < (const uint8_t *)j + strlen(j));
    const char *e = "{\"tx_id\": \"\", \"reason\": \"malformed\", \"error\": \"\"}";
    EXPECT(lg_refusal_parse_json((const uint8_t *)e, strlen(e), &r) == LG_OK && !r.has_tx_id && r.detail.n == 0);
    const char *bad[] = {"{\"tx_id\": \"00\", \"reason\": \"x\"}",
                         "{\"tx_id\": \"g0ff2a0000000000000000000000000000000000000000000000000000000001\", \"reason\": \"x\"}",
                         "{\"tx_id\": 5, \"reason\": \"x\"}", "{\"error\": null, \"reason\": \"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(lg_refusal_parse_json((const uint8_t *)bad[i], strlen(bad[i]), &r) == LG_ERR_MALFORMED);
}

/* ---- PKCS#8 ------------------------------------------------------------------------ */

static lg_err pk8(const char *hex, lg_key_type *t, uint8_t out[32])
{
    uint8_t b[200];
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (uint8_t)v;
    }
    return lg_key_from_pkcs8(b, n, t, out);
}

#define K32 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K31 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"
#define EC_ALG "301306072a8648ce3d020106082a8648ce3d030107"

static void test_pkcs8(void)
{
    lg_key_type t;
    uint8_t k[32];
    /* what the vectors do not cover (keys.json: every key, every truncation) */
    EXPECT(pk8("302e020100300506032b657004220420" K32, &t, k) == LG_OK && t == LG_KEY_ED25519 && k[31] == 0x1f);
    EXPECT(pk8("302e020100300506032b656e04220420" K32, &t, k) == LG_OK && t == LG_KEY_X25519);
    /* v2 with its publicKey [1]; v2 without it, v1 with it: malformed */
    EXPECT(pk8("3051020101300506032b657004220420" K32 "812100" K32, &t, k) == LG_OK && t == LG_KEY_ED25519);
    EXPECT(pk8("302e020101300506032b657004220420" K32, &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("3051020100300506032b657004220420" K32 "812100" K32, &t, k) == LG_ERR_MALFORMED);
    /* attributes [0] are skipped */
    EXPECT(pk8("3030020100300506032b657004220420" K32 "a000", &t, k) == LG_OK);
    /* version 2, parameters with an RFC 8410 OID, 31-byte key, trailing bytes */
    EXPECT(pk8("302e020102300506032b657004220420" K32, &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("3030020100300706032b65700500042204" "20" K32, &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("302d020100300506032b6570042104" "1f" K31, &t, k) == LG_ERR_MALFORMED && k[0] == 0);
    EXPECT(pk8("302e020100300506032b657004220420" K32 "00", &t, k) == LG_ERR_MALFORMED);
    /* a non-shortest length: 0x81 0x2e */
    EXPECT(pk8("30812e020100300506032b657004220420" K32, &t, k) == LG_ERR_MALFORMED);
    /* Ed448, X448: not ours */
    EXPECT(pk8("302e020100300506032b657104220420" K32, &t, k) == LG_ERR_UNSUPPORTED_ALG);
    /* P-256: minimal ECPrivateKey; [0] the same curve; the scalar 0 and n */
    EXPECT(pk8("3041020100" EC_ALG "042730250201010420" K32, &t, k) == LG_OK && t == LG_KEY_P256 && k[0] == 0);
    EXPECT(pk8("304d020100" EC_ALG "04333031020101" "0420" K32 "a00a06082a8648ce3d030107", &t, k) == LG_OK);
    EXPECT(pk8("304d020100" EC_ALG "04333031020101" "0420" K32 "a00a06082a8648ce3d030108", &t, k) ==
           LG_ERR_MALFORMED);
    EXPECT(pk8("3041020100" EC_ALG "042730250201010420"
               "0000000000000000000000000000000000000000000000000000000000000000", &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("3041020100" EC_ALG "042730250201010420"
               "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("3041020100" EC_ALG "042730250201010420"
               "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550", &t, k) == LG_OK);
    /* ECPrivateKey version 0; P-384 (1.3.132.0.34): not ours */
    EXPECT(pk8("3041020100" EC_ALG "042730250201000420" K32, &t, k) == LG_ERR_MALFORMED);
    EXPECT(pk8("303e020100301006072a8648ce3d020106052b8104002204273025020101" "0420" K32, &t, k) ==
           LG_ERR_UNSUPPORTED_ALG);
    EXPECT(lg_key_from_pkcs8(NULL, 0, &t, k) == LG_ERR_ARG);
}

/* ---- the CBOR reader's refusals ----------------------------------------------------- */

static lg_err item(const char *bytes, size_t n)
{
    lg_cbor c;
    lg_str s;
    cb_init(&c, (const uint8_t *)bytes, n);
    lg_err e = cb_item(&c, &s);
    return e == LG_OK && !cb_done(&c) ? LG_ERR_MALFORMED : e;
}

static void test_cbor(void)
{
    EXPECT(item("\x65hello", 6) == LG_OK);
    EXPECT(item("\x78\x05hello", 7) == LG_ERR_NOT_CANONICAL); /* non-shortest length */
    EXPECT(item("\x18\x09", 2) == LG_ERR_NOT_CANONICAL);      /* 9 as 0x18 0x09 */
    EXPECT(item("\x19\x00\x18", 3) == LG_ERR_NOT_CANONICAL);
    EXPECT(item("\x18\x18", 2) == LG_OK);
    EXPECT(item("\x7f\x61\x61\xff", 4) == LG_ERR_NOT_CANONICAL); /* indefinite */
    EXPECT(item("\xa2\x02\x00\x01\x00", 5) == LG_ERR_NOT_CANONICAL); /* unsorted */
    EXPECT(item("\xa2\x01\x00\x01\x00", 5) == LG_ERR_NOT_CANONICAL); /* duplicate */
    EXPECT(item("\xa2\x0a\x00\x18\x64\x00", 6) == LG_OK);  /* 10 < 100: bytewise */
    EXPECT(item("\x62\xc3\x28", 3) == LG_ERR_MALFORMED);   /* invalid UTF-8 */
    EXPECT(item("\x62\xc0\x80", 3) == LG_ERR_MALFORMED);   /* overlong */
    EXPECT(item("\xf9\x3c\x00", 3) == LG_ERR_MALFORMED);   /* a float */
    EXPECT(item("\xf7", 1) == LG_ERR_MALFORMED);           /* undefined */
    EXPECT(item("\xd8\x3d\x00", 3) == LG_ERR_MALFORMED);   /* a tag */
    EXPECT(item("\x9a\xff\xff\xff\xff", 5) == LG_ERR_MALFORMED); /* a huge array, no bytes */
    char deep[20];
    memset(deep, 0x81, sizeof deep);
    deep[19] = 0x00;
    EXPECT(item(deep, 16) == LG_ERR_MALFORMED);  /* truncated */
    EXPECT(item(deep + 4, 16) == LG_OK);         /* 15 arrays and a 0: depth 16 */
    EXPECT(item(deep + 3, 17) == LG_ERR_MALFORMED); /* depth 17 */
}

static void test_list(void)
{
    lg_list waves = {(const uint8_t *)"\x83\x0a\x18\x32\x18\x64", 6, 3};
    lg_list ids = {(const uint8_t *)"\x82\x65" "fleet" "\x66" "meters", 14, 2};
    uint64_t v;
    lg_str s;
    EXPECT(lg_list_uint_at(&waves, 0, &v) == LG_OK && v == 10);
    EXPECT(lg_list_uint_at(&waves, 2, &v) == LG_OK && v == 100);
    EXPECT(lg_list_uint_at(&waves, 3, &v) == LG_ERR_ARG);
    EXPECT(lg_list_id_at(&ids, 1, &s) == LG_OK && lg_str_eq(s, "meters"));
    EXPECT(lg_list_id_at(&ids, 0, &s) == LG_OK && lg_str_eq(s, "fleet"));
    EXPECT(lg_list_uint_at(&ids, 0, &v) == LG_ERR_MALFORMED);
}

static void test_misc(void)
{
    for (int e = LG_OK; e <= LG_ERR_CRYPTO; e++)
        EXPECT(strcmp(lg_strerror((lg_err)e), "unknown error") != 0);
    EXPECT(lg_ct_equal("abc", "abc", 3) == 1 && lg_ct_equal("abc", "abd", 3) == 0);
    /* a compressed or foreign SPKI is refused (protocol.md 4) */
    uint8_t spki[91] = {0};
    lg_pubkey k;
    EXPECT(lg_pubkey_from_spki(spki, sizeof spki, &k) == LG_ERR_MALFORMED);
}

/* protocol.md 8.1: MembersFrom with K = 16, W = 64; the argument checks of
 * the member functions. */
static void test_members(void)
{
    static const uint64_t cases[][2] = {{1, 81}, {7, 81}, {16, 81}, {17, 97}, {90, 161}, {96, 161}, {97, 177}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECT(lg_members_from(cases[i][0]) == cases[i][1]);
    static lg_members m;
    static lg_genesis g;
    size_t k = 7;
    EXPECT(lg_members_init_genesis(&m, &g) == LG_ERR_ARG); /* no nodes */
    EXPECT(lg_members_init_genesis(NULL, &g) == LG_ERR_ARG);
    EXPECT(lg_members_follow_proof(&m, (const uint8_t *)"\x80", 1, &k) == LG_ERR_ARG && k == 0);
    g.n_nodes = LG_MAX_MEMBERS + 1;
    EXPECT(lg_members_init_genesis(&m, &g) == LG_ERR_LIMIT);
    g.n_nodes = 1;
    g.quorum = 1;
    EXPECT(lg_members_init_genesis(&m, &g) == LG_OK && m.n_sets == 1 && m.sets[0].start == 1);
    EXPECT(lg_members_follow_proof(&m, (const uint8_t *)"\x80", 1, &k) == LG_OK && k == 0);
    EXPECT(lg_members_follow_proof(&m, (const uint8_t *)"\x81", 1, &k) == LG_ERR_MEMBERS);
    EXPECT(lg_members_follow_proof(&m, (const uint8_t *)"\xa0", 1, &k) == LG_ERR_MEMBERS);
    EXPECT(lg_members_follow_proof(&m, (const uint8_t *)"\x80\x00", 2, &k) == LG_ERR_MEMBERS);
}

int main(void)
{
#ifdef LG_WITH_ED25519
    if (sodium_init() < 0)
        return 2;
#endif
    test_image();
    test_seq();
    test_token();
    test_refusal();
    test_refusal_codes();
    test_refusal_tx();
    test_pkcs8();
    test_cbor();
    test_list();
    test_misc();
    test_members();
    printf("unit: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
