/*
 * lg.h - the ledgergate device library (protocol v1, docs/protocol.md).
 *
 * Contract, for every function of this header:
 *  1. No heap, no I/O, no global mutable state, no OS call. The library
 *     writes only into buffers and structs the caller passes; every buffer
 *     comes with its capacity.
 *  2. Every function returns an lg_err; LG_OK (0) is success. Outputs are
 *     meaningful only on LG_OK unless the function says otherwise.
 *  3. Decoders take bytes from outside: they check every length before
 *     reading, refuse non-deterministic CBOR (protocol.md section 2) and
 *     never read past `len`. Decoded views (lg_str) point into the
 *     caller's input buffer: keep it alive while you use them.
 *  4. Crypto is mbedTLS 2.28 (ECDSA P-256, SHA-256, X25519, HKDF, AES-GCM).
 *     mbedTLS allocates bignums through mbedtls_calloc: give it a static
 *     arena with mbedtls_memory_buffer_alloc_init() (docs/c-library.md says
 *     how large). Ed25519 needs libsodium and -DLG_WITH_ED25519; without it,
 *     every Ed25519 key gives LG_ERR_UNSUPPORTED_ALG.
 *  5. Secrets, hashes and tags are compared in constant time (lg_ct_equal).
 *
 * Stability: this header is the interface of examples/lgdev. Additions are
 * appended and marked "added:" in a comment; nothing is renamed.
 */
#ifndef LG_H
#define LG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/sha256.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits (override with -D at build time; both sides must agree) --- */

#ifndef LG_MAX_NODES
#define LG_MAX_NODES 16 /* genesis nodes kept */
#endif
#ifndef LG_MAX_ADMINS
#define LG_MAX_ADMINS 8 /* genesis admins kept */
#endif
#ifndef LG_MAX_MEMBERS
#define LG_MAX_MEMBERS 16 /* members of a set an lg_members keeps (protocol.md 8.1; at most 64) */
#endif
#ifndef LG_MEMBER_SETS
#define LG_MEMBER_SETS 2 /* member sets an lg_members keeps: the newest and the one before */
#endif
#define LG_ID_MAX 64     /* protocol.md section 3 */
#define LG_TARGET_MAX 70 /* "group:" + id */
#define LG_MAX_GROUPS 16 /* protocol.md 6.1 */
#define LG_HASH_LEN 32
#define LG_SPKI_MAX 91   /* a P-256 SPKI; Ed25519 and X25519 SPKIs are 44 */
#define LG_P256_SIG_LEN 64
#define LG_TOKEN_MAX 1369 /* protocol.md 7: base64url text, without the NUL */
#define LG_URI_MAX 256

/* ---- errors --------------------------------------------------------- */

/* One status enum for the whole library. The comment names the verdict of
 * docs/vectors/README.md each code stands for. */
typedef enum lg_err {
    LG_OK = 0,
    LG_ERR_ARG,             /* NULL pointer or impossible argument */
    LG_ERR_BUFFER,          /* caller buffer too small */
    LG_ERR_LIMIT,           /* over a fixed maximum of this library (LG_MAX_*) */
    LG_ERR_MALFORMED,       /* ledger.ErrMalformed: not a valid envelope, body or field */
    LG_ERR_NOT_CANONICAL,   /* ledger.ErrNotCanonical: CBOR that is not deterministic */
    LG_ERR_UNKNOWN_KIND,    /* ledger.ErrUnknownKind */
    LG_ERR_TOO_LARGE,       /* ledger.ErrTooLarge: over max_tx_bytes */
    LG_ERR_BAD_SIGNATURE,   /* ledger.ErrBadSignature */
    LG_ERR_UNSUPPORTED_ALG, /* Ed25519 key or signature, library built without LG_WITH_ED25519 */
    LG_ERR_TOKEN,           /* ledger.ErrToken */
    LG_ERR_GENESIS,         /* ledger.ErrGenesis */
    LG_ERR_MERKLE,          /* ledger.ErrProof: inclusion proof does not lead to the root */
    LG_ERR_CERT,            /* ledger.ErrCert */
    LG_ERR_RECEIPT,         /* ledger.ErrReceipt: other receipt failure (chain, index, keys) */
    LG_ERR_PROOF,           /* device.ErrProof: an answer that proves nothing */
    LG_ERR_STALE_HEAD,      /* device.ErrStaleHead */
    LG_ERR_ROLLBACK,        /* device.ErrRollback (configuration) */
    LG_ERR_NOT_CURRENT,     /* device.ErrNotCurrent */
    LG_ERR_NO_CONFIG,       /* device.ErrNoConfig */
    LG_ERR_VENDOR_SIGNATURE,/* device.ErrVendorSignature */
    LG_ERR_WRONG_MODEL,     /* device.ErrWrongModel */
    LG_ERR_FIRMWARE_ROLLBACK, /* device.ErrFirmwareRollback */
    LG_ERR_EXPIRED,         /* device.ErrExpired */
    LG_ERR_RELEASE_REVOKED, /* device.ErrReleaseRevoked */
    LG_ERR_POLICY,          /* device.ErrPolicy */
    LG_ERR_IMAGE,           /* device.ErrImage: image size or hash */
    LG_ERR_NOT_RECIPIENT,   /* device.ErrNotRecipient */
    LG_ERR_SEALED,          /* device.ErrSealed: blob does not decode or decrypt */
    LG_ERR_SEQ_LOAD,        /* the sequence hook's load failed */
    LG_ERR_SEQ_PERSIST,     /* the sequence hook's persist failed: nothing was signed */
    LG_ERR_SEQ_EXHAUSTED,   /* the counter reached 2^63-1 */
    LG_ERR_CRYPTO,          /* mbedTLS failed (arena exhausted, RNG error, bad private key) */
    LG_ERR_MEMBERS          /* ledger.ErrMembers: a membership proof (or one of its links) that does not verify */
} lg_err;

