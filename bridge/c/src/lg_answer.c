/* lg_answer.c - the answers a gateway gives a device (protocol.md 11):
 * freshness, ConfigAnswer, KeysAnswer, FirmwareAnswer, and the image check.
 * An answer is decoded whole (receipts as spans) before anything is
 * verified; receipts are then verified one at a time, so the stack holds
 * one lg_receipt at most. */
#include "lg_internal.h"

/* Up to 10 top-level fields (FirmwareAnswer); votes stay one span. */
typedef struct answer {
    lg_str f[11]; /* f[k]: the item of key k, n == 0 if absent */
} answer;

/* Decode a map with uint keys 1..max, the required ones in req (bit k). */
static lg_err answer_decode(const uint8_t *buf, size_t len, unsigned max, unsigned req, answer *a)
{
    lg_cbor c;
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    unsigned seen = 0;
    lg_err e;
    memset(a, 0, sizeof *a);
    cb_init(&c, buf, len);
    if ((e = cb_map(&c, &n)) != LG_OK)
        return e;
    for (size_t i = 0; i < n; i++) {
        if ((e = cb_key(&c, &prev, &key)) != LG_OK)
            return e;
        if (key < 1 || key > max)
            return LG_ERR_MALFORMED; /* 11.2.1, 11.3.1, 11.4.1: reserved keys */
        if ((e = cb_item(&c, &a->f[key])) != LG_OK)
            return e;
        seen |= 1u << key;
    }
    if (!cb_done(&c) || (seen & req) != req)
        return LG_ERR_MALFORMED;
    return LG_OK;
}

/* A text field of an answer; an OPTIONAL one must not be empty (rule 7). */
static lg_err answer_text(lg_str item, bool optional, lg_str *s)
{
    lg_cbor c;
    cb_init(&c, item.p, item.n);
    lg_err e = cb_text(&c, s);
    if (e == LG_OK && optional && s->n == 0)
        e = LG_ERR_MALFORMED;
    return e;
}

/* The height of a receipt's header, decoding only that far. */
static lg_err receipt_height(lg_str r, uint64_t *height)
{
    lg_cbor c;
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    lg_str tx;
    lg_header h;
    lg_err e;
    cb_init(&c, r.p, r.n);
    if ((e = cb_map(&c, &n)) != LG_OK || (e = cb_key(&c, &prev, &key)) != LG_OK ||
        (e = cb_bytes(&c, &tx)) != LG_OK || (e = cb_key(&c, &prev, &key)) != LG_OK ||
        (e = lg_header_decode(&c, &h)) != LG_OK)
        return LG_ERR_PROOF;
    *height = h.height;
    return LG_OK;
}

/* 11.1: the head's certificate, its age, and no receipt above it. */
/* What the answer's receipts and head verify with: the genesis nodes
 * (m NULL) or the member sets of m (protocol.md 8.1). */
typedef struct vset {
    const lg_genesis *g;
    const lg_members *m;
} vset;

static lg_err fresh(const vset *v, lg_str head, int64_t now_ms, int64_t max_age_ms,
                    const lg_str *receipts, size_t n, uint64_t *head_height)
{
    lg_header h;
    lg_err e = v->m != NULL ? lg_head_verify_members(v->m, head.p, head.n, &h) : lg_head_verify(v->g, head, &h);
    if (e != LG_OK)
        return e == LG_ERR_CRYPTO ? e : LG_ERR_PROOF;
    /* now - time > max_age, without overflow: a head in the future passes */
    if (now_ms > h.time_ms && (uint64_t)now_ms - (uint64_t)h.time_ms > (uint64_t)max_age_ms)
        return LG_ERR_STALE_HEAD;
    for (size_t i = 0; i < n; i++) {
        uint64_t height;
        if (receipts[i].n == 0)
            continue;
        if ((e = receipt_height(receipts[i], &height)) != LG_OK)
            return e;
        if (height > h.height)
            return LG_ERR_PROOF;
    }
    *head_height = h.height;
    return LG_OK;
}

/* A receipt that verifies and is of kind, by or about device (if not
 * NULL): Go's provenTx. Anything else proves nothing. */
