"""Structure checks for every CBOR map of protocol.md (sections 6, 7, 8, 9,
10, 11, 12): required/optional keys, types, ranges, and section 2 rules 5, 7
and 8 (no unknown keys, optional fields omitted when empty, required fields
present). Written from the field tables of protocol.md only.
"""

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from dcbor import CBORError

U63 = (1 << 63) - 1
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Malformed(CBORError):
    """A structure that section 6/9/10/11 refuses (malformed)."""


def valid_id(s):
    return isinstance(s, str) and ID_RE.match(s) is not None and s not in (".", "..") \
        and len(s.encode()) <= 64


def parse_spki(der, kinds=("p256", "ed25519")):
    """Parse a DER SPKI (section 4) and return (kind, key). Refuses other
    curves, RSA and compressed points (re-encoding must give the same bytes)."""
    try:
        k = serialization.load_der_public_key(bytes(der))
    except Exception as e:  # noqa: BLE001 - any parse failure is malformed
        raise Malformed("public key: %s" % e)
    if isinstance(k, ec.EllipticCurvePublicKey) and isinstance(k.curve, ec.SECP256R1):
        kind = "p256"
    elif isinstance(k, ed25519.Ed25519PublicKey):
        kind = "ed25519"
    elif isinstance(k, x25519.X25519PublicKey):
        kind = "x25519"
    else:
        raise Malformed("public key: unsupported algorithm")
    if kind not in kinds:
        raise Malformed("public key: %s not allowed here" % kind)
    again = k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if again != bytes(der):
        raise Malformed("public key: not the canonical SPKI (compressed point?)")
    return kind, k


def is_empty(v):
    return v in ("", b"", 0, False) and not (v is True) or v == [] or v is None


# Field types. Each checker takes (value, where) and raises Malformed.
def t_id(v, w):
    if not valid_id(v):
        raise Malformed("%s: not an id: %r" % (w, v))


def t_target(v, w):
    if isinstance(v, str) and v.startswith("group:"):
        t_id(v[6:], w)
    else:
        t_id(v, w)


def t_tstr(maxlen=None, minlen=0):
    def c(v, w):
        if not isinstance(v, str):
            raise Malformed("%s: not text" % w)
        n = len(v.encode())
        if (maxlen is not None and n > maxlen) or n < minlen:
            raise Malformed("%s: length %d out of range" % (w, n))
    return c


def t_bstr(size=None):
    def c(v, w):
        if not isinstance(v, bytes):
            raise Malformed("%s: not bytes" % w)
        if size is not None and len(v) != size:
            raise Malformed("%s: %d bytes, want %d" % (w, len(v), size))
    return c


def t_uint(lo=0, hi=U63):
    def c(v, w):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise Malformed("%s: not an unsigned integer" % w)
        if v < lo or v > hi:
            raise Malformed("%s: %d out of range %d..%d" % (w, v, lo, hi))
    return c


def t_int(lo=-(1 << 63), hi=U63):
    def c(v, w):
        if not isinstance(v, int) or isinstance(v, bool):
            raise Malformed("%s: not an integer" % w)
        if v < lo or v > hi:
            raise Malformed("%s: %d out of range" % (w, v))
    return c


def t_bool(v, w):
    if not isinstance(v, bool):
        raise Malformed("%s: not a bool" % w)


def t_true(v, w):
    if v is not True:
        raise Malformed("%s: must be true" % w)


def t_spki(kinds):
    def c(v, w):
        t_bstr()(v, w)
        parse_spki(v, kinds)
    return c


def t_ids(lo, hi):
    def c(v, w):
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            raise Malformed("%s: want %d..%d ids" % (w, lo, hi))
        for x in v:
            t_id(x, w)
        bs = [x.encode() for x in v]
        if any(bs[i] >= bs[i + 1] for i in range(len(bs) - 1)):
            raise Malformed("%s: not sorted and distinct" % w)
    return c


def t_waves(v, w):
    if not isinstance(v, list) or not 1 <= len(v) <= 16:
        raise Malformed("%s: 1..16 waves" % w)
    for x in v:
        t_uint(1, 100)(x, w)
    if any(v[i] >= v[i + 1] for i in range(len(v) - 1)) or v[-1] != 100:
        raise Malformed("%s: waves must increase and end at 100" % w)


def t_map(schema):
    def c(v, w):
        check(v, schema, w)
    return c