/* A static English text for e; never NULL. */
const char *lg_strerror(lg_err e);

/* 1 if the n bytes at a and b are equal, else 0; time depends on n only. */
int lg_ct_equal(const void *a, const void *b, size_t n);

/* ---- basic types ---------------------------------------------------- */

/* Bytes inside a caller's buffer (not NUL-terminated). */
typedef struct lg_str {
    const uint8_t *p;
    size_t n;
} lg_str;

/* A CBOR array of ids (text) or of uints, as encoded: iterate with
 * lg_list_id_at / lg_list_uint_at. */
typedef struct lg_list {
    const uint8_t *p; /* the array's encoding, head included */
    size_t n;
    size_t count;
} lg_list;

/* The i-th element (0-based) of a list of ids / uints. */
lg_err lg_list_id_at(const lg_list *l, size_t i, lg_str *out);
lg_err lg_list_uint_at(const lg_list *l, size_t i, uint64_t *out);

/* COSE algorithms (protocol.md 5). */
typedef enum lg_alg { LG_ALG_ES256 = -7, LG_ALG_EDDSA = -8 } lg_alg;

/* A public signing key. ES256: key = 04||X||Y (65 bytes); EdDSA: 32 bytes. */
typedef struct lg_pubkey {
    lg_alg alg;
    uint8_t key[65];
} lg_pubkey;

/* Parse a DER SubjectPublicKeyInfo (P-256 uncompressed, 91 bytes, or
 * Ed25519, 44 bytes; protocol.md 4). Anything else: LG_ERR_MALFORMED. An
 * Ed25519 SPKI parses also without LG_WITH_ED25519 (verifying then says
 * LG_ERR_UNSUPPORTED_ALG). */
lg_err lg_pubkey_from_spki(const uint8_t *spki, size_t len, lg_pubkey *out);

/* SHA-256 in one call. Incremental: lg_image_* for images, else
 * mbedtls_sha256_starts_ret/update_ret/finish_ret. */
void lg_sha256(const void *data, size_t len, uint8_t out[LG_HASH_LEN]);

/* added: the kinds of private key lg_key_from_pkcs8 reads. */
typedef enum lg_key_type {
    LG_KEY_P256 = 1, /* an ES256 signing key: the private scalar */
    LG_KEY_ED25519,  /* an EdDSA signing key: the seed */
    LG_KEY_X25519    /* an encryption key (lg_sealed_open) */
} lg_key_type;

