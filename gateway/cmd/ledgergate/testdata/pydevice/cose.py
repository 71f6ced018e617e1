"""The tx envelope (protocol.md section 5) and keys (section 4)."""

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

import dcbor
import schema
from schema import Malformed

ALG_ES256, ALG_EDDSA = -7, -8
N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class TooLarge(Malformed):
    """too_large: over max_tx_bytes."""


def H(b):
    return hashlib.sha256(bytes(b)).digest()


# ---- keys (section 4) ----

def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate(alg):
    if alg == "es256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "x25519":
        return x25519.X25519PrivateKey.generate()
    raise ValueError("alg: es256, ed25519 or x25519")


def write_key(path, key):
    """PKCS#8 PEM `PRIVATE KEY` (mode 0600) and SPKI PEM `PUBLIC KEY` at path.pub."""
    import os
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(path + ".pub", "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def load_pub_der(path):
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip().startswith(b"-----"):
        return spki(serialization.load_pem_public_key(data))
    return data


def alg_of(key):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ALG_ES256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ALG_EDDSA
    raise ValueError("signing key must be P-256 or Ed25519")


# ---- envelope (section 5) ----

def sig_structure(protected, payload):
    return dcbor.encode(["Signature1", protected, b"", payload])


def raw_sign(key, tbs):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(tbs)


def raw_verify(spki_der, alg, tbs, sig):
    """True iff sig (raw r||s for ES256, RFC 8032 for EdDSA) verifies.
    alg must match the key type (rule 6)."""
    try:
        kind, pub = schema.parse_spki(spki_der)
    except Malformed:
        return False
    if len(sig) != 64:
        return False
    try:
        if kind == "p256" and alg == ALG_ES256:
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            if not (0 < r < N_P256 and 0 < s < N_P256):
                return False
            pub.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
            return True
        if kind == "ed25519" and alg == ALG_EDDSA:
            pub.verify(sig, tbs)
            return True
    except InvalidSignature:
        return False
    return False


def sign_payload(key, kid, payload):
    """A tagged COSE_Sign1 with protected {1: alg, 4: kid}, unprotected {}."""
    protected = dcbor.encode({1: alg_of(key), 4: kid.encode()})
    sig = raw_sign(key, sig_structure(protected, payload))
    return dcbor.encode(dcbor.Tag(18, [protected, {}, payload, sig]))


def sign_body(key, kid, body):
    schema.check_body(body)
    return sign_payload(key, kid, dcbor.encode(body))


class Envelope:
    def __init__(self, raw, alg, kid, protected, payload, sig, claims_or_body):
        self.raw, self.alg, self.kid = raw, alg, kid
        self.protected, self.payload, self.sig = protected, payload, sig
        self.content = claims_or_body
        self.id = H(raw)

    def verify(self, spki_der):
        return raw_verify(spki_der, self.alg, sig_structure(self.protected, self.payload), self.sig)


def decode_envelope(raw, max_bytes=65536, payload_schema=None, check_author=True):
    """Decode a tx envelope (or a token's envelope with payload_schema=CLAIMS).
    Checks layout, protected header, canonical body valid for its kind.
    Does not check the signature."""
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise TooLarge("envelope: %d bytes over %d" % (len(raw), max_bytes))
    if raw[:2] != b"\xd2\x84":
        raise Malformed("envelope: must start d2 84")
    t = dcbor.decode(raw, allow_tag18=True)
    protected, unprot, payload, sig = t.value
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(sig, bytes):
        raise Malformed("envelope: field types")
    if unprot != {}:
        raise Malformed("envelope: unprotected header must be empty")
    # A signature of another length is not malformed: it does not verify
    # (bad_signature), as vectors tx-invalid/es256-der-signature expect.
    ph = dcbor.decode(protected)
    if not isinstance(ph, dict) or set(ph) != {1, 4}:
        raise Malformed("envelope: protected header must hold exactly alg and kid")
    alg, kidb = ph[1], ph[4]
    if alg not in (ALG_ES256, ALG_EDDSA):
        raise Malformed("envelope: alg %r" % (alg,))
    if not isinstance(kidb, bytes) or not 1 <= len(kidb) <= 64:
        raise Malformed("envelope: kid must be 1..64 bytes")
    try:
        kid = kidb.decode("ascii")
    except UnicodeDecodeError:
        raise Malformed("envelope: kid not an id")
    if not schema.valid_id(kid):
        raise Malformed("envelope: kid not an id")
    content = dcbor.decode(payload)
    if payload_schema is not None:
        schema.check(content, payload_schema, "claims")
    else:
        kind, p = schema.check_body(content)
        dk = schema.KINDS[kind][2]
        if check_author and dk is not None and p[dk] != kid:
            raise Malformed("envelope: device id %r is not the kid %r" % (p[dk], kid))
    return Envelope(raw, alg, kid, protected, payload, sig, content)


def check_author(env):
    """Section 6: for the device kinds the payload's device id is the kid."""
    kind = env.content[1]
    dk = schema.KINDS[kind][2]
    if dk is not None and env.content[schema.KINDS[kind][0]][dk] != env.kid:
        raise Malformed("envelope: device id is not the kid %r" % env.kid)
