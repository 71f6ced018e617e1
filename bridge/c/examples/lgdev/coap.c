/* coap.c: see coap.h. */
#include "coap.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>

#include "util.h"

struct co {
    coap_context_t *ctx;
    coap_session_t *session;
    coap_dtls_pki_t pki;
    unsigned char *pin_der; /* the pinned gateway certificate, DER */
    size_t pin_len;
    int pin_seen;           /* the handshake showed us the pinned certificate */
    int pin_mismatch;       /* ... or another one */
    /* the request in flight */
    uint8_t token[8];
    size_t token_len;
    int done;               /* 1 answered, -1 failed */
    const char *failure;
    struct co_resp *resp;
};

/* check_server pins the gateway's certificate (protocol.md 13.3): the
 * leaf must be byte for byte the pinned one. */
static int check_server(const char *cn, const uint8_t *der, size_t len, coap_session_t *s, unsigned depth,
                        int validated, void *arg)
{
    (void)cn, (void)s, (void)validated;
    struct co *c = arg;
    if (depth != 0)
        return 1; /* the gateway sends one certificate; nothing to chain */
    if (len == c->pin_len && memcmp(der, c->pin_der, len) == 0) {
        c->pin_seen = 1;
        return 1;
    }
    c->pin_mismatch = 1;
    return 0;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent, const coap_pdu_t *rcvd,
                                   const coap_mid_t mid)
{
    (void)sent, (void)mid;
    struct co *c = coap_session_get_app_data(s);
    coap_bin_const_t tok = coap_pdu_get_token(rcvd);
    if (!c || !c->resp || c->done || tok.length != c->token_len || memcmp(tok.s, c->token, c->token_len) != 0)
        return COAP_RESPONSE_OK; /* a late answer to an earlier request */
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    c->resp->code = COAP_RESPONSE_CLASS(code) * 100 + (code & 0x1f);
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;
    if (coap_get_data_large(rcvd, &len, &data, &offset, &total) && len > 0) {
        c->resp->payload = malloc(len + 1);
        if (!c->resp->payload) {
            c->done = -1;
            c->failure = "out of memory";
            return COAP_RESPONSE_OK;
        }
        memcpy(c->resp->payload, data, len);
        c->resp->payload[len] = 0;
        c->resp->len = len;
    }
    coap_opt_iterator_t it;
    coap_opt_t *o = coap_check_option(rcvd, COAP_OPTION_CONTENT_FORMAT, &it);
    c->resp->content_format = o ? (int)coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o)) : -1;
    coap_option_iterator_init(rcvd, &it, COAP_OPT_ALL);
    while ((o = coap_option_next(&it))) {
        if (it.number != COAP_OPTION_LOCATION_PATH)
            continue;
        size_t have = strlen(c->resp->location), n = coap_opt_length(o);
        if (have + n + 2 > sizeof c->resp->location)
            break;
        if (have)
            c->resp->location[have++] = '/';
        memcpy(c->resp->location + have, coap_opt_value(o), n);
        c->resp->location[have + n] = 0;
    }
    c->done = 1;
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason, const coap_mid_t mid)
{
    (void)sent, (void)mid;
    struct co *c = coap_session_get_app_data(s);
    if (!c || c->done)
        return;
    c->done = -1;
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        c->failure = "no answer after every retransmission";
        break;
    case COAP_NACK_RST:
        c->failure = "the gateway reset the exchange";
        break;
    case COAP_NACK_TLS_FAILED:
        c->failure = c->pin_mismatch ? "the gateway's certificate is not the pinned one (--pin): not talking to it"
                                     : "the DTLS handshake failed: is --cert a certificate of the device's enrolled "
                                       "key, and --key its private key?";
        break;
    default:
        c->failure = "the request could not be delivered";
    }
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
    struct co *c = coap_session_get_app_data(s);
    if (c && !c->done && (ev == COAP_EVENT_DTLS_ERROR || ev == COAP_EVENT_DTLS_CLOSED)) {
        c->done = -1;
        if (c->pin_mismatch)
            c->failure = "the gateway's certificate is not the pinned one (--pin): not talking to it";
        else if (ev == COAP_EVENT_DTLS_ERROR)
            c->failure = "DTLS handshake failed: the gateway takes only a certificate whose key is an enrolled, "
                         "unrevoked device's current key (protocol.md 13.3): is --cert of the device's key, and --key "
                         "its private key?";
        else
            c->failure = "the DTLS session was closed";
    }
    return 0;
}

static int load_pin(struct co *c, const char *pin)
{
    uint8_t der[8192];
    if (pem_der(pin, "CERTIFICATE", der, sizeof der, &c->pin_len) != 0)
        return -1;
    if (!(c->pin_der = malloc(c->pin_len)))
        return errf("out of memory");
    memcpy(c->pin_der, der, c->pin_len);
    return 0;
}