/* added: the 32-byte private key of a PKCS#8 DER private key (the PEM
 * "PRIVATE KEY" body, as `ledgergate device keygen` writes it; protocol.md
 * 4). Strict DER, RFC 5958 OneAsymmetricKey (v1, or v2 with publicKey):
 *  - OID 1.3.101.112 Ed25519 / 1.3.101.110 X25519 (RFC 8410: no
 *    parameters, privateKey an OCTET STRING of 32 bytes): the seed or the
 *    scalar as stored;
 *  - OID 1.2.840.10045.2.1 with namedCurve P-256, privateKey an RFC 5915
 *    ECPrivateKey (version 1, 32 bytes, optional [0] P-256 and [1] point):
 *    the scalar, checked to be in [1, n-1] in constant time.
 * A public key in the structure is checked for form only, not against the
 * private key. Another algorithm or curve (RSA, Ed448, P-384):
 * LG_ERR_UNSUPPORTED_ALG; anything else LG_ERR_MALFORMED. An Ed25519 key
 * parses also without LG_WITH_ED25519. On any error out is zeroed. The
 * caller wipes der and out when done: both hold the secret. */
lg_err lg_key_from_pkcs8(const uint8_t *der, size_t len, lg_key_type *type, uint8_t out[32]);

/* ---- genesis (protocol.md 8) ------------------------------------------ */

typedef struct lg_node {
    char id[LG_ID_MAX + 1];
    uint8_t pub[65]; /* 04||X||Y, checked on the curve */
} lg_node;

typedef struct lg_admin {
    char id[LG_ID_MAX + 1];
    lg_pubkey key;
} lg_admin;

typedef struct lg_genesis {
    char chain_id[LG_ID_MAX + 1];
    int64_t time_ms;
    size_t n_nodes;
    lg_node nodes[LG_MAX_NODES];
    size_t n_admins;
    lg_admin admins[LG_MAX_ADMINS];
    uint32_t max_tx_bytes;
    size_t quorum;             /* floor((n + f) / 2) + 1, f = floor((n - 1) / 3) */
    uint8_t hash[LG_HASH_LEN]; /* the genesis hash: the prev of block 1 */
} lg_genesis;

/* Parse genesis.json (the file of protocol.md 8: strict JSON, unknown keys
 * refused) into g and compute its hash. LG_ERR_GENESIS for an invalid file,
 * LG_ERR_LIMIT for more nodes or admins than LG_MAX_*. */
lg_err lg_genesis_parse(const uint8_t *json, size_t len, lg_genesis *g);

/* ---- the tx envelope (protocol.md 5, 6) --------------------------------- */

/* Tx kinds; the value is the Body's payload key. */
typedef enum lg_kind {
    LG_KIND_DEVICE_ENROLL = 3,
    LG_KIND_DEVICE_REVOKE = 4,
    LG_KIND_DEVICE_REKEY = 5,
    LG_KIND_DATA_RECORD = 6,
    LG_KIND_CONFIG_SET = 7,
    LG_KIND_CONFIG_REPORT = 8,
    LG_KIND_NODE_HEARTBEAT = 9,
    LG_KIND_VENDOR_ENROLL = 10,
    LG_KIND_REVIEWER_ENROLL = 11,
    LG_KIND_FIRMWARE_PUBLISH = 12,
    LG_KIND_FIRMWARE_VOTE = 13,
    LG_KIND_FIRMWARE_APPROVE = 14,
    LG_KIND_FIRMWARE_REVOKE = 15,
    LG_KIND_FIRMWARE_POLICY = 16,
    LG_KIND_FIRMWARE_REPORT = 17,
    LG_KIND_NODE_SNAPSHOT = 18,
    LG_KIND_CLUSTER_RECONFIG = 19,
    LG_KIND_FLEET_BATCH = 20,
    LG_KIND_FLEET_APPROVE = 21,
    LG_KIND_FLEET_REVOKE = 22,
    LG_KIND_DEVICE_CLAIM = 23,
    LG_KIND_ENROLL_TOKEN = 24,
    LG_KIND_POLICY_SET = 25
} lg_kind;

/* A decoded tx envelope. Optional fields that are absent are empty
 * (n == 0, 0, false). */
