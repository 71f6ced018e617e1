/* lg_tx.c - the tx envelope (protocol.md 5), the bodies of the 23 kinds
 * (section 6), signing the device's own txs, and tokens (section 7). */
#include "lg_internal.h"

#include <stddef.h>

/* ---- body field tables (protocol.md 6.1 - 6.13) ------------------------- */

enum ftype {
    F_ID,        /* tstr, an id */
    F_TEXT,      /* tstr of at most max bytes */
    F_TARGET,    /* tstr: an id or "group:" + id */
    F_BYTES,     /* bstr, any */
    F_HASH,      /* bstr of 32 bytes */
    F_SIGN_KEY,  /* bstr: a P-256 or Ed25519 SPKI */
    F_ENC_KEY,   /* bstr: an X25519 SPKI */
    F_UINT,      /* uint in min..max */
    F_INT,       /* int */
    F_BOOL,
    F_IDS,       /* [* id], sorted, distinct, min..max elements */
    F_WAVES,     /* [* uint], strictly increasing, 1..100, ending at 100, <= max */
    F_NODES,     /* [* Node], min..max, distinct ids (protocol.md 6.15) */
    F_DEVICES,   /* [* BatchDevice], min..max, sorted by id, distinct (protocol.md 6.16) */
    F_RULES      /* [* Rule], min..max, distinct names (protocol.md 6.21) */
};

/* 12 bytes on a 32-bit MCU (32 with 64-bit bounds and a size_t offset):
 * the tables below are most of the decoder's flash. */
typedef struct field {
    uint8_t key;
    uint8_t type;
    bool required;
    uint8_t min; /* 0 or 1 */
    uint8_t off; /* into lg_tx.u */
    uint32_t max; /* ANY_U63: up to INT64_MAX */
} field;

#define U63 ((uint64_t)INT64_MAX)
#define ANY_U63 UINT32_MAX
#define OFF(m) offsetof(lg_tx, u.m) - offsetof(lg_tx, u)
#define REQ true  /* REQUIRED */
#define OPT false /* OPTIONAL, omitted when empty */

static const field f_enroll[] = {
    {1, F_ID, REQ, 0, OFF(enroll.device_id), 0},
    {2, F_SIGN_KEY, REQ, 0, OFF(enroll.public_key), 0},
    {3, F_ID, OPT, 0, OFF(enroll.model), 0},
    {4, F_IDS, OPT, 1, OFF(enroll.groups), LG_MAX_GROUPS},
    {5, F_ENC_KEY, OPT, 0, OFF(enroll.enc_key), 0},
};
static const field f_revoke[] = {
    {1, F_ID, REQ, 0, OFF(revoke.device_id), 0},
    {2, F_TEXT, OPT, 0, OFF(revoke.reason), 256},
};
static const field f_rekey[] = {
    {1, F_ID, REQ, 0, OFF(rekey.device_id), 0},
    {2, F_UINT, REQ, 1, OFF(rekey.seq), ANY_U63},
    {3, F_SIGN_KEY, REQ, 0, OFF(rekey.public_key), 0},
    {4, F_ENC_KEY, OPT, 0, OFF(rekey.enc_key), 0},
};
static const field f_record[] = {
    {1, F_ID, REQ, 0, OFF(record.device_id), 0},
    {2, F_ID, REQ, 0, OFF(record.stream), 0},
    {3, F_UINT, REQ, 1, OFF(record.seq), ANY_U63},
    {4, F_INT, REQ, 0, OFF(record.time_ms), 0},
    {5, F_TEXT, OPT, 0, OFF(record.content_type), 128},
    {6, F_BYTES, OPT, 0, OFF(record.payload), 0},
};
static const field f_config_set[] = {
    {1, F_TARGET, REQ, 0, OFF(config_set.target), 0},
    {2, F_UINT, REQ, 1, OFF(config_set.version), ANY_U63},
    {3, F_HASH, REQ, 0, OFF(config_set.sha256), 0},
    {4, F_UINT, REQ, 0, OFF(config_set.size), 1048576},
    {5, F_TEXT, OPT, 0, OFF(config_set.content_type), 128},
    {6, F_HASH, REQ, 0, OFF(config_set.blob), 0},
    {7, F_TEXT, OPT, 0, OFF(config_set.uri), LG_URI_MAX},
};
static const field f_config_report[] = {
    {1, F_ID, REQ, 0, OFF(config_report.device_id), 0},
    {2, F_UINT, REQ, 1, OFF(config_report.seq), ANY_U63},
    {3, F_UINT, REQ, 0, OFF(config_report.version), ANY_U63},
    {4, F_HASH, REQ, 0, OFF(config_report.sha256), 0},
};
static const field f_heartbeat[] = {
    {1, F_ID, REQ, 0, OFF(heartbeat.node), 0},
    {2, F_INT, REQ, 0, OFF(heartbeat.time_ms), 0},
};
static const field f_node_snapshot[] = {
    {1, F_ID, REQ, 0, OFF(node_snapshot.node), 0},
    {2, F_UINT, REQ, 1, OFF(node_snapshot.height), ANY_U63},
    {3, F_HASH, REQ, 0, OFF(node_snapshot.hash), 0},
};
static const field f_vendor_enroll[] = {
    {1, F_ID, REQ, 0, OFF(vendor_enroll.vendor), 0},
    {2, F_SIGN_KEY, REQ, 0, OFF(vendor_enroll.public_key), 0},
    {3, F_IDS, REQ, 1, OFF(vendor_enroll.models), 64},
};
static const field f_reviewer_enroll[] = {
    {1, F_ID, REQ, 0, OFF(reviewer_enroll.reviewer), 0},
    {2, F_SIGN_KEY, REQ, 0, OFF(reviewer_enroll.public_key), 0},
};
static const field f_publish[] = {
    {1, F_ID, REQ, 0, OFF(publish.model), 0},
    {2, F_UINT, REQ, 1, OFF(publish.version), ANY_U63},
    {3, F_HASH, REQ, 0, OFF(publish.sha256), 0},
    {4, F_UINT, REQ, 1, OFF(publish.size), ANY_U63},
    {5, F_INT, REQ, 1, OFF(publish.expires), 0}, /* > 0: min is checked for F_INT */
    {6, F_UINT, OPT, 0, OFF(publish.min_version), ANY_U63},
};
static const field f_vote[] = {
    {1, F_ID, REQ, 0, OFF(vote.model), 0},
    {2, F_UINT, REQ, 1, OFF(vote.version), ANY_U63},
    {3, F_BOOL, REQ, 0, OFF(vote.good), 0},
    {4, F_TEXT, OPT, 0, OFF(vote.reason), 256},
};
static const field f_approve[] = {
    {1, F_ID, REQ, 0, OFF(approve.model), 0},
    {2, F_UINT, REQ, 1, OFF(approve.version), ANY_U63},
    {3, F_ID, REQ, 0, OFF(approve.group), 0},
};
static const field f_fw_revoke[] = {
    {1, F_ID, REQ, 0, OFF(fw_revoke.model), 0},
    {2, F_UINT, REQ, 1, OFF(fw_revoke.version), ANY_U63},
    {3, F_ID, OPT, 0, OFF(fw_revoke.group), 0},
    {4, F_TEXT, OPT, 0, OFF(fw_revoke.reason), 256},
};
static const field f_policy[] = {
    {1, F_ID, REQ, 0, OFF(policy.group), 0},
    {2, F_BOOL, OPT, 0, OFF(policy.require_approval), 0},
    {3, F_UINT, OPT, 0, OFF(policy.min_good_votes), 1000},
    {4, F_WAVES, OPT, 1, OFF(policy.waves), 16},
    {5, F_UINT, OPT, 0, OFF(policy.max_failure_pct), 100},
};
static const field f_fw_report[] = {
    {1, F_ID, REQ, 0, OFF(fw_report.device_id), 0},
    {2, F_UINT, REQ, 1, OFF(fw_report.seq), ANY_U63},
    {3, F_ID, REQ, 0, OFF(fw_report.model), 0},
    {4, F_UINT, REQ, 1, OFF(fw_report.version), ANY_U63},
    {5, F_BOOL, OPT, 0, OFF(fw_report.ok), 0},
    {6, F_TEXT, OPT, 0, OFF(fw_report.detail), 256},
};

