/* cmd_firmware.c: `lgdev firmware`: get the FirmwareAnswer (over CoAP or
 * from a file), check it in C with the vendor key built into the device
 * (protocol.md 11.5), then check an image by streaming it in 4 KB chunks
 * through the incremental hash, as firmware writing flash would. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answers.h"
#include "coap.h"
#include "dev.h"
#include "lg.h"
#include "util.h"

enum { CHUNK = 4096 };

/* check_image streams path through lg_image_*; it stops at the first
 * refused chunk (a byte past the release's size). */
static int check_image(const char *path, const lg_fw_release *rel)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf("open %s: %s", path, strerror(errno)), EXIT_ERR;
    lg_image im;
    lg_err e = lg_image_init(&im, rel);
    uint8_t chunk[CHUNK];
    uint64_t chunks = 0, total = 0;
    size_t n;
    while (e == LG_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        e = lg_image_update(&im, chunk, n);
        chunks++;
        total += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return errf("read %s: %s", path, strerror(errno)), EXIT_ERR;
    if (e == LG_OK)
        e = lg_image_final(&im);
    if (e != LG_OK) {
        char want[2 * LG_HASH_LEN + 1];
        hex_encode(rel->sha256, LG_HASH_LEN, want);
        errf("refused: %s is not the image of %s version %" PRIu64 " (%s after %" PRIu64 " bytes; want %" PRIu64
             " bytes with SHA-256 %s): do not install it",
             path, rel->model, rel->version, lg_strerror(e), total, rel->size, want);
        return EXIT_REFUSED;
    }
    char hex[2 * LG_HASH_LEN + 1];
    hex_encode(rel->sha256, LG_HASH_LEN, hex);
    printf("ok image %s size=%" PRIu64 " chunks=%" PRIu64 " sha256=%s\n", path, total, chunks, hex);
    return EXIT_OK;
}

/* report signs and POSTs a firmware.report of rel, installed (6.13). */
static int report(struct co *c, const struct opt *o, const char *id, const char *gpath, const lg_fw_release *rel)
{
    static struct dev d;
    if (!c || !opt_get(o, "key"))
        return errf("--report needs --key and the gateway (not --answer)"), EXIT_USAGE;
    if (dev_load(&d, id, opt_get(o, "key"), gpath, opt_get(o, "seq-file")) != 0)
        return EXIT_ERR;
    int timeout_ms = 30000;
    uint64_t t;
    if (opt_get(o, "timeout") && parse_u64(opt_get(o, "timeout"), &t) == 0)
        timeout_ms = (int)t * 1000;
    uint8_t *env = malloc(d.gen.max_tx_bytes);
    if (!env)
        return errf("out of memory"), EXIT_ERR;
    lg_signed s;
    lg_err e = lg_sign_firmware_report(&d.dev, rel->model, rel->version, true, "lgdev", env, d.gen.max_tx_bytes, &s);
    int rc = EXIT_ERR;
    if (e != LG_OK) {
        lgerr("sign firmware.report", e);
    } else {
        char path[128], label[64];
        snprintf(path, sizeof path, "lg/v1/%s/firmware/report", id);
        snprintf(label, sizeof label, "firmware-report version=%" PRIu64, rel->version);
        rc = post_report(c, path, env, s.len, s.tx_id, &d.gen, timeout_ms, label);
    }
    free(env);
    return rc;
}