typedef struct lg_tx {
    lg_alg alg;
    lg_str kid;
    lg_str protected_hdr; /* the protected header's bytes (inside the bstr) */
    lg_str payload;       /* the Body's bytes */
    lg_str signature;     /* as sent; 64 bytes when it can verify */
    uint8_t id[LG_HASH_LEN]; /* tx id = H(envelope) */
    lg_kind kind;
    lg_str chain_id;
    union {
        struct { lg_str device_id, public_key, model; lg_list groups; lg_str enc_key; } enroll;
        struct { lg_str device_id, reason; } revoke;
        struct { lg_str device_id; uint64_t seq; lg_str public_key, enc_key; } rekey;
        struct { lg_str device_id, stream; uint64_t seq; int64_t time_ms; lg_str content_type, payload; } record;
        struct { lg_str target; uint64_t version; lg_str sha256; uint64_t size; lg_str content_type, blob, uri; } config_set;
        struct { lg_str device_id; uint64_t seq, version; lg_str sha256; } config_report;
        struct { lg_str node; int64_t time_ms; } heartbeat;
        struct { lg_str vendor, public_key; lg_list models; } vendor_enroll;
        struct { lg_str reviewer, public_key; } reviewer_enroll;
        struct { lg_str model; uint64_t version; lg_str sha256; uint64_t size; int64_t expires; uint64_t min_version; } publish;
        struct { lg_str model; uint64_t version; bool good; lg_str reason; } vote;
        struct { lg_str model; uint64_t version; lg_str group; } approve;
        struct { lg_str model; uint64_t version; lg_str group, reason; } fw_revoke;
        struct { lg_str group; bool require_approval; uint64_t min_good_votes; lg_list waves; uint64_t max_failure_pct; } policy;
        struct { lg_str device_id; uint64_t seq; lg_str model; uint64_t version; bool ok; lg_str detail; } fw_report;
        struct { lg_str node; uint64_t height; lg_str hash; } node_snapshot;
        struct { lg_list nodes; } reconfig; /* 4..64 Node maps; lg_reconfig_node reads one */
        /* 6.16: 1..1000 BatchDevice maps, sorted by id; lg_batch_device reads one */
        struct { lg_str batch, model; lg_list groups, devices; } fleet_batch;
        struct { lg_str batch; } fleet_approve;
        struct { lg_str batch, reason; } fleet_revoke;
        /* 6.18: one of three forms, checked by the decoder */
        struct { lg_str device_id, batch, evidence, secret, public_key, model; lg_list groups; } claim;
        struct { lg_str hash; int64_t expires; lg_str device_id, model; lg_list groups; } enroll_token;
        struct { uint64_t version; lg_list rules; } policy_set; /* 0..64 Rule maps, checked (6.21) */
    } u;
} lg_tx;

/* Decode a tagged COSE_Sign1 tx of at most max_tx_bytes bytes (0: no
 * bound) and its Body, strictly (protocol.md 2, 5, 6). Does not verify the
 * signature. tx views point into env. */
lg_err lg_tx_decode(const uint8_t *env, size_t len, size_t max_tx_bytes, lg_tx *tx);

/* The i-th (0-based) Node of a decoded cluster.reconfig (protocol.md 6.15):
 * its id and its P-256 SPKI, views into the tx's buffer. */
lg_err lg_reconfig_node(const lg_tx *tx, size_t i, lg_str *id, lg_str *spki);

/* The i-th (0-based) device of a decoded fleet.batch (protocol.md 6.16):
 * its id and its SPKI (P-256 or Ed25519), views into the tx's buffer.
 * LG_ERR_ARG if tx is not a fleet.batch or i is out of range. */
lg_err lg_batch_device(const lg_tx *tx, size_t i, lg_str *id, lg_str *spki);

/* Verify a decoded tx's signature with the author's key (protocol.md 5):
 * LG_ERR_BAD_SIGNATURE also when alg and key differ or the signature is
 * not 64 bytes. */
lg_err lg_tx_verify(const lg_tx *tx, const lg_pubkey *key);

/* ---- signing: the device's own txs ---------------------------------- */

/* The sequence counter hook the firmware implements (protocol.md 6.4).
 * load: the last seq used (0 if none). persist: store seq durably and
 * return LG_OK only once it is stored. A sign call loads, takes last + 1,
 * persists it, and only then signs: when persist fails, nothing is signed
 * and the call returns LG_ERR_SEQ_PERSIST. */
typedef struct lg_seq_hook {
    lg_err (*load)(void *ctx, uint64_t *last);
    lg_err (*persist)(void *ctx, uint64_t seq);
    void *ctx;
} lg_seq_hook;

/* RNG callback, as mbedTLS's f_rng: fill buf with len random bytes, 0 on
 * success. */
typedef int (*lg_rng_fn)(void *p_rng, unsigned char *buf, size_t len);