static const field f_reconfig[] = {
    {1, F_NODES, REQ, 4, OFF(reconfig.nodes), 64},
};

static const field f_fleet_batch[] = {
    {1, F_ID, REQ, 0, OFF(fleet_batch.batch), 0},
    {2, F_ID, REQ, 0, OFF(fleet_batch.model), 0},
    {3, F_IDS, OPT, 1, OFF(fleet_batch.groups), LG_MAX_GROUPS},
    {4, F_DEVICES, REQ, 1, OFF(fleet_batch.devices), 1000},
};
static const field f_fleet_approve[] = {
    {1, F_ID, REQ, 0, OFF(fleet_approve.batch), 0},
};
static const field f_fleet_revoke[] = {
    {1, F_ID, REQ, 0, OFF(fleet_revoke.batch), 0},
    {2, F_TEXT, OPT, 0, OFF(fleet_revoke.reason), 256},
};
static const field f_claim[] = {
    {1, F_ID, REQ, 0, OFF(claim.device_id), 0},
    {2, F_ID, OPT, 0, OFF(claim.batch), 0},
    {3, F_BYTES, OPT, 0, OFF(claim.evidence), 0},
    {4, F_BYTES, OPT, 0, OFF(claim.secret), 0},
    {5, F_SIGN_KEY, REQ, 0, OFF(claim.public_key), 0},
    {6, F_ID, OPT, 0, OFF(claim.model), 0},
    {7, F_IDS, OPT, 1, OFF(claim.groups), LG_MAX_GROUPS},
};
static const field f_enroll_token[] = {
    {1, F_HASH, REQ, 0, OFF(enroll_token.hash), 0},
    {2, F_INT, REQ, 1, OFF(enroll_token.expires), 0},
    {3, F_ID, OPT, 0, OFF(enroll_token.device_id), 0},
    {4, F_ID, OPT, 0, OFF(enroll_token.model), 0},
    {5, F_IDS, OPT, 1, OFF(enroll_token.groups), LG_MAX_GROUPS},
};
static const field f_policy_set[] = {
    {1, F_UINT, REQ, 1, OFF(policy_set.version), ANY_U63},
    {2, F_RULES, OPT, 1, OFF(policy_set.rules), 64},
};

typedef struct kind_spec {
    const char *name;
    const field *fields;
    size_t n;
} kind_spec;

#define K(name, f) {name, f, sizeof f / sizeof f[0]}
/* indexed by kind - 3 (the payload key) */
#define N_KINDS 23
static const kind_spec kinds[N_KINDS] = {
    K("device.enroll", f_enroll),       K("device.revoke", f_revoke),
    K("device.rekey", f_rekey),         K("data.record", f_record),
    K("config.set", f_config_set),      K("config.report", f_config_report),
    K("node.heartbeat", f_heartbeat),   K("vendor.enroll", f_vendor_enroll),
    K("reviewer.enroll", f_reviewer_enroll), K("firmware.publish", f_publish),
    K("firmware.vote", f_vote),         K("firmware.approve", f_approve),
    K("firmware.revoke", f_fw_revoke),  K("firmware.policy", f_policy),
    K("firmware.report", f_fw_report),  K("node.snapshot", f_node_snapshot),
    K("cluster.reconfig", f_reconfig), K("fleet.batch", f_fleet_batch),
    K("fleet.approve", f_fleet_approve), K("fleet.revoke", f_fleet_revoke),
    K("device.claim", f_claim),         K("enroll.token", f_enroll_token),
    K("policy.set", f_policy_set),
};

static bool valid_target(lg_str s)
{
    if (s.n > 6 && memcmp(s.p, "group:", 6) == 0)
        return lg_valid_id(s.p + 6, s.n - 6);
    return lg_valid_id(s.p, s.n);
}

/* protocol.md 4: an X25519 SPKI */
static bool x25519_spki(lg_str s)
{
    static const uint8_t pre[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                    0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00};
    return s.n == 44 && memcmp(s.p, pre, 12) == 0;
}

/* Node = {1: id, 2: P-256 SPKI, ? 3: [1*8 tstr of 1..256 bytes]} (6.15). */
static lg_err node(lg_cbor *c, lg_str *id, lg_str *spki)
{
    size_t n;
    uint64_t prev = UINT64_MAX;
    lg_pubkey k;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    if (n < 2 || n > 3)
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(c, &prev, 1)) != LG_OK || (e = cb_text(c, id)) != LG_OK)
        return e;
    if (!lg_valid_id(id->p, id->n))
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(c, &prev, 2)) != LG_OK || (e = cb_bytes(c, spki)) != LG_OK)
        return e;
    if (lg_pubkey_from_spki(spki->p, spki->n, &k) != LG_OK || k.alg != LG_ALG_ES256)
        return LG_ERR_MALFORMED;
    if (n == 3) {
        size_t m;
        lg_str a;
        if ((e = cb_want_key(c, &prev, 3)) != LG_OK || (e = cb_array(c, &m)) != LG_OK)
            return e;
        if (m < 1 || m > 8)
            return LG_ERR_MALFORMED;
        for (size_t i = 0; i < m; i++) {
            if ((e = cb_text(c, &a)) != LG_OK)
                return e;
            if (a.n < 1 || a.n > 256)
                return LG_ERR_MALFORMED;
        }
    }
    return LG_OK;
}

