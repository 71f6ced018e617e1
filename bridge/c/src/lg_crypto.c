/* lg_crypto.c - the primitives, all through mbedTLS 2.28 (Ed25519 through
 * libsodium with LG_WITH_ED25519). mbedTLS takes its bignum memory from
 * mbedtls_calloc; this file never allocates. */
#include "lg_internal.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/hmac_drbg.h>
#include <mbedtls/md.h>

#ifdef LG_WITH_ED25519
#include <sodium.h>
#endif

int lg_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

void lg_sha256(const void *data, size_t len, uint8_t out[LG_HASH_LEN])
{
    mbedtls_sha256_ret(data, len, out, 0);
}

/* protocol.md 4: the SPKI DER prefixes Go's x509.MarshalPKIXPublicKey writes */
static const uint8_t p256_prefix[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                        0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t ed25519_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                           0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

lg_err lg_pubkey_from_spki(const uint8_t *spki, size_t len, lg_pubkey *out)
{
    if (spki == NULL || out == NULL)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (len == 91 && memcmp(spki, p256_prefix, sizeof p256_prefix) == 0 && spki[26] == 0x04) {
        out->alg = LG_ALG_ES256;
        memcpy(out->key, spki + 26, 65);
        return lg_p256_check(out->key) ? LG_OK : LG_ERR_MALFORMED;
    }
    if (len == 44 && memcmp(spki, ed25519_prefix, sizeof ed25519_prefix) == 0) {
        out->alg = LG_ALG_EDDSA;
        memcpy(out->key, spki + 12, 32);
        return LG_OK;
    }
    return LG_ERR_MALFORMED;
}

/* ---- ECDSA P-256 ----------------------------------------------------------- */

bool lg_p256_check(const uint8_t pub[65])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    bool ok = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
              mbedtls_ecp_point_read_binary(&grp, &q, pub, 65) == 0 &&
              mbedtls_ecp_check_pubkey(&grp, &q) == 0;
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return ok;
}

static lg_err p256_verify(const uint8_t pub[65], const uint8_t digest[32], const uint8_t *r,
                          size_t rn, const uint8_t *s, size_t sn)
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi mr, ms;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&mr);
    mbedtls_mpi_init(&ms);
    lg_err e = LG_ERR_CRYPTO;
    if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
        mbedtls_mpi_read_binary(&mr, r, rn) != 0 || mbedtls_mpi_read_binary(&ms, s, sn) != 0)
        goto out;
    if (mbedtls_ecp_point_read_binary(&grp, &q, pub, 65) != 0) {
        e = LG_ERR_BAD_SIGNATURE;
        goto out;
    }
    /* mbedtls_ecdsa_verify checks 1 <= r, s < n itself */
    int rc = mbedtls_ecdsa_verify(&grp, digest, 32, &q, &mr, &ms);
    if (rc == 0)
        e = LG_OK;
    else if (rc == MBEDTLS_ERR_ECP_VERIFY_FAILED || rc == MBEDTLS_ERR_ECP_INVALID_KEY)
        e = LG_ERR_BAD_SIGNATURE;
out:
    mbedtls_mpi_free(&ms);
    mbedtls_mpi_free(&mr);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return e;
}

lg_err lg_p256_verify_rs(const uint8_t pub[65], const uint8_t digest[32], const uint8_t rs[64])
{
    return p256_verify(pub, digest, rs, 32, rs + 32, 32);
}

/* One strict DER INTEGER (X.690 8.3.2: minimal, here also non-negative). */
static bool der_int(const uint8_t *p, size_t n, size_t *pos, const uint8_t **v, size_t *vn)
{
    if (n - *pos < 2 || p[*pos] != 0x02)
        return false;
    size_t l = p[*pos + 1];
    *pos += 2;
    if (l == 0 || l > 33 || l > n - *pos)
        return false;
    const uint8_t *x = p + *pos;
    if (x[0] & 0x80)
        return false; /* negative */
    if (l > 1 && x[0] == 0 && !(x[1] & 0x80))
        return false; /* a leading zero that is not needed */
    if (x[0] == 0 && l > 1)
        x++, l--;
    if (l > 32)
        return false;
    *v = x;
    *vn = l;
    *pos += p[*pos - 1];
    return true;
}