/* The device: its id, its chain, its signing key and its counter. */
typedef struct lg_device {
    const char *id;        /* the device id, also the kid */
    const char *chain_id;  /* the genesis chain id */
    lg_alg alg;            /* LG_ALG_ES256, or LG_ALG_EDDSA with LG_WITH_ED25519 */
    const uint8_t *key;    /* 32 bytes: the P-256 private scalar, or the Ed25519 seed */
    const lg_seq_hook *seq;
    lg_rng_fn f_rng;       /* NULL: RFC 6979 deterministic ECDSA (reproduces the vectors) */
    void *p_rng;           /* with f_rng non-NULL, ECDSA uses random k from it */
} lg_device;

/* The result of a sign call: the envelope is in the caller's out buffer. */
typedef struct lg_signed {
    size_t len;                /* envelope bytes written to out */
    uint8_t tx_id[LG_HASH_LEN];
    uint64_t seq;              /* the seq the tx carries (persisted) */
} lg_signed;

/* data.record (protocol.md 6.4). content_type and payload are optional
 * (NULL or empty: omitted). */
typedef struct lg_record {
    const char *stream;
    int64_t time_ms;
    const char *content_type;
    const uint8_t *payload;
    size_t payload_len;
} lg_record;

lg_err lg_sign_record(const lg_device *dev, const lg_record *rec,
                      uint8_t *out, size_t cap, lg_signed *res);

/* config.report (6.6): the applied configuration's version and hash. */
lg_err lg_sign_config_report(const lg_device *dev, uint64_t version,
                             const uint8_t sha256[LG_HASH_LEN],
                             uint8_t *out, size_t cap, lg_signed *res);

/* firmware.report (6.13). detail optional (NULL or ""). */
lg_err lg_sign_firmware_report(const lg_device *dev, const char *model,
                               uint64_t version, bool ok, const char *detail,
                               uint8_t *out, size_t cap, lg_signed *res);

/* device.rekey (6.3), signed with dev's current key. enc_spki optional
 * (NULL: the device has no encryption key afterwards). */
lg_err lg_sign_rekey(const lg_device *dev, const uint8_t *new_spki, size_t new_spki_len,
                     const uint8_t *enc_spki, size_t enc_spki_len,
                     uint8_t *out, size_t cap, lg_signed *res);

/* ---- tokens (protocol.md 7) ------------------------------------------- */

/* A device token (MQTT password): base64url text, NUL-terminated, in out
 * (cap >= LG_TOKEN_MAX + 1 always suffices). iat, exp: Unix seconds,
 * 0 < exp - iat <= 86400. Uses no sequence number. */
lg_err lg_token_make(const lg_device *dev, int64_t iat, int64_t exp,
                     char *out, size_t cap, size_t *out_len);

/* Check a token as the gateway does (chain, now in Unix seconds, key):
 * LG_ERR_TOKEN or LG_ERR_BAD_SIGNATURE. For self-tests of a device. A token
 * longer than any that can pass (its envelope over 320 bytes) is LG_ERR_TOKEN
 * even where only its signature is wrong. */
lg_err lg_token_check(const char *token, size_t len, const char *chain_id,
                      int64_t now, const lg_pubkey *key);

/* ---- blocks, receipts (protocol.md 9, 10) ------------------------------- */

typedef struct lg_header {
    lg_str chain_id;
    uint64_t height;
    lg_str prev, tx_root;
    uint64_t num_txs;
    int64_t time_ms;
    uint64_t view;
    lg_str proposer;
    uint8_t hash[LG_HASH_LEN]; /* the block hash */
} lg_header;

/* A verified receipt. tx views point into the receipt buffer. */
typedef struct lg_receipt {
    lg_tx tx;          /* the committed tx (tx.id: compare with what you sent) */
    lg_header header;
    uint64_t index;
} lg_receipt;

/* Verify a Receipt with the genesis alone (protocol.md 10, all 7 steps). */
lg_err lg_receipt_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                         lg_receipt *out);

/* ---- member sets and membership proofs (protocol.md 8.1, 10.2) -------- */

/* One member set: the first height it certifies and its members. */
typedef struct lg_member_set {
    uint64_t start;
    size_t n;
    size_t quorum; /* protocol.md 8 with n members */
    lg_node nodes[LG_MAX_MEMBERS];
} lg_member_set;

/* The member sets a device holds: caller-owned (about
 * LG_MEMBER_SETS * LG_MAX_MEMBERS * 130 bytes), kept durably by the
 * caller (copy the struct; g must be the same genesis when it is used
 * again). The genesis nodes from height 1, then each change followed;
 * only the newest LG_MEMBER_SETS sets are kept, oldest first. A receipt
 * or head at a height below the oldest kept set's start does not verify
 * (LG_ERR_CERT). */