static lg_err proven(const vset *v, lg_str r, lg_kind kind, const char *device,
                     lg_receipt *out)
{
    lg_err e = lg_receipt_verify_in(r.p, r.n, v->g, v->m, out);
    if (e != LG_OK)
        return e == LG_ERR_CRYPTO ? e : LG_ERR_PROOF;
    if (out->tx.kind != kind)
        return LG_ERR_PROOF;
    if (device != NULL) {
        lg_str id = kind == LG_KIND_DEVICE_ENROLL ? out->tx.u.enroll.device_id :
                    kind == LG_KIND_DEVICE_REKEY  ? out->tx.u.rekey.device_id :
                                                    out->tx.u.revoke.device_id;
        if (!lg_str_eq(id, device))
            return LG_ERR_PROOF;
    }
    return LG_OK;
}

/* What an enrollment receipt proves (protocol.md 11, 6.18). */
typedef struct enrollment {
    lg_str public_key, enc_key, model;
    lg_list groups;
} enrollment;

/* A receipt that verifies and is a device.enroll or a device.claim of
 * device: the device's enrollment (a claim's has no encryption key). */
static lg_err enrolled(const vset *v, lg_str r, const char *device, lg_receipt *out, enrollment *en)
{
    lg_err e = lg_receipt_verify_in(r.p, r.n, v->g, v->m, out);
    if (e != LG_OK)
        return e == LG_ERR_CRYPTO ? e : LG_ERR_PROOF;
    memset(en, 0, sizeof *en);
    if (out->tx.kind == LG_KIND_DEVICE_ENROLL && lg_str_eq(out->tx.u.enroll.device_id, device)) {
        en->public_key = out->tx.u.enroll.public_key;
        en->enc_key = out->tx.u.enroll.enc_key;
        en->model = out->tx.u.enroll.model;
        en->groups = out->tx.u.enroll.groups;
        return LG_OK;
    }
    if (out->tx.kind == LG_KIND_DEVICE_CLAIM && lg_str_eq(out->tx.u.claim.device_id, device)) {
        en->public_key = out->tx.u.claim.public_key;
        en->model = out->tx.u.claim.model;
        en->groups = out->tx.u.claim.groups;
        return LG_OK;
    }
    return LG_ERR_PROOF;
}

static bool in_groups(lg_str g, const char *const *groups, size_t n, const lg_list *list)
{
    if (g.n == 0)
        return false;
    if (groups != NULL) {
        for (size_t i = 0; i < n; i++)
            if (groups[i] != NULL && lg_str_eq(g, groups[i]))
                return true;
        return false;
    }
    for (size_t i = 0; list != NULL && i < list->count; i++) {
        lg_str s;
        if (lg_list_id_at(list, i, &s) == LG_OK && lg_str_eq_str(s, g))
            return true;
    }
    return false;
}

/* ---- ConfigAnswer (11.2) --------------------------------------------------- */

