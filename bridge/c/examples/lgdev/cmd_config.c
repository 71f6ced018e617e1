/* cmd_config.c: `lgdev config`: fetch the device's configuration over
 * CoAP, check it in C (protocol.md 11.2: freshness, group, anti-rollback,
 * hash), open the sealed blob with the device's X25519 key (12), keep the
 * accepted state durably, then write the plaintext. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "answers.h"
#include "coap.h"
#include "dev.h"
#include "lg.h"
#include "util.h"

/* The state file holds the last accepted configuration (11.6), one line:
 * "TARGET VERSION HEIGHT SHA256HEX". A missing file: none accepted yet. */
static int state_load(const char *path, lg_config_state *st)
{
    memset(st, 0, sizeof *st);
    if (access(path, F_OK) != 0)
        return 0;
    unsigned char *text;
    size_t n;
    if (read_file(path, 512, &text, &n) != 0)
        return -1;
    char target[LG_TARGET_MAX + 1], hex[2 * LG_HASH_LEN + 1];
    unsigned long long version, height;
    int ok = sscanf((char *)text, "%70s %llu %llu %64s", target, &version, &height, hex) == 4 &&
             hex_decode(hex, st->sha256, LG_HASH_LEN) == 0;
    free(text);
    if (!ok)
        return errf("%s: not a configuration state (TARGET VERSION HEIGHT SHA256HEX)", path);
    snprintf(st->target, sizeof st->target, "%s", target);
    st->version = version;
    st->height = height;
    st->valid = true;
    return 0;
}

static int state_store(const char *path, const lg_config_state *st)
{
    char hex[2 * LG_HASH_LEN + 1], line[256];
    hex_encode(st->sha256, LG_HASH_LEN, hex);
    int n = snprintf(line, sizeof line, "%s %" PRIu64 " %" PRIu64 " %s\n", st->target, st->version, st->height, hex);
    return write_file_durable(path, line, (size_t)n, 0600);
}

/* verdict explains a failed check; every one is a refusal of the answer. */
static int verdict(lg_err e, const lg_config_state *last, const lg_config_set *cs)
{
    switch (e) {
    case LG_ERR_ROLLBACK:
        errf("refused: rollback: the answer's configuration is older than the last one accepted (%s version %" PRIu64
             " at height %" PRIu64 "); keeping the configuration in effect",
             last->target, last->version, last->height);
        break;
    case LG_ERR_NO_CONFIG:
        errf("no configuration is published for this device");
        break;
    case LG_ERR_STALE_HEAD:
        errf("refused: the answer is stale (its head is older than --max-age): the gateway may withhold a newer "
             "configuration; ask again or ask another gateway");
        break;
    case LG_ERR_NOT_CURRENT:
        errf("refused: configuration %s version %" PRIu64 " is no longer current (a newer one was published while "
             "downloading): run again",
             cs->target, cs->version);
        break;
    default:
        lgerr("refused: the answer does not prove the configuration", e);
    }
    return EXIT_REFUSED;
}

/* report signs and POSTs the config.report of what was applied (6.6). */
static int report(struct co *c, const struct opt *o, const char *id, const char *gpath, const lg_config_state *acc,
                  int timeout_ms)
{
    static struct dev d;
    if (!opt_get(o, "key"))
        return errf("--report needs --key"), EXIT_USAGE;
    if (dev_load(&d, id, opt_get(o, "key"), gpath, opt_get(o, "seq-file")) != 0)
        return EXIT_ERR;
    uint8_t *env = malloc(d.gen.max_tx_bytes);
    if (!env)
        return errf("out of memory"), EXIT_ERR;
    lg_signed s;
    lg_err e = lg_sign_config_report(&d.dev, acc->version, acc->sha256, env, d.gen.max_tx_bytes, &s);
    int rc = EXIT_ERR;
    if (e != LG_OK) {
        lgerr("sign config.report", e);
    } else {
        char path[128], label[64];
        snprintf(path, sizeof path, "lg/v1/%s/config/report", id);
        snprintf(label, sizeof label, "config-report version=%" PRIu64, acc->version);
        rc = post_report(c, path, env, s.len, s.tx_id, &d.gen, timeout_ms, label);
    }
    free(env);
    return rc;
}

