#!/usr/bin/env python3
"""Check every vector file of docs/vectors with the Python device's code.

    python3 vectors.py DIR

Every case's verdict must be reached (ok, or the named error), and every
output reproduced byte for byte: ES256 signatures are recomputed with
RFC 6979 deterministic k, so tx and token vectors are rebuilt from their
inputs (keys.json, body_diag) and compared with hex. Exits 1 on any
mismatch, 2 if a file has a structure this checker does not know.
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

import cose
import dcbor
import edn
import hpke
import schema
import verify
from cose import H
from dcbor import CBORError

N = cose.N_P256


class Mismatch(Exception):
    pass


def want(cond, msg):
    if not cond:
        raise Mismatch(msg)


def eq(got, exp, what):
    if got != exp:
        raise Mismatch("%s: got %r, want %r" % (what, got, exp))


# ---- RFC 6979 deterministic ECDSA P-256 / SHA-256 ----

def rfc6979_sign(key, msg):
    x = key.private_numbers().private_value
    h1 = hashlib.sha256(msg).digest()
    z = int.from_bytes(h1, "big")
    bx = x.to_bytes(32, "big") + (z % N).to_bytes(32, "big")
    V, K = b"\x01" * 32, b"\x00" * 32
    K = hmac.new(K, V + b"\x00" + bx, hashlib.sha256).digest()
    V = hmac.new(K, V, hashlib.sha256).digest()
    K = hmac.new(K, V + b"\x01" + bx, hashlib.sha256).digest()
    V = hmac.new(K, V, hashlib.sha256).digest()
    while True:
        V = hmac.new(K, V, hashlib.sha256).digest()
        k = int.from_bytes(V, "big")
        if 1 <= k < N:
            R = ec.derive_private_key(k, ec.SECP256R1()).public_key().public_numbers()
            r = R.x % N
            s = pow(k, -1, N) * (z + r * x) % N
            if r != 0 and s != 0:
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        K = hmac.new(K, V + b"\x00", hashlib.sha256).digest()
        V = hmac.new(K, V, hashlib.sha256).digest()


def det_sign_payload(key, kid, payload):
    protected = dcbor.encode({1: cose.alg_of(key), 4: kid.encode()})
    tbs = cose.sig_structure(protected, payload)
    sig = rfc6979_sign(key, tbs) if isinstance(key, ec.EllipticCurvePrivateKey) else key.sign(tbs)
    return dcbor.encode(dcbor.Tag(18, [protected, {}, payload, sig]))


# ---- shared inputs ----

class Ctx:
    def __init__(self, d):
        self.dir = d
        self.keys = {}  # name -> (alg, private key, spki)
        self.genesis = {}  # name -> Genesis

    def key(self, name):
        if name not in self.keys:
            raise Mismatch("unknown key %r (keys.json)" % name)
        return self.keys[name]

    def gen(self, name):
        if name not in self.genesis:
            raise Mismatch("unknown genesis %r (genesis.json)" % name)
        return self.genesis[name]


def code_of(verdict):
    """'ledger.ErrCert' -> 'ErrCert'; 'ok' -> 'ok'."""
    return verdict.rsplit(".", 1)[-1]


# ---- structure checkers: each returns None or raises Mismatch ----

def check_keys(ctx, c):
    i = c["inputs"]
    der = bytes.fromhex(i["pkcs8"])
    k = serialization.load_der_private_key(der, None)
    alg = i["alg"]
    if alg == "ES256":
        want(isinstance(k, ec.EllipticCurvePrivateKey) and isinstance(k.curve, ec.SECP256R1), "not P-256")
        eq(k.private_numbers().private_value.to_bytes(32, "big").hex(), i["scalar"], "scalar")
    elif alg == "EdDSA":
        want(isinstance(k, ed25519.Ed25519PrivateKey), "not Ed25519")
        raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        eq(raw.hex(), i["seed"], "seed")
    elif alg == "X25519":
        want(isinstance(k, x25519.X25519PrivateKey), "not X25519")
        raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        eq(raw.hex(), i["scalar"], "scalar")
    else:
        raise Mismatch("alg %s" % alg)
    spki = cose.spki(k.public_key())
    eq(spki.hex(), i["spki"], "spki")
    eq(spki.hex(), c["hex"], "hex")
    kind, _ = schema.parse_spki(spki, ("p256", "ed25519", "x25519"))
    eq(len(spki), {"p256": 91, "ed25519": 44, "x25519": 44}[kind], "SPKI length (section 4)")
    # PKCS#8 as section 4 writes it: re-encode and compare.
    again = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    eq(again.hex(), i["pkcs8"], "pkcs8 re-encoded")
    ctx.keys[i["name"]] = (alg, k, spki)
    return "ok"


def check_genesis(ctx, c):
    text = bytes.fromhex(c["hex"]).decode()
    eq(text, c["inputs"]["json"], "hex is the JSON")
    try:
        g = verify.parse_genesis(text)
    except (CBORError, ValueError, KeyError, TypeError) as e:
        return "ErrGenesis", str(e)
    o = c["outputs"]
    eq(g.cbor().hex(), o["cbor"], "genesis CBOR")
    eq(g.hash().hex(), o["hash"], "genesis hash")
    eq(len(g.nodes), o["nodes"], "nodes")
    eq(g.quorum(), o["quorum"], "quorum")
    ctx.genesis[c["name"]] = g
    return "ok"


HEADER_FIELDS = {"chain_id": 1, "height": 2, "prev": 3, "tx_root": 4, "num_txs": 5, "time": 6, "view": 7, "proposer": 8}


def check_header(ctx, c):
    i, o = c["inputs"], c["outputs"]
    h = {}
    for name, v in i["header"].items():
        want(name in HEADER_FIELDS, "unknown header field %s" % name)
        h[HEADER_FIELDS[name]] = bytes.fromhex(v) if name in ("prev", "tx_root") else v
    enc = dcbor.encode(h)
    eq(enc.hex(), c["hex"], "header encoding")
    dec = dcbor.decode(enc)
    schema.check(dec, schema.HEADER, "header")
    eq(edn.show(dec), o["diag"], "header diag")
    bh = verify.header_hash(dec)
    eq(bh.hex(), o["hash"], "block hash")
    vote = verify.vote_bytes(dec[1], dec[2], i["cert_view"], bh)
    eq(vote.hex(), o["vote"], "vote bytes")
    eq(edn.show(dcbor.decode(vote)), o["vote_diag"], "vote diag")
    eq(H(vote).hex(), o["vote_digest"], "vote digest")
    return "ok"


def check_cert(ctx, c):
    g = ctx.gen(c["inputs"]["genesis"])
    try:
        head = dcbor.decode(bytes.fromhex(c["hex"]))
        schema.check(head, schema.HEAD, "head")
    except CBORError as e:
        return "ErrCert", "decode: %s" % e
    signers = [s[1] for s in head[2][2] or []]
    eq(signers, c["inputs"]["signers"], "signers")
    try:
        verify.verify_cert(g, head[1], head[2])
    except verify.ProofError as e:
        return e.code, str(e)
    return "ok"


def check_merkle(ctx, c):
    i = c["inputs"]
    leaf = bytes.fromhex(c["hex"])
    leaves = [bytes.fromhex(x) for x in i.get("leaves", [])]
    root = bytes.fromhex(i["root"])
    if c["verdict"] == "ok":
        eq(verify.mth(leaves).hex(), i["root"], "tree head")
    if "index" not in i:
        return "ok"
    eq(verify.leaf_hash(leaf).hex(), i["leaf_hash"], "leaf hash")
    proof = [bytes.fromhex(p) for p in i["proof"]]
    if c["verdict"] == "ok":
        eq([p.hex() for p in verify.audit_path(i["index"], leaves)], i["proof"], "audit path")
    if not verify.verify_inclusion(leaf, i["index"], i["size"], proof, root):
        return "ErrProof", "inclusion proof fails"
    return "ok"


# Section 14.1, transcribed: reason -> action.
REASONS = [
    ("malformed", "fix"), ("too_large", "fix"), ("wrong_chain", "fix"), ("wrong_topic", "fix"),
    ("not_record", "fix"), ("not_report", "fix"), ("wrong_cert", "rekey"), ("unknown_author", "rekey"),
    ("bad_signature", "rekey"), ("forbidden", "fix"), ("revoked", "give_up"), ("replay", "resync"),
    ("exists", "fix"), ("unknown_device", "fix"), ("stale_version", "fix"), ("unknown_release", "fix"),
    ("not_found", "fix"), ("policy", "fix"), ("bad_option", "fix"), ("method_not_allowed", "fix"), ("not_acceptable", "fix"),
    ("incomplete", "resend"), ("content_format", "fix"), ("proxy", "fix"), ("overloaded", "resend"),
    ("unavailable", "resend"), ("storage_full", "resend"), ("internal", "resend"),
]


def check_reasons_file(ctx, doc):
    """Every reason this device knows has the vectors' action, in the same
    order. A reason it does not know is not a mismatch: protocol.md 14.1 has
    a device treat an unknown reason as `fix`, so an older device stays
    conformant; it is printed so that the table here gets updated."""
    got = [(c["name"], c["inputs"]["action"]) for c in doc["cases"]]
    known = dict(REASONS)
    for name, action in got:
        if name not in known:
            print("note reasons.json: %s (%s) is unknown to this device, which treats it as fix" % (name, action))
    eq([x for x in got if x[0] in known], [x for x in REASONS if x[0] in dict(got)],
       "reasons and actions (protocol.md 14.1, in order)")
    missing = [n for n, _ in REASONS if n not in dict(got)]
    want(not missing, "reasons this device knows that the vectors no longer list: %s" % missing)
    return len(got)


def check_receipt(ctx, c):
    g = ctx.gen(c["inputs"]["genesis"])
    raw = bytes.fromhex(c["hex"])
    try:
        r = verify.verify_receipt(g, raw)
    except verify.ProofError as e:
        return e.code, str(e)
    o = c.get("outputs") or {}
    if "height" in o:
        eq(r.height, o["height"], "height")
    if "index" in o:
        eq(r.index, o["index"], "index")
    if "tx_id" in o:
        eq(r.tx_id.hex(), o["tx_id"], "tx id")
    if "diag" in o:
        eq(edn.show(dcbor.decode(raw)), o["diag"], "receipt diag")
    return "ok"


def check_membership(ctx, c):
    i = c["inputs"]
    g = ctx.gen(i["genesis"])
    try:
        ms = verify.verify_membership(g, bytes.fromhex(c["hex"]))
    except verify.ProofError as e:
        return e.code, str(e)
    o = c.get("outputs") or {}
    if "sets" in o:
        eq([{"start": s.start, "nodes": [n for n, _ in s.nodes], "quorum": s.quorum()} for s in ms.sets], o["sets"], "sets")
    if "receipt" in i:
        try:
            m = verify.decode_receipt_map(bytes.fromhex(i["receipt"]))
            r = ms.verify_receipt_map(m)
        except CBORError as e:
            return "ErrReceipt", str(e)
        except verify.ProofError as e:
            return "ErrReceipt", str(e)
        eq(r.height, i["receipt_height"], "receipt height")
    return "ok"


def check_sealed(ctx, c):
    i = c["inputs"]
    _, sk, spki = ctx.key(i["key"])
    eq(spki.hex(), i["key_spki"], "key spki")
    eq(H(spki).hex(), i["recipient_id"], "recipient id")
    blob = bytes.fromhex(c["hex"])
    cs = {6: bytes.fromhex(i["config_set"]["blob"]), 3: bytes.fromhex(i["config_set"]["sha256"]),
          4: i["config_set"]["size"]}
    if c["verdict"] == "ok" and "diag" in (c.get("outputs") or {}):
        eq(edn.show(dcbor.decode(blob)), c["outputs"]["diag"], "sealed diag")
    try:
        content = hpke.open_config(cs, blob, sk)
    except hpke.NotRecipient as e:
        return "ErrNotRecipient", str(e)
    except ValueError as e:
        if "ErrNotCurrent" in str(e):
            return "ErrNotCurrent", str(e)
        return "ErrSealed", str(e)
    except Exception as e:  # noqa: BLE001 - AEAD failure (InvalidTag)
        return "ErrSealed", "%s %s" % (type(e).__name__, e)
    eq(content.decode(), i["plaintext"], "plaintext")
    return "ok"


def check_token(ctx, c):
    i = c["inputs"]
    raw = bytes.fromhex(c["hex"])
    tok = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if "token" in (c.get("outputs") or {}):
        eq(tok, c["outputs"]["token"], "token text")
    # Rebuild it from the inputs when it is a valid envelope.
    if c["verdict"] == "ok":
        _, k, _ = ctx.key(i["key"])
        claims = edn.to_plain(edn.parse(i["claims_diag"]))
        eq(det_sign_payload(k, claims[2], dcbor.encode(claims)).hex(), c["hex"], "token rebuilt from its inputs")
    want(len(tok) <= 1369, "token too long")
    try:
        env = cose.decode_envelope(raw, 1024, schema.CLAIMS)
    except CBORError as e:
        return "ErrToken", str(e)
    cl, now = env.content, i["now"]
    if cl[2] != env.kid or cl[3] != i["chain"] or not 0 < cl[4] - cl[6] <= 86400 \
            or not now < cl[4] or not cl[6] <= now + 300:
        return "ErrToken", "claims"
    if not env.verify(bytes.fromhex(i["key_spki"])):
        return "ErrBadSignature", "signature"
    return "ok"


def check_tx(ctx, c):
    i = c["inputs"]
    raw = bytes.fromhex(c["hex"])
    try:
        env = cose.decode_envelope(raw, i.get("max_tx_bytes", 65536), check_author=False)
    except cose.TooLarge as e:
        return ("ErrTooLarge", "too_large"), str(e)
    except schema.Malformed as e:
        if "unknown kind" in str(e):
            return ("ErrUnknownKind", "malformed"), str(e)
        return ("ErrMalformed", "malformed"), str(e)
    except CBORError as e:
        return ("ErrMalformed", "malformed"), str(e)
    if not env.verify(bytes.fromhex(i["author_spki"])):
        return ("ErrBadSignature", "bad_signature"), "signature"
    try:
        cose.check_author(env)
    except schema.Malformed as e:
        return ("ErrForbidden", "forbidden"), str(e)  # protocol.md 6: forbidden
    o = c.get("outputs") or {}
    if c["verdict"] == "ok":
        eq(env.kid, i["kid"], "kid")
        eq(env.content[1], o["kind"], "kind")
        eq(env.payload.hex(), o["payload"], "payload")
        eq(env.protected.hex(), o["protected"], "protected")
        eq(env.sig.hex(), o["signature"], "signature")
        eq(cose.sig_structure(env.protected, env.payload).hex(), o["to_be_signed"], "to_be_signed")
        eq(env.id.hex(), o["tx_id"], "tx id")
        # Rebuild the envelope from the inputs: body_diag and the author's key.
        body = edn.to_plain(edn.parse(i["body_diag"]))
        eq(dcbor.encode(body).hex(), o["payload"], "payload rebuilt from body_diag")
        alg, k, spki = ctx.key(i["author_key"])
        eq(spki.hex(), i["author_spki"], "author spki")
        eq({"ES256": -7, "EdDSA": -8}[alg], env.alg, "alg")
        rebuilt = det_sign_payload(k, i["kid"], dcbor.encode(body))
        if rebuilt != raw and alg == "ES256" and rebuilt[:-32] == raw[:-32]:
            # Section 5.1: (r, n - s) verifies too; the vector holds the other s.
            s_raw, s_ours = int.from_bytes(raw[-32:], "big"), int.from_bytes(rebuilt[-32:], "big")
            eq(s_raw, N - s_ours, "high-s: s is n - s of the RFC 6979 signature")
            want(env.id != H(rebuilt), "second tx id")
        else:
            eq(rebuilt.hex(), c["hex"], "envelope rebuilt (RFC 6979 / Ed25519)")
    return ("ok", "ok")


def _answer(c, sch):
    return verify.decode_answer(bytes.fromhex(c["hex"]), sch, "answer")


def check_answer_config(ctx, c):
    i = c["inputs"]
    g = ctx.gen(i["genesis"])
    last = i.get("last")
    try:
        a = _answer(c, schema.CONFIG_ANSWER)
        r, cs = verify.config_manifest(g, a, i["device"], i.get("groups") or [], last, i["now_ms"],
                                       bytes.fromhex(i["hash"]), i.get("max_age_ms", verify.MAX_AGE_MS))
    except verify.ProofError as e:
        return e.code, str(e)
    acc = (c.get("outputs") or {}).get("accepted")
    if acc is not None:
        eq({"target": cs[1], "version": cs[2], "height": r.height, "sha256": cs[3].hex()}, acc, "accepted")
    return "ok"


def check_answer_keys(ctx, c):
    i = c["inputs"]
    g = ctx.gen(i["genesis"])
    try:
        a = _answer(c, schema.KEYS_ANSWER)
        k = verify.verify_keys(g, a, i["device"], i["now_ms"], i.get("max_age_ms", verify.MAX_AGE_MS))
    except verify.ProofError as e:
        return e.code, str(e)
    o = c["outputs"]
    got = {"signing_key": k["sign"].hex(), "enc_key": (k["enc"] or b"").hex(), "model": k["model"] or "",
           "groups": k["groups"] or [], "revoked": k["revoked"] is not None, "reason": k["revoked"] or "",
           "height": k["height"]}
    eq({k: got[k] for k in o}, o, "keys")
    want(set(o) <= set(got), "unknown output fields %s" % (set(o) - set(got)))
    return "ok"


def check_answer_firmware(ctx, c):
    i = c["inputs"]
    g = ctx.gen(i["genesis"])
    try:
        a = _answer(c, schema.FIRMWARE_ANSWER)
        F = verify.check_firmware(g, bytes.fromhex(i["vendor_spki"]), a, i["device"], i.get("model"),
                                  i.get("groups") or [], i["installed"], i["now_ms"],
                                  i.get("max_age_ms", verify.MAX_AGE_MS))
        if "image" in i:
            verify.check_image(F, bytes.fromhex(i["image"]))
    except verify.ProofError as e:
        return e.code, str(e)
    return "ok"


def check_hpke(ctx, c):
    i = c["inputs"]
    eq((i["mode"], i["kem_id"], i["kdf_id"], i["aead_id"]), (hpke.MODE_BASE, hpke.KEM_ID, hpke.KDF_ID, hpke.AEAD_ID),
       "suite")
    eph = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(i["skEm"]))
    skR = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(i["skRm"]))
    eq(hpke._raw(skR.public_key()).hex(), i["pkRm"], "pkRm")
    info, aad, pt = bytes.fromhex(i["info"]), bytes.fromhex(i["aad"]), bytes.fromhex(i["pt"])
    enc, ct = hpke.seal_base(skR.public_key(), info, aad, pt, eph)
    eq(enc.hex(), i["enc"], "enc")
    eq(ct.hex(), c["hex"], "ciphertext")
    eq(hpke.open_base(bytes.fromhex(i["enc"]), skR, info, aad, bytes.fromhex(c["hex"])), pt, "opened")
    return "ok"


def _presence(sch):
    return {k: ("required" if v[1] else "omitted when empty") for k, v in sch.items()}


def _body_presence():
    m = {1: "required", 2: "required"}
    for key, _, _ in schema.KINDS.values():
        m[key] = "omitted when empty"
    return m


# What this device encodes or decodes for each structure of schema.json:
# key -> presence. Genesis, Node, Admin and Params are what verify.Genesis.cbor
# writes; a device never receives a Block (protocol.md 9.1) but its layout is
# stated there.
SCHEMAS = {
    "Body": _body_presence(),
    "claims": _presence(schema.CLAIMS),
    "Genesis": {1: "required", 2: "required", 3: "required", 4: "required", 5: "required"},
    "Node": {1: "required", 2: "required", 3: "omitted when empty"},
    "Admin": {1: "required", 2: "required"},
    "Params": {1: "required"},
    # Key 4 (stubs) only in a block a gateway's retention pruned (9.1).
    "Block": {1: "required", 2: "required", 3: "required", 4: "omitted when empty"},
    "Stub": {1: "required", 2: "required", 3: "required", 4: "required", 5: "required"},
    "SnapshotProof": {1: "required", 2: "required", 3: "required"},
    "Header": _presence(schema.HEADER), "Cert": _presence(schema.CERT), "Sig": _presence(schema.SIG),
    "Receipt": _presence(schema.RECEIPT), "Head": _presence(schema.HEAD),
    "ConfigAnswer": _presence(schema.CONFIG_ANSWER), "KeysAnswer": _presence(schema.KEYS_ANSWER),
    "FirmwareAnswer": _presence(schema.FIRMWARE_ANSWER),
}
for _kind, (_key, _sch, _) in schema.KINDS.items():
    SCHEMAS["".join(w.capitalize() for w in _kind.replace(".", " ").split()).replace("DeviceClaim", "Claim")
            .replace("Device", "").replace("Claim", "DeviceClaim")
            .replace("DataRecord", "Record").replace("NodeHeartbeat", "Heartbeat")] = _presence(_sch)
SCHEMAS["BatchDevice"] = _presence(schema.BATCH_DEVICE)


def check_schema(ctx, c):
    mine = SCHEMAS.get(c["name"])
    if mine is None:
        raise Mismatch("structure %s unknown to this device" % c["name"])
    theirs = {f["key"]: f["presence"] for f in c["inputs"]["fields"]}
    eq(theirs, mine, "keys and presence of %s" % c["name"])
    return "ok"


CHECKERS = {
    "schema": check_schema,
    "hpke": check_hpke,
    "keys": check_keys, "genesis": check_genesis, "header": check_header, "cert": check_cert,
    "merkle": check_merkle, "receipt": check_receipt, "sealed": check_sealed, "token": check_token,
    "tx": check_tx, "answer-config": check_answer_config, "answer-keys": check_answer_keys,
    "answer-firmware": check_answer_firmware, "membership": check_membership,
}

# keys and genesis first: the others refer to them by name.
ORDER = {"keys": 0, "genesis": 1}


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "docs/vectors"
    files = sorted(glob.glob(os.path.join(d, "*.json")))
    if not files:
        print("no vector files in %s" % d)
        return 1
    docs = []
    for f in files:
        with open(f) as fh:
            docs.append((f, json.load(fh)))
    docs.sort(key=lambda x: (ORDER.get(x[1].get("structure"), 2), x[0]))
    ctx = Ctx(d)
    bad = unknown = total = 0
    for f, doc in docs:
        name = os.path.basename(f)
        st = doc.get("structure")
        if st == "reasons":
            try:
                n = check_reasons_file(ctx, doc)
                total += n
                print("ok   %s (%d reasons)" % (name, n))
            except Mismatch as e:
                bad += 1
                print("FAIL %s: %s" % (name, e))
            continue
        fn = CHECKERS.get(st)
        if fn is None:
            unknown += 1
            print("FAIL %s: unknown structure %r" % (name, st))
            continue
        nok = 0
        for c in doc["cases"]:
            total += 1
            label = "%s/%s" % (name, c["name"])
            try:
                res = fn(ctx, c)
                detail = ""
                if isinstance(res, tuple) and len(res) == 2 and not isinstance(res[0], tuple) and res[0] != "ok":
                    res, detail = res
                elif isinstance(res, tuple) and isinstance(res[0], tuple):
                    res, detail = res
                verdict = c["verdict"]
                if st == "tx":
                    code, reason = res if isinstance(res, tuple) else (res, res)
                    eq(code, code_of(verdict), "verdict (%s)" % detail)
                    if "reason" in c:
                        eq(reason, c["reason"], "reason")
                else:
                    eq(res, code_of(verdict), "verdict (%s)" % detail)
                nok += 1
            except Mismatch as e:
                bad += 1
                print("FAIL %s: %s" % (label, e))
            except Exception as e:  # noqa: BLE001 - a crash is a mismatch too
                bad += 1
                print("FAIL %s: %s: %s" % (label, type(e).__name__, e))
        print("%s %s (%d/%d)" % ("ok  " if nok == len(doc["cases"]) else "FAIL", name, nok, len(doc["cases"])))
    print("%d cases, %d mismatches, %d unknown files" % (total, bad, unknown))
    if unknown:
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