static lg_err config_answer(const uint8_t *buf, size_t len, const vset *v,
                            const lg_config_check *chk, lg_config_set *cs,
                            lg_config_state *accepted)
{
    answer a;
    lg_str dev;
    uint64_t hh;
    lg_receipt r;
    lg_err e;
    if (buf == NULL || v->g == NULL || chk == NULL || chk->device == NULL ||
        cs == NULL || accepted == NULL || chk->max_age_ms < 0)
        return LG_ERR_ARG;
    memset(cs, 0, sizeof *cs);
    memset(accepted, 0, sizeof *accepted);
    /* {1: id, ? 2: Receipt, 3: Head, ? 4: true, ? 5: Receipt} */
    if ((e = answer_decode(buf, len, 5, (1u << 1) | (1u << 3), &a)) != LG_OK)
        return e;
    if ((e = answer_text(a.f[1], false, &dev)) != LG_OK)
        return e;
    if (a.f[4].n != 0 && !(a.f[4].n == 1 && a.f[4].p[0] == 0xf5))
        return LG_ERR_MALFORMED; /* match is true or absent */
    /* 1 */
    if (!lg_str_eq(dev, chk->device))
        return LG_ERR_PROOF;
    /* 2 */
    if ((e = fresh(v, a.f[3], chk->now_ms, chk->max_age_ms, &a.f[2], 1, &hh)) != LG_OK)
        return e;
    /* 3 */
    if (a.f[2].n == 0)
        return LG_ERR_NO_CONFIG;
    /* 4, 5 */
    if ((e = proven(v, a.f[2], LG_KIND_CONFIG_SET, NULL, &r)) != LG_OK)
        return e;
    lg_str t = r.tx.u.config_set.target;
    if (!lg_str_copy(cs->target, sizeof cs->target, t) ||
        !lg_str_copy(cs->uri, sizeof cs->uri, r.tx.u.config_set.uri))
        return LG_ERR_PROOF;
    cs->version = r.tx.u.config_set.version;
    memcpy(cs->sha256, r.tx.u.config_set.sha256.p, 32);
    cs->size = r.tx.u.config_set.size;
    memcpy(cs->blob, r.tx.u.config_set.blob.p, 32);
    cs->height = r.header.height;
    bool mine = lg_str_eq(t, chk->device);
    if (!mine && t.n > 6 && memcmp(t.p, "group:", 6) == 0) {
        lg_str grp = {t.p + 6, t.n - 6};
        if (chk->groups != NULL) {
            mine = in_groups(grp, chk->groups, chk->n_groups, NULL);
        } else {
            /* the groups from the enrollment receipt, which must prove them */
            if (a.f[5].n == 0)
                return LG_ERR_PROOF;
            enrollment en;
            if ((e = enrolled(v, a.f[5], chk->device, &r, &en)) != LG_OK)
                return e;
            mine = in_groups(grp, NULL, 0, &en.groups);
        }
    }
    if (!mine)
        return LG_ERR_PROOF;
    /* 6: anti-rollback */
    const lg_config_state *l = chk->last;
    if (l != NULL && l->valid &&
        (cs->height < l->height || (strcmp(cs->target, l->target) == 0 && cs->version < l->version)))
        return LG_ERR_ROLLBACK;
    /* 7; a device that holds no configuration (hash NULL) holds no h the
     * config.set's could equal: download it */
    if (chk->hash == NULL || !lg_ct_equal(cs->sha256, chk->hash, 32))
        return LG_ERR_NOT_CURRENT;
    /* 8 is the caller's: store this before applying */
    accepted->valid = true;
    memcpy(accepted->target, cs->target, sizeof accepted->target);
    accepted->version = cs->version;
    accepted->height = cs->height;
    memcpy(accepted->sha256, cs->sha256, 32);
    return LG_OK;
}

/* ---- KeysAnswer (11.3) ------------------------------------------------------ */

static lg_err keys_answer(const uint8_t *buf, size_t len, const vset *v,
                          const char *device, int64_t now_ms, int64_t max_age_ms, lg_keys *out)
{
    answer a;
    lg_str dev;
    lg_receipt r;
    uint64_t enroll_height;
    lg_err e;
    if (buf == NULL || v->g == NULL || device == NULL || out == NULL || max_age_ms < 0)
        return LG_ERR_ARG;
    memset(out, 0, sizeof *out);
    /* {1: id, 2: Receipt, ? 3: Receipt, ? 4: Receipt, 5: Head} */
    if ((e = answer_decode(buf, len, 5, (1u << 1) | (1u << 2) | (1u << 5), &a)) != LG_OK)
        return e;
    if ((e = answer_text(a.f[1], false, &dev)) != LG_OK)
        return e;
    if (!lg_str_eq(dev, device))
        return LG_ERR_PROOF;
    uint64_t hh;
    if ((e = fresh(v, a.f[5], now_ms, max_age_ms, &a.f[2], 3, &hh)) != LG_OK)
        return e;
    enrollment en;
    if ((e = enrolled(v, a.f[2], device, &r, &en)) != LG_OK) /* a device.enroll or a device.claim */
        return e;
    enroll_height = out->height = r.header.height;
    out->signing_key = en.public_key;
    out->enc_key = en.enc_key;
    out->model = en.model;
    out->groups = en.groups;
    if (a.f[3].n != 0) {
        if ((e = proven(v, a.f[3], LG_KIND_DEVICE_REKEY, device, &r)) != LG_OK)
            return e;
        if (r.header.height < enroll_height)
            return LG_ERR_PROOF;
        out->height = r.header.height;
        out->signing_key = r.tx.u.rekey.public_key;
        out->enc_key = r.tx.u.rekey.enc_key;
    }
    lg_pubkey k;
    if (lg_pubkey_from_spki(out->signing_key.p, out->signing_key.n, &k) != LG_OK)
        return LG_ERR_PROOF;
    if (a.f[4].n != 0) {
        if ((e = proven(v, a.f[4], LG_KIND_DEVICE_REVOKE, device, &r)) != LG_OK)
            return e;
        out->revoked = true;
        out->reason = r.tx.u.revoke.reason;
    }
    return LG_OK;
}

