/* lg_key.c - private keys out of PKCS#8 DER (RFC 5208, RFC 5958): the
 * Ed25519 and X25519 keys of RFC 8410, which mbedTLS 2.28's pk parser does
 * not know, and P-256 keys (RFC 5915 inside PKCS#8), so that firmware needs
 * no pk module at all. A strict DER reader over caller bytes. */
#include "lg_internal.h"

/* A cursor over DER bytes. */
typedef struct der {
    const uint8_t *p;
    size_t len, pos;
} der;

/* The next TLV if its tag is tag: its contents in *v. DER lengths only:
 * the shortest form, at most two length bytes (no key is 64 KB). */
static bool tlv(der *d, uint8_t tag, lg_str *v)
{
    if (d->len - d->pos < 2 || d->p[d->pos] != tag)
        return false;
    size_t n = d->p[d->pos + 1], at = d->pos + 2;
    if (n & 0x80) {
        size_t k = n & 0x7f;
        if (k == 0 || k > 2 || d->len - at < k || d->p[at] == 0)
            return false; /* indefinite, too long, or a leading zero */
        n = 0;
        for (size_t i = 0; i < k; i++)
            n = n << 8 | d->p[at + i];
        if (n < 0x80)
            return false; /* the long form for a short length */
        at += k;
    }
    if (d->len - at < n)
        return false;
    v->p = d->p + at;
    v->n = n;
    d->pos = at + n;
    return true;
}

static bool next_is(const der *d, uint8_t tag) { return d->pos < d->len && d->p[d->pos] == tag; }

static bool eq(lg_str s, const uint8_t *b, size_t n) { return s.n == n && memcmp(s.p, b, n) == 0; }

/* OID contents. */
static const uint8_t oid_x25519[] = {0x2b, 0x65, 0x6e};                     /* 1.3.101.110 */
static const uint8_t oid_ed25519[] = {0x2b, 0x65, 0x70};                    /* 1.3.101.112 */
static const uint8_t oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}; /* 1.2.840.10045.2.1 */
static const uint8_t oid_p256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}; /* 1.2.840.10045.3.1.7 */

/* The order n of P-256, big-endian. */
static const uint8_t p256_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};

/* 1 if 0 < d < n, in time independent of d (d is the secret). */
static unsigned scalar_ok(const uint8_t d[32])
{
    unsigned borrow = 0, any = 0;
    for (size_t i = 32; i-- > 0;) {
        unsigned diff = (unsigned)d[i] - p256_n[i] - borrow;
        borrow = (diff >> 8) & 1;
        any |= d[i];
    }
    return borrow & ((any + 0xffu) >> 8);
}

/* RFC 5915 ECPrivateKey, inside PKCS#8's privateKey: { 1, OCTET STRING
 * (32), [0] ECParameters OPTIONAL, [1] BIT STRING OPTIONAL }. */
static lg_err ec_private_key(lg_str pk, uint8_t out[32])
{
    der o = {pk.p, pk.n, 0}, d;
    lg_str seq, ver, key, v;
    if (!tlv(&o, 0x30, &seq) || o.pos != o.len)
        return LG_ERR_MALFORMED;
    d = (der){seq.p, seq.n, 0};
    if (!tlv(&d, 0x02, &ver) || !eq(ver, (const uint8_t *)"\x01", 1) || !tlv(&d, 0x04, &key) || key.n != 32)
        return LG_ERR_MALFORMED; /* ecPrivkeyVer1; ceiling(log2(n) / 8) = 32 octets */
    if (next_is(&d, 0xa0)) {
        /* parameters, if present, the same named curve as the algorithm's */
        der p;
        if (!tlv(&d, 0xa0, &v))
            return LG_ERR_MALFORMED;
        p = (der){v.p, v.n, 0};
        if (!tlv(&p, 0x06, &v) || !eq(v, oid_p256, sizeof oid_p256) || p.pos != p.len)
            return LG_ERR_MALFORMED;
    }
    if (next_is(&d, 0xa1)) {
        /* the public key: an uncompressed point, not checked against the
         * scalar (the signatures are) */
        der p;
        if (!tlv(&d, 0xa1, &v))
            return LG_ERR_MALFORMED;
        p = (der){v.p, v.n, 0};
        if (!tlv(&p, 0x03, &v) || v.n != 66 || v.p[0] != 0 || v.p[1] != 0x04 || p.pos != p.len)
            return LG_ERR_MALFORMED;
    }
    if (d.pos != d.len || !scalar_ok(key.p))
        return LG_ERR_MALFORMED;
    memcpy(out, key.p, 32);
    return LG_OK;
}

