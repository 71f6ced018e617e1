/* lg_receipt.c - headers, votes and commit certificates (protocol.md 9),
 * RFC 9162 inclusion proofs, and receipts (section 10). Every structure is
 * decoded whole before any signature is checked. */
#include "lg_internal.h"

#if LG_MAX_NODES > 64 || LG_MAX_MEMBERS > 64
#error "LG_MAX_NODES, LG_MAX_MEMBERS: the certificate check keeps seen signers in 64 bits"
#endif

/* Header = {1: tstr, 2: uint, 3: bstr, 4: bstr, 5: uint, 6: int, 7: uint,
 * 8: tstr}, all REQUIRED (9.1). */
lg_err lg_header_decode(lg_cbor *c, lg_header *h)
{
    size_t n, at = c->pos;
    uint64_t prev = UINT64_MAX, key;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    if (n != 8)
        return LG_ERR_MALFORMED;
    for (size_t i = 0; i < 8; i++) {
        if ((e = cb_key(c, &prev, &key)) != LG_OK)
            return e;
        if (key != i + 1)
            return LG_ERR_MALFORMED;
        switch (key) {
        case 1: e = cb_text(c, &h->chain_id); break;
        case 2: e = cb_uint(c, &h->height); break;
        case 3: e = cb_bytes(c, &h->prev); break;
        case 4: e = cb_bytes(c, &h->tx_root); break;
        case 5: e = cb_uint(c, &h->num_txs); break;
        case 6: e = cb_int(c, &h->time_ms); break;
        case 7: e = cb_uint(c, &h->view); break;
        default: e = cb_text(c, &h->proposer); break;
        }
        if (e != LG_OK)
            return e;
    }
    lg_sha256(c->p + at, c->pos - at, h->hash);
    return LG_OK;
}

void lg_vote(lg_cbw *w, const lg_header *h, uint64_t view)
{
    cbw_head(w, CB_ARRAY, 5);
    cbw_textz(w, "ledgergate commit v1");
    cbw_text(w, (const char *)h->chain_id.p, h->chain_id.n);
    cbw_uint(w, h->height);
    cbw_uint(w, view);
    cbw_bytes(w, h->hash, 32);
}

/* D = H(["ledgergate commit v1", chain, height, C.view, hash]) (9.4). Not
 * inlined: the SHA-256 context is off the stack while votes are verified. */
static LG_NOINLINE void commit_digest(const lg_header *h, uint64_t view, uint8_t digest[32])
{
    mbedtls_sha256_context sha;
    lg_cbw w;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    cbw_init(&w, NULL, 0);
    w.sha = &sha;
    lg_vote(&w, h, view);
    mbedtls_sha256_finish_ret(&sha, digest);
    mbedtls_sha256_free(&sha);
}

/* A member set to check a certificate against: the genesis nodes or a
 * set of an lg_members (9.4). */
typedef struct cert_set {
    const char *chain_id;
    const lg_node *nodes;
    size_t n, quorum;
} cert_set;

/* Cert = {1: view, 2: [+ {1: id, 2: bstr}] / null}. With g NULL only the
 * layout is checked; else every entry is verified against g (9.4). */
static lg_err cert_walk(lg_str cert, const cert_set *g, const lg_header *h)
{
    lg_cbor c;
    size_t n, count = 0;
    uint64_t prev = UINT64_MAX, key, view = 0;
    uint8_t digest[32];
    uint64_t seen = 0;
    lg_err e;
    cb_init(&c, cert.p, cert.n);
    if ((e = cb_map(&c, &n)) != LG_OK)
        return e;
    if (n != 2)
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(&c, &prev, 1)) != LG_OK)
        return e;
    if ((e = cb_uint(&c, &view)) != LG_OK)
        return e;
    if ((e = cb_want_key(&c, &prev, 2)) != LG_OK)
        return e;
    if (g != NULL) {
        if (!lg_str_eq(h->chain_id, g->chain_id))
            return LG_ERR_CERT;
        commit_digest(h, view, digest);
    }
    if (!cb_null(&c)) { /* 2.1: null is an empty list */
        if ((e = cb_array(&c, &count)) != LG_OK)
            return e;
        for (size_t i = 0; i < count; i++) {
            lg_str node, sig;
            uint64_t p2 = UINT64_MAX;
            if ((e = cb_map(&c, &n)) != LG_OK)
                return e;
            if (n != 2)
                return LG_ERR_MALFORMED;
            if ((e = cb_key(&c, &p2, &key)) != LG_OK)
                return e;
            if (key != 1 || (e = cb_text(&c, &node)) != LG_OK)
                return key != 1 ? LG_ERR_MALFORMED : e;
            if ((e = cb_key(&c, &p2, &key)) != LG_OK)
                return e;
            if (key != 2 || (e = cb_bytes(&c, &sig)) != LG_OK)
                return key != 2 ? LG_ERR_MALFORMED : e;
            if (g == NULL)
                continue;
            size_t j = 0;
            while (j < g->n && !lg_str_eq(node, g->nodes[j].id))
                j++;
            if (j == g->n)
                return LG_ERR_CERT; /* an unknown signer voids it all */
            if (seen & ((uint64_t)1 << j))
                return LG_ERR_CERT; /* so does a duplicate */
            seen |= (uint64_t)1 << j;
            e = lg_p256_verify_der(g->nodes[j].pub, digest, sig.p, sig.n);
            if (e != LG_OK)
                return e == LG_ERR_BAD_SIGNATURE ? LG_ERR_CERT : e;
        }
    }
    if (!cb_done(&c))
        return LG_ERR_MALFORMED;
    if (g != NULL && count < g->quorum)
        return LG_ERR_CERT;
    return LG_OK;
}