/* ---- FirmwareAnswer (11.4, 11.5) --------------------------------------------- */

/* The tx of a receipt that verified before: decode only. */
static lg_err receipt_tx(lg_str rs, lg_tx *tx)
{
    lg_cbor c;
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    lg_str t;
    lg_err e;
    cb_init(&c, rs.p, rs.n);
    if ((e = cb_map(&c, &n)) != LG_OK || (e = cb_key(&c, &prev, &key)) != LG_OK ||
        (e = cb_bytes(&c, &t)) != LG_OK)
        return e;
    return lg_tx_decode(t.p, t.n, 0, tx);
}

/* 11.5 step 15: is a good vote for (model, version) by kid among the first i
 * receipts of the array votes (all verified already)? Not inlined: its
 * lg_tx is then not on the stack while proven() verifies signatures. */
static LG_NOINLINE bool voted_before(lg_str votes, size_t i, lg_str model, uint64_t version,
                                     lg_str kid)
{
    lg_cbor c;
    size_t n;
    cb_init(&c, votes.p, votes.n);
    cb_array(&c, &n);
    for (size_t j = 0; j < i; j++) {
        lg_str rs;
        lg_tx t;
        cb_item(&c, &rs);
        if (receipt_tx(rs, &t) == LG_OK && t.u.vote.good && t.u.vote.version == version &&
            lg_str_eq_str(t.u.vote.model, model) && lg_str_eq_str(t.kid, kid))
            return true;
    }
    return false;
}

/* 11.5 steps 11 - 15: may the device install the release (model, version)? */
static lg_err allowed(const vset *v, const answer *a, const lg_fw_check *chk,
                      const lg_list *egroups, lg_str model, uint64_t version, lg_receipt *rp)
{
    lg_receipt *const r = rp; /* the caller's: one lg_receipt on the stack, not two */
    lg_str grp = {NULL, 0};
    lg_err e;
    if (a->f[2].n != 0 && (e = answer_text(a->f[2], true, &grp)) != LG_OK)
        return e;
    /* 11 */
    if (!in_groups(grp, chk->groups, chk->n_groups, egroups))
        return LG_ERR_POLICY;
    /* 12: no policy means approval required */
    bool require_approval = true;
    uint64_t min_good = 0;
    if (a->f[4].n != 0) {
        if ((e = proven(v, a->f[4], LG_KIND_FIRMWARE_POLICY, NULL, r)) != LG_OK)
            return e;
        if (!lg_str_eq_str(r->tx.u.policy.group, grp))
            return LG_ERR_PROOF;
        require_approval = r->tx.u.policy.require_approval;
        min_good = r->tx.u.policy.min_good_votes;
    }
    /* 13 */
    if (a->f[5].n != 0) {
        if ((e = proven(v, a->f[5], LG_KIND_FIRMWARE_APPROVE, NULL, r)) != LG_OK)
            return e;
        if (lg_str_eq_str(r->tx.u.approve.model, model) && r->tx.u.approve.version == version &&
            lg_str_eq_str(r->tx.u.approve.group, grp))
            return LG_OK;
        return LG_ERR_PROOF;
    }
    /* 14 */
    if (require_approval)
        return LG_ERR_POLICY;
    /* 15: distinct authors of good votes for this release */
    uint64_t voters = 0;
    if (a->f[6].n != 0) {
        lg_cbor c;
        size_t n;
        cb_init(&c, a->f[6].p, a->f[6].n);
        if (cb_array(&c, &n) != LG_OK || n == 0)
            return LG_ERR_MALFORMED;
        for (size_t i = 0; i < n; i++) {
            lg_str rs;
            if ((e = cb_item(&c, &rs)) != LG_OK)
                return e;
            /* 11.4: every element is a Receipt; null is refused by proven */
            if ((e = proven(v, rs, LG_KIND_FIRMWARE_VOTE, NULL, r)) != LG_OK)
                return e;
            const lg_tx *v = &r->tx;
            if (!v->u.vote.good || v->u.vote.version != version ||
                !lg_str_eq_str(v->u.vote.model, model))
                continue;
            if (!voted_before(a->f[6], i, model, version, v->kid))
                voters++;
        }
    }
    return voters >= min_good ? LG_OK : LG_ERR_POLICY;
}

