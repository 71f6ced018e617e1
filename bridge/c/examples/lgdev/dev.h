/* dev.h: the device's files (keys, genesis, counter) and what every
 * subcommand shares: the core library's lg_device, refusal explanations. */
#ifndef LGDEV_DEV_H
#define LGDEV_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "lg.h"

struct dev {
    char id[LG_ID_MAX + 1];
    lg_genesis gen;
    uint8_t key[32]; /* P-256 scalar or Ed25519 seed */
    char seq_path[4096];
    lg_seq_hook hook;
    lg_device dev;
};

/* dev_load reads the signing key (PKCS#8 PEM, as `ledgergate device
 * keygen` writes it), the genesis and sets up the counter in seq_path
 * (NULL: KEY.seq, as `ledgergate device sign` keeps it). */
int dev_load(struct dev *d, const char *id, const char *key_path, const char *genesis_path, const char *seq_path);
/* dev_genesis loads only the genesis (commands that sign nothing). */
int dev_genesis(lg_genesis *g, const char *path);
/* dev_token makes an MQTT password valid for ttl seconds (protocol.md 7). */
int dev_token(struct dev *d, int64_t ttl_s, char *out, size_t cap);

/* load_x25519 reads the device's encryption key KEY.enc (PKCS#8 PEM). */
int load_x25519(const char *path, uint8_t key[32]);
/* load_spki reads a PUBLIC KEY PEM (KEY.pub, a vendor's key) into a
 * lg_pubkey. */
int load_pubkey(const char *path, lg_pubkey *out);

/* explain prints a refusal and what the device does about it (protocol.md
 * 14.1), with detail (the gateway's text, may be NULL). */
void explain(const char *transport_code, const lg_refusal *r, const char *detail);

/* lgerr prints "lgdev: what: <lg_strerror>" and returns -1. */
int lgerr(const char *what, lg_err e);

#endif
