/* answers.c: see answers.h. */
#include "answers.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev.h"

int conn_open(struct co **c, const struct opt *o, int *timeout_ms)
{
    const char *server = opt_need(o, "server");
    if (!server)
        return -1;
    int udp = opt_get(o, "udp") != NULL;
    const char *cert = opt_get(o, "cert"), *key = opt_get(o, "key");
    if (!udp && (!cert || !key))
        return errf("--cert and --key are required for DTLS (or --udp)");
    uint64_t t = 30;
    if (opt_get(o, "timeout") && (parse_u64(opt_get(o, "timeout"), &t) != 0 || t == 0 || t > 3600))
        return errf("--timeout: want 1 to 3600 seconds");
    *timeout_ms = (int)t * 1000;
    char host[256];
    int port;
    if (parse_hostport(server, host, sizeof host, &port) != 0)
        return -1;
    return co_open(c, host, port, udp ? NULL : cert, udp ? NULL : key, udp ? NULL : opt_get(o, "pin"));
}

int conn_get(struct co *c, const char *path, const char *query, int timeout_ms, unsigned char **buf, size_t *len)
{
    struct co_resp r;
    if (co_request(c, "GET", path, query, NULL, 0, -1, &r, timeout_ms) != 0)
        return -1;
    if (r.code == 205) {
        *buf = r.payload ? r.payload : (unsigned char *)calloc(1, 1);
        *len = r.len;
        return *buf ? 0 : errf("out of memory");
    }
    int rc = r.code == 404 ? 1 : -1;
    if (rc < 0)
        errf("GET /%s%s%s: %d.%02d %s", path, query ? "?" : "", query ? query : "", r.code / 100, r.code % 100,
             r.payload ? (char *)r.payload : "");
    co_resp_free(&r);
    return rc;
}

/* receipt_of verifies a receipt and that it is tx_id's: 0 or 2. */
static int receipt_of(const uint8_t *buf, size_t len, const uint8_t tx_id[LG_HASH_LEN], const lg_genesis *g,
                      struct posted *p)
{
    lg_receipt r;
    lg_err e = lg_receipt_verify(buf, len, g, &r);
    if (e != LG_OK)
        return errf("a receipt does not verify against the genesis: %s", lg_strerror(e)), 2;
    if (!lg_ct_equal(r.tx.id, tx_id, LG_HASH_LEN))
        return errf("the receipt is another tx's"), 2; /* protocol.md 10: compare with what was sent */
    p->height = r.header.height;
    p->index = r.index;
    return 0;
}

int conn_post_tx(struct co *c, const char *path, const uint8_t *env, size_t len, const uint8_t tx_id[LG_HASH_LEN],
                 const lg_genesis *g, int timeout_ms, struct posted *p)
{
    memset(p, 0, sizeof *p);
    struct co_resp r;
    if (co_request(c, "POST", path, NULL, env, len, 18, &r, timeout_ms) != 0)
        return -1;
    int rc = -1;
    snprintf(p->code, sizeof p->code, "CoAP %d.%02d", r.code / 100, r.code % 100);
    if (r.code == 204 && r.content_format != 0 && !r.location[0]) {
        rc = receipt_of(r.payload, r.len, tx_id, g, p);
    } else if (r.code == 204) {
        /* The receipt is larger than a block: the payload is the tx id and
         * Location-Path names the receipt, to GET block-wise. */
        char hex[2 * LG_HASH_LEN + 1], where[300];
        hex_encode(tx_id, LG_HASH_LEN, hex);
        snprintf(where, sizeof where, "%s", r.location[0] ? r.location : "lg/v1/receipts/");
        if (!r.location[0])
            strncat(where, hex, sizeof where - strlen(where) - 1);
        unsigned char *buf;
        size_t n;
        if (conn_get(c, where, NULL, timeout_ms, &buf, &n) == 0) {
            rc = receipt_of(buf, n, tx_id, g, p);
            free(buf);
        } else {
            errf("the receipt of a committed tx is not at %s", where);
        }
    } else {
        /* The response code counts when the diagnostic payload is empty
         * (5.03, 4.29: resend); the payload's reason decides otherwise. */
        uint8_t code = LG_COAP_CODE(r.code / 100, r.code % 100);
        lg_err e = r.code >= 400 && r.code < 800 ? lg_refusal_parse_coap_code(code, r.payload, r.len, &p->refusal)
                                                 : LG_ERR_ARG;
        if (e == LG_OK) {
            snprintf(p->detail, sizeof p->detail, "%.*s", (int)p->refusal.detail.n,
                     (const char *)p->refusal.detail.p);
            rc = 1;
        } else {
            errf("%s with a diagnostic payload that is no refusal (%s): %s", p->code, lg_strerror(e),
                 r.payload ? (char *)r.payload : "");
        }
    }
    co_resp_free(&r);
    return rc;
}

int post_report(struct co *c, const char *path, const uint8_t *env, size_t len, const uint8_t tx_id[LG_HASH_LEN],
                const lg_genesis *g, int timeout_ms, const char *label)
{
    struct posted p;
    int got = conn_post_tx(c, path, env, len, tx_id, g, timeout_ms, &p);
    if (got < 0)
        return EXIT_ERR;
    if (got == 2)
        return EXIT_REFUSED;
    if (got == 1) {
        explain(p.code, &p.refusal, p.detail);
        return EXIT_REFUSED;
    }
    char hex[2 * LG_HASH_LEN + 1];
    hex_encode(tx_id, LG_HASH_LEN, hex);
    printf("ok %s height=%" PRIu64 " tx=%s\n", label, p.height, hex);
    return EXIT_OK;
}

int parse_groups(char *s, const char **out, size_t max, size_t *n)
{
    *n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (*n == max)
            return errf("more than %zu groups", max);
        out[(*n)++] = tok;
    }
    return 0;
}
