/* arena.c - how much heap mbedTLS takes for each call of the library, so
 * that a firmware can size its mbedtls_memory_buffer_alloc_init() arena.
 * malloc and friends are wrapped here (glibc: __libc_*) and counted while
 * a call runs: the peak of live bytes and of live blocks. Not built with
 * sanitizers (they wrap malloc themselves). Usage: arena VECTORS_DIR. */
#include "lg.h"
#include "lg_internal.h"

#include <stdio.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* every block carries its size and whether it was counted */
typedef struct hdr {
    size_t size;
    size_t counted;
} hdr;

static int counting;
static size_t live, peak, blocks, peak_blocks, total_blocks;

static void *track(hdr *h, size_t size)
{
    if (h == NULL)
        return NULL;
    h->size = size;
    h->counted = (size_t)counting;
    if (counting) {
        live += size, blocks++, total_blocks++;
        if (live > peak)
            peak = live;
        if (blocks > peak_blocks)
            peak_blocks = blocks;
    }
    return h + 1;
}

static void untrack(hdr *h)
{
    if (h->counted)
        live -= h->size, blocks--;
}

void *malloc(size_t n) { return track(__libc_malloc(sizeof(hdr) + n), n); }

void *calloc(size_t k, size_t n)
{
    if (n != 0 && k > ((size_t)-1 - sizeof(hdr)) / n)
        return NULL;
    hdr *h = __libc_calloc(1, sizeof(hdr) + k * n);
    return track(h, k * n);
}

void free(void *p)
{
    if (p == NULL)
        return;
    hdr *h = (hdr *)p - 1;
    untrack(h);
    __libc_free(h);
}

void *realloc(void *p, size_t n)
{
    if (p == NULL)
        return malloc(n);
    hdr *h = (hdr *)p - 1;
    untrack(h);
    return track(__libc_realloc(h, sizeof(hdr) + n), n);
}

static void start(void) { live = peak = blocks = peak_blocks = total_blocks = 0, counting = 1; }

static int report(const char *what, lg_err e)
{
    counting = 0;
    printf("  %-44s peak %5zu bytes in %3zu blocks (%zu allocations)%s\n", what, peak, peak_blocks,
           total_blocks, e == LG_OK ? "" : "  FAILED");
    return e != LG_OK || blocks != 0; /* a block still live is a leak */
}

static uint8_t *slurp(const char *dir, const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    static uint8_t buf[4][65536];
    static int next;
    uint8_t *b = buf[next++ % 4];
    *n = fread(b, 1, sizeof buf[0], f);
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    int bad = 0;
    size_t n, rn;
    if (argc != 2)
        return 2;
    /* the seeds make fuzz writes: one genesis, one receipt, one sealed blob */
    uint8_t *gj = slurp(argv[1], "genesis/genesis.json-main", &n);
    uint8_t *rc = slurp(argv[1], "receipt/receipt.json-record", &rn);
    size_t sn;
    uint8_t *sb = slurp(argv[1], "sealed/sealed.json-device", &sn);
    lg_genesis g;
    lg_receipt r;
    if (gj == NULL || rc == NULL || sb == NULL || lg_genesis_parse(gj, n, &g) != LG_OK) {
        fprintf(stderr, "arena: no seeds under %s\n", argv[1]);
        return 2;
    }
    printf("mbedTLS heap per call (sizes of the blocks, without allocator overhead):\n");
    static const uint8_t scalar[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    uint8_t d[32] = {0}, rs[64], pub[32];
    start();
    bad |= report("ES256 sign (RFC 6979)", lg_p256_sign(scalar, d, NULL, NULL, rs));
    start();
    bad |= report("lg_receipt_verify (3 DER votes + genesis)", lg_receipt_verify(rc, rn, &g, &r));
    start();
    bad |= report("X25519 public key", lg_x25519_public(scalar, pub));
    /* keys.json sensor-1.enc */
    static const uint8_t enc[32] = {0xfd, 0xd5, 0x2d, 0xb2, 0x1e, 0xe8, 0xb3, 0x3e, 0x05, 0x98, 0xe3,
                                    0x20, 0xf1, 0x55, 0xff, 0x66, 0xc9, 0x5b, 0x2f, 0xdd, 0xda, 0x3a,
                                    0x42, 0x0a, 0xb5, 0xeb, 0x7a, 0xe3, 0x84, 0x4d, 0x8b, 0x5e};
    uint8_t pt[512];
    size_t pn;
    start();
    bad |= report("lg_sealed_open (X25519 x2, HKDF, AES-GCM x2)",
                  lg_sealed_open(sb, sn, enc, NULL, pt, sizeof pt, &pn));
    return bad;
}
