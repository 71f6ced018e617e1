/* lg_internal.h - what the library's source files share; not installed. */
#ifndef LG_INTERNAL_H
#define LG_INTERNAL_H

#include "lg.h"

#include <string.h>

#define LG_CBOR_MAX_DEPTH 16     /* protocol.md 2 rule 12 */
#define LG_CBOR_MAX_MAP 1024
#define LG_CBOR_MAX_ARRAY (1u << 20)

/* Keeps a function's frame (a decoded tx, a buffer) off the stack of the
 * calls that verify signatures beside it (docs/c-library.md, Sizes). */
#if defined(__GNUC__)
#define LG_NOINLINE __attribute__((noinline))
#else
#define LG_NOINLINE
#endif

/* ---- strict CBOR reader (lg_cbor.c) ---------------------------------- */

/* A cursor over caller bytes. Every read checks the bytes left first. */
typedef struct lg_cbor {
    const uint8_t *p;
    size_t len;
    size_t pos;
} lg_cbor;

/* CBOR major types. */
enum { CB_UINT = 0, CB_NINT = 1, CB_BYTES = 2, CB_TEXT = 3, CB_ARRAY = 4,
       CB_MAP = 5, CB_TAG = 6, CB_SIMPLE = 7 };

void cb_init(lg_cbor *c, const uint8_t *p, size_t len);
/* The next item's head: major type and argument, shortest form enforced
 * (LG_ERR_NOT_CANONICAL), definite only, nothing past the end
 * (LG_ERR_MALFORMED). For strings the payload is NOT consumed. */
lg_err cb_head(lg_cbor *c, int *major, uint64_t *arg);
lg_err cb_uint(lg_cbor *c, uint64_t *v);
lg_err cb_int(lg_cbor *c, int64_t *v);
lg_err cb_bytes(lg_cbor *c, lg_str *s);
lg_err cb_text(lg_cbor *c, lg_str *s); /* valid UTF-8 */
lg_err cb_bool(lg_cbor *c, bool *b);
lg_err cb_array(lg_cbor *c, size_t *n);
lg_err cb_map(lg_cbor *c, size_t *n);
/* true (and consumed) if the next byte is null (0xf6). */
bool cb_null(lg_cbor *c);
/* Skip one whole item, checking it is deterministic (sorted, distinct map
 * keys, no tags, depth) and return its span. */
lg_err cb_item(lg_cbor *c, lg_str *span);
/* Next map key of a map whose keys are small uints: it must be above
 * *prev (sorted, no duplicates). A non-uint key is unknown: MALFORMED. */
lg_err cb_key(lg_cbor *c, uint64_t *prev, uint64_t *key);
/* cb_want_key reads a map key that must be want (LG_ERR_MALFORMED otherwise). */
lg_err cb_want_key(lg_cbor *c, uint64_t *prev, uint64_t want);
bool cb_done(const lg_cbor *c);

/* A NUL-free id (protocol.md 3). */
bool lg_valid_id(const uint8_t *p, size_t n);
bool lg_str_eq(lg_str s, const char *z);
bool lg_str_eq_str(lg_str a, lg_str b);
/* Copy s into a char array of cap bytes (with NUL); false if too long. */
bool lg_str_copy(char *dst, size_t cap, lg_str s);

/* ---- CBOR writer (lg_cbor.c) ----------------------------------------- */

/* Writes into a buffer, or when buf is NULL only feeds a SHA-256 (sha
 * non-NULL) or only counts. An overflow is sticky: check w.err at the end. */
typedef struct lg_cbw {
    uint8_t *buf;
    size_t cap;
    size_t len;
    mbedtls_sha256_context *sha;
    lg_err err;
} lg_cbw;

