/* coap.h: a blocking CoAP client for lgdev on libcoap 3 (4.3.x).
 *
 * Over DTLS (protocol.md 13.3) the device authenticates with an X.509
 * certificate of its enrolled key, and pins the gateway's certificate
 * (the gateway's self-signed one names no host, so only pinning can
 * authenticate it). Block-wise transfers (RFC 7959) are left to libcoap:
 * a request body and a response are whole buffers here. */
#ifndef LGDEV_COAP_H
#define LGDEV_COAP_H

#include <stddef.h>

struct co;

struct co_resp {
    int code;               /* class * 100 + detail: 204 is 2.04, 403 is 4.03 */
    unsigned char *payload; /* heap, NUL terminated; NULL if none */
    size_t len;
    int content_format;     /* -1 if absent */
    char location[256];     /* Location-Path, "/"-joined, "" if none */
};

/* co_open starts a session with host:port. With cert and key (PEM files)
 * it is DTLS with that client certificate; pin, if not NULL, is the PEM
 * certificate the gateway must present. Without cert it is plain UDP. */
int co_open(struct co **out, const char *host, int port, const char *cert, const char *key, const char *pin);
/* co_request sends a confirmable request (method "GET" or "POST") to path
 * (without query), with an optional query ("h=..."), body and
 * Content-Format (cf < 0: none), and waits at most timeout_ms for the
 * whole response. The response's payload is the caller's to free. */
int co_request(struct co *c, const char *method, const char *path, const char *query, const void *body, size_t len,
               int cf, struct co_resp *resp, int timeout_ms);
void co_resp_free(struct co_resp *r);
void co_close(struct co *c);

#endif