/* The i-th Node of a checked array of them. */
static lg_err node_at(const lg_list *l, size_t i, lg_str *id, lg_str *spki)
{
    lg_cbor c;
    size_t n;
    lg_err e;
    if (i >= l->count)
        return LG_ERR_ARG;
    cb_init(&c, l->p, l->n);
    if ((e = cb_array(&c, &n)) != LG_OK)
        return e;
    for (size_t j = 0; j <= i; j++)
        if ((e = node(&c, id, spki)) != LG_OK)
            return e;
    return LG_OK;
}

/* [min..max Node] with distinct ids. */
static lg_err nodes(lg_cbor *c, const field *f, lg_list *l)
{
    size_t at = c->pos, n;
    lg_err e = cb_array(c, &n);
    if (e != LG_OK)
        return e;
    if (n < f->min || n > f->max)
        return LG_ERR_MALFORMED;
    for (size_t i = 0; i < n; i++) {
        lg_str id, spki;
        if ((e = node(c, &id, &spki)) != LG_OK)
            return e;
    }
    l->p = c->p + at;
    l->n = c->pos - at;
    l->count = n;
    /* distinct ids: a second pass, n <= 64 */
    for (size_t i = 0; i < n; i++) {
        lg_str a, b, k;
        if ((e = node_at(l, i, &a, &k)) != LG_OK)
            return e;
        for (size_t j = i + 1; j < n; j++) {
            if ((e = node_at(l, j, &b, &k)) != LG_OK)
                return e;
            if (lg_str_eq_str(a, b))
                return LG_ERR_MALFORMED;
        }
    }
    return LG_OK;
}

/* Rule = {1: id, ? 2: when, ? 3: allow, ? 4: {1: count, 2: window}}
 * (6.21): when and allow of 1..1024 bytes, allow or rate present; the
 * rule's name in *name. The expressions are the gateways' to judge. */
static lg_err policy_rule(lg_cbor *c, lg_str *name)
{
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    bool allow = false, rate = false;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    if (n < 2 || n > 4)
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(c, &prev, 1)) != LG_OK || (e = cb_text(c, name)) != LG_OK)
        return e;
    if (!lg_valid_id(name->p, name->n))
        return LG_ERR_MALFORMED;
    for (size_t i = 1; i < n; i++) {
        if ((e = cb_key(c, &prev, &key)) != LG_OK)
            return e;
        if (key == 2 || key == 3) {
            lg_str x;
            if ((e = cb_text(c, &x)) != LG_OK)
                return e;
            if (x.n < 1 || x.n > 1024)
                return LG_ERR_MALFORMED;
            allow = allow || key == 3;
        } else if (key == 4) {
            size_t m;
            uint64_t p2 = UINT64_MAX, v;
            if ((e = cb_map(c, &m)) != LG_OK)
                return e;
            if (m != 2)
                return LG_ERR_MALFORMED;
            if ((e = cb_want_key(c, &p2, 1)) != LG_OK || (e = cb_uint(c, &v)) != LG_OK)
                return e;
            if (v < 1 || v > ((uint64_t)1 << 32))
                return LG_ERR_MALFORMED;
            if ((e = cb_want_key(c, &p2, 2)) != LG_OK || (e = cb_uint(c, &v)) != LG_OK)
                return e;
            if (v < 1 || v > (uint64_t)31 * 24 * 3600 * 1000)
                return LG_ERR_MALFORMED;
            rate = true;
        } else {
            return LG_ERR_MALFORMED;
        }
    }
    return allow || rate ? LG_OK : LG_ERR_MALFORMED;
}

/* [min..max Rule] with distinct names. */
static lg_err policy_rules(lg_cbor *c, const field *f, lg_list *l)
{
    size_t at = c->pos, n;
    lg_str names[64];
    lg_err e = cb_array(c, &n);
    if (e != LG_OK)
        return e;
    if (n < f->min || n > f->max || n > 64)
        return LG_ERR_MALFORMED;
    for (size_t i = 0; i < n; i++) {
        if ((e = policy_rule(c, &names[i])) != LG_OK)
            return e;
        for (size_t j = 0; j < i; j++)
            if (lg_str_eq_str(names[j], names[i]))
                return LG_ERR_MALFORMED;
    }
    l->p = c->p + at;
    l->n = c->pos - at;
    l->count = n;
    return LG_OK;
}

lg_err lg_reconfig_node(const lg_tx *tx, size_t i, lg_str *id, lg_str *spki)
{
    if (tx == NULL || id == NULL || spki == NULL || tx->kind != LG_KIND_CLUSTER_RECONFIG)
        return LG_ERR_ARG;
    return node_at(&tx->u.reconfig.nodes, i, id, spki);
}

/* BatchDevice = {1: id, 2: SPKI}, P-256 or Ed25519 (protocol.md 6.16). */
static lg_err batch_device(lg_cbor *c, lg_str *id, lg_str *spki)
{
    size_t n;
    uint64_t prev = UINT64_MAX;
    lg_pubkey k;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    if (n != 2)
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(c, &prev, 1)) != LG_OK || (e = cb_text(c, id)) != LG_OK)
        return e;
    if (!lg_valid_id(id->p, id->n))
        return LG_ERR_MALFORMED;
    if ((e = cb_want_key(c, &prev, 2)) != LG_OK || (e = cb_bytes(c, spki)) != LG_OK)
        return e;
    if (lg_pubkey_from_spki(spki->p, spki->n, &k) != LG_OK)
        return LG_ERR_MALFORMED;
    return LG_OK;
}

/* [min..max BatchDevice], sorted by id by byte value, distinct. */
static lg_err batch_devices(lg_cbor *c, const field *f, lg_list *l)
{
    size_t at = c->pos, n;
    lg_err e = cb_array(c, &n);
    if (e != LG_OK)
        return e;
    if (n < f->min || n > f->max)
        return LG_ERR_MALFORMED;
    lg_str prev = {NULL, 0};
    for (size_t i = 0; i < n; i++) {
        lg_str id, spki;
        if ((e = batch_device(c, &id, &spki)) != LG_OK)
            return e;
        if (prev.p != NULL) {
            size_t m = prev.n < id.n ? prev.n : id.n;
            int r = memcmp(prev.p, id.p, m);
            if (r > 0 || (r == 0 && prev.n >= id.n))
                return LG_ERR_MALFORMED;
        }
        prev = id;
    }
    l->p = c->p + at;
    l->n = c->pos - at;
    l->count = n;
    return LG_OK;
}