static lg_err firmware_answer(const uint8_t *buf, size_t len, const vset *v,
                              const lg_fw_check *chk, lg_fw_release *rel)
{
    answer a;
    lg_str dev, model;
    lg_receipt r;
    lg_list egroups = {NULL, 0, 0};
    uint64_t hh;
    lg_err e;
    if (buf == NULL || v->g == NULL || chk == NULL || chk->device == NULL ||
        chk->vendor_key == NULL || rel == NULL || chk->max_age_ms < 0)
        return LG_ERR_ARG;
    memset(rel, 0, sizeof *rel);
    /* {1: id, ? 2: id, 3: Receipt, ? 4, ? 5: Receipt, ? 6: [+ Receipt],
     *  ? 7: Receipt, 8: Head, ? 9: Receipt, ? 10: tstr} */
    if ((e = answer_decode(buf, len, 10, (1u << 1) | (1u << 3) | (1u << 8), &a)) != LG_OK)
        return e;
    if ((e = answer_text(a.f[1], false, &dev)) != LG_OK)
        return e;
    if (a.f[10].n != 0 && (e = answer_text(a.f[10], true, &model)) != LG_OK)
        return e; /* blocked: the gateway's word; the checks below decide */
    /* 1 */
    if (!lg_str_eq(dev, chk->device))
        return LG_ERR_PROOF;
    /* 2: every receipt but the enrollment under the head */
    {
        lg_str rs[5 + 1];
        size_t n = 0;
        rs[n++] = a.f[3], rs[n++] = a.f[4], rs[n++] = a.f[5], rs[n++] = a.f[7];
        if ((e = fresh(v, a.f[8], chk->now_ms, chk->max_age_ms, rs, n, &hh)) != LG_OK)
            return e;
        if (a.f[6].n != 0) {
            lg_cbor c;
            size_t nv;
            cb_init(&c, a.f[6].p, a.f[6].n);
            if (cb_array(&c, &nv) != LG_OK || nv == 0)
                return LG_ERR_MALFORMED;
            for (size_t i = 0; i < nv; i++) {
                uint64_t height;
                lg_str v;
                if ((e = cb_item(&c, &v)) != LG_OK)
                    return e;
                if ((e = receipt_height(v, &height)) != LG_OK)
                    return e;
                if (height > hh)
                    return LG_ERR_PROOF;
            }
        }
    }
    /* 3: model and groups the device does not keep, from its enrollment */
    lg_str emodel = {NULL, 0};
    if (chk->model == NULL || chk->groups == NULL) {
        if (a.f[9].n == 0)
            return LG_ERR_PROOF;
        enrollment en;
        if ((e = enrolled(v, a.f[9], chk->device, &r, &en)) != LG_OK)
            return e;
        emodel = en.model;
        egroups = en.groups;
    }
    /* 4 */
    if ((e = proven(v, a.f[3], LG_KIND_FIRMWARE_PUBLISH, NULL, &r)) != LG_OK)
        return e;
    /* 5 */
    e = lg_tx_verify(&r.tx, chk->vendor_key);
    if (e == LG_ERR_BAD_SIGNATURE)
        return LG_ERR_VENDOR_SIGNATURE;
    if (e != LG_OK)
        return e; /* LG_ERR_UNSUPPORTED_ALG, LG_ERR_CRYPTO */
    model = r.tx.u.publish.model;
    if (!lg_str_copy(rel->model, sizeof rel->model, model))
        return LG_ERR_PROOF;
    rel->version = r.tx.u.publish.version;
    memcpy(rel->sha256, r.tx.u.publish.sha256.p, 32);
    rel->size = r.tx.u.publish.size;
    rel->expires = r.tx.u.publish.expires;
    rel->min_version = r.tx.u.publish.min_version;
    rel->height = r.header.height;
    /* 6 - 9 */
    if (chk->model != NULL ? strcmp(rel->model, chk->model) != 0 : !lg_str_eq_str(model, emodel))
        return LG_ERR_WRONG_MODEL;
    if (rel->version <= chk->installed || chk->installed < rel->min_version)
        return LG_ERR_FIRMWARE_ROLLBACK;
    if (chk->now_ms >= rel->expires)
        return LG_ERR_EXPIRED;
    /* 10: a revoke that does not verify or is about something else is ignored */
    if (a.f[7].n != 0) {
        e = proven(v, a.f[7], LG_KIND_FIRMWARE_REVOKE, NULL, &r);
        if (e == LG_ERR_CRYPTO)
            return e;
        if (e == LG_OK && lg_str_eq(r.tx.u.fw_revoke.model, rel->model) &&
            r.tx.u.fw_revoke.version == rel->version &&
            (r.tx.u.fw_revoke.group.n == 0 ||
             in_groups(r.tx.u.fw_revoke.group, chk->groups, chk->n_groups, &egroups)))
            return LG_ERR_RELEASE_REVOKED;
    }
    /* 11 - 15 */
    e = allowed(v, &a, chk, &egroups, (lg_str){(const uint8_t *)rel->model, strlen(rel->model)},
                rel->version, &r);
    if (e != LG_OK)
        memset(rel, 0, sizeof *rel);
    return e;
}