int cmd_firmware(int argc, char **argv)
{
    struct opt o[] = {
        {"id", "ID", "the device id", NULL},
        {"genesis", "G", "the chain's genesis.json: the answer is checked against it", NULL},
        {"vendor-pub", "V", "the vendor's maintenance public key (PEM, `ledgergate vendor keygen`): built into the device", NULL},
        {"installed", "N", "the firmware version the device runs (default 0)", NULL},
        {"model", "M", "the device's model (default: from its enrollment, proven in the answer)", NULL},
        {"groups", "G1,G2", "the device's groups (default: from its enrollment, proven in the answer)", NULL},
        {"image", "F", "the image file to check against the release, read in 4 KB chunks", NULL},
        {"answer", "A", "read the FirmwareAnswer (CBOR) from this file instead of asking the gateway", NULL},
        {"max-age", "SECONDS", "freshness bound of the answer's head (default 600, protocol.md 11.1)", NULL},
        {"report", NULL, "after a good image, sign a firmware.report (ok, with K and K.seq) and POST it, as after installing", NULL},
        {"seq-file", "P", "with --report: the sequence counter (default: K.seq)", NULL},
        CONN_OPTS,
        {NULL, NULL, NULL, NULL},
    };
    int rc = parse_opts("firmware", "--id ID --genesis G --vendor-pub V --image F [--installed N] (--answer A | --server HOST:PORT --key K --cert C [--pin CERT])",
                        "Get the device's FirmwareAnswer (GET /lg/v1/ID/firmware over CoAP, or --answer), check it in C\n"
                        "against the genesis and the vendor key (protocol.md 11.5: freshness, vendor signature, model,\n"
                        "rollback, expiry, revocation, group policy and approval), then stream the image F in 4 KB chunks\n"
                        "through the incremental hash: its size and SHA-256 must be the release's.\n"
                        "Prints: ok firmware model=M version=V size=S sha256=X, then ok image F size=S chunks=N sha256=X.\n"
                        "A refused answer or a wrong image ends with status 3.",
                        o, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    const char *id = opt_need(o, "id"), *gpath = opt_need(o, "genesis"), *vpath = opt_need(o, "vendor-pub");
    const char *image = opt_need(o, "image");
    if (!id || !gpath || !vpath || !image)
        return EXIT_USAGE;
    uint64_t installed = 0, max_age = 600;
    if (opt_get(o, "installed") && parse_u64(opt_get(o, "installed"), &installed) != 0)
        return errf("--installed: want a version number"), EXIT_USAGE;
    if (opt_get(o, "max-age") && parse_u64(opt_get(o, "max-age"), &max_age) != 0)
        return errf("--max-age: want seconds"), EXIT_USAGE;
    const char *groups[LG_MAX_GROUPS];
    size_t n_groups = 0;
    char *gcopy = opt_get(o, "groups") ? strdup(opt_get(o, "groups")) : NULL;
    if (gcopy && parse_groups(gcopy, groups, LG_MAX_GROUPS, &n_groups) != 0)
        return free(gcopy), EXIT_USAGE;

    static lg_genesis gen;
    lg_pubkey vendor;
    unsigned char *answer = NULL;
    size_t alen = 0;
    struct co *c = NULL;
    rc = EXIT_ERR;
    if (dev_genesis(&gen, gpath) != 0 || load_pubkey(vpath, &vendor) != 0)
        goto out;
    if (opt_get(o, "answer")) {
        if (read_file(opt_get(o, "answer"), 1024 * 1024, &answer, &alen) != 0)
            goto out;
    } else {
        int timeout_ms;
        if (conn_open(&c, o, &timeout_ms) != 0)
            goto out;
        char path[128];
        snprintf(path, sizeof path, "lg/v1/%s/firmware", id);
        int got = conn_get(c, path, NULL, timeout_ms, &answer, &alen);
        if (got != 0) {
            if (got > 0) {
                errf("no firmware is offered to %s (4.04): nothing approved for its group, or it runs the newest", id);
                rc = EXIT_REFUSED;
            }
            goto out;
        }
    }
    lg_fw_check chk = {.device = id, .model = opt_get(o, "model"), .groups = gcopy ? groups : NULL,
                       .n_groups = n_groups, .installed = installed, .vendor_key = &vendor, .now_ms = now_ms(),
                       .max_age_ms = (int64_t)max_age * 1000};
    lg_fw_release rel;
    lg_err e = lg_firmware_answer_verify(answer, alen, &gen, &chk, &rel);
    if (e != LG_OK) {
        lgerr("refused: the firmware answer does not allow an installation", e);
        rc = EXIT_REFUSED;
        goto out;
    }
    char hex[2 * LG_HASH_LEN + 1];
    hex_encode(rel.sha256, LG_HASH_LEN, hex);
    printf("ok firmware model=%s version=%" PRIu64 " size=%" PRIu64 " sha256=%s height=%" PRIu64 "\n", rel.model,
           rel.version, rel.size, hex, rel.height);
    fflush(stdout);
    rc = check_image(image, &rel);
    if (rc == EXIT_OK && opt_get(o, "report"))
        rc = report(c, o, id, gpath, &rel);
out:
    free(answer);
    free(gcopy);
    co_close(c);
    return rc;
}
