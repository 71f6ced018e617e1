/* util.c: see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/pem.h>
#include <mbedtls/sha256.h>

int errf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lgdev: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

int read_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf("open %s: %s", path, strerror(errno));
    unsigned char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return errf("out of memory");
    }
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return errf("read %s: %s", path, strerror(errno));
    }
    if (n > max) {
        free(buf);
        return errf("%s: larger than %zu bytes", path, max);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static int fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return errf("out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return errf("open directory of %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : errf("fsync directory of %s: %s", path, strerror(errno));
}

int write_file_durable(const char *path, const void *data, size_t len, int mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return errf("%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return errf("create %s: %s", tmp, strerror(errno));
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            close(fd);
            return errf("write %s: %s", tmp, strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        close(fd);
        return errf("fsync %s: %s", tmp, strerror(errno));
    }
    if (close(fd) != 0)
        return errf("close %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        return errf("rename %s to %s: %s", tmp, path, strerror(errno));
    return fsync_dir(path);
}

int seq_load(const char *path, uint64_t *last)
{
    unsigned char *buf;
    size_t n;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        *last = 0; /* a new device has used no number */
        return 0;
    }
    if (read_file(path, 64, &buf, &n) != 0)
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    int rc = parse_u64((char *)buf, last);
    free(buf);
    if (rc != 0)
        return errf("%s: not a sequence number (decimal ASCII)", path);
    return 0;
}

int seq_store(const char *path, uint64_t last)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", last);
    return write_file_durable(path, text, (size_t)n, 0600);
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') /* protocol.md 1: accept upper case too */
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t n)
{
    if (strlen(in) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void sha256(const void *data, size_t n, uint8_t out[32])
{
    mbedtls_sha256_ret(data, n, out, 0);
}

int pem_der(const char *path, const char *label, uint8_t *der, size_t cap, size_t *len)
{
    unsigned char *text;
    size_t n;
    if (read_file(path, 64 * 1024, &text, &n) != 0)
        return -1;
    char begin[64], end[64];
    snprintf(begin, sizeof begin, "-----BEGIN %s-----", label);
    snprintf(end, sizeof end, "-----END %s-----", label);
    mbedtls_pem_context pem;
    mbedtls_pem_init(&pem);
    size_t used;
    int rc = mbedtls_pem_read_buffer(&pem, begin, end, text, NULL, 0, &used);
    free(text);
    if (rc != 0 || pem.buflen > cap) {
        mbedtls_pem_free(&pem);
        return errf("%s: not a PEM %s", path, label);
    }
    memcpy(der, pem.buf, pem.buflen);
    *len = pem.buflen;
    mbedtls_pem_free(&pem);
    return 0;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parse_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return errf("%s: want HOST:PORT", s);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl + 1 > cap)
        return errf("%s: host too long", s);
    memcpy(host, h, hl);
    host[hl] = 0;
    uint64_t p;
    if (parse_u64(colon + 1, &p) != 0 || p == 0 || p > 65535)
        return errf("%s: bad port", s);
    *port = (int)p;
    return 0;
}

int parse_u64(const char *s, uint64_t *v)
{
    if (!s || !*s)
        return -1;
    uint64_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *v = n;
    return 0;
}

static void usage(FILE *f, const char *cmd, const char *synopsis, const char *about, const struct opt *opts)
{
    fprintf(f, "Usage: lgdev %s %s\n\n%s\n\nOptions:\n", cmd, synopsis, about);
    for (const struct opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-22s %s\n", left, o->help);
    }
    fprintf(f, "\nExit status: 0 done, 1 error (files, network), 2 usage, 3 refused by the gateway or a check failed.\n");
}

int parse_opts(const char *cmd, const char *synopsis, const char *about, struct opt *opts, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, cmd, synopsis, about, opts);
            return 1;
        }
        struct opt *o = NULL;
        if (strncmp(a, "--", 2) == 0)
            for (struct opt *p = opts; p->name; p++)
                if (strcmp(p->name, a + 2) == 0)
                    o = p;
        if (!o) {
            errf("%s: unknown option %s", cmd, a);
            usage(stderr, cmd, synopsis, about, opts);
            return -1;
        }
        if (!o->arg) {
            o->value = "1";
            continue;
        }
        if (i + 1 >= argc) {
            errf("%s: %s needs a value (%s)", cmd, a, o->arg);
            return -1;
        }
        o->value = argv[++i];
    }
    return 0;
}

const char *opt_get(const struct opt *opts, const char *name)
{
    for (const struct opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o->value;
    return NULL;
}

const char *opt_need(const struct opt *opts, const char *name)
{
    const char *v = opt_get(opts, name);
    if (!v)
        errf("--%s is required (see --help)", name);
    return v;
}