def t_list(elem, lo=0, hi=1 << 20, null_ok=False):
    def c(v, w):
        if v is None and null_ok:
            return
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            raise Malformed("%s: array of %d..%d wanted" % (w, lo, hi))
        for i, x in enumerate(v):
            elem(x, "%s[%d]" % (w, i))
    return c


R, O = True, False


def check(m, schema, where):
    """Check map m against schema {key: (name, required, checker)}."""
    if not isinstance(m, dict):
        raise Malformed("%s: not a map" % where)
    for k in m:
        if k not in schema:
            raise Malformed("%s: unknown key %r" % (where, k))
    for k, (name, req, chk) in schema.items():
        w = "%s.%s" % (where, name)
        if k not in m:
            if req:
                raise Malformed("%s: required field missing" % w)
            continue
        v = m[k]
        if not req and is_empty(v):
            raise Malformed("%s: optional field present but empty" % w)
        chk(v, w)


SIGN_KINDS = ("p256", "ed25519")
ENC_KINDS = ("x25519",)

ENROLL = {1: ("device_id", R, t_id), 2: ("public_key", R, t_spki(SIGN_KINDS)), 3: ("model", O, t_id),
          4: ("groups", O, t_ids(1, 16)), 5: ("enc_key", O, t_spki(ENC_KINDS))}
REVOKE = {1: ("device_id", R, t_id), 2: ("reason", O, t_tstr(256))}
REKEY = {1: ("device_id", R, t_id), 2: ("seq", R, t_uint(1)), 3: ("public_key", R, t_spki(SIGN_KINDS)),
         4: ("enc_key", O, t_spki(ENC_KINDS))}
RECORD = {1: ("device_id", R, t_id), 2: ("stream", R, t_id), 3: ("seq", R, t_uint(1)), 4: ("time", R, t_int()),
          5: ("content_type", O, t_tstr(128, 1)), 6: ("payload", O, t_bstr())}
CONFIG_SET = {1: ("target", R, t_target), 2: ("version", R, t_uint(1)), 3: ("sha256", R, t_bstr(32)),
              4: ("size", R, t_uint(0, 1048576)), 5: ("content_type", O, t_tstr(128)), 6: ("blob", R, t_bstr(32)),
              7: ("uri", O, t_tstr(256))}
CONFIG_REPORT = {1: ("device_id", R, t_id), 2: ("seq", R, t_uint(1)), 3: ("version", R, t_uint(0)),
                 4: ("sha256", R, t_bstr(32))}
HEARTBEAT = {1: ("node", R, t_id), 2: ("time", R, t_int())}
VENDOR_ENROLL = {1: ("vendor", R, t_id), 2: ("public_key", R, t_spki(SIGN_KINDS)), 3: ("models", R, t_ids(1, 64))}
REVIEWER_ENROLL = {1: ("reviewer", R, t_id), 2: ("public_key", R, t_spki(SIGN_KINDS))}
FW_PUBLISH = {1: ("model", R, t_id), 2: ("version", R, t_uint(1)), 3: ("sha256", R, t_bstr(32)),
              4: ("size", R, t_uint(1)), 5: ("expires", R, t_int(1)), 6: ("min_version", O, t_uint(0))}
FW_VOTE = {1: ("model", R, t_id), 2: ("version", R, t_uint(1)), 3: ("good", R, t_bool), 4: ("reason", O, t_tstr(256))}
FW_APPROVE = {1: ("model", R, t_id), 2: ("version", R, t_uint(1)), 3: ("group", R, t_id)}
FW_REVOKE = {1: ("model", R, t_id), 2: ("version", R, t_uint(1)), 3: ("group", O, t_id), 4: ("reason", O, t_tstr(256))}
FW_POLICY = {1: ("group", R, t_id), 2: ("require_approval", O, t_true), 3: ("min_good_votes", O, t_uint(0, 1000)),
             4: ("waves", O, t_waves), 5: ("max_failure_pct", O, t_uint(0, 100))}
FW_REPORT = {1: ("device_id", R, t_id), 2: ("seq", R, t_uint(1)), 3: ("model", R, t_id), 4: ("version", R, t_uint(1)),
             5: ("ok", O, t_true), 6: ("detail", O, t_tstr(256))}
NODE_SNAPSHOT = {1: ("node", R, t_id), 2: ("height", R, t_uint(1)), 3: ("hash", R, t_bstr(32))}