lg_err lg_p256_verify_der(const uint8_t pub[65], const uint8_t digest[32], const uint8_t *der,
                          size_t n)
{
    const uint8_t *r, *s;
    size_t rn, sn, pos = 2;
    /* SEQUENCE with a short-form length (at most 72 bytes follow) */
    if (n < 2 || der[0] != 0x30 || der[1] >= 0x80 || (size_t)der[1] != n - 2)
        return LG_ERR_BAD_SIGNATURE;
    if (!der_int(der, n, &pos, &r, &rn) || !der_int(der, n, &pos, &s, &sn) || pos != n)
        return LG_ERR_BAD_SIGNATURE;
    return p256_verify(pub, digest, r, rn, s, sn);
}

lg_err lg_p256_sign(const uint8_t priv[32], const uint8_t digest[32], lg_rng_fn f_rng,
                    void *p_rng, uint8_t rs[64])
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d, r, s;
    mbedtls_hmac_drbg_context blind;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    mbedtls_hmac_drbg_init(&blind);
    lg_err e = LG_ERR_CRYPTO;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
        mbedtls_mpi_read_binary(&d, priv, 32) != 0 || mbedtls_ecp_check_privkey(&grp, &d) != 0)
        goto out;
    if (f_rng != NULL) {
        if (mbedtls_ecdsa_sign(&grp, &r, &s, &d, digest, 32, f_rng, p_rng) != 0)
            goto out;
    } else {
        /* RFC 6979. mbedTLS wants an RNG for side-channel blinding only
         * (it does not change the signature): an HMAC_DRBG seeded with the
         * key and digest, as RFC 6979 derives k. */
        uint8_t seed[64];
        memcpy(seed, priv, 32);
        memcpy(seed + 32, digest, 32);
        int rc = mbedtls_hmac_drbg_seed_buf(&blind, md, seed, sizeof seed);
        memset(seed, 0, sizeof seed);
        if (rc != 0 || mbedtls_ecdsa_sign_det_ext(&grp, &r, &s, &d, digest, 32, MBEDTLS_MD_SHA256,
                                                  mbedtls_hmac_drbg_random, &blind) != 0)
            goto out;
    }
    if (mbedtls_mpi_write_binary(&r, rs, 32) != 0 || mbedtls_mpi_write_binary(&s, rs + 32, 32) != 0)
        goto out;
    e = LG_OK;
out:
    mbedtls_hmac_drbg_free(&blind);
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    return e;
}

/* ---- Ed25519 ----------------------------------------------------------------- */

#ifdef LG_WITH_ED25519
lg_err lg_ed25519_sign(const uint8_t seed[32], const uint8_t *m, size_t n, uint8_t sig[64])
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    lg_err e = LG_ERR_CRYPTO;
    if (crypto_sign_seed_keypair(pk, sk, seed) == 0 &&
        crypto_sign_detached(sig, NULL, m, n, sk) == 0)
        e = LG_OK;
    sodium_memzero(sk, sizeof sk);
    return e;
}

lg_err lg_ed25519_verify(const uint8_t pub[32], const uint8_t *m, size_t n, const uint8_t sig[64])
{
    return crypto_sign_verify_detached(sig, m, n, pub) == 0 ? LG_OK : LG_ERR_BAD_SIGNATURE;
}
#else
lg_err lg_ed25519_sign(const uint8_t seed[32], const uint8_t *m, size_t n, uint8_t sig[64])
{
    (void)seed, (void)m, (void)n, (void)sig;
    return LG_ERR_UNSUPPORTED_ALG;
}

