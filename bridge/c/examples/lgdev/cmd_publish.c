/* cmd_publish.c: `lgdev publish` (MQTT 5) and `lgdev coap` (CoAP over
 * DTLS): sign records with the core library, send them, and verify each
 * receipt against the genesis before printing it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "answers.h"
#include "coap.h"
#include "dev.h"
#include "lg.h"
#include "mqtt.h"
#include "util.h"

/* One record on its way. */
struct rec {
    uint8_t *env;
    size_t len;
    uint8_t tx_id[LG_HASH_LEN];
    uint64_t seq;
    int mid;          /* MQTT message id of the last send */
    int resynced;     /* resynced once already: a second replay is an error */
    int resends;
    int have_receipt;
    uint64_t height, index;
};

/* What both transports share. */
struct pub {
    struct dev d;
    const char *stream, *ctype;
    unsigned char *payload;
    size_t payload_len;
    uint64_t count;
    int resync, tamper;
    int timeout_ms;
    const char *key_path; /* also the DTLS client key */
};

enum { MAX_RESENDS = 10 };

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* sign signs r's record with the next seq (the core persists it first). */
static int sign(struct pub *p, struct rec *r)
{
    if (!r->env && !(r->env = malloc(p->d.gen.max_tx_bytes)))
        return errf("out of memory");
    lg_record rec = {.stream = p->stream, .time_ms = now_ms(), .content_type = p->ctype,
                     .payload = p->payload, .payload_len = p->payload_len};
    lg_signed s;
    lg_err e = lg_sign_record(&p->d.dev, &rec, r->env, p->d.gen.max_tx_bytes, &s);
    if (e != LG_OK)
        return lgerr("sign record", e);
    r->len = s.len;
    r->seq = s.seq;
    memcpy(r->tx_id, s.tx_id, LG_HASH_LEN);
    if (p->tamper) {
        /* The signature is the envelope's last 64 bytes: flip one bit, as
         * a forger or a corrupting link would, so the gateway refuses it. */
        r->env[r->len - 1] ^= 0x01;
        sha256(r->env, r->len, r->tx_id);
    }
    return 0;
}

/* check_receipt verifies a receipt against the genesis (protocol.md 10)
 * and that it is for r's envelope. 1: it is r's; 0: another tx's. */
static int check_receipt(struct pub *p, const uint8_t *buf, size_t len, struct rec *recs, size_t n)
{
    lg_receipt rc;
    lg_err e = lg_receipt_verify(buf, len, &p->d.gen, &rc);
    if (e != LG_OK)
        return lgerr("a receipt does not verify against the genesis", e);
    for (size_t i = 0; i < n; i++) {
        if (recs[i].env && lg_ct_equal(recs[i].tx_id, rc.tx.id, LG_HASH_LEN)) {
            recs[i].have_receipt = 1;
            recs[i].height = rc.header.height;
            recs[i].index = rc.index;
            return 1;
        }
    }
    return 0;
}

static void print_ok(const struct rec *r)
{
    char hex[2 * LG_HASH_LEN + 1];
    hex_encode(r->tx_id, LG_HASH_LEN, hex);
    printf("ok seq=%" PRIu64 " height=%" PRIu64 " index=%" PRIu64 " tx=%s\n", r->seq, r->height, r->index, hex);
    fflush(stdout);
}

/* on_refusal decides what to do about a refused record: 1 send r again
 * (re-signed after a resync, or the same bytes), or -1 stop (explained). */
static int on_refusal(struct pub *p, struct rec *r, const lg_refusal *ref, const char *code, const char *detail)
{
    /* storage_full waits for an operator (14.4), not seconds: stop. */
    if (ref->action == LG_ACT_RESEND && r->resends < MAX_RESENDS && strcmp(ref->reason, "storage_full") != 0) {
        /* protocol.md 14.2: the outcome is unknown; the same bytes, after
         * the hint (2 s). A committed one is answered with its receipt. */
        fprintf(stderr, "lgdev: %s (%s): sending the same record again in 2 s\n", ref->reason, code);
        r->resends++;
        pause_ms(2000);
        return 1;
    }
    if (ref->action == LG_ACT_RESYNC && p->resync && ref->has_last_seq && !r->resynced) {
        lg_err e = lg_seq_resync(&p->d.hook, ref->last_seq);
        if (e != LG_OK)
            return lgerr("resync the counter", e);
        uint64_t old = r->seq;
        if (sign(p, r) != 0)
            return -1;
        r->resynced = 1;
        fprintf(stderr, "lgdev: replay of seq %" PRIu64 ": resynced to last_seq=%" PRIu64 ", signed again with seq %" PRIu64 "\n",
                old, ref->last_seq, r->seq);
        return 1;
    }
    explain(code, ref, detail);
    if (ref->action == LG_ACT_RESYNC && !p->resync)
        fprintf(stderr, "lgdev: run again with --resync to continue above last_seq\n");
    return -1;
}