lg_err lg_batch_device(const lg_tx *tx, size_t i, lg_str *id, lg_str *spki)
{
    lg_cbor c;
    size_t n;
    lg_err e;
    if (tx == NULL || id == NULL || spki == NULL || tx->kind != LG_KIND_FLEET_BATCH ||
        i >= tx->u.fleet_batch.devices.count)
        return LG_ERR_ARG;
    cb_init(&c, tx->u.fleet_batch.devices.p, tx->u.fleet_batch.devices.n);
    if ((e = cb_array(&c, &n)) != LG_OK)
        return e;
    for (size_t j = 0; j <= i; j++)
        if ((e = batch_device(&c, id, spki)) != LG_OK)
            return e;
    return LG_OK;
}

/* protocol.md 6.18: a device.claim has exactly one of its three forms. */
static lg_err claim_form(const lg_tx *tx)
{
    const lg_str *b = &tx->u.claim.batch, *ev = &tx->u.claim.evidence, *s = &tx->u.claim.secret;
    /* public_key (key 5) is required in every form; the decoder checked it */
    if (s->n > 0) /* c: by token */
        return b->n == 0 && ev->n == 0 && s->n >= 16 && s->n <= 64 ? LG_OK : LG_ERR_MALFORMED;
    /* a: by the device, b: by a gateway with the device's token */
    return b->n > 0 && ev->n <= 1024 ? LG_OK : LG_ERR_MALFORMED;
}

/* A list of ids or waves: the array's span, checked element by element. */
static lg_err list(lg_cbor *c, const field *f, lg_list *l)
{
    size_t at = c->pos, n;
    lg_err e = cb_array(c, &n);
    if (e != LG_OK)
        return e;
    if (n < f->min || n > f->max)
        return LG_ERR_MALFORMED;
    lg_str prev = {NULL, 0};
    uint64_t pw = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        if (f->type == F_IDS) {
            lg_str s;
            if ((e = cb_text(c, &s)) != LG_OK)
                return e;
            if (!lg_valid_id(s.p, s.n))
                return LG_ERR_MALFORMED;
            if (prev.p != NULL) { /* sorted by byte value, distinct */
                size_t m = prev.n < s.n ? prev.n : s.n;
                int r = memcmp(prev.p, s.p, m);
                if (r > 0 || (r == 0 && prev.n >= s.n))
                    return LG_ERR_MALFORMED;
            }
            prev = s;
        } else {
            if ((e = cb_uint(c, &w)) != LG_OK)
                return e;
            if (w == 0 || w > 100 || w <= pw)
                return LG_ERR_MALFORMED;
            pw = w;
        }
    }
    if (f->type == F_WAVES && w != 100)
        return LG_ERR_MALFORMED;
    l->p = c->p + at;
    l->n = c->pos - at;
    l->count = n;
    return LG_OK;
}

/* One field's value; "empty" tells whether it is the empty value of its
 * type (rule 7: an OPTIONAL field must then be absent). */
static lg_err value(lg_cbor *c, const field *f, void *dst, bool *empty)
{
    lg_err e;
    lg_str s;
    lg_pubkey k;
    switch (f->type) {
    case F_ID:
    case F_TEXT:
    case F_TARGET:
        if ((e = cb_text(c, &s)) != LG_OK)
            return e;
        *empty = s.n == 0;
        if (f->type == F_ID && !*empty && !lg_valid_id(s.p, s.n))
            return LG_ERR_MALFORMED;
        if (f->type == F_TEXT && s.n > f->max)
            return LG_ERR_MALFORMED;
        if (f->type == F_TARGET && !valid_target(s))
            return LG_ERR_MALFORMED;
        if (f->type == F_ID && *empty && f->required)
            return LG_ERR_MALFORMED;
        *(lg_str *)dst = s;
        return LG_OK;
    case F_BYTES:
    case F_HASH:
    case F_SIGN_KEY:
    case F_ENC_KEY:
        if ((e = cb_bytes(c, &s)) != LG_OK)
            return e;
        *empty = s.n == 0;
        if (*empty && !f->required)
            return LG_OK; /* refused by the caller */
        if ((f->type == F_HASH && s.n != 32) || (f->type == F_ENC_KEY && !x25519_spki(s)) ||
            (f->type == F_SIGN_KEY && lg_pubkey_from_spki(s.p, s.n, &k) != LG_OK))
            return LG_ERR_MALFORMED;
        *(lg_str *)dst = s;
        return LG_OK;
    case F_UINT: {
        uint64_t v;
        if ((e = cb_uint(c, &v)) != LG_OK)
            return e;
        *empty = v == 0;
        if (!(*empty && !f->required) &&
            (v < f->min || v > (f->max == ANY_U63 ? U63 : f->max)))
            return LG_ERR_MALFORMED;
        *(uint64_t *)dst = v;
        return LG_OK;
    }
    case F_INT: {
        int64_t v;
        if ((e = cb_int(c, &v)) != LG_OK)
            return e;
        *empty = v == 0;
        if (f->min > 0 && v < (int64_t)f->min)
            return LG_ERR_MALFORMED;
        *(int64_t *)dst = v;
        return LG_OK;
    }
    case F_BOOL:
        if ((e = cb_bool(c, (bool *)dst)) != LG_OK)
            return e;
        *empty = !*(bool *)dst;
        return LG_OK;
    case F_NODES:
        if ((e = nodes(c, f, (lg_list *)dst)) != LG_OK)
            return e;
        *empty = false;
        return LG_OK;
    case F_DEVICES:
        if ((e = batch_devices(c, f, (lg_list *)dst)) != LG_OK)
            return e;
        *empty = false;
        return LG_OK;
    case F_RULES:
        if ((e = policy_rules(c, f, (lg_list *)dst)) != LG_OK)
            return e;
        *empty = false;
        return LG_OK;
    default: /* F_IDS, F_WAVES */
        if ((e = list(c, f, (lg_list *)dst)) != LG_OK)
            return e;
        *empty = ((lg_list *)dst)->count == 0;
        return LG_OK;
    }
}