typedef struct lg_members {
    const lg_genesis *g;
    uint64_t last_change; /* height of the newest cluster.reconfig followed; 0: none */
    size_t n_sets;
    lg_member_set sets[LG_MEMBER_SETS];
} lg_members;

/* MembersFrom(h) = 16 * ceil((h + 64) / 16) + 1 (protocol.md 8.1). */
uint64_t lg_members_from(uint64_t h);

/* Start m with the genesis nodes alone. LG_ERR_LIMIT if the genesis has
 * more nodes than LG_MAX_MEMBERS. */
lg_err lg_members_init_genesis(lg_members *m, const lg_genesis *g);

/* Follow the receipt of one cluster.reconfig (protocol.md 10.2, steps 1
 * to 7: Go Members.Follow): it verifies with the set in force at its
 * height, its tx is a cluster.reconfig signed by a genesis admin, no
 * change is pending there, the newest set has at least 4 members, and no
 * node id of a kept set comes back with another key (the sets dropped
 * are not checked: protocol.md 10.2). On success the new set is kept
 * (the oldest dropped when LG_MEMBER_SETS are held). On any error m is
 * unchanged: LG_ERR_MEMBERS, LG_ERR_LIMIT (a set larger than
 * LG_MAX_MEMBERS), LG_ERR_CRYPTO. */
lg_err lg_members_follow(lg_members *m, const uint8_t *receipt, size_t len);

/* Follow a MembershipProof (protocol.md 10.2): receipts at or below
 * m->last_change are skipped (already followed), each other one is
 * followed in order. *followed (may be NULL) counts the changes
 * followed. On error m holds the changes followed before the failing
 * receipt (each one proven): LG_ERR_MEMBERS for a proof that does not
 * decode or a link that does not follow, else as lg_members_follow. */
lg_err lg_members_follow_proof(lg_members *m, const uint8_t *proof, size_t len, size_t *followed);

/* lg_receipt_verify with the certificate checked against the set of m in
 * force at the receipt's height (protocol.md 10 step 7). */
lg_err lg_receipt_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                 lg_receipt *out);

/* Verify a Head {1: Header, 2: Cert} (protocol.md 11.1 step 1) with the
 * set of m in force at its height; h receives the decoded header. */
lg_err lg_head_verify_members(const lg_members *m, const uint8_t *head, size_t len, lg_header *h);

/* RFC 9162 2.1.3.2: does proof (count hashes of 32 bytes, concatenated)
 * lead from leaf_hash at index in a tree of size to root? LG_ERR_MERKLE if
 * not. */
lg_err lg_merkle_verify(const uint8_t leaf_hash[LG_HASH_LEN], uint64_t index,
                        uint64_t size, const uint8_t *proof, size_t count,
                        const uint8_t root[LG_HASH_LEN]);

/* ---- answers (protocol.md 11) ----------------------------------------- */

/* The configuration a device accepted last (11.2 step 8): store durably. */
typedef struct lg_config_state {
    bool valid; /* false: none accepted yet */
    char target[LG_TARGET_MAX + 1];
    uint64_t version;
    uint64_t height;
    uint8_t sha256[LG_HASH_LEN];
} lg_config_state;

/* What the device knows when checking a ConfigAnswer. */
typedef struct lg_config_check {
    const char *device;
    const char *const *groups; /* the device's groups; NULL: take them from the answer's enrollment */
    size_t n_groups;
    const lg_config_state *last; /* NULL or !valid: none */
    const uint8_t *hash;         /* the SHA-256 of the configuration the device holds (32
                                  * bytes); NULL (changed: was LG_ERR_ARG): it holds none, so
                                  * a proven config.set is never current: after steps 1-6
                                  * LG_ERR_NOT_CURRENT names what to download (11.2 step 7) */
    int64_t now_ms;
    int64_t max_age_ms;          /* e.g. 600000 */
} lg_config_check;

/* The config.set the answer proves (copied: survives the answer buffer). */
typedef struct lg_config_set {
    char target[LG_TARGET_MAX + 1];
    uint64_t version;
    uint8_t sha256[LG_HASH_LEN]; /* H(plaintext) */
    uint64_t size;               /* plaintext length */
    uint8_t blob[LG_HASH_LEN];   /* H(sealed blob): its address */
    char uri[LG_URI_MAX + 1];    /* "" if none */
    uint64_t height;             /* the block of the config.set */
} lg_config_set;