/* ---- MQTT ---------------------------------------------------------- */

/* reject_of returns the detail (heap) of msg if it is the reject message
 * of tx_id, else NULL. */
static char *reject_of(const struct mq_msg *msg, const uint8_t tx_id[LG_HASH_LEN])
{
    lg_refusal ref;
    char *s = NULL;
    if (lg_refusal_parse_json(msg->payload, msg->len, &ref) == LG_OK && ref.has_tx_id &&
        memcmp(ref.tx_id, tx_id, LG_HASH_LEN) == 0 && (s = malloc(ref.detail.n + 1)) != NULL) {
        memcpy(s, ref.detail.p, ref.detail.n); /* JSON escapes as sent: for people */
        s[ref.detail.n] = '\0';
    }
    return s;
}

/* reject_detail waits briefly for the reject message of tx on the
 * rejects topic (14.3) and returns its detail (heap) for people to read.
 * The message names its tx (lg_refusal.tx_id): with several records in
 * flight, the rejects of the others are kept in *held for their turn. */
static char *reject_detail(struct mq *m, const char *topic, const uint8_t tx_id[LG_HASH_LEN], struct mq_msg **held)
{
    char *s;
    for (struct mq_msg **q = held; *q; q = &(*q)->next) {
        if ((s = reject_of(*q, tx_id))) {
            struct mq_msg *found = *q;
            *q = found->next;
            mq_msg_free(found);
            return s;
        }
    }
    int64_t deadline = now_ms() + 2000;
    struct mq_msg *msg;
    while ((msg = mq_take(m, topic, deadline))) {
        if ((s = reject_of(msg, tx_id))) {
            mq_msg_free(msg);
            return s;
        }
        msg->next = *held;
        *held = msg;
    }
    return NULL;
}

static int publish_mqtt(struct pub *p, const char *broker, size_t window, int64_t token_ttl)
{
    char host[256], token[LG_TOKEN_MAX + 1];
    int port;
    /* The session ends when the token expires (protocol.md 7): this
     * program does not reconnect, so the token must outlast the run. */
    if (parse_hostport(broker, host, sizeof host, &port) != 0 || dev_token(&p->d, token_ttl, token, sizeof token) != 0)
        return EXIT_ERR;
    struct mq *m;
    int got = mq_connect(&m, host, port, p->d.id, token, p->timeout_ms);
    if (got != 0)
        return got > 0 ? EXIT_REFUSED : EXIT_ERR;
    char data_topic[256], receipts[128], rejects[128];
    snprintf(data_topic, sizeof data_topic, "lg/v1/%s/data/%s", p->d.id, p->stream);
    snprintf(receipts, sizeof receipts, "lg/v1/%s/receipts", p->d.id);
    snprintf(rejects, sizeof rejects, "lg/v1/%s/rejects", p->d.id);
    int rc = EXIT_ERR;
    struct mq_msg *held = NULL; /* reject messages of records not yet looked at */
    struct rec *recs = calloc(p->count, sizeof *recs);
    if (!recs) {
        errf("out of memory");
        goto out;
    }
    if (mq_subscribe(m, receipts, p->timeout_ms) != 0 || mq_subscribe(m, rejects, p->timeout_ms) != 0)
        goto out;
    size_t next = 0, done = 0;
    while (done < p->count) {
        /* Keep up to window records in flight, sent in seq order. */
        for (; next < p->count && next - done < window; next++) {
            if (sign(p, &recs[next]) != 0 || mq_publish(m, data_topic, recs[next].env, recs[next].len, &recs[next].mid) != 0)
                goto out;
        }
        struct rec *r = &recs[done];
        struct mq_ack ack;
        if (mq_wait_ack(m, r->mid, &ack, now_ms() + p->timeout_ms) != 0)
            goto out;
        if (ack.code >= 0x80) { /* below 0x80 is success in MQTT 5 */
            lg_refusal ref;
            /* The reason code counts when there is no Reason String
             * (0x80, 0x97: resend); a reason string decides otherwise. */
            lg_err e = lg_refusal_parse_puback((uint8_t)ack.code, ack.reason[0] ? ack.reason : NULL,
                                               strlen(ack.reason), ack.last_seq[0] ? ack.last_seq : NULL,
                                               strlen(ack.last_seq), &ref);
            if (e != LG_OK) {
                lgerr("read the PUBACK's refusal", e);
                goto out;
            }
            char code[32];
            snprintf(code, sizeof code, "PUBACK 0x%02x", ack.code);
            char *detail = reject_detail(m, rejects, r->tx_id, &held);
            int what = on_refusal(p, r, &ref, code, detail);
            free(detail);
            if (what < 0) {
                rc = EXIT_REFUSED;
                goto out;
            }
            if (mq_publish(m, data_topic, r->env, r->len, &r->mid) != 0)
                goto out;
            continue;
        }
        /* The PUBACK means committed; the receipt follows on its topic
         * (best effort, 13.1), usually before the PUBACK. */
        int64_t deadline = now_ms() + p->timeout_ms;
        while (!r->have_receipt) {
            struct mq_msg *msg = mq_take(m, receipts, deadline);
            if (!msg) {
                errf("no receipt for seq %" PRIu64 " within %d ms after its PUBACK", r->seq, p->timeout_ms);
                goto out;
            }
            int ok = check_receipt(p, msg->payload, msg->len, recs, next);
            mq_msg_free(msg);
            if (ok < 0) {
                rc = EXIT_REFUSED;
                goto out;
            }
        }
        print_ok(r);
        free(r->env);
        r->env = NULL;
        done++;
    }
    rc = EXIT_OK;
out:
    if (recs)
        for (size_t i = 0; i < p->count; i++)
            free(recs[i].env);
    free(recs);
    while (held) {
        struct mq_msg *next = held->next;
        mq_msg_free(held);
        held = next;
    }
    mq_close(m);
    return rc;
}