/* A payload map per its field table (rules 3, 4, 5, 7, 8). */
static lg_err payload_map(lg_cbor *c, const kind_spec *k, lg_tx *tx)
{
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    uint32_t seen = 0;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    for (size_t i = 0; i < n; i++) {
        if ((e = cb_key(c, &prev, &key)) != LG_OK)
            return e;
        const field *f = NULL;
        for (size_t j = 0; j < k->n; j++)
            if (k->fields[j].key == key)
                f = &k->fields[j];
        if (f == NULL)
            return LG_ERR_MALFORMED; /* unknown field */
        bool empty = false;
        if ((e = value(c, f, (char *)&tx->u + f->off, &empty)) != LG_OK)
            return e;
        if (empty && !f->required)
            return LG_ERR_MALFORMED; /* present but empty: omit it */
        seen |= 1u << key;
    }
    for (size_t j = 0; j < k->n; j++)
        if (k->fields[j].required && !(seen & (1u << k->fields[j].key)))
            return LG_ERR_MALFORMED; /* missing required field */
    return LG_OK;
}

/* Body = {1: kind, 2: chain id, K: payload} with exactly one payload. */
static lg_err body(lg_cbor *c, lg_tx *tx)
{
    size_t n;
    uint64_t prev = UINT64_MAX, key;
    int kind = 0, payload = 0;
    lg_err e = cb_map(c, &n);
    if (e != LG_OK)
        return e;
    for (size_t i = 0; i < n; i++) {
        if ((e = cb_key(c, &prev, &key)) != LG_OK)
            return e;
        if (key == 1) {
            lg_str s;
            if ((e = cb_text(c, &s)) != LG_OK)
                return e;
            for (int j = 0; j < N_KINDS && kind == 0; j++)
                if (kinds[j].name != NULL && lg_str_eq(s, kinds[j].name))
                    kind = j + 3;
            if (kind == 0)
                return LG_ERR_UNKNOWN_KIND;
        } else if (key == 2) {
            if ((e = cb_text(c, &tx->chain_id)) != LG_OK)
                return e;
            if (tx->chain_id.n == 0)
                return LG_ERR_MALFORMED;
        } else if (key >= 3 && key <= 2 + N_KINDS) {
            if (payload != 0 || kind == 0)
                return LG_ERR_MALFORMED; /* two payloads, or no kind */
            payload = (int)key;
            if (payload != kind)
                return LG_ERR_MALFORMED; /* not the one the kind names */
            if ((e = payload_map(c, &kinds[key - 3], tx)) != LG_OK)
                return e;
        } else {
            return LG_ERR_MALFORMED;
        }
    }
    if (kind == 0 || tx->chain_id.n == 0 || payload == 0)
        return LG_ERR_MALFORMED;
    tx->kind = (lg_kind)kind;
    if (tx->kind == LG_KIND_DEVICE_CLAIM)
        return claim_form(tx);
    return LG_OK;
}

/* ---- the envelope -------------------------------------------------------- */

lg_err lg_envelope_decode(const uint8_t *env, size_t len, lg_tx *tx)
{
    lg_cbor c, h;
    int major;
    uint64_t a, prev = UINT64_MAX, key;
    size_t n;
    lg_err e;
    memset(tx, 0, sizeof *tx);
    cb_init(&c, env, len);
    /* rule 1 of section 5: 0xd2 0x84 */
    if ((e = cb_head(&c, &major, &a)) != LG_OK)
        return e;
    if (major != CB_TAG || a != 18)
        return LG_ERR_MALFORMED;
    if ((e = cb_array(&c, &n)) != LG_OK)
        return e;
    if (n != 4)
        return LG_ERR_MALFORMED;
    /* protected: exactly {1: -7 / -8, 4: kid} */
    if ((e = cb_bytes(&c, &tx->protected_hdr)) != LG_OK)
        return e;
    cb_init(&h, tx->protected_hdr.p, tx->protected_hdr.n);
    if ((e = cb_map(&h, &n)) != LG_OK)
        return e;
    if (n != 2)
        return LG_ERR_MALFORMED;
    int64_t alg;
    if ((e = cb_key(&h, &prev, &key)) != LG_OK)
        return e;
    if (key != 1)
        return LG_ERR_MALFORMED;
    if ((e = cb_int(&h, &alg)) != LG_OK)
        return e;
    if (alg != LG_ALG_ES256 && alg != LG_ALG_EDDSA)
        return LG_ERR_MALFORMED;
    tx->alg = (lg_alg)alg;
    if ((e = cb_key(&h, &prev, &key)) != LG_OK)
        return e;
    if (key != 4)
        return LG_ERR_MALFORMED;
    if ((e = cb_bytes(&h, &tx->kid)) != LG_OK)
        return e;
    if (!lg_valid_id(tx->kid.p, tx->kid.n) || !cb_done(&h))
        return LG_ERR_MALFORMED;
    /* unprotected: exactly the empty map */
    if ((e = cb_map(&c, &n)) != LG_OK)
        return e;
    if (n != 0)
        return LG_ERR_MALFORMED;
    if ((e = cb_bytes(&c, &tx->payload)) != LG_OK || (e = cb_bytes(&c, &tx->signature)) != LG_OK)
        return e;
    if (tx->signature.n == 0 || !cb_done(&c))
        return LG_ERR_MALFORMED;
    lg_sha256(env, len, tx->id);
    return LG_OK;
}

lg_err lg_tx_decode(const uint8_t *env, size_t len, size_t max_tx_bytes, lg_tx *tx)
{
    lg_cbor c;
    if (env == NULL || tx == NULL)
        return LG_ERR_ARG;
    if (max_tx_bytes > 0 && len > max_tx_bytes)
        return LG_ERR_TOO_LARGE;
    lg_err e = lg_envelope_decode(env, len, tx);
    if (e == LG_OK) {
        cb_init(&c, tx->payload.p, tx->payload.n);
        e = body(&c, tx);
        if (e == LG_OK && !cb_done(&c))
            e = LG_ERR_MALFORMED;
    }
    /* a tx that is not deterministic CBOR is refused malformed (section 2) */
    return e == LG_ERR_NOT_CANONICAL ? LG_ERR_MALFORMED : e;
}

/* Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 4.4) */
void lg_tbs(lg_cbw *w, lg_str prot, lg_str payload)
{
    cbw_head(w, CB_ARRAY, 4);
    cbw_textz(w, "Signature1");
    cbw_bytes(w, prot.p, prot.n);
    cbw_bytes(w, NULL, 0);
    cbw_bytes(w, payload.p, payload.n);
}