static lg_err pkcs8(const uint8_t *buf, size_t len, lg_key_type *type, uint8_t out[32])
{
    der top = {buf, len, 0}, d, a;
    lg_str seq, ver, ai, oid, pk, v;
    /* OneAsymmetricKey ::= SEQUENCE { version, privateKeyAlgorithm,
     * privateKey OCTET STRING, [0] attributes OPTIONAL, [1] publicKey
     * OPTIONAL } (RFC 5958 2; RFC 5208's PrivateKeyInfo is its v1) */
    if (!tlv(&top, 0x30, &seq) || top.pos != top.len)
        return LG_ERR_MALFORMED;
    d = (der){seq.p, seq.n, 0};
    if (!tlv(&d, 0x02, &ver) || ver.n != 1 || ver.p[0] > 1 || !tlv(&d, 0x30, &ai) || !tlv(&d, 0x04, &pk))
        return LG_ERR_MALFORMED;
    if (next_is(&d, 0xa0) && !tlv(&d, 0xa0, &v))
        return LG_ERR_MALFORMED; /* attributes: skipped */
    bool has_pub = next_is(&d, 0x81);
    if (has_pub && (!tlv(&d, 0x81, &v) || v.n < 1 || v.p[0] != 0))
        return LG_ERR_MALFORMED; /* [1] IMPLICIT BIT STRING, not checked against the key */
    /* v2 (1) if and only if publicKey is present (RFC 5958 2) */
    if (d.pos != d.len || has_pub != (ver.p[0] == 1))
        return LG_ERR_MALFORMED;
    a = (der){ai.p, ai.n, 0};
    if (!tlv(&a, 0x06, &oid))
        return LG_ERR_MALFORMED;
    if (eq(oid, oid_ed25519, sizeof oid_ed25519) || eq(oid, oid_x25519, sizeof oid_x25519)) {
        /* RFC 8410 3: no parameters; 7: CurvePrivateKey ::= OCTET STRING */
        der k = {pk.p, pk.n, 0};
        if (a.pos != a.len || !tlv(&k, 0x04, &v) || v.n != 32 || k.pos != k.len)
            return LG_ERR_MALFORMED;
        *type = oid.p[2] == 0x70 ? LG_KEY_ED25519 : LG_KEY_X25519;
        memcpy(out, v.p, 32);
        return LG_OK;
    }
    if (eq(oid, oid_ec, sizeof oid_ec)) {
        /* RFC 5480 2.1.1: namedCurve; another curve is not ours */
        if (!tlv(&a, 0x06, &v) || a.pos != a.len)
            return LG_ERR_MALFORMED;
        if (!eq(v, oid_p256, sizeof oid_p256))
            return LG_ERR_UNSUPPORTED_ALG;
        *type = LG_KEY_P256;
        return ec_private_key(pk, out);
    }
    return LG_ERR_UNSUPPORTED_ALG; /* RSA, Ed448, X448, ... */
}

lg_err lg_key_from_pkcs8(const uint8_t *der_bytes, size_t len, lg_key_type *type, uint8_t out[32])
{
    if (der_bytes == NULL || type == NULL || out == NULL)
        return LG_ERR_ARG;
    lg_err e = pkcs8(der_bytes, len, type, out);
    if (e != LG_OK)
        memset(out, 0, 32);
    return e;
}
