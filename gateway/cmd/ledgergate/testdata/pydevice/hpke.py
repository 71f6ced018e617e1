"""RFC 9180 HPKE, base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
AES-256-GCM, single shot (sequence number 0), from cryptography primitives.
And the sealed blob of protocol.md section 12."""

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization

import cose
import dcbor
import schema

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0002
MODE_BASE = 0x00
NH, NK, NN, NENC = 32, 32, 12, 32

SUITE_ID_KEM = b"KEM" + struct.pack(">H", KEM_ID)
SUITE_ID = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def extract(salt, ikm):
    if not salt:
        salt = b"\x00" * NH
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def expand(prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def labeled_extract(suite, salt, label, ikm):
    return extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    return expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def _raw(pub):
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def extract_and_expand(dh, kem_context):
    eae_prk = labeled_extract(SUITE_ID_KEM, b"", b"eae_prk", dh)
    return labeled_expand(SUITE_ID_KEM, eae_prk, b"shared_secret", kem_context, NH)


def encap(pkR, eph=None):
    skE = eph or x25519.X25519PrivateKey.generate()
    dh = skE.exchange(pkR)
    enc = _raw(skE.public_key())
    return extract_and_expand(dh, enc + _raw(pkR)), enc


def decap(enc, skR):
    pkE = x25519.X25519PublicKey.from_public_bytes(enc)
    dh = skR.exchange(pkE)
    return extract_and_expand(dh, enc + _raw(skR.public_key()))


def key_schedule_base(shared_secret, info):
    psk_id_hash = labeled_extract(SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(SUITE_ID, b"", b"info_hash", info)
    ctx = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = labeled_extract(SUITE_ID, shared_secret, b"secret", b"")
    key = labeled_expand(SUITE_ID, secret, b"key", ctx, NK)
    base_nonce = labeled_expand(SUITE_ID, secret, b"base_nonce", ctx, NN)
    exporter = labeled_expand(SUITE_ID, secret, b"exp", ctx, NH)
    return key, base_nonce, exporter


def seal_base(pkR, info, aad, pt, eph=None):
    ss, enc = encap(pkR, eph)
    key, nonce, _ = key_schedule_base(ss, info)
    return enc, AESGCM(key).encrypt(nonce, pt, aad)  # seq 0: nonce = base_nonce


def open_base(enc, skR, info, aad, ct):
    ss = decap(enc, skR)
    key, nonce, _ = key_schedule_base(ss, info)
    return AESGCM(key).decrypt(nonce, ct, aad)


# ---- sealed blobs (protocol.md section 12) ----

INFO = b"ledgergate sealed v1"
assert len(INFO) == 20


class NotRecipient(Exception):
    pass


def seal(recipient_spkis, content):
    cek, nonce = os.urandom(32), os.urandom(12)
    recips, seen = [], set()
    for spki in recipient_spkis:
        if spki in seen:
            continue
        seen.add(spki)
        _, pk = schema.parse_spki(spki, ("x25519",))
        enc, ct = seal_base(pk, INFO, b"", cek)
        recips.append({1: cose.H(spki), 2: enc + ct})
    return dcbor.encode({1: 1, 2: recips, 3: nonce, 4: AESGCM(cek).encrypt(nonce, content, INFO)})


def open_sealed(sk, blob):
    m = dcbor.decode(blob)
    schema.check(m, schema.SEALED, "sealed")
    fp = cose.H(cose.spki(sk.public_key()))
    for r in m[2]:
        if r[1] == fp:
            break
    else:
        raise NotRecipient("blob not sealed to this key")
    w = r[2]
    cek = open_base(w[:NENC], sk, INFO, b"", w[NENC:])
    if len(cek) != 32:
        raise ValueError("content key is not 32 bytes")
    return AESGCM(cek).decrypt(m[3], m[4], INFO)


def open_config(cs, blob, sk):
    """Section 12 config checks: address, open, size and hash."""
    if cose.H(blob) != cs[6]:
        raise ValueError("ErrNotCurrent: blob address is not the config.set's")
    content = open_sealed(sk, blob)
    if len(content) != cs[4] or cose.H(content) != cs[3]:
        raise ValueError("ErrNotCurrent: content size or hash is not the config.set's")
    return content