/* Check a ConfigAnswer (11.2, steps 1-7). On LG_OK, *accepted is the new
 * state to store BEFORE applying. On LG_ERR_NOT_CURRENT, *cs names the
 * configuration to download (open it with lg_sealed_open), and anti-
 * rollback has passed. cs and accepted may not be NULL. */
lg_err lg_config_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                               const lg_config_check *chk, lg_config_set *cs,
                               lg_config_state *accepted);
/* The same, every receipt and the head verified with the set of m in force
 * at its height (protocol.md 11: after a change of the gateways). */
lg_err lg_config_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                       const lg_config_check *chk, lg_config_set *cs,
                                       lg_config_state *accepted);

/* A KeysAnswer's verdict (11.3), views into the answer buffer. */
typedef struct lg_keys {
    lg_str signing_key;  /* SPKI */
    lg_str enc_key;      /* SPKI or empty */
    lg_str model;
    lg_list groups;
    bool revoked;
    lg_str reason;
    uint64_t height;     /* the block of the enroll or re-key the keys come from */
} lg_keys;

lg_err lg_keys_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                             const char *device, int64_t now_ms, int64_t max_age_ms,
                             lg_keys *out);
/* The same with the member sets of m. */
lg_err lg_keys_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                     const char *device, int64_t now_ms, int64_t max_age_ms,
                                     lg_keys *out);

/* What the device knows when checking a FirmwareAnswer (11.5). */
typedef struct lg_fw_check {
    const char *device;
    const char *model;           /* NULL: the model from the answer's enrollment */
    const char *const *groups;   /* NULL: the groups from the answer's enrollment */
    size_t n_groups;
    uint64_t installed;          /* the installed version */
    const lg_pubkey *vendor_key; /* built in */
    int64_t now_ms;
    int64_t max_age_ms;
} lg_fw_check;

/* The release a FirmwareAnswer allows (the manifest F). */
typedef struct lg_fw_release {
    char model[LG_ID_MAX + 1];
    uint64_t version;
    uint8_t sha256[LG_HASH_LEN];
    uint64_t size;
    int64_t expires;
    uint64_t min_version;
    uint64_t height;
} lg_fw_release;

/* Check a FirmwareAnswer (11.5, steps 1-15). On LG_OK, rel is what to
 * download; then check the image with lg_image_*. */
lg_err lg_firmware_answer_verify(const uint8_t *buf, size_t len, const lg_genesis *g,
                                 const lg_fw_check *chk, lg_fw_release *rel);
/* The same with the member sets of m. */
lg_err lg_firmware_answer_verify_members(const uint8_t *buf, size_t len, const lg_members *m,
                                         const lg_fw_check *chk, lg_fw_release *rel);

/* Incremental image check: init, update with chunks of any size as they
 * are written to flash, final. update refuses (LG_ERR_IMAGE) a byte past
 * rel->size: stop the download. final: LG_ERR_IMAGE unless exactly size
 * bytes with hash sha256. */
typedef struct lg_image {
    mbedtls_sha256_context sha;
    uint64_t seen;
    uint64_t size;
    uint8_t want[LG_HASH_LEN];
} lg_image;

lg_err lg_image_init(lg_image *im, const lg_fw_release *rel);
lg_err lg_image_update(lg_image *im, const uint8_t *chunk, size_t n);
lg_err lg_image_final(lg_image *im);

/* ---- sealed blobs (protocol.md 12) -------------------------------------- */

/* Open a sealed blob with the device's X25519 private key (32 bytes).
 * With cs non-NULL also the config checks: address == cs->blob first
 * (LG_ERR_NOT_CURRENT), then size and hash of the plaintext. The
 * plaintext is written to out (cap >= blob length suffices); on any error
 * out holds no plaintext and *out_len is 0. */
lg_err lg_sealed_open(const uint8_t *blob, size_t len, const uint8_t x25519_key[32],
                      const lg_config_set *cs, uint8_t *out, size_t cap, size_t *out_len);

/* ---- refusals (protocol.md 14) ---------------------------------------- */

typedef enum lg_action {
    LG_ACT_FIX = 0,  /* also for a reason this library does not know */
    LG_ACT_RESEND,   /* same bytes again after the hint */
    LG_ACT_RESYNC,   /* counter behind: lg_seq_resync(last_seq), sign again */
    LG_ACT_REKEY,
    LG_ACT_GIVE_UP
} lg_action;