/* ---- CoAP ---------------------------------------------------------- */

static int publish_coap(struct pub *p, const char *server, const char *cert, const char *pin)
{
    char host[256];
    int port;
    if (parse_hostport(server, host, sizeof host, &port) != 0)
        return EXIT_ERR;
    struct co *c;
    if (co_open(&c, host, port, cert, p->key_path, pin) != 0)
        return EXIT_ERR;
    char path[128];
    snprintf(path, sizeof path, "lg/v1/data/%s", p->stream);
    struct rec r = {0};
    int rc = EXIT_ERR;
    /* One record in flight (NSTART 1, 13.2): the next after the answer. */
    for (uint64_t i = 0; i < p->count; i++) {
        if (sign(p, &r) != 0)
            goto out;
        r.resynced = r.resends = r.have_receipt = 0;
        for (;;) {
            struct posted res;
            int got = conn_post_tx(c, path, r.env, r.len, r.tx_id, &p->d.gen, p->timeout_ms, &res);
            if (got < 0)
                goto out;
            if (got == 2) {
                rc = EXIT_REFUSED; /* the receipt does not verify */
                goto out;
            }
            if (got == 0) {
                r.height = res.height;
                r.index = res.index;
                break;
            }
            if (on_refusal(p, &r, &res.refusal, res.code, res.detail) < 0) {
                rc = EXIT_REFUSED;
                goto out;
            }
        }
        print_ok(&r);
    }
    rc = EXIT_OK;
out:
    free(r.env);
    co_close(c);
    return rc;
}

/* ---- the subcommands ---------------------------------------------------- */

/* COMMON_OPTS are the options both transports take. */
#define COMMON_OPTS                                                                                            \
    {"key", "K", "the device's private signing key (PKCS#8 PEM, `ledgergate device keygen --out K`)", NULL},   \
        {"id", "ID", "the device id (as enrolled)", NULL},                                                     \
        {"genesis", "G", "the chain's genesis.json: receipts are verified against it", NULL},                  \
        {"stream", "S", "the stream of the records (default: default)", NULL},                                 \
        {"in", "F", "the payload of each record (a file; default: empty)", NULL},                             \
        {"content-type", "T", "the payload's content type (default: application/octet-stream)", NULL},        \
        {"count", "N", "how many records to send (default 1), each with its own seq", NULL},                  \
        {"seq-file", "P", "the sequence counter: the last seq used, decimal (default: K.seq)", NULL},          \
        {"resync", NULL, "on a replay refusal, continue above the gateway's last_seq (protocol.md 14.3)", NULL}, \
        {"tamper", NULL, "flip a bit of each signature after signing (to see a forged record refused)", NULL},  \
        {"timeout", "SECONDS", "bound of every wait (default 30)", NULL}

