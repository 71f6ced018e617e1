/* lg_err.c - the texts of lg_err. */
#include "lg_internal.h"

const char *lg_strerror(lg_err e)
{
    switch (e) {
    case LG_OK: return "ok";
    case LG_ERR_ARG: return "invalid argument";
    case LG_ERR_BUFFER: return "buffer too small";
    case LG_ERR_LIMIT: return "over a fixed limit of the library";
    case LG_ERR_MALFORMED: return "malformed";
    case LG_ERR_NOT_CANONICAL: return "not deterministic CBOR";
    case LG_ERR_UNKNOWN_KIND: return "unknown tx kind";
    case LG_ERR_TOO_LARGE: return "tx too large";
    case LG_ERR_BAD_SIGNATURE: return "bad signature";
    case LG_ERR_UNSUPPORTED_ALG: return "algorithm not supported by this build (Ed25519 needs LG_WITH_ED25519)";
    case LG_ERR_TOKEN: return "invalid token";
    case LG_ERR_GENESIS: return "invalid genesis";
    case LG_ERR_MERKLE: return "inclusion proof does not lead to the root";
    case LG_ERR_CERT: return "invalid commit certificate";
    case LG_ERR_RECEIPT: return "invalid receipt";
    case LG_ERR_PROOF: return "the answer proves nothing";
    case LG_ERR_STALE_HEAD: return "the answer's head is too old";
    case LG_ERR_ROLLBACK: return "older configuration than the one accepted";
    case LG_ERR_NOT_CURRENT: return "not the current configuration";
    case LG_ERR_NO_CONFIG: return "no configuration published";
    case LG_ERR_VENDOR_SIGNATURE: return "release not signed by the vendor";
    case LG_ERR_WRONG_MODEL: return "release for another model";
    case LG_ERR_FIRMWARE_ROLLBACK: return "release not installable over the installed version";
    case LG_ERR_EXPIRED: return "release expired";
    case LG_ERR_RELEASE_REVOKED: return "release revoked";
    case LG_ERR_POLICY: return "release not allowed by the group's policy";
    case LG_ERR_IMAGE: return "image size or hash differs from the release";
    case LG_ERR_NOT_RECIPIENT: return "blob not sealed to this key";
    case LG_ERR_SEALED: return "sealed blob does not decode or decrypt";
    case LG_ERR_SEQ_LOAD: return "sequence counter load failed";
    case LG_ERR_SEQ_PERSIST: return "sequence counter persist failed; nothing signed";
    case LG_ERR_SEQ_EXHAUSTED: return "sequence counter exhausted";
    case LG_ERR_CRYPTO: return "crypto failure (mbedTLS)";
    case LG_ERR_MEMBERS: return "invalid membership proof";
    }
    return "unknown error";
}
