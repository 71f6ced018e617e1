/* answers.h: fetching answers (ConfigAnswer, blobs, FirmwareAnswer) over
 * CoAP for `lgdev config` and `lgdev firmware`. */
#ifndef LGDEV_ANSWERS_H
#define LGDEV_ANSWERS_H

#include <stddef.h>

#include "coap.h"
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

/* parse_groups splits "a,b" into at most max ids pointing into s. */
int parse_groups(char *s, const char **out, size_t max, size_t *n);

#endif