lg_err lg_ed25519_verify(const uint8_t pub[32], const uint8_t *m, size_t n, const uint8_t sig[64])
{
    (void)pub, (void)m, (void)n, (void)sig;
    return LG_ERR_UNSUPPORTED_ALG;
}
#endif

/* ---- X25519, HPKE (RFC 9180), AES-256-GCM ------------------------------------ */

/* X25519(k, u) of RFC 7748 with mbedTLS's Curve25519: little-endian
 * scalar, clamped here because mbedTLS checks rather than clamps. */
static lg_err x25519(const uint8_t k[32], const uint8_t u[32], uint8_t out[32])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point p, r;
    mbedtls_mpi d;
    uint8_t kc[32];
    size_t olen;
    lg_err e = LG_ERR_CRYPTO;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&p);
    mbedtls_ecp_point_init(&r);
    mbedtls_mpi_init(&d);
    memcpy(kc, k, 32);
    kc[0] &= 248;
    kc[31] &= 127;
    kc[31] |= 64;
    if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519) == 0 &&
        mbedtls_mpi_read_binary_le(&d, kc, 32) == 0 &&
        mbedtls_ecp_point_read_binary(&grp, &p, u, 32) == 0 &&
        mbedtls_ecp_mul(&grp, &r, &d, &p, NULL, NULL) == 0 &&
        mbedtls_ecp_point_write_binary(&grp, &r, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, out, 32) == 0 &&
        olen == 32)
        e = LG_OK;
    memset(kc, 0, sizeof kc);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_point_free(&r);
    mbedtls_ecp_point_free(&p);
    mbedtls_ecp_group_free(&grp);
    return e;
}

lg_err lg_x25519_public(const uint8_t sk[32], uint8_t pk[32])
{
    static const uint8_t base[32] = {9};
    return x25519(sk, base, pk);
}

/* LabeledExtract(salt, label, ikm) = HMAC(salt, "HPKE-v1" || suite || label || ikm) */
static lg_err labeled_extract(const uint8_t *salt, size_t salt_len, const uint8_t *suite,
                              size_t suite_len, const char *label, const uint8_t *ikm,
                              size_t ikm_len, uint8_t prk[32])
{
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    int rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1);
    rc = rc ? rc : mbedtls_md_hmac_starts(&md, salt, salt_len);
    rc = rc ? rc : mbedtls_md_hmac_update(&md, (const uint8_t *)"HPKE-v1", 7);
    rc = rc ? rc : mbedtls_md_hmac_update(&md, suite, suite_len);
    rc = rc ? rc : mbedtls_md_hmac_update(&md, (const uint8_t *)label, strlen(label));
    rc = rc ? rc : mbedtls_md_hmac_update(&md, ikm, ikm_len);
    rc = rc ? rc : mbedtls_md_hmac_finish(&md, prk);
    mbedtls_md_free(&md);
    return rc == 0 ? LG_OK : LG_ERR_CRYPTO;
}

/* LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) || "HPKE-v1"
 * || suite || label || info, L); info is at most 65 bytes here. */
static lg_err labeled_expand(const uint8_t prk[32], const uint8_t *suite, size_t suite_len,
                             const char *label, const uint8_t *info, size_t info_len,
                             uint8_t *out, size_t l)
{
    uint8_t buf[2 + 7 + 10 + 16 + 65];
    size_t lab = strlen(label), n = 0;
    if (2 + 7 + suite_len + lab + info_len > sizeof buf)
        return LG_ERR_CRYPTO;
    buf[n++] = (uint8_t)(l >> 8);
    buf[n++] = (uint8_t)l;
    memcpy(buf + n, "HPKE-v1", 7), n += 7;
    memcpy(buf + n, suite, suite_len), n += suite_len;
    memcpy(buf + n, label, lab), n += lab;
    memcpy(buf + n, info, info_len), n += info_len;
    int rc = mbedtls_hkdf_expand(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), prk, 32, buf, n,
                                 out, l);
    return rc == 0 ? LG_OK : LG_ERR_CRYPTO;
}