lg_err lg_cert_verify_set(const char *chain_id, const lg_node *nodes, size_t n, size_t quorum,
                          const lg_header *h, lg_str cert)
{
    cert_set set = {chain_id, nodes, n, quorum};
    lg_err e = cert_walk(cert, &set, h);
    return e == LG_OK || e == LG_ERR_CERT || e == LG_ERR_CRYPTO ? e : LG_ERR_CERT;
}

lg_err lg_cert_verify(const lg_genesis *g, const lg_header *h, lg_str cert)
{
    return lg_cert_verify_set(g->chain_id, g->nodes, g->n_nodes, g->quorum, h, cert);
}

/* Decode a Cert item at c (layout only) and return its span. */
static lg_err cert_decode(lg_cbor *c, lg_str *span)
{
    lg_err e = cb_item(c, span);
    return e != LG_OK ? e : cert_walk(*span, NULL, NULL);
}

/* Head = {1: Header, 2: Cert}: the header decoded, the cert's span. */
static lg_err head_decode(lg_str head, lg_header *h, lg_str *cert)
{
    lg_cbor c;
    size_t n;
    uint64_t prev = UINT64_MAX;
    lg_err e;
    cb_init(&c, head.p, head.n);
    if ((e = cb_map(&c, &n)) != LG_OK)
        return e;
    if (n != 2)
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(&c, &prev, 1)) != LG_OK)
        return e;
    if ((e = lg_header_decode(&c, h)) != LG_OK)
        return e;
    if ((e = cb_want_key(&c, &prev, 2)) != LG_OK)
        return e;
    if ((e = cert_decode(&c, cert)) != LG_OK)
        return e;
    if (!cb_done(&c))
        return LG_ERR_MALFORMED;
    return LG_OK;
}

lg_err lg_head_verify(const lg_genesis *g, lg_str head, lg_header *h)
{
    lg_str cert;
    lg_err e = head_decode(head, h, &cert);
    if (e != LG_OK)
        return e;
    return lg_cert_verify(g, h, cert);
}

lg_err lg_head_verify_members(const lg_members *m, const uint8_t *head, size_t len, lg_header *h)
{
    lg_str cert;
    if (m == NULL || m->g == NULL || head == NULL || h == NULL)
        return LG_ERR_ARG;
    lg_err e = head_decode((lg_str){head, len}, h, &cert);
    if (e != LG_OK)
        return e;
    const lg_member_set *set = lg_members_at(m, h->height);
    if (set == NULL)
        return LG_ERR_CERT;
    return lg_cert_verify_set(m->g->chain_id, set->nodes, set->n, set->quorum, h, cert);
}

/* ---- RFC 9162 2.1.3.2 ------------------------------------------------------ */

static void node_hash(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    mbedtls_sha256_update_ret(&sha, (const uint8_t *)"\x01", 1);
    mbedtls_sha256_update_ret(&sha, l, 32);
    mbedtls_sha256_update_ret(&sha, r, 32);
    mbedtls_sha256_finish_ret(&sha, out);
    mbedtls_sha256_free(&sha);
}

/* One step of the audit path walk; false if the path is too long. */
static bool merkle_step(uint64_t *fn, uint64_t *sn, uint8_t r[32], const uint8_t p[32])
{
    if (*sn == 0)
        return false;
    if ((*fn & 1) || *fn == *sn) {
        node_hash(p, r, r);
        if (!(*fn & 1))
            while (!(*fn & 1) && *fn != 0)
                *fn >>= 1, *sn >>= 1;
    } else {
        node_hash(r, p, r);
    }
    *fn >>= 1, *sn >>= 1;
    return true;
}

lg_err lg_merkle_verify(const uint8_t leaf_hash[LG_HASH_LEN], uint64_t index, uint64_t size,
                        const uint8_t *proof, size_t count, const uint8_t root[LG_HASH_LEN])
{
    uint8_t r[32];
    if (leaf_hash == NULL || root == NULL || (proof == NULL && count > 0))
        return LG_ERR_ARG;
    if (index >= size)
        return LG_ERR_MERKLE;
    uint64_t fn = index, sn = size - 1;
    memcpy(r, leaf_hash, 32);
    for (size_t i = 0; i < count; i++)
        if (!merkle_step(&fn, &sn, r, proof + 32 * i))
            return LG_ERR_MERKLE;
    return sn == 0 && lg_ct_equal(r, root, 32) ? LG_OK : LG_ERR_MERKLE;
}

