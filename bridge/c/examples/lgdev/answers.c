/* answers.c: see answers.h. */
#include "answers.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int conn_open(struct co **c, const struct opt *o, int *timeout_ms)
{
    const char *server = opt_need(o, "server");
    if (!server)
        return -1;
    int udp = opt_get(o, "udp") != NULL;
    const char *cert = opt_get(o, "cert"), *key = opt_get(o, "key");
    if (!udp && (!cert || !key))
        return errf("--cert and --key are required for DTLS (or --udp)");
    uint64_t t = 30;
    if (opt_get(o, "timeout") && (parse_u64(opt_get(o, "timeout"), &t) != 0 || t == 0 || t > 3600))
        return errf("--timeout: want 1 to 3600 seconds");
    *timeout_ms = (int)t * 1000;
    char host[256];
    int port;
    if (parse_hostport(server, host, sizeof host, &port) != 0)
        return -1;
    return co_open(c, host, port, udp ? NULL : cert, udp ? NULL : key, udp ? NULL : opt_get(o, "pin"));
}

int conn_get(struct co *c, const char *path, const char *query, int timeout_ms, unsigned char **buf, size_t *len)
{
    struct co_resp r;
    if (co_request(c, "GET", path, query, NULL, 0, -1, &r, timeout_ms) != 0)
        return -1;
    if (r.code == 205) {
        *buf = r.payload ? r.payload : (unsigned char *)calloc(1, 1);
        *len = r.len;
        return *buf ? 0 : errf("out of memory");
    }
    int rc = r.code == 404 ? 1 : -1;
    if (rc < 0)
        errf("GET /%s%s%s: %d.%02d %s", path, query ? "?" : "", query ? query : "", r.code / 100, r.code % 100,
             r.payload ? (char *)r.payload : "");
    co_resp_free(&r);
    return rc;
}

int parse_groups(char *s, const char **out, size_t max, size_t *n)
{
    *n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (*n == max)
            return errf("more than %zu groups", max);
        out[(*n)++] = tok;
    }
    return 0;
}