/* ---- the image (11.5, after the download) --------------------------------------- */

lg_err lg_image_init(lg_image *im, const lg_fw_release *rel)
{
    if (im == NULL || rel == NULL)
        return LG_ERR_ARG;
    mbedtls_sha256_init(&im->sha);
    mbedtls_sha256_starts_ret(&im->sha, 0);
    im->seen = 0;
    im->size = rel->size;
    memcpy(im->want, rel->sha256, 32);
    return LG_OK;
}

lg_err lg_image_update(lg_image *im, const uint8_t *chunk, size_t n)
{
    if (im == NULL || (chunk == NULL && n > 0))
        return LG_ERR_ARG;
    if (n > im->size - im->seen)
        return LG_ERR_IMAGE; /* past F.size: stop reading */
    mbedtls_sha256_update_ret(&im->sha, chunk, n);
    im->seen += n;
    return LG_OK;
}

lg_err lg_image_final(lg_image *im)
{
    uint8_t h[32];
    if (im == NULL)
        return LG_ERR_ARG;
    mbedtls_sha256_finish_ret(&im->sha, h);
    mbedtls_sha256_free(&im->sha);
    return im->seen == im->size && lg_ct_equal(h, im->want, 32) ? LG_OK : LG_ERR_IMAGE;
}

/* ---- the public checks: with the genesis nodes, or with member sets ---- */

lg_err lg_config_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                               const lg_config_check *chk, lg_config_set *cs,
                               lg_config_state *accepted)
{
    const vset v = {g, NULL};
    return config_answer(buf, len, &v, chk, cs, accepted);
}

lg_err lg_config_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                       const lg_config_check *chk, lg_config_set *cs,
                                       lg_config_state *accepted)
{
    if (m == NULL || m->n_sets == 0)
        return LG_ERR_ARG;
    const vset v = {m->g, m};
    return config_answer(buf, len, &v, chk, cs, accepted);
}

lg_err lg_keys_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                             const char *device, int64_t now_ms, int64_t max_age_ms, lg_keys *out)
{
    const vset v = {g, NULL};
    return keys_answer(buf, len, &v, device, now_ms, max_age_ms, out);
}

lg_err lg_keys_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                     const char *device, int64_t now_ms, int64_t max_age_ms,
                                     lg_keys *out)
{
    if (m == NULL || m->n_sets == 0)
        return LG_ERR_ARG;
    const vset v = {m->g, m};
    return keys_answer(buf, len, &v, device, now_ms, max_age_ms, out);
}

lg_err lg_firmware_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                                 const lg_fw_check *chk, lg_fw_release *rel)
{
    const vset v = {g, NULL};
    return firmware_answer(buf, len, &v, chk, rel);
}

lg_err lg_firmware_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                         const lg_fw_check *chk, lg_fw_release *rel)
{
    if (m == NULL || m->n_sets == 0)
        return LG_ERR_ARG;
    const vset v = {m->g, m};
    return firmware_answer(buf, len, &v, chk, rel);
}