/* ---- receipts ---------------------------------------------------------------- */

/* Step 6 of 10: the inclusion proof (count hashes in proof, the array
 * checked by the caller), H(0x00 || tx) up to the header's tx_root. Not
 * inlined: the SHA-256 context is off the stack while votes are verified. */
static LG_NOINLINE lg_err inclusion(lg_str tx, lg_str proof, size_t count, uint64_t index,
                                   const lg_header *h)
{
    mbedtls_sha256_context sha;
    uint8_t r[32];
    uint64_t fn = index, sn = h->num_txs - 1;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    mbedtls_sha256_update_ret(&sha, (const uint8_t *)"\x00", 1);
    mbedtls_sha256_update_ret(&sha, tx.p, tx.n);
    mbedtls_sha256_finish_ret(&sha, r);
    mbedtls_sha256_free(&sha);
    if (count > 0) {
        lg_cbor pc;
        lg_str p;
        size_t n;
        cb_init(&pc, proof.p, proof.n);
        cb_array(&pc, &n); /* checked by the caller */
        for (size_t j = 0; j < count; j++) {
            cb_bytes(&pc, &p);
            if (p.n != 32 || !merkle_step(&fn, &sn, r, p.p))
                return LG_ERR_MERKLE;
        }
    }
    if (sn != 0 || h->tx_root.n != 32 || !lg_ct_equal(r, h->tx_root.p, 32))
        return LG_ERR_MERKLE;
    return LG_OK;
}

lg_err lg_receipt_verify(const uint8_t *buf, size_t len, const lg_genesis *g, lg_receipt *out)
{
    return lg_receipt_verify_in(buf, len, g, NULL, out);
}

/* Receipt = {1: bstr, 2: Header, 3: Cert, 4: uint, 5: [* bstr] / null} */
lg_err lg_receipt_verify_in(const uint8_t *buf, size_t len, const lg_genesis *g,
                            const lg_members *m, lg_receipt *out)
{
    lg_cbor c;
    size_t n, count = 0;
    uint64_t prev = UINT64_MAX, key;
    lg_str tx = {NULL, 0}, cert = {NULL, 0}, proof = {NULL, 0};
    lg_err e;
    if (buf == NULL || g == NULL || out == NULL)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    /* 1. decode, deterministic */
    cb_init(&c, buf, len);
    if ((e = cb_map(&c, &n)) != LG_OK)
        goto bad;
    if (n != 5) {
        e = LG_ERR_MALFORMED;
        goto bad;
    }
    for (uint64_t i = 1; i <= 5; i++) {
        if ((e = cb_key(&c, &prev, &key)) != LG_OK)
            goto bad;
        if (key != i) {
            e = LG_ERR_MALFORMED;
            goto bad;
        }
        if (i == 1)
            e = cb_bytes(&c, &tx);
        else if (i == 2)
            e = lg_header_decode(&c, &out->header);
        else if (i == 3)
            e = cert_decode(&c, &cert);
        else if (i == 4)
            e = cb_uint(&c, &out->index);
        else if (!cb_null(&c)) {
            size_t at = c.pos;
            lg_str h;
            e = cb_array(&c, &count);
            for (size_t j = 0; e == LG_OK && j < count; j++)
                e = cb_bytes(&c, &h);
            proof.p = buf + at;
            proof.n = c.pos - at;
        }
        if (e != LG_OK)
            goto bad;
    }
    if (!cb_done(&c)) {
        e = LG_ERR_MALFORMED;
        goto bad;
    }
    /* 2 - 4 */
    if (!lg_str_eq(out->header.chain_id, g->chain_id))
        return LG_ERR_RECEIPT;
    if (lg_tx_decode(tx.p, tx.n, g->max_tx_bytes, &out->tx) != LG_OK)
        return LG_ERR_RECEIPT;
    if (!lg_str_eq(out->tx.chain_id, g->chain_id))
        return LG_ERR_RECEIPT;
    /* 5 */
    if (out->index >= out->header.num_txs)
        return LG_ERR_RECEIPT;
    /* 6 */
    if ((e = inclusion(tx, proof, count, out->index, &out->header)) != LG_OK)
        return e;
    /* 7, with the set in force at the height (8.1) */
    if (m == NULL)
        return lg_cert_verify(g, &out->header, cert);
    const lg_member_set *set = lg_members_at(m, out->header.height);
    if (set == NULL)
        return LG_ERR_CERT;
    return lg_cert_verify_set(g->chain_id, set->nodes, set->n, set->quorum, &out->header, cert);
bad:
    /* not deterministic stays so (ledger.ErrNotCanonical); any other
     * decoding failure is ledger.ErrReceipt */
    return e == LG_ERR_NOT_CANONICAL ? e : LG_ERR_RECEIPT;
}