/* SHA-256 of the ToBeSigned, hashed as a stream (what ES256 signs). Not
 * inlined: the SHA-256 context is off the stack while ECDSA runs. */
static LG_NOINLINE void tbs_digest(lg_str prot, lg_str payload, uint8_t d[32])
{
    mbedtls_sha256_context sha;
    lg_cbw w;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    cbw_init(&w, NULL, 0);
    w.sha = &sha;
    lg_tbs(&w, prot, payload);
    mbedtls_sha256_finish_ret(&sha, d);
    mbedtls_sha256_free(&sha);
}

/* Ed25519 signs the whole ToBeSigned; libsodium takes it in one piece, so
 * a copy is made on the stack, bounded here. ES256 hashes it as a stream. */
#define LG_ED25519_TBS_MAX 512

lg_err lg_sig_verify(lg_alg alg, lg_str prot, lg_str payload, lg_str sig, const lg_pubkey *key)
{
    if (alg != key->alg || sig.n != 64)
        return LG_ERR_BAD_SIGNATURE;
    if (alg == LG_ALG_ES256) {
        uint8_t d[32];
        tbs_digest(prot, payload, d);
        return lg_p256_verify_rs(key->key, d, sig.p);
    }
#ifdef LG_WITH_ED25519
    uint8_t tbs[LG_ED25519_TBS_MAX];
    lg_cbw w;
    cbw_init(&w, tbs, sizeof tbs);
    lg_tbs(&w, prot, payload);
    if (w.err != LG_OK)
        return LG_ERR_LIMIT;
    return lg_ed25519_verify(key->key, tbs, w.len, sig.p);
#else
    return LG_ERR_UNSUPPORTED_ALG;
#endif
}

lg_err lg_tx_verify(const lg_tx *tx, const lg_pubkey *key)
{
    if (tx == NULL || key == NULL)
        return LG_ERR_ARG;
    return lg_sig_verify(tx->alg, tx->protected_hdr, tx->payload, tx->signature, key);
}

/* ---- signing ------------------------------------------------------------- */

/* What a device tx's payload holds; enc() writes the kind's payload map. */
typedef struct sign_args {
    lg_kind kind;
    uint64_t seq;
    const lg_record *rec;
    uint64_t version;
    const uint8_t *sha256;
    const char *model;
    bool ok;
    const char *detail;
    const uint8_t *spki, *enc;
    size_t spki_len, enc_len;
    int64_t iat, exp; /* tokens */
} sign_args;

static bool nonempty(const char *z) { return z != NULL && z[0] != '\0'; }

static void payload_enc(lg_cbw *w, const lg_device *dev, const sign_args *a)
{
    const lg_record *r = a->rec;
    switch (a->kind) {
    case LG_KIND_DATA_RECORD: {
        bool ct = nonempty(r->content_type), pl = r->payload_len > 0;
        cbw_head(w, CB_MAP, 4 + ct + pl);
        cbw_uint(w, 1), cbw_textz(w, dev->id);
        cbw_uint(w, 2), cbw_textz(w, r->stream);
        cbw_uint(w, 3), cbw_uint(w, a->seq);
        cbw_uint(w, 4), cbw_int(w, r->time_ms);
        if (ct)
            cbw_uint(w, 5), cbw_textz(w, r->content_type);
        if (pl)
            cbw_uint(w, 6), cbw_bytes(w, r->payload, r->payload_len);
        break;
    }
    case LG_KIND_CONFIG_REPORT:
        cbw_head(w, CB_MAP, 4);
        cbw_uint(w, 1), cbw_textz(w, dev->id);
        cbw_uint(w, 2), cbw_uint(w, a->seq);
        cbw_uint(w, 3), cbw_uint(w, a->version);
        cbw_uint(w, 4), cbw_bytes(w, a->sha256, 32);
        break;
    case LG_KIND_FIRMWARE_REPORT: {
        bool dt = nonempty(a->detail);
        cbw_head(w, CB_MAP, 4 + a->ok + dt);
        cbw_uint(w, 1), cbw_textz(w, dev->id);
        cbw_uint(w, 2), cbw_uint(w, a->seq);
        cbw_uint(w, 3), cbw_textz(w, a->model);
        cbw_uint(w, 4), cbw_uint(w, a->version);
        if (a->ok)
            cbw_uint(w, 5), cbw_bool(w, true);
        if (dt)
            cbw_uint(w, 6), cbw_textz(w, a->detail);
        break;
    }
    default: /* LG_KIND_DEVICE_REKEY */
        cbw_head(w, CB_MAP, 3 + (a->enc_len > 0));
        cbw_uint(w, 1), cbw_textz(w, dev->id);
        cbw_uint(w, 2), cbw_uint(w, a->seq);
        cbw_uint(w, 3), cbw_bytes(w, a->spki, a->spki_len);
        if (a->enc_len > 0)
            cbw_uint(w, 4), cbw_bytes(w, a->enc, a->enc_len);
    }
}

/* The payload bytes: a Body, or (kind 0) token claims {2, 3, 4, 6}. */
static void content_enc(lg_cbw *w, const lg_device *dev, const sign_args *a)
{
    if (a->kind == 0) {
        cbw_head(w, CB_MAP, 4);
        cbw_uint(w, 2), cbw_textz(w, dev->id);
        cbw_uint(w, 3), cbw_textz(w, dev->chain_id);
        cbw_uint(w, 4), cbw_int(w, a->exp);
        cbw_uint(w, 6), cbw_int(w, a->iat);
        return;
    }
    cbw_head(w, CB_MAP, 3);
    cbw_uint(w, 1), cbw_textz(w, kinds[a->kind - 3].name);
    cbw_uint(w, 2), cbw_textz(w, dev->chain_id);
    cbw_uint(w, a->kind);
    payload_enc(w, dev, a);
}

static void protected_enc(lg_cbw *w, const lg_device *dev)
{
    cbw_head(w, CB_MAP, 2);
    cbw_uint(w, 1), cbw_int(w, dev->alg);
    cbw_uint(w, 4), cbw_bytes(w, dev->id, strlen(dev->id));
}

/* Write the envelope of a's content into out and sign it. The envelope is
 * d2 84 | bstr(protected) | a0 | bstr(payload) | 58 40 sig. */
