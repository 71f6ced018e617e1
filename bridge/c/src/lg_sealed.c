/* lg_sealed.c - opening a sealed blob (protocol.md 12), suite 1:
 * HPKE base mode DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
 * then the content's AES-256-GCM. */
#include "lg_internal.h"

static const char info[] = "ledgergate sealed v1"; /* HPKE info and content AAD */
#define INFO_LEN 20

/* Sealed = {1: 1, 2: [+ {1: bstr, 2: bstr}], 3: bstr, 4: bstr}. Keys in
 * any order (the Go reader does not insist on deterministic CBOR here),
 * but each once, none unknown, definite lengths. */
static lg_err decode(const uint8_t *blob, size_t len, const uint8_t fp[32], lg_str *wrapped,
                     lg_str *nonce, lg_str *ct)
{
    lg_cbor c;
    size_t n;
    unsigned seen = 0;
    bool found = false;
    cb_init(&c, blob, len);
    if (cb_map(&c, &n) != LG_OK || n != 4)
        return LG_ERR_SEALED;
    for (size_t i = 0; i < n; i++) {
        uint64_t key, suite;
        if (cb_uint(&c, &key) != LG_OK || key < 1 || key > 4 || (seen & (1u << key)))
            return LG_ERR_SEALED;
        seen |= 1u << key;
        if (key == 1) {
            if (cb_uint(&c, &suite) != LG_OK || suite != 1)
                return LG_ERR_SEALED;
        } else if (key == 2) {
            size_t nr;
            if (cb_array(&c, &nr) != LG_OK || nr == 0 || nr > 10000)
                return LG_ERR_SEALED;
            for (size_t r = 0; r < nr; r++) {
                size_t m;
                uint64_t k1, k2;
                lg_str id, w;
                if (cb_map(&c, &m) != LG_OK || m != 2 || cb_uint(&c, &k1) != LG_OK)
                    return LG_ERR_SEALED;
                if (k1 == 2) { /* {2: wrapped, 1: key} */
                    if (cb_bytes(&c, &w) != LG_OK || cb_uint(&c, &k2) != LG_OK || k2 != 1 ||
                        cb_bytes(&c, &id) != LG_OK)
                        return LG_ERR_SEALED;
                } else if (k1 != 1 || cb_bytes(&c, &id) != LG_OK || cb_uint(&c, &k2) != LG_OK ||
                           k2 != 2 || cb_bytes(&c, &w) != LG_OK) {
                    return LG_ERR_SEALED;
                }
                if (id.n != 32)
                    return LG_ERR_SEALED;
                if (!found && lg_ct_equal(id.p, fp, 32)) { /* the first match */
                    *wrapped = w;
                    found = true;
                }
            }
        } else if (cb_bytes(&c, key == 3 ? nonce : ct) != LG_OK) {
            return LG_ERR_SEALED;
        }
    }
    if (!cb_done(&c))
        return LG_ERR_SEALED;
    return found ? LG_OK : LG_ERR_NOT_RECIPIENT;
}

lg_err lg_sealed_open(const uint8_t *blob, size_t len, const uint8_t x25519_key[32],
                      const lg_config_set *cs, uint8_t *out, size_t cap, size_t *out_len)
{
    static const uint8_t x25519_spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                            0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00};
    uint8_t spki[44], fp[32], cek[32], h[32];
    lg_str wrapped = {NULL, 0}, nonce = {NULL, 0}, ct = {NULL, 0};
    size_t cek_len;
    lg_err e;
    if (blob == NULL || x25519_key == NULL || out == NULL || out_len == NULL)
        return LG_ERR_ARG;
    *out_len = 0;
    /* the address first: a blob other than the one the config.set names */
    if (cs != NULL) {
        lg_sha256(blob, len, h);
        if (!lg_ct_equal(h, cs->blob, 32))
            return LG_ERR_NOT_CURRENT;
    }
    /* the recipient id: H(own X25519 SPKI DER) */
    memcpy(spki, x25519_spki, 12);
    if ((e = lg_x25519_public(x25519_key, spki + 12)) != LG_OK)
        return e;
    lg_sha256(spki, sizeof spki, fp);
    if ((e = decode(blob, len, fp, &wrapped, &nonce, &ct)) != LG_OK)
        return e;
    if (wrapped.n <= 32 || nonce.n != 12 || ct.n < 16)
        return LG_ERR_SEALED;
    e = lg_hpke_open(x25519_key, wrapped.p, (const uint8_t *)info, INFO_LEN, NULL, 0,
                     wrapped.p + 32, wrapped.n - 32, cek, sizeof cek, &cek_len);
    if (e != LG_OK || cek_len != 32) {
        memset(cek, 0, sizeof cek);
        return e == LG_OK || e == LG_ERR_BUFFER ? LG_ERR_SEALED : e;
    }
    if (cap < ct.n - 16) {
        memset(cek, 0, sizeof cek);
        return LG_ERR_BUFFER;
    }
    e = lg_aes_gcm_open(cek, nonce.p, (const uint8_t *)info, INFO_LEN, ct.p, ct.n, out);
    memset(cek, 0, sizeof cek);
    if (e != LG_OK) {
        memset(out, 0, ct.n - 16);
        return e;
    }
    *out_len = ct.n - 16;
    if (cs != NULL) {
        lg_sha256(out, *out_len, h);
        if (*out_len != cs->size || !lg_ct_equal(h, cs->sha256, 32)) {
            memset(out, 0, *out_len); /* not the configuration named: release nothing */
            *out_len = 0;
            return LG_ERR_NOT_CURRENT;
        }
    }
    return LG_OK;
}
