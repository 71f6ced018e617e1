/* lg_members.c - member sets by height (protocol.md 8.1) and membership
 * proofs (10.2): what a device needs, with the genesis, to verify
 * receipts and heads certified after a change of the gateways. */
#include "lg_internal.h"

#if LG_MEMBER_SETS < 1
#error "LG_MEMBER_SETS: at least 1"
#endif

/* A membership proof a device takes (Go ledger.MaxMembershipProofBytes). */
#define MAX_PROOF_BYTES ((size_t)1 << 20)

uint64_t lg_members_from(uint64_t h)
{
    /* K = 16, W = 64 (protocol.md 8.1) */
    return 16 * ((h + 64 + 15) / 16) + 1;
}

static size_t quorum(size_t n) { return (n + (n - 1) / 3) / 2 + 1; }

lg_err lg_members_init_genesis(lg_members *m, const lg_genesis *g)
{
    if (m == NULL || g == NULL || g->n_nodes == 0)
        return LG_ERR_ARG;
    if (g->n_nodes > LG_MAX_MEMBERS)
        return LG_ERR_LIMIT;
    memset(m, 0, sizeof *m);
    m->g = g;
    m->n_sets = 1;
    m->sets[0].start = 1;
    m->sets[0].n = g->n_nodes;
    m->sets[0].quorum = g->quorum;
    for (size_t i = 0; i < g->n_nodes; i++) { /* the id's NUL and no further: m is all defined bytes */
        size_t n = 0;
        while (n < LG_ID_MAX && g->nodes[i].id[n] != 0)
            n++;
        memcpy(m->sets[0].nodes[i].id, g->nodes[i].id, n);
        memcpy(m->sets[0].nodes[i].pub, g->nodes[i].pub, 65);
    }
    return LG_OK;
}

const lg_member_set *lg_members_at(const lg_members *m, uint64_t height)
{
    for (size_t i = m->n_sets; i > 0; i--)
        if (m->sets[i - 1].start <= height || (i == 1 && m->sets[0].start == 1))
            return &m->sets[i - 1];
    return NULL; /* below the oldest set kept */
}

lg_err lg_receipt_verify_members(const uint8_t *buf, size_t len, const lg_members *m, lg_receipt *out)
{
    if (m == NULL || m->g == NULL || m->n_sets == 0)
        return LG_ERR_ARG;
    return lg_receipt_verify_in(buf, len, m->g, m, out);
}

/* The key a kept set gives id, the newest first; NULL if none does. */
static const uint8_t *kept_key(const lg_members *m, lg_str id)
{
    for (size_t i = m->n_sets; i > 0; i--)
        for (size_t j = 0; j < m->sets[i - 1].n; j++)
            if (lg_str_eq(id, m->sets[i - 1].nodes[j].id))
                return m->sets[i - 1].nodes[j].pub;
    return NULL;
}

/* Steps 2 to 6 of 10.2 on a verified receipt: the tx, its author, the
 * rules; every node parsed once here so that keeping them cannot fail. */
static lg_err check_change(const lg_members *m, const lg_receipt *r)
{
    const lg_genesis *g = m->g;
    const lg_tx *tx = &r->tx;
    const lg_member_set *newest = &m->sets[m->n_sets - 1];
    size_t a = 0;
    if (tx->kind != LG_KIND_CLUSTER_RECONFIG)
        return LG_ERR_MEMBERS;
    while (a < g->n_admins && !lg_str_eq(tx->kid, g->admins[a].id))
        a++;
    if (a == g->n_admins)
        return LG_ERR_MEMBERS; /* not a genesis admin's */
    lg_err e = lg_tx_verify(tx, &g->admins[a].key);
    if (e != LG_OK)
        return e == LG_ERR_CRYPTO ? e : LG_ERR_MEMBERS;
    if (newest->start > r->header.height || newest->n < 4)
        return LG_ERR_MEMBERS; /* pending, or a chain that cannot change */
    if (tx->u.reconfig.nodes.count > LG_MAX_MEMBERS)
        return LG_ERR_LIMIT;
    for (size_t i = 0; i < tx->u.reconfig.nodes.count; i++) {
        lg_str id, spki;
        lg_pubkey k;
        if (lg_reconfig_node(tx, i, &id, &spki) != LG_OK || id.n > LG_ID_MAX ||
            lg_pubkey_from_spki(spki.p, spki.n, &k) != LG_OK || k.alg != LG_ALG_ES256 ||
            !lg_p256_check(k.key))
            return LG_ERR_MEMBERS;
        const uint8_t *old = kept_key(m, id);
        if (old != NULL && !lg_ct_equal(old, k.key, 65))
            return LG_ERR_MEMBERS; /* a former member's id with another key */
    }
    return LG_OK;
}