static lg_err envelope(const lg_device *dev, const sign_args *a, uint8_t *out, size_t cap,
                       size_t *len)
{
    lg_cbw w, cnt;
    cbw_init(&cnt, NULL, 0);
    protected_enc(&cnt, dev);
    size_t plen = cnt.len;
    cbw_init(&cnt, NULL, 0);
    content_enc(&cnt, dev, a);
    size_t blen = cnt.len;

    cbw_init(&w, out, cap);
    cbw_raw(&w, "\xd2\x84", 2);
    cbw_head(&w, CB_BYTES, plen);
    size_t poff = w.len;
    protected_enc(&w, dev);
    cbw_raw(&w, "\xa0", 1);
    cbw_head(&w, CB_BYTES, blen);
    size_t boff = w.len;
    content_enc(&w, dev, a);
    cbw_head(&w, CB_BYTES, 64);
    size_t soff = w.len;
    cbw_raw(&w, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);
    cbw_raw(&w, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);
    if (w.err != LG_OK)
        return w.err;
    lg_str prot = {out + poff, plen}, pay = {out + boff, blen};
    lg_err e;
    if (dev->alg == LG_ALG_ES256) {
        uint8_t d[32];
        tbs_digest(prot, pay, d);
        e = lg_p256_sign(dev->key, d, dev->f_rng, dev->p_rng, out + soff);
    } else {
        /* Ed25519 needs ToBeSigned in one piece: it is 10 bytes longer
         * than the envelope's start up to the signature, and the envelope
         * has 66 bytes of signature after it, so it fits in out: build it
         * there, sign, then rebuild the envelope. */
        uint8_t sig[64];
        size_t ph = poff - 2, bh = boff - poff - plen - 1;
        size_t tlen = 13 + ph + plen + bh + blen;
        memmove(out + boff + 10, out + boff, blen);  /* payload to its TBS place */
        memmove(out + 12, out + 2, ph + plen);       /* bstr(protected) */
        memcpy(out, "\x84\x6aSignature1", 12);
        out[12 + ph + plen] = 0x40;                  /* external_aad h'' */
        cbw_init(&cnt, out + 13 + ph + plen, bh);
        cbw_head(&cnt, CB_BYTES, blen);
        e = lg_ed25519_sign(dev->key, out, tlen, sig);
        /* back to the envelope layout */
        memmove(out + 2, out + 12, ph + plen);
        memcpy(out, "\xd2\x84", 2);
        out[poff + plen] = 0xa0;
        cbw_init(&cnt, out + poff + plen + 1, bh);
        cbw_head(&cnt, CB_BYTES, blen);
        memmove(out + boff, out + boff + 10, blen);
        out[soff - 2] = 0x58;
        out[soff - 1] = 0x40;
        memcpy(out + soff, sig, 64);
    }
    if (e != LG_OK)
        return e;
    *len = w.len;
    return LG_OK;
}

/* The exact length envelope() writes. */
static size_t env_len(const lg_device *dev, const sign_args *a)
{
    lg_cbw w;
    cbw_init(&w, NULL, 0);
    protected_enc(&w, dev);
    cbw_head(&w, CB_BYTES, w.len);
    size_t n = w.len;
    cbw_init(&w, NULL, 0);
    content_enc(&w, dev, a);
    cbw_head(&w, CB_BYTES, w.len);
    return 2 + n + 1 + w.len + 2 + 64;
}

static lg_err check_device(const lg_device *dev)
{
    if (dev == NULL || dev->id == NULL || dev->chain_id == NULL || dev->key == NULL)
        return LG_ERR_ARG;
    if (!lg_valid_id((const uint8_t *)dev->id, strlen(dev->id)) || dev->chain_id[0] == '\0')
        return LG_ERR_ARG;
    if (dev->alg == LG_ALG_EDDSA) {
#ifndef LG_WITH_ED25519
        return LG_ERR_UNSUPPORTED_ALG;
#endif
    } else if (dev->alg != LG_ALG_ES256) {
        return LG_ERR_ARG;
    }
    return LG_OK;
}

/* Take the next seq from the hook, persist it, then sign (protocol.md 6.4). */
static lg_err sign_tx(const lg_device *dev, sign_args *a, uint8_t *out, size_t cap,
                      lg_signed *res)
{
    lg_err e = check_device(dev);
    if (e != LG_OK)
        return e;
    if (out == NULL || res == NULL || dev->seq == NULL || dev->seq->load == NULL ||
        dev->seq->persist == NULL)
        return LG_ERR_ARG;
    uint64_t last;
    if (dev->seq->load(dev->seq->ctx, &last) != LG_OK)
        return LG_ERR_SEQ_LOAD;
    if (last >= U63)
        return LG_ERR_SEQ_EXHAUSTED;
    a->seq = last + 1;
    /* measure first: a buffer too small must not use up a number */
    if (env_len(dev, a) > cap)
        return LG_ERR_BUFFER;
    if (dev->seq->persist(dev->seq->ctx, a->seq) != LG_OK)
        return LG_ERR_SEQ_PERSIST;
    e = envelope(dev, a, out, cap, &res->len);
    if (e != LG_OK)
        return e;
    lg_sha256(out, res->len, res->tx_id);
    res->seq = a->seq;
    return LG_OK;
}

lg_err lg_sign_record(const lg_device *dev, const lg_record *rec, uint8_t *out, size_t cap,
                      lg_signed *res)
{
    if (rec == NULL || rec->stream == NULL ||
        !lg_valid_id((const uint8_t *)rec->stream, strlen(rec->stream)) ||
        (rec->payload == NULL && rec->payload_len > 0) ||
        (rec->content_type != NULL && strlen(rec->content_type) > 128))
        return LG_ERR_ARG;
    sign_args a = {0};
    a.kind = LG_KIND_DATA_RECORD;
    a.rec = rec;
    return sign_tx(dev, &a, out, cap, res);
}

lg_err lg_sign_config_report(const lg_device *dev, uint64_t version,
                             const uint8_t sha256[LG_HASH_LEN], uint8_t *out, size_t cap,
                             lg_signed *res)
{
    if (sha256 == NULL || version > U63)
        return LG_ERR_ARG;
    sign_args a = {0};
    a.kind = LG_KIND_CONFIG_REPORT;
    a.version = version;
    a.sha256 = sha256;
    return sign_tx(dev, &a, out, cap, res);
}

lg_err lg_sign_firmware_report(const lg_device *dev, const char *model, uint64_t version,
                               bool ok, const char *detail, uint8_t *out, size_t cap,
                               lg_signed *res)
{
    if (model == NULL || !lg_valid_id((const uint8_t *)model, strlen(model)) || version == 0 ||
        version > U63 || (detail != NULL && strlen(detail) > 256))
        return LG_ERR_ARG;
    sign_args a = {0};
    a.kind = LG_KIND_FIRMWARE_REPORT;
    a.model = model;
    a.version = version;
    a.ok = ok;
    a.detail = detail;
    return sign_tx(dev, &a, out, cap, res);
}