int cmd_config(int argc, char **argv)
{
    struct opt o[] = {
        {"id", "ID", "the device id", NULL},
        {"genesis", "G", "the chain's genesis.json: every answer is checked against it", NULL},
        CONN_OPTS,
        {"enc-key", "E", "the device's X25519 key (PKCS#8 PEM; default K.enc, from `ledgergate device keygen`)", NULL},
        {"state", "P", "the last accepted configuration, for anti-rollback (default K.config; written on success)", NULL},
        {"out", "F", "where to write the configuration's plaintext", NULL},
        {"groups", "G1,G2", "the device's groups (default: from its enrollment, proven in the answer)", NULL},
        {"max-age", "SECONDS", "freshness bound of the answer's head (default 600, protocol.md 11.1)", NULL},
        {"report", NULL, "then sign a config.report (with K and its counter K.seq) and POST it: the gateway records what runs", NULL},
        {"seq-file", "P", "with --report: the sequence counter (default: K.seq)", NULL},
        {NULL, NULL, NULL, NULL},
    };
    int rc = parse_opts("config", "--id ID --genesis G --server HOST:PORT --key K --cert C [--pin CERT] --out F [--state P] [--enc-key E]",
                        "Fetch the device's configuration over CoAP (GET /lg/v1/ID/config, then its sealed blob), check the\n"
                        "ConfigAnswer in C against the genesis (freshness, target and groups, anti-rollback against the state\n"
                        "file, hash), open the blob with the device's X25519 key, ask config/verify for a fresh verdict on\n"
                        "the plaintext, store the new state durably and only then write the plaintext to F.\n"
                        "Prints: ok config target=T version=N height=H size=S sha256=X. A rolled-back, stale or unproven\n"
                        "answer is refused with status 3 and the state and F are left as they were.",
                        o, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    const char *id = opt_need(o, "id"), *gpath = opt_need(o, "genesis"), *out = opt_need(o, "out");
    const char *key = opt_get(o, "key");
    if (!id || !gpath || !out)
        return EXIT_USAGE;
    /* K.enc and K.config beside the signing key K, unless given. */
    const char *enc_path = opt_get(o, "enc-key"), *state_path = opt_get(o, "state");
    char enc_buf[4096], state_buf[4096];
    if ((!enc_path || !state_path) && !key)
        return errf("--enc-key and --state are required without --key"), EXIT_USAGE;
    if (!enc_path) {
        snprintf(enc_buf, sizeof enc_buf, "%s.enc", key);
        enc_path = enc_buf;
    }
    if (!state_path) {
        snprintf(state_buf, sizeof state_buf, "%s.config", key);
        state_path = state_buf;
    }
    uint64_t max_age = 600;
    if (opt_get(o, "max-age") && parse_u64(opt_get(o, "max-age"), &max_age) != 0)
        return errf("--max-age: want seconds"), EXIT_USAGE;
    const char *groups[LG_MAX_GROUPS];
    size_t n_groups = 0;
    char *gcopy = opt_get(o, "groups") ? strdup(opt_get(o, "groups")) : NULL;
    if (gcopy && parse_groups(gcopy, groups, LG_MAX_GROUPS, &n_groups) != 0)
        return free(gcopy), EXIT_USAGE;

    static lg_genesis gen;
    uint8_t xkey[32];
    lg_config_state last;
    if (dev_genesis(&gen, gpath) != 0 || load_x25519(enc_path, xkey) != 0 || state_load(state_path, &last) != 0) {
        free(gcopy);
        return EXIT_ERR;
    }
    struct co *c;
    int timeout_ms;
    if (conn_open(&c, o, &timeout_ms) != 0) {
        free(gcopy);
        return EXIT_ERR;
    }
    rc = EXIT_ERR;
    unsigned char *answer = NULL, *blob = NULL, *plain = NULL;
    size_t alen, blen, plen;
    char path[256], hex[2 * LG_HASH_LEN + 1], query[80];

    /* 1. The manifest: which configuration is current (11.2 steps 1-6,
     * anti-rollback included, with the hash the device holds). */
    snprintf(path, sizeof path, "lg/v1/%s/config", id);
    int got = conn_get(c, path, NULL, timeout_ms, &answer, &alen);
    if (got != 0) {
        if (got > 0) {
            errf("no configuration is published for %s (4.04)", id);
            rc = EXIT_REFUSED;
        }
        goto out;
    }
    /* hash NULL: no configuration held yet (lg.h), so none is current */
    lg_config_check chk = {.device = id, .groups = gcopy ? groups : NULL, .n_groups = n_groups,
                           .last = last.valid ? &last : NULL, .hash = last.valid ? last.sha256 : NULL,
                           .now_ms = now_ms(), .max_age_ms = (int64_t)max_age * 1000};
    lg_config_set cs;
    lg_config_state acc;
    lg_err e = lg_config_answer_verify(answer, alen, &gen, &chk, &cs, &acc);
    if (e == LG_OK) {
        printf("ok config target=%s version=%" PRIu64 " height=%" PRIu64 " current (already applied)\n", acc.target,
               acc.version, acc.height);
        rc = EXIT_OK;
        goto out;
    }
    if (e != LG_ERR_NOT_CURRENT) {
        rc = verdict(e, &last, &cs);
        goto out;
    }

    /* 2. The sealed blob by its address; open it (12: address, HPKE,
     * size and hash of the plaintext against the config.set). */
    hex_encode(cs.blob, LG_HASH_LEN, hex);
    snprintf(path, sizeof path, "lg/v1/%s/config/blob/%s", id, hex);
    if ((got = conn_get(c, path, NULL, timeout_ms, &blob, &blen)) != 0) {
        if (got > 0)
            errf("the blob %s of version %" PRIu64 " is not on the gateway (4.04)", hex, cs.version);
        goto out;
    }
    if (!(plain = malloc(blen + 1)))
        goto out;
    e = lg_sealed_open(blob, blen, xkey, &cs, plain, blen + 1, &plen);
    if (e != LG_OK) {
        lgerr("refused: the sealed configuration does not open or is not the config.set's", e);
        rc = EXIT_REFUSED;
        goto out;
    }

    /* 3. A fresh verdict on what was opened (11.2 all steps), then
     * accept: the state is stored before the configuration is applied. */
    uint8_t h[LG_HASH_LEN];
    sha256(plain, plen, h);
    hex_encode(h, LG_HASH_LEN, hex);
    snprintf(path, sizeof path, "lg/v1/%s/config/verify", id);
    snprintf(query, sizeof query, "h=%s", hex);
    free(answer);
    answer = NULL;
    if ((got = conn_get(c, path, query, timeout_ms, &answer, &alen)) != 0)
        goto out;
    chk.hash = h;
    chk.now_ms = now_ms();
    e = lg_config_answer_verify(answer, alen, &gen, &chk, &cs, &acc);
    if (e != LG_OK) {
        rc = verdict(e, &last, &cs);
        goto out;
    }
    if (state_store(state_path, &acc) != 0 || write_file_durable(out, plain, plen, 0600) != 0)
        goto out;
    printf("ok config target=%s version=%" PRIu64 " height=%" PRIu64 " size=%zu sha256=%s\n", acc.target, acc.version,
           acc.height, plen, hex);
    fflush(stdout);
    rc = opt_get(o, "report") ? report(c, o, id, gpath, &acc, timeout_ms) : EXIT_OK;
out:
    free(answer);
    free(blob);
    free(plain);
    free(gcopy);
    co_close(c);
    return rc;
}