lg_err lg_aes_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *ct, size_t ct_len, uint8_t *pt)
{
    mbedtls_gcm_context gcm;
    if (ct_len < 16)
        return LG_ERR_SEALED;
    mbedtls_gcm_init(&gcm);
    int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
    if (rc == 0)
        rc = mbedtls_gcm_auth_decrypt(&gcm, ct_len - 16, nonce, 12, aad, aad_len,
                                      ct + ct_len - 16, 16, ct, pt);
    mbedtls_gcm_free(&gcm);
    if (rc == MBEDTLS_ERR_GCM_AUTH_FAILED)
        return LG_ERR_SEALED;
    return rc == 0 ? LG_OK : LG_ERR_CRYPTO;
}

lg_err lg_hpke_open(const uint8_t skR[32], const uint8_t enc[32], const uint8_t *info,
                    size_t info_len, const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                    size_t ct_len, uint8_t *pt, size_t pt_cap, size_t *pt_len)
{
    /* RFC 9180 4.1 DHKEM(X25519, HKDF-SHA256) Decap, 5.1 KeySchedule
     * (mode_base, empty psk and psk_id), 5.2 Open with sequence 0. */
    static const uint8_t kem_suite[5] = {'K', 'E', 'M', 0x00, 0x20};
    static const uint8_t suite[10] = {'H', 'P', 'K', 'E', 0x00, 0x20, 0x00, 0x01, 0x00, 0x02};
    static const uint8_t zero[1] = {0};
    uint8_t dh[32], kem_ctx[64], prk[32], shared[32], ctx[65], key[32], nonce[12];
    lg_err e;
    if (ct_len < 16 || pt_cap < ct_len - 16)
        return ct_len < 16 ? LG_ERR_SEALED : LG_ERR_BUFFER;
    if ((e = x25519(skR, enc, dh)) != LG_OK)
        return LG_ERR_SEALED;
    uint8_t acc = 0;
    for (size_t i = 0; i < 32; i++)
        acc |= dh[i];
    if (acc == 0) /* RFC 9180 7.1.4: an all-zero shared secret is an error */
        return LG_ERR_SEALED;
    memcpy(kem_ctx, enc, 32);
    if ((e = lg_x25519_public(skR, kem_ctx + 32)) != LG_OK)
        goto out;
    if ((e = labeled_extract(zero, 0, kem_suite, 5, "eae_prk", dh, 32, prk)) != LG_OK ||
        (e = labeled_expand(prk, kem_suite, 5, "shared_secret", kem_ctx, 64, shared, 32)) != LG_OK)
        goto out;
    ctx[0] = 0x00; /* mode_base */
    if ((e = labeled_extract(zero, 0, suite, 10, "psk_id_hash", zero, 0, ctx + 1)) != LG_OK ||
        (e = labeled_extract(zero, 0, suite, 10, "info_hash", info, info_len, ctx + 33)) != LG_OK ||
        (e = labeled_extract(shared, 32, suite, 10, "secret", zero, 0, prk)) != LG_OK ||
        (e = labeled_expand(prk, suite, 10, "key", ctx, 65, key, 32)) != LG_OK ||
        (e = labeled_expand(prk, suite, 10, "base_nonce", ctx, 65, nonce, 12)) != LG_OK)
        goto out;
    e = lg_aes_gcm_open(key, nonce, aad, aad_len, ct, ct_len, pt);
    if (e == LG_OK)
        *pt_len = ct_len - 16;
out:
    memset(dh, 0, sizeof dh);
    memset(prk, 0, sizeof prk);
    memset(shared, 0, sizeof shared);
    memset(key, 0, sizeof key);
    return e;
}