lg_err lg_sign_rekey(const lg_device *dev, const uint8_t *new_spki, size_t new_spki_len,
                     const uint8_t *enc_spki, size_t enc_spki_len, uint8_t *out, size_t cap,
                     lg_signed *res)
{
    lg_pubkey k;
    if (new_spki == NULL || lg_pubkey_from_spki(new_spki, new_spki_len, &k) != LG_OK)
        return LG_ERR_ARG;
    if (enc_spki != NULL && !x25519_spki((lg_str){enc_spki, enc_spki_len}))
        return LG_ERR_ARG;
    sign_args a = {0};
    a.kind = LG_KIND_DEVICE_REKEY;
    a.spki = new_spki;
    a.spki_len = new_spki_len;
    a.enc = enc_spki;
    a.enc_len = enc_spki != NULL ? enc_spki_len : 0;
    return sign_tx(dev, &a, out, cap, res);
}

/* ---- tokens (protocol.md 7) -------------------------------------------- */

/* An envelope with claims is at most 2 (tag, array) + 72 (protected: bstr
 * head, map, alg, kid of LG_ID_MAX) + 1 (unprotected) + 157 (claims: bstr
 * head, map, sub and aud of LG_ID_MAX, exp and iat of 9 bytes) + 66
 * (signature) = 298 bytes: 320 is enough, for making and for checking. */
#define LG_TOKEN_ENV_MAX 320

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

lg_err lg_token_make(const lg_device *dev, int64_t iat, int64_t exp, char *out, size_t cap,
                     size_t *out_len)
{
    size_t len;
    lg_err e = check_device(dev);
    if (e != LG_OK)
        return e;
    if (out == NULL || out_len == NULL || exp <= iat || exp - iat > 86400 ||
        strlen(dev->chain_id) > LG_ID_MAX)
        return LG_ERR_ARG;
    sign_args a = {0};
    a.iat = iat;
    a.exp = exp;
    /* The envelope is made in out and encoded in place (no copy on the
     * stack, which the signature's frames need): moved to out's end, it
     * starts at cap - len > len / 3, so each group of 3 bytes is read
     * before the 4 characters of the groups before it reach it. */
    if ((e = envelope(dev, &a, (uint8_t *)out, cap < LG_TOKEN_ENV_MAX ? cap : LG_TOKEN_ENV_MAX,
                      &len)) != LG_OK)
        return e;
    size_t need = (len * 4 + 2) / 3; /* RFC 4648 5, no padding */
    if (cap < need + 1)
        return LG_ERR_BUFFER;
    const uint8_t *env = memmove(out + cap - len, out, len);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)env[i] << 16;
        size_t k = len - i < 3 ? len - i : 3;
        if (k > 1)
            v |= (uint32_t)env[i + 1] << 8;
        if (k > 2)
            v |= env[i + 2];
        for (size_t j = 0; j <= k; j++)
            out[o++] = b64url[(v >> (18 - 6 * j)) & 63];
    }
    out[o] = '\0';
    *out_len = o;
    return LG_OK;
}

static int b64url_val(char ch)
{
    const char *p = strchr(b64url, ch);
    return ch != '\0' && p != NULL ? (int)(p - b64url) : -1;
}

lg_err lg_token_check(const char *token, size_t len, const char *chain_id, int64_t now,
                      const lg_pubkey *key)
{
    /* protocol.md 7 allows 1369 characters (1026 bytes), but a token that
     * passes the checks below is at most 298 bytes: the protected header
     * with a kid of LG_ID_MAX, claims whose sub is that kid and whose aud is
     * chain_id (LG_ID_MAX), 64 bytes of signature. A longer one is refused
     * here, as LG_ERR_TOKEN, before it is decoded; Go decodes it and refuses
     * its signature (docs/c-library.md, where it is stricter). */
    uint8_t env[LG_TOKEN_ENV_MAX];
    size_t n = 0;
    uint32_t acc = 0;
    if (token == NULL || chain_id == NULL || key == NULL)
        return LG_ERR_ARG;
    if (len > LG_TOKEN_MAX || len % 4 == 1)
        return LG_ERR_TOKEN;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val(token[i]);
        if (v < 0)
            return LG_ERR_TOKEN;
        acc = (acc << 6) | (uint32_t)v;
        if (i % 4 == 3 || i == len - 1) {
            size_t chars = i % 4 + 1, bytes = chars * 6 / 8;
            acc <<= 6 * (4 - chars);
            for (size_t j = 0; j < bytes; j++) {
                if (n >= sizeof env)
                    return LG_ERR_TOKEN;
                env[n++] = (uint8_t)(acc >> (16 - 8 * j));
            }
            acc = 0;
        }
    }
    lg_tx tx;
    lg_cbor c;
    size_t m;
    uint64_t prev = UINT64_MAX, k;
    lg_str sub = {NULL, 0}, aud = {NULL, 0};
    int64_t exp = 0, iat = 0;
    if (lg_envelope_decode(env, n, &tx) != LG_OK)
        return LG_ERR_TOKEN;
    /* claims: exactly {2: sub, 3: aud, 4: exp, 6: iat}, no CWT tag */
    cb_init(&c, tx.payload.p, tx.payload.n);
    if (cb_map(&c, &m) != LG_OK || m != 4)
        return LG_ERR_TOKEN;
    static const uint8_t want[4] = {2, 3, 4, 6};
    for (size_t i = 0; i < 4; i++) {
        lg_err e = cb_key(&c, &prev, &k);
        if (e != LG_OK || k != want[i])
            return LG_ERR_TOKEN;
        if (k == 2)
            e = cb_text(&c, &sub);
        else if (k == 3)
            e = cb_text(&c, &aud);
        else
            e = cb_int(&c, k == 4 ? &exp : &iat);
        if (e != LG_OK)
            return LG_ERR_TOKEN;
    }
    if (!cb_done(&c) || !lg_str_eq_str(sub, tx.kid) || !lg_str_eq(aud, chain_id))
        return LG_ERR_TOKEN;
    /* 0 < exp - iat <= 86400, computed without overflow */
    if (exp <= iat || (iat < 0 && exp > INT64_MAX + iat) || exp - iat > 86400)
        return LG_ERR_TOKEN;
    if (now >= exp || (now <= INT64_MAX - 300 && iat > now + 300))
        return LG_ERR_TOKEN;
    return lg_tx_verify(&tx, key);
}