int co_open(struct co **out, const char *host, int port, const char *cert, const char *key, const char *pin)
{
    coap_startup();
    coap_set_log_level(LOG_EMERG); /* lgdev says what failed itself */
    coap_dtls_set_log_level(LOG_EMERG);
    struct co *c = calloc(1, sizeof *c);
    if (!c)
        return errf("out of memory");
    c->ctx = coap_new_context(NULL);
    if (!c->ctx) {
        free(c);
        return errf("coap: cannot make a context");
    }
    coap_context_set_block_mode(c->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(c->ctx, on_response);
    coap_register_nack_handler(c->ctx, on_nack);
    coap_register_event_handler(c->ctx, on_event);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        co_close(c);
        return errf("coap: resolve %s: %s", host, gai_strerror(gai));
    }
    coap_address_t dst;
    coap_address_init(&dst);
    dst.size = ai->ai_addrlen;
    memcpy(&dst.addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);

    if (cert) {
        if (!coap_dtls_is_supported()) {
            co_close(c);
            return errf("coap: this libcoap has no DTLS (link libcoap-3-openssl)");
        }
        c->pki.version = COAP_DTLS_PKI_SETUP_VERSION;
        c->pki.pki_key.key_type = COAP_PKI_KEY_PEM; /* file names; they outlive the session */
        c->pki.pki_key.key.pem.public_cert = cert;
        c->pki.pki_key.key.pem.private_key = key; /* PKCS#8 PEM, as `device keygen` writes it */
        if (pin) {
            if (load_pin(c, pin) != 0) {
                co_close(c);
                return -1;
            }
            /* The gateway's own certificate is self-signed and names no
             * host: let OpenSSL accept self-signed, then compare it
             * ourselves (check_server). A coap.dtls_cert issued by a CA
             * would need the CA in ca_file; not done here. */
            c->pki.verify_peer_cert = 1;
            c->pki.allow_self_signed = 1;
            c->pki.validate_cn_call_back = check_server;
            c->pki.cn_call_back_arg = c;
        } else {
            fprintf(stderr, "lgdev: warning: no --pin: the gateway is not authenticated (RFC 7925 allows it; "
                            "protocol.md 13.3 says pin its certificate)\n");
        }
        c->session = coap_new_client_session_pki(c->ctx, NULL, &dst, COAP_PROTO_DTLS, &c->pki);
    } else {
        c->session = coap_new_client_session(c->ctx, NULL, &dst, COAP_PROTO_UDP);
    }
    if (!c->session) {
        co_close(c);
        return errf("coap: cannot open a session with %s:%d (certificate or key file unreadable?)", host, port);
    }
    coap_session_set_app_data(c->session, c);
    *out = c;
    return 0;
}

/* add_path appends one Uri-Path option per segment of path. */
static int add_path(coap_optlist_t **opts, const char *path)
{
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && !coap_insert_optlist(opts, coap_new_optlist(COAP_OPTION_URI_PATH, n, (const uint8_t *)p)))
            return -1;
        p += n;
    }
    return 0;
}

int co_request(struct co *c, const char *method, const char *path, const char *query, const void *body, size_t len,
               int cf, struct co_resp *resp, int timeout_ms)
{
    memset(resp, 0, sizeof *resp);
    resp->content_format = -1;
    coap_pdu_code_t code = strcmp(method, "POST") == 0 ? COAP_REQUEST_CODE_POST : COAP_REQUEST_CODE_GET;
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, code, c->session);
    if (!pdu)
        return errf("coap: cannot make a request");
    coap_session_new_token(c->session, &c->token_len, c->token);
    coap_add_token(pdu, c->token_len, c->token);
    coap_optlist_t *opts = NULL;
    uint8_t buf[4];
    int bad = add_path(&opts, path);
    if (!bad && query)
        bad = !coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_URI_QUERY, strlen(query), (const uint8_t *)query));
    if (!bad && cf >= 0)
        bad = !coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                                                           coap_encode_var_safe(buf, sizeof buf, (unsigned)cf), buf));
    if (!bad)
        bad = !coap_add_optlist_pdu(pdu, &opts);
    coap_delete_optlist(opts);
    /* Larger bodies go in Block1 blocks; libcoap does the transfer. */
    if (!bad && body && len > 0)
        bad = !coap_add_data_large_request(c->session, pdu, len, body, NULL, NULL);
    if (bad) {
        coap_delete_pdu(pdu);
        return errf("coap: cannot build the request for %s", path);
    }
    c->done = 0;
    c->failure = NULL;
    c->resp = resp;
    if (coap_send(c->session, pdu) == COAP_INVALID_MID) {
        c->resp = NULL;
        return errf("coap: cannot send the request for %s", path);
    }
    int64_t deadline = now_ms() + timeout_ms;
    while (!c->done && now_ms() < deadline)
        coap_io_process(c->ctx, 100);
    c->resp = NULL;
    if (c->done == 1 && c->pin_der && !c->pin_seen) {
        /* Belt and braces: an answer came over a session whose server
         * certificate our check never saw. Do not trust it. */
        co_resp_free(resp);
        return errf("coap: the gateway's certificate was not checked against --pin");
    }
    if (c->done == 1)
        return 0;
    co_resp_free(resp);
    if (c->done < 0)
        return errf("coap: %s %s: %s", method, path, c->failure);
    return errf("coap: %s %s: no answer within %d ms", method, path, timeout_ms);
}

void co_resp_free(struct co_resp *r)
{
    free(r->payload);
    r->payload = NULL;
    r->len = 0;
}

void co_close(struct co *c)
{
    if (!c)
        return;
    if (c->session)
        coap_session_release(c->session);
    if (c->ctx)
        coap_free_context(c->ctx);
    free(c->pin_der);
    free(c);
    coap_cleanup();
}
