/* dev.c: see dev.h. Key files are read here (PEM with mbedTLS); their
 * PKCS#8 DER is the core's lg_key_from_pkcs8: the core does no I/O. */
#include "dev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int lgerr(const char *what, lg_err e)
{
    return errf("%s: %s", what, lg_strerror(e));
}

static int load_signing_key(const char *path, uint8_t key[32], lg_alg *alg)
{
    uint8_t der[512];
    size_t n;
    lg_key_type t;
    if (pem_der(path, "PRIVATE KEY", der, sizeof der, &n) != 0)
        return -1;
    lg_err e = lg_key_from_pkcs8(der, n, &t, key);
    memset(der, 0, sizeof der);
    if (e != LG_OK || t == LG_KEY_X25519)
        return errf("%s: not a P-256 or Ed25519 PKCS#8 key (%s)", path,
                    e != LG_OK ? lg_strerror(e) : "an X25519 key signs nothing");
    *alg = t == LG_KEY_P256 ? LG_ALG_ES256 : LG_ALG_EDDSA;
    return 0;
}

int load_x25519(const char *path, uint8_t key[32])
{
    uint8_t der[128];
    size_t n;
    lg_key_type t;
    if (pem_der(path, "PRIVATE KEY", der, sizeof der, &n) != 0)
        return -1;
    lg_err e = lg_key_from_pkcs8(der, n, &t, key);
    memset(der, 0, sizeof der);
    if (e != LG_OK || t != LG_KEY_X25519) {
        memset(key, 0, 32);
        return errf("%s: not an X25519 PKCS#8 key (KEY.enc of `ledgergate device keygen`)", path);
    }
    return 0;
}

int load_pubkey(const char *path, lg_pubkey *out)
{
    uint8_t der[256];
    size_t n;
    if (pem_der(path, "PUBLIC KEY", der, sizeof der, &n) != 0)
        return -1;
    lg_err e = lg_pubkey_from_spki(der, n, out);
    if (e != LG_OK)
        return errf("%s: %s", path, lg_strerror(e));
    return 0;
}

int dev_genesis(lg_genesis *g, const char *path)
{
    unsigned char *json;
    size_t n;
    if (read_file(path, 1024 * 1024, &json, &n) != 0)
        return -1;
    lg_err e = lg_genesis_parse(json, n, g);
    free(json);
    if (e != LG_OK)
        return errf("genesis %s: %s", path, lg_strerror(e));
    return 0;
}

/* The counter hook (protocol.md 6.4): the core calls persist before it
 * signs, so a crash never reuses a number. */
static lg_err hook_load(void *ctx, uint64_t *last)
{
    struct dev *d = ctx;
    return seq_load(d->seq_path, last) == 0 ? LG_OK : LG_ERR_SEQ_LOAD;
}

static lg_err hook_persist(void *ctx, uint64_t seq)
{
    struct dev *d = ctx;
    return seq_store(d->seq_path, seq) == 0 ? LG_OK : LG_ERR_SEQ_PERSIST;
}

int dev_load(struct dev *d, const char *id, const char *key_path, const char *genesis_path, const char *seq_path)
{
    memset(d, 0, sizeof *d);
    if (strlen(id) > LG_ID_MAX)
        return errf("--id %s: longer than %d bytes", id, LG_ID_MAX);
    snprintf(d->id, sizeof d->id, "%s", id);
    if (dev_genesis(&d->gen, genesis_path) != 0)
        return -1;
    lg_alg alg;
    if (load_signing_key(key_path, d->key, &alg) != 0)
        return -1;
    if (seq_path)
        snprintf(d->seq_path, sizeof d->seq_path, "%s", seq_path);
    else if (snprintf(d->seq_path, sizeof d->seq_path, "%s.seq", key_path) >= (int)sizeof d->seq_path)
        return errf("%s: path too long", key_path);
    d->hook = (lg_seq_hook){.load = hook_load, .persist = hook_persist, .ctx = d};
    /* f_rng NULL: deterministic ECDSA (RFC 6979), no RNG needed to sign. */
    d->dev = (lg_device){.id = d->id, .chain_id = d->gen.chain_id, .alg = alg, .key = d->key, .seq = &d->hook};
    return 0;
}

int dev_token(struct dev *d, int64_t ttl_s, char *out, size_t cap)
{
    int64_t now = now_ms() / 1000;
    size_t n;
    lg_err e = lg_token_make(&d->dev, now, now + ttl_s, out, cap, &n);
    return e == LG_OK ? 0 : lgerr("make token", e);
}

static const char *action_text(lg_action a)
{
    switch (a) {
    case LG_ACT_RESEND:
        return "resend: the outcome is unknown; send the same bytes again after a pause";
    case LG_ACT_RESYNC:
        return "resync: the device's counter is behind the ledger's; sign again above last_seq (--resync does it)";
    case LG_ACT_REKEY:
        return "rekey: the key used is not the one the ledger holds; use the device's current key, or get it enrolled";
    case LG_ACT_GIVE_UP:
        return "give up: the device is revoked; stop sending";
    case LG_ACT_FIX:
    default:
        return "fix: the message is wrong and sending it again will not help; fix what the detail says";
    }
}

void explain(const char *transport_code, const lg_refusal *r, const char *detail)
{
    fprintf(stderr, "lgdev: refused: %s (%s)", r->reason[0] ? r->reason : "no reason given", transport_code);
    if (r->has_last_seq)
        fprintf(stderr, " last_seq=%llu", (unsigned long long)r->last_seq);
    fputc('\n', stderr);
    if (detail && *detail)
        fprintf(stderr, "lgdev: gateway says: %s\n", detail);
    fprintf(stderr, "lgdev: what to do: %s\n", action_text(r->action));
}