# Section 6.15: a member as in the genesis (section 8), and the whole set.
MAX_MEMBERS = 64
NODE = {1: ("id", R, t_id), 2: ("public_key", R, t_spki(("p256",))),
        3: ("addrs", O, t_list(t_tstr(256, 1), 1, 8))}


def t_nodes(v, w):
    t_list(t_map(NODE), 4, MAX_MEMBERS)(v, w)
    ids = [n[1] for n in v]
    if len(set(ids)) != len(ids):
        raise Malformed("%s: an id twice" % w)


RECONFIG = {1: ("nodes", R, t_nodes)}

# Sections 6.16 to 6.20: zero-touch enrollment.
BATCH_DEVICE = {1: ("device_id", R, t_id), 2: ("public_key", R, t_spki(SIGN_KINDS))}


def t_batch_devices(v, w):
    t_list(t_map(BATCH_DEVICE), 1, 1000)(v, w)
    ids = [d[1].encode() for d in v]
    if any(ids[i] >= ids[i + 1] for i in range(len(ids) - 1)):
        raise Malformed("%s: devices not sorted by id and distinct" % w)


FLEET_BATCH = {1: ("batch", R, t_id), 2: ("model", R, t_id), 3: ("groups", O, t_ids(1, 16)),
               4: ("devices", R, t_batch_devices)}
FLEET_APPROVE = {1: ("batch", R, t_id)}
FLEET_REVOKE = {1: ("batch", R, t_id), 2: ("reason", O, t_tstr(256))}
DEVICE_CLAIM = {1: ("device_id", R, t_id), 2: ("batch", O, t_id), 3: ("evidence", O, t_bstr()),
                4: ("secret", O, t_bstr()), 5: ("public_key", R, t_spki(SIGN_KINDS)),
                6: ("model", O, t_id), 7: ("groups", O, t_ids(1, 16))}
ENROLL_TOKEN = {1: ("hash", R, t_bstr(32)), 2: ("expires", R, t_int(1)), 3: ("device_id", O, t_id),
                4: ("model", O, t_id), 5: ("groups", O, t_ids(1, 16))}


def check_claim_form(c):
    """Section 6.18: exactly one of the three forms of a device.claim."""
    if 4 in c:
        if 2 in c or 3 in c:
            raise Malformed("device.claim: a token claim names no batch and carries no evidence")
        if not 16 <= len(c[4]) <= 64:
            raise Malformed("device.claim: secret of %d bytes, want 16 to 64" % len(c[4]))
    else:
        if 2 not in c:
            raise Malformed("device.claim: invalid batch id: none")
        if 3 in c and len(c[3]) > 1024:
            raise Malformed("device.claim: evidence longer than 1024 bytes")
# Section 6.21: the chain's policy. The CEL expressions are the
# gateways' to compile; a device checks their shape only.
MAX_RATE_WINDOW = 31 * 24 * 3600 * 1000
RATE = {1: ("count", R, t_uint(1, 1 << 32)), 2: ("window", R, t_uint(1, MAX_RATE_WINDOW))}
RULE = {1: ("name", R, t_id), 2: ("when", O, t_tstr(1024)), 3: ("allow", O, t_tstr(1024)),
        4: ("rate", O, t_map(RATE))}


def t_rules(v, w):
    t_list(t_map(RULE), 1, 64)(v, w)
    names = [r[1] for r in v]
    if len(set(names)) != len(names):
        raise Malformed("%s: a rule name twice" % w)
    for r in v:
        if 3 not in r and 4 not in r:
            raise Malformed("%s: rule %r has neither allow nor rate" % (w, r[1]))


POLICY_SET = {1: ("version", R, t_uint(1)), 2: ("rules", O, t_rules)}

# kind -> (body key, schema, device id key in payload or None)
KINDS = {
    "device.enroll": (3, ENROLL, None),
    "device.revoke": (4, REVOKE, None),
    "device.rekey": (5, REKEY, 1),
    "data.record": (6, RECORD, 1),
    "config.set": (7, CONFIG_SET, None),
    "config.report": (8, CONFIG_REPORT, 1),
    "node.heartbeat": (9, HEARTBEAT, None),
    "vendor.enroll": (10, VENDOR_ENROLL, None),
    "reviewer.enroll": (11, REVIEWER_ENROLL, None),
    "firmware.publish": (12, FW_PUBLISH, None),
    "firmware.vote": (13, FW_VOTE, None),
    "firmware.approve": (14, FW_APPROVE, None),
    "firmware.revoke": (15, FW_REVOKE, None),
    "firmware.policy": (16, FW_POLICY, None),
    "firmware.report": (17, FW_REPORT, 1),
    "node.snapshot": (18, NODE_SNAPSHOT, None),
    "cluster.reconfig": (19, RECONFIG, None),
    "fleet.batch": (20, FLEET_BATCH, None),
    "fleet.approve": (21, FLEET_APPROVE, None),
    "fleet.revoke": (22, FLEET_REVOKE, None),
    # The kid is the device in forms a and c, a node in form b (6.18).
    "device.claim": (23, DEVICE_CLAIM, None),
    "enroll.token": (24, ENROLL_TOKEN, None),
    "policy.set": (25, POLICY_SET, None),
}