void cbw_init(lg_cbw *w, uint8_t *buf, size_t cap);
void cbw_head(lg_cbw *w, int major, uint64_t arg);
void cbw_raw(lg_cbw *w, const void *p, size_t n);
void cbw_uint(lg_cbw *w, uint64_t v);
void cbw_int(lg_cbw *w, int64_t v);
void cbw_bytes(lg_cbw *w, const void *p, size_t n);
void cbw_text(lg_cbw *w, const char *p, size_t n);
void cbw_textz(lg_cbw *w, const char *z);
void cbw_bool(lg_cbw *w, bool b);

/* ---- crypto (lg_crypto.c) -------------------------------------------- */

/* Verify an ECDSA P-256 signature given as r||s over a 32-byte digest. */
lg_err lg_p256_verify_rs(const uint8_t pub[65], const uint8_t digest[32], const uint8_t rs[64]);
/* Same with a strict DER signature (minimal INTEGERs, no trailing bytes). */
lg_err lg_p256_verify_der(const uint8_t pub[65], const uint8_t digest[32], const uint8_t *der, size_t n);
/* Sign: r||s; RFC 6979 when f_rng is NULL. */
lg_err lg_p256_sign(const uint8_t priv[32], const uint8_t digest[32], lg_rng_fn f_rng,
                    void *p_rng, uint8_t rs[64]);
lg_err lg_ed25519_sign(const uint8_t seed[32], const uint8_t *m, size_t n, uint8_t sig[64]);
lg_err lg_ed25519_verify(const uint8_t pub[32], const uint8_t *m, size_t n, const uint8_t sig[64]);
/* P-256 point is on the curve. */
bool lg_p256_check(const uint8_t pub[65]);

/* HPKE base mode open, suite 1 (protocol.md 12; RFC 9180). */
lg_err lg_hpke_open(const uint8_t skR[32], const uint8_t enc[32], const uint8_t *info,
                    size_t info_len, const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                    size_t ct_len, uint8_t *pt, size_t pt_cap, size_t *pt_len);
/* X25519 public key of a private key. */
lg_err lg_x25519_public(const uint8_t sk[32], uint8_t pk[32]);
/* AES-256-GCM open, tag appended to ct. */
lg_err lg_aes_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *ct, size_t ct_len, uint8_t *pt);

/* ---- envelopes (lg_tx.c) --------------------------------------------- */

/* Write the Sig_structure ToBeSigned of protected and payload into w. */
void lg_tbs(lg_cbw *w, lg_str prot, lg_str payload);
/* Decode an envelope's layout only (tag, array, headers, signature). */
lg_err lg_envelope_decode(const uint8_t *env, size_t len, lg_tx *tx);
/* Verify sig over ToBeSigned(prot, payload). */
lg_err lg_sig_verify(lg_alg alg, lg_str prot, lg_str payload, lg_str sig, const lg_pubkey *key);

/* ---- receipts (lg_receipt.c) ----------------------------------------- */

/* Decode a Header map at c (its hash = H(its bytes)). */
lg_err lg_header_decode(lg_cbor *c, lg_header *h);
/* The vote bytes a node signs (9.3). */
void lg_vote(lg_cbw *w, const lg_header *h, uint64_t view);
/* Verify the Cert map at cert (view, sigs) for header h under g. */
lg_err lg_cert_verify(const lg_genesis *g, const lg_header *h, lg_str cert);
/* The certificate check against a member set (protocol.md 9.4). */
lg_err lg_cert_verify_set(const char *chain_id, const lg_node *nodes, size_t n, size_t quorum,
                          const lg_header *h, lg_str cert);
/* lg_receipt_verify with the set in force taken from m when not NULL. */
lg_err lg_receipt_verify_in(const uint8_t *buf, size_t len, const lg_genesis *g,
                            const lg_members *m, lg_receipt *out);
/* The set of m in force at height; NULL below the oldest kept set. */
const lg_member_set *lg_members_at(const lg_members *m, uint64_t height);
/* A Head {1: Header, 2: Cert}: decode and verify its certificate. */
lg_err lg_head_verify(const lg_genesis *g, lg_str head, lg_header *h);

#endif