/* Step 7: keep the new set (checked by check_change). */
static void keep(lg_members *m, const lg_receipt *r)
{
    const lg_tx *tx = &r->tx;
    if (m->n_sets == LG_MEMBER_SETS) {
        memmove(&m->sets[0], &m->sets[1], (LG_MEMBER_SETS - 1) * sizeof m->sets[0]);
        m->n_sets--;
    }
    lg_member_set *s = &m->sets[m->n_sets];
    memset(s, 0, sizeof *s);
    s->start = lg_members_from(r->header.height);
    s->n = tx->u.reconfig.nodes.count;
    s->quorum = quorum(s->n);
    for (size_t i = 0; i < s->n; i++) {
        lg_str id, spki;
        lg_pubkey k;
        lg_reconfig_node(tx, i, &id, &spki);
        lg_pubkey_from_spki(spki.p, spki.n, &k);
        memcpy(s->nodes[i].id, id.p, id.n);
        memcpy(s->nodes[i].pub, k.key, 65);
    }
    m->n_sets++;
    m->last_change = r->header.height;
}

lg_err lg_members_follow(lg_members *m, const uint8_t *receipt, size_t len)
{
    lg_receipt r;
    if (m == NULL || m->g == NULL || m->n_sets == 0 || receipt == NULL)
        return LG_ERR_ARG;
    lg_err e = lg_receipt_verify_in(receipt, len, m->g, m, &r);
    if (e != LG_OK)
        return e == LG_ERR_CRYPTO ? e : LG_ERR_MEMBERS;
    if ((e = check_change(m, &r)) != LG_OK)
        return e;
    keep(m, &r);
    return LG_OK;
}

/* The height of a Receipt's header, without verifying it. */
static lg_err receipt_height(lg_str r, uint64_t *height)
{
    lg_cbor c;
    size_t n;
    uint64_t prev = UINT64_MAX;
    lg_str tx;
    lg_header h;
    lg_err e;
    cb_init(&c, r.p, r.n);
    if ((e = cb_map(&c, &n)) != LG_OK)
        return e;
    if (n != 5 || (e = cb_want_key(&c, &prev, 1)) != LG_OK || (e = cb_bytes(&c, &tx)) != LG_OK ||
        (e = cb_want_key(&c, &prev, 2)) != LG_OK || (e = lg_header_decode(&c, &h)) != LG_OK)
        return e != LG_OK ? e : LG_ERR_MALFORMED;
    *height = h.height;
    return LG_OK;
}

lg_err lg_members_follow_proof(lg_members *m, const uint8_t *proof, size_t len, size_t *followed)
{
    lg_cbor c;
    size_t n;
    lg_err e;
    if (followed != NULL)
        *followed = 0;
    if (m == NULL || m->g == NULL || m->n_sets == 0 || proof == NULL)
        return LG_ERR_ARG;
    if (len > MAX_PROOF_BYTES)
        return LG_ERR_MEMBERS;
    cb_init(&c, proof, len);
    if (cb_array(&c, &n) != LG_OK)
        return LG_ERR_MEMBERS;
    /* the whole array is decoded before the first link is followed */
    for (size_t i = 0; i < n; i++) {
        lg_str r;
        if (cb_item(&c, &r) != LG_OK)
            return LG_ERR_MEMBERS;
    }
    if (!cb_done(&c))
        return LG_ERR_MEMBERS;
    cb_init(&c, proof, len);
    cb_array(&c, &n);
    for (size_t i = 0; i < n; i++) {
        lg_str r;
        uint64_t height;
        cb_item(&c, &r);
        if (receipt_height(r, &height) != LG_OK)
            return LG_ERR_MEMBERS;
        if (height <= m->last_change)
            continue; /* followed before */
        if ((e = lg_members_follow(m, r.p, r.n)) != LG_OK)
            return e;
        if (followed != NULL)
            (*followed)++;
    }
    return LG_OK;
}