def check_body(b):
    """Section 6: a Body with exactly the payload member its kind names."""
    if not isinstance(b, dict):
        raise Malformed("body: not a map")
    kind = b.get(1)
    if kind not in KINDS:
        raise Malformed("body: unknown kind %r" % (kind,))
    key, sch, _ = KINDS[kind]
    schema = {1: ("kind", R, t_tstr()), 2: ("chain_id", R, t_tstr(minlen=1)), key: (kind, R, t_map(sch))}
    for k in b:
        if isinstance(k, int) and 3 <= k <= 25 and k != key:
            raise Malformed("body: payload member %d does not match kind %s" % (k, kind))
    check(b, schema, "body")
    if kind == "device.claim":
        check_claim_form(b[key])
    return kind, b[key]


# Section 9/10/11 structures.
HEADER = {1: ("chain_id", R, t_tstr()), 2: ("height", R, t_uint(0)), 3: ("prev", R, t_bstr(32)),
          4: ("tx_root", R, t_bstr(32)), 5: ("num_txs", R, t_uint(0)), 6: ("time", R, t_int()),
          7: ("view", R, t_uint(0)), 8: ("proposer", R, t_tstr())}
SIG = {1: ("node", R, t_id), 2: ("sig", R, t_bstr())}
CERT = {1: ("view", R, t_uint(0)), 2: ("sigs", R, t_list(t_map(SIG), 0, null_ok=True))}
RECEIPT = {1: ("tx", R, t_bstr()), 2: ("header", R, t_map(HEADER)), 3: ("cert", R, t_map(CERT)),
           4: ("index", R, t_uint(0)), 5: ("proof", R, t_list(t_bstr(32), 0, null_ok=True))}
HEAD = {1: ("header", R, t_map(HEADER)), 2: ("cert", R, t_map(CERT))}
CONFIG_ANSWER = {1: ("device", R, t_id), 2: ("receipt", O, t_map(RECEIPT)), 3: ("head", R, t_map(HEAD)),
                 4: ("match", O, t_true),
                 # Not in protocol.md (11.2.1 reserves key 5 and says to refuse it); main
                 # sends it since 791e17d: the device's own device.enroll receipt.
                 5: ("enrollment", O, t_map(RECEIPT))}
KEYS_ANSWER = {1: ("device", R, t_id), 2: ("enroll", R, t_map(RECEIPT)), 3: ("rekey", O, t_map(RECEIPT)),
               4: ("revoke", O, t_map(RECEIPT)), 5: ("head", R, t_map(HEAD))}
FIRMWARE_ANSWER = {1: ("device", R, t_id), 2: ("group", O, t_id), 3: ("release", R, t_map(RECEIPT)),
                   4: ("policy", O, t_map(RECEIPT)), 5: ("approval", O, t_map(RECEIPT)),
                   6: ("votes", O, t_list(t_map(RECEIPT), 1)), 7: ("revoke", O, t_map(RECEIPT)),
                   8: ("head", R, t_map(HEAD)),
                   # Not in protocol.md (11.4.1 reserves keys 9 and up); main sends them
                   # since 791e17d: the device's device.enroll receipt, and why it is blocked.
                   9: ("enrollment", O, t_map(RECEIPT)), 10: ("blocked", O, t_tstr())}
RECIPIENT = {1: ("key", R, t_bstr(32)), 2: ("wrapped", R, t_bstr())}
SEALED = {1: ("suite", R, t_uint(1, 1)), 2: ("recipients", R, t_list(t_map(RECIPIENT), 1, 10000)),
          3: ("nonce", R, t_bstr(12)), 4: ("ciphertext", R, t_bstr())}
CLAIMS = {2: ("sub", R, t_id), 3: ("aud", R, t_tstr()), 4: ("exp", R, t_int()), 6: ("iat", R, t_int())}