typedef struct lg_refusal {
    char reason[32];   /* "" if longer than 31 bytes (no known reason is): action FIX;
                        * "" also when only a transport code was given */
    lg_action action;
    bool has_last_seq;
    uint64_t last_seq;
    /* added: the tx the refusal is about (the reject JSON's "tx_id", 14.3;
     * false for "" and in the PUBACK and CoAP forms, which answer one
     * message and carry no tx id) */
    bool has_tx_id;
    uint8_t tx_id[LG_HASH_LEN];
    /* added: the detail for people, a view into the caller's input (no
     * copy, not NUL-terminated; empty if none): the reject JSON's "error"
     * as it stands between its quotes (JSON escapes not decoded), or the
     * CoAP diagnostic's text after "<reason>: " (and "last_seq=N: "). An
     * MQTT 5 PUBACK carries none: read the rejects message for it. */
    lg_str detail;
} lg_refusal;

/* A CoAP response code as one byte, class << 5 | detail: LG_COAP_CODE(4, 3)
 * is 4.03 (0x83). */
#define LG_COAP_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))

/* The action of a reason string (unknown: LG_ACT_FIX). */
lg_action lg_reason_action(const char *reason, size_t len);

/* The reject JSON of 14.3 (MQTT rejects topic, HTTP error body); unknown
 * fields ignored. "tx_id" must be "" or 64 hex digits (has_tx_id, tx_id:
 * match it with lg_signed.tx_id), "error" a string (detail). */
lg_err lg_refusal_parse_json(const uint8_t *json, size_t len, lg_refusal *out);
/* A CoAP diagnostic payload "<reason>: <detail>" or
 * "replay: last_seq=N: <detail>" (detail set). Without the response code:
 * prefer lg_refusal_parse_coap_code. */
lg_err lg_refusal_parse_coap(const uint8_t *diag, size_t len, lg_refusal *out);
/* An MQTT 5 PUBACK: Reason String and the optional User Property last_seq
 * (decimal; NULL if absent). Without the reason code an absent Reason
 * String is fix: prefer lg_refusal_parse_puback. */
lg_err lg_refusal_parse_mqtt5(const char *reason, size_t reason_len,
                              const char *last_seq, size_t last_seq_len,
                              lg_refusal *out);

/* added: an MQTT 5 PUBACK refusal with its reason code (>= 0x80; below
 * is success: LG_ERR_ARG). reason: the Reason String (NULL or empty if
 * absent); last_seq: the User Property last_seq (NULL if absent).
 *  - With a Reason String, the reason decides the action (14.1: the
 *    string names the reason, the code is the table's code of it; an
 *    unknown reason is fix whatever the code). A known reason with another
 *    code than its own in 14.1's MQTT 5 column gives LG_ERR_MALFORMED, and
 *    out is still filled from the reason: the PUBACK contradicts
 *    protocol.md, the reason string is what to act on.
 *  - Without one, the code decides what it can: 0x80 and 0x97 are resend
 *    (every reason with these codes is), 0x83 with a last_seq is resync
 *    (only replay carries one), anything else is fix (0x83, 0x87 and 0x99
 *    cover reasons of several actions); reason stays "".
 * No tx id, no detail: the rejects message (lg_refusal_parse_json) has
 * them. Prefer this to lg_refusal_parse_mqtt5, which has no code. */
lg_err lg_refusal_parse_puback(uint8_t code, const char *reason, size_t reason_len,
                               const char *last_seq, size_t last_seq_len,
                               lg_refusal *out);

/* added: a CoAP refusal with its response code (LG_COAP_CODE; 4.00 and
 * up, else LG_ERR_ARG) and its diagnostic payload (diag may be NULL when
 * len is 0). The reason in the payload decides, as for the PUBACK; a known
 * reason with another code than its own in 14.1's CoAP column gives
 * LG_ERR_MALFORMED with out filled from the reason. An empty payload: the
 * code decides what it can: 4.08, 4.29, 5.00, 5.03 are resend, 4.01 is
 * rekey, anything else fix (4.03 covers reasons of several actions). */
lg_err lg_refusal_parse_coap_code(uint8_t code, const uint8_t *diag, size_t len,
                                  lg_refusal *out);

/* After a replay refusal: make the hook's counter at least last_seq, so
 * the next sign call uses last_seq + 1. */
lg_err lg_seq_resync(const lg_seq_hook *seq, uint64_t last_seq);

#ifdef __cplusplus
}
#endif
#endif /* LG_H */
