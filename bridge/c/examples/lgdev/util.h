/* util.h: files, encodings, clocks and argument parsing for lgdev.
 *
 * The example may use the heap and stdio (the C library core may not).
 * Functions return 0 on success and -1 after printing what went wrong to
 * stderr, so callers only propagate. */
#ifndef LGDEV_UTIL_H
#define LGDEV_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of every subcommand (documented in --help). */
enum {
    EXIT_OK = 0,
    EXIT_ERR = 1,     /* I/O, transport, bad input files */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_REFUSED = 3, /* the gateway refused, or a proof/check failed */
};

/* errf prints "lgdev: <msg>\n" to stderr and returns -1. */
int errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* read_file reads a whole file (at most max bytes) into a new heap buffer
 * with one extra NUL byte after it (so PEM text can be parsed in place). */
int read_file(const char *path, size_t max, unsigned char **out, size_t *len);

/* write_file_durable writes data to path through path.tmp, fsync and
 * rename, then fsyncs the directory: after it returns 0 the content
 * survives a power cut (protocol.md 6.4 and 11.2 step 8 need this). */
int write_file_durable(const char *path, const void *data, size_t len, int mode);

/* Sequence counter file: the last number used, in decimal ASCII (the
 * format of `ledgergate device sign`'s KEY.seq). A missing file is 0. */
int seq_load(const char *path, uint64_t *last);
int seq_store(const char *path, uint64_t last);

void hex_encode(const uint8_t *in, size_t n, char *out /* 2n+1 */);
int hex_decode(const char *in, uint8_t *out, size_t n); /* exactly 2n digits */

/* pem_der decodes the first PEM block with the given label ("PRIVATE
 * KEY", "CERTIFICATE", ...) of a file into der (at most cap bytes). */
int pem_der(const char *path, const char *label, uint8_t *der, size_t cap, size_t *len);

void sha256(const void *data, size_t n, uint8_t out[32]);

int64_t now_ms(void);

/* parse_hostport splits "HOST:PORT" ("[v6]:PORT" too). */
int parse_hostport(const char *s, char *host, size_t cap, int *port);
int parse_u64(const char *s, uint64_t *v);

/* A minimal option parser: --name VALUE and --flag, nothing else. */
struct opt {
    const char *name; /* without the leading "--" */
    const char *arg;  /* NULL: a flag; else the value's name for --help */
    const char *help;
    const char *value; /* filled: the value, or "1" for a set flag */
};
/* parse_opts fills opts from argv; on --help it prints usage and returns
 * 1; on an error it prints it and the usage and returns -1. */
int parse_opts(const char *cmd, const char *synopsis, const char *about, struct opt *opts, int argc, char **argv);
const char *opt_get(const struct opt *opts, const char *name);
/* opt_need returns the value or prints "--name is required" and NULL. */
const char *opt_need(const struct opt *opts, const char *name);

#endif
