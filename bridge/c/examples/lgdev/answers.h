/* answers.h: fetching answers (ConfigAnswer, blobs, FirmwareAnswer) over
 * CoAP for `lgdev config` and `lgdev firmware`. */
#ifndef LGDEV_ANSWERS_H
#define LGDEV_ANSWERS_H

#include <stddef.h>

#include "coap.h"
#include "lg.h"
#include "util.h"

/* The transport options both commands take. */
#define CONN_OPTS                                                                                                  \
    {"server", "HOST:PORT", "the gateway's CoAP DTLS listener (or UDP listener with --udp)", NULL},               \
        {"key", "K", "the device's private signing key (PKCS#8 PEM): the DTLS client key", NULL},                \
        {"cert", "C", "the device's X.509 certificate of K (PEM, self-signed is fine): the DTLS client certificate", NULL}, \
        {"pin", "CERT", "the gateway's DTLS certificate (PEM; DATA/coap-dtls.crt): the only one accepted", NULL},  \
        {"udp", NULL, "plain CoAP over UDP (anyone may ask; answers carry their own proofs)", NULL},             \
        {"timeout", "SECONDS", "bound of every wait (default 30)", NULL}

/* conn_open opens the session the options name. */
int conn_open(struct co **c, const struct opt *o, int *timeout_ms);

/* conn_get GETs path (query optional) and returns the 2.05 body in *buf
 * (heap). 4.04 returns 1 (not found); another code is explained, -1. */
int conn_get(struct co *c, const char *path, const char *query, int timeout_ms, unsigned char **buf, size_t *len);

/* The outcome of a posted tx. */
struct posted {
    uint64_t height, index; /* of its verified receipt */
    lg_refusal refusal;     /* when refused */
    char code[24];          /* "CoAP 4.03" */
    char detail[300];       /* the diagnostic payload, for people */
};

/* conn_post_tx POSTs a signed tx (Content-Format 18) to path and, on
 * 2.04, verifies its receipt against g and that it is tx_id's: from the
 * payload, or GET by tx id when it is larger than a block (protocol.md
 * 13.2). Returns 0 committed, 1 refused (p->refusal), 2 the receipt
 * does not verify or is another tx's, -1 another error (network). */
int conn_post_tx(struct co *c, const char *path, const uint8_t *env, size_t len, const uint8_t tx_id[LG_HASH_LEN],
                 const lg_genesis *g, int timeout_ms, struct posted *p);

/* post_report POSTs a signed report to path and prints
 * "ok LABEL height=H tx=ID" once its receipt verifies; a refusal is
 * explained. Returns an exit status. */
int post_report(struct co *c, const char *path, const uint8_t *env, size_t len, const uint8_t tx_id[LG_HASH_LEN],
                const lg_genesis *g, int timeout_ms, const char *label);

/* parse_groups splits "a,b" into at most max ids pointing into s. */
int parse_groups(char *s, const char **out, size_t max, size_t *n);

#endif