static int setup(struct pub *p, struct opt *o)
{
    const char *key = opt_need(o, "key"), *id = opt_need(o, "id"), *gen = opt_need(o, "genesis");
    if (!key || !id || !gen)
        return EXIT_USAGE;
    memset(p, 0, sizeof *p);
    p->key_path = key;
    p->stream = opt_get(o, "stream") ? opt_get(o, "stream") : "default";
    p->ctype = opt_get(o, "content-type") ? opt_get(o, "content-type") : "application/octet-stream";
    p->count = 1;
    if (opt_get(o, "count") && (parse_u64(opt_get(o, "count"), &p->count) != 0 || p->count == 0))
        return errf("--count: want a number above 0"), EXIT_USAGE;
    uint64_t t = 30;
    if (opt_get(o, "timeout") && (parse_u64(opt_get(o, "timeout"), &t) != 0 || t == 0 || t > 3600))
        return errf("--timeout: want 1 to 3600 seconds"), EXIT_USAGE;
    p->timeout_ms = (int)t * 1000;
    p->resync = opt_get(o, "resync") != NULL;
    p->tamper = opt_get(o, "tamper") != NULL;
    if (dev_load(&p->d, id, key, gen, opt_get(o, "seq-file")) != 0)
        return EXIT_ERR;
    if (opt_get(o, "in") && read_file(opt_get(o, "in"), p->d.gen.max_tx_bytes, &p->payload, &p->payload_len) != 0)
        return EXIT_ERR;
    return EXIT_OK;
}

int cmd_publish(int argc, char **argv)
{
    struct opt o[] = {
        COMMON_OPTS,
        {"broker", "HOST:PORT", "the gateway's MQTT listener", NULL},
        {"window", "N", "records in flight at once (default 1, at most 256)", NULL},
        {"token-ttl", "SECONDS", "lifetime of the MQTT token (default 3600, at most 86400): the session ends with it", NULL},
        {NULL, NULL, NULL, NULL},
    };
    int rc = parse_opts("publish", "--key K --id ID --genesis G --broker HOST:PORT [--stream S] [--in F] [--count N] [--seq-file P] [--resync]",
                        "Sign data.record txs with the device key and publish them over MQTT 5 (QoS 1, the device token as\n"
                        "password), then wait for each receipt on lg/v1/ID/receipts and verify it against the genesis.\n"
                        "Prints one line per record: ok seq=N height=H index=I tx=ID. A refusal is explained (reason,\n"
                        "PUBACK code, what to do) and ends the command with status 3.",
                        o, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    struct pub p;
    const char *broker = opt_need(o, "broker");
    if (!broker)
        return EXIT_USAGE;
    uint64_t window = 1;
    if (opt_get(o, "window") && (parse_u64(opt_get(o, "window"), &window) != 0 || window == 0 || window > 256))
        return errf("--window: want 1 to 256"), EXIT_USAGE;
    uint64_t ttl = 3600;
    if (opt_get(o, "token-ttl") && (parse_u64(opt_get(o, "token-ttl"), &ttl) != 0 || ttl == 0 || ttl > 86400))
        return errf("--token-ttl: want 1 to 86400 seconds (protocol.md 7)"), EXIT_USAGE;
    if ((rc = setup(&p, o)) != EXIT_OK)
        return rc;
    rc = publish_mqtt(&p, broker, (size_t)window, (int64_t)ttl);
    free(p.payload);
    return rc;
}

int cmd_coap(int argc, char **argv)
{
    struct opt o[] = {
        COMMON_OPTS,
        {"server", "HOST:PORT", "the gateway's CoAP DTLS listener", NULL},
        {"cert", "C", "the device's X.509 certificate (PEM, self-signed is fine) of the key K: the DTLS client certificate", NULL},
        {"pin", "CERT", "the gateway's DTLS certificate (PEM; DATA/coap-dtls.crt): the only one accepted", NULL},
        {"udp", NULL, "plain CoAP over UDP instead of DTLS (no --cert; records are authenticated by their signatures)", NULL},
        {NULL, NULL, NULL, NULL},
    };
    int rc = parse_opts("coap", "--key K --id ID --genesis G --server HOST:PORT --cert C [--pin CERT] [--stream S] [--in F] [--count N] [--resync]",
                        "Sign data.record txs with the device key and POST them to /lg/v1/data/S over CoAP with DTLS 1.2,\n"
                        "the device's certificate as client certificate (protocol.md 13.2, 13.3), one at a time. Each 2.04\n"
                        "carries the receipt (or its tx id, to GET it block-wise); it is verified against the genesis.\n"
                        "Prints one line per record: ok seq=N height=H index=I tx=ID. A refusal is explained (reason,\n"
                        "response code, what to do) and ends the command with status 3.",
                        o, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    const char *server = opt_need(o, "server");
    const char *cert = opt_get(o, "cert");
    int udp = opt_get(o, "udp") != NULL;
    if (!server)
        return EXIT_USAGE;
    if (!udp && !cert)
        return errf("--cert is required for DTLS (or --udp)"), EXIT_USAGE;
    if (udp && cert)
        return errf("--udp takes no --cert"), EXIT_USAGE;
    struct pub p;
    if ((rc = setup(&p, o)) != EXIT_OK)
        return rc;
    rc = publish_coap(&p, server, udp ? NULL : cert, opt_get(o, "pin"));
    free(p.payload);
    return rc;
}
