"""Genesis (section 8), Merkle tree and certificates (section 9), receipts
(section 10), answers and the device's checks (section 11)."""

import base64
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import cose
import dcbor
import schema
from cose import H
from dcbor import CBORError
from schema import Malformed


class ProofError(Exception):
    """A check of section 10/11 failed; .code names the Go error where the spec gives one."""

    def __init__(self, msg, code="ErrProof"):
        super().__init__(msg)
        self.code = code


# ---- genesis (section 8) ----

class Genesis:
    def __init__(self, chain_id, time, nodes, admins, max_tx_bytes):
        self.chain_id, self.time = chain_id, time
        self.nodes = nodes  # list of (id, spki, addrs)
        self.admins = admins  # list of (id, spki)
        self.max_tx_bytes = max_tx_bytes
        self.node_keys = {n[0]: n[1] for n in nodes}

    def quorum(self):
        n = len(self.nodes)
        f = (n - 1) // 3
        return (n + f) // 2 + 1

    def cbor(self):
        nodes = []
        for nid, key, addrs in self.nodes:
            m = {1: nid, 2: key}
            if addrs:
                m[3] = list(addrs)
            nodes.append(m)
        return dcbor.encode({1: self.chain_id, 2: self.time, 3: nodes,
                             4: [{1: a, 2: k} for a, k in self.admins], 5: {1: self.max_tx_bytes}})

    def hash(self):
        return H(self.cbor())


def parse_genesis(text):
    g = json.loads(text)
    if not isinstance(g, dict):
        raise Malformed("genesis: not an object")
    allowed = {"chain_id", "time", "nodes", "admins", "params"}
    for k in g:
        if k not in allowed:
            raise Malformed("genesis: unknown key %s" % k)
    if not schema.valid_id(g.get("chain_id")):
        raise Malformed("genesis: chain_id")
    t = g.get("time")
    if not isinstance(t, int) or isinstance(t, bool):
        raise Malformed("genesis: time")
    nodes, admins, seen = [], [], set()
    for n in g.get("nodes") or []:
        for k in n:
            if k not in ("id", "public_key", "addrs"):
                raise Malformed("genesis: node: unknown key %s" % k)
        if not schema.valid_id(n.get("id")) or n["id"] in seen:
            raise Malformed("genesis: node id")
        seen.add(n["id"])
        key = base64.b64decode(n["public_key"], validate=True)
        schema.parse_spki(key, ("p256",))
        addrs = n.get("addrs") or []
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise Malformed("genesis: addrs")
        nodes.append((n["id"], key, addrs))
    for a in g.get("admins") or []:
        for k in a:
            if k not in ("id", "public_key"):
                raise Malformed("genesis: admin: unknown key %s" % k)
        if not schema.valid_id(a.get("id")) or a["id"] in seen:
            raise Malformed("genesis: admin id")
        seen.add(a["id"])
        key = base64.b64decode(a["public_key"], validate=True)
        schema.parse_spki(key)
        admins.append((a["id"], key))
    if not nodes or not admins:
        raise Malformed("genesis: needs a node and an admin")
    params = g.get("params") or {}
    for k in params:
        if k != "max_tx_bytes":
            raise Malformed("genesis: params: unknown key %s" % k)
    mtb = params.get("max_tx_bytes", 65536)
    if not isinstance(mtb, int) or not 512 <= mtb <= 1048576:
        raise Malformed("genesis: max_tx_bytes")
    return Genesis(g["chain_id"], t, nodes, admins, mtb)


def load_genesis(path):
    with open(path) as f:
        return parse_genesis(f.read())


# ---- Merkle tree (section 9.2, RFC 9162 2.1) ----

def leaf_hash(b):
    return H(b"\x00" + b)


def node_hash(left, right):
    return H(b"\x01" + left + right)


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return H(b"")
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def audit_path(index, leaves):
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if index < k:
        return audit_path(index, leaves[:k]) + [mth(leaves[k:])]
    return audit_path(index - k, leaves[k:]) + [mth(leaves[:k])]


def verify_inclusion(leaf, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ---- votes and certificates (sections 9.3, 9.4) ----

def header_hash(h):
    return H(dcbor.encode(h))


def vote_bytes(chain_id, height, view, block_hash):
    return dcbor.encode(["ledgergate commit v1", chain_id, height, view, block_hash])


def strict_der_sig(sig):
    """Strict DER SEQUENCE { INTEGER r, INTEGER s } with minimal integers."""
    def integer(b, i):
        if i + 2 > len(b) or b[i] != 0x02:
            return None
        n = b[i + 1]
        if n == 0 or n > 33 or i + 2 + n > len(b):
            return None
        v = b[i + 2:i + 2 + n]
        if v[0] & 0x80:
            return None  # negative
        if n > 1 and v[0] == 0 and not v[1] & 0x80:
            return None  # not minimal
        return i + 2 + n
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] != len(sig) - 2 or sig[1] >= 0x80:
        return False
    j = integer(sig, 2)
    if j is None:
        return False
    j = integer(sig, j)
    return j == len(sig)


def verify_cert(gen, header, cert):
    """Section 9.4. Raises ProofError."""
    if header[1] != gen.chain_id:
        raise ProofError("certificate: chain id %r is not the genesis'" % header[1], "ErrCert")
    d = vote_bytes(header[1], header[2], cert[1], header_hash(header))
    seen = set()
    sigs = cert[2] or []
    for s in sigs:
        node, sig = s[1], s[2]
        if node in seen:
            raise ProofError("certificate: duplicate signer %s" % node, "ErrCert")
        seen.add(node)
        if node not in gen.node_keys:
            raise ProofError("certificate: unknown signer %s" % node, "ErrCert")
        if not strict_der_sig(sig):
            raise ProofError("certificate: signature of %s is not strict DER" % node, "ErrCert")
        _, pub = schema.parse_spki(gen.node_keys[node], ("p256",))
        try:
            pub.verify(sig, d, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ProofError("certificate: bad signature of %s" % node, "ErrCert")
    if len(seen) < gen.quorum():
        raise ProofError("certificate: %d signers, quorum is %d" % (len(seen), gen.quorum()), "ErrCert")


# ---- receipts (section 10) ----

class Receipt:
    def __init__(self, m, env):
        self.m = m
        self.tx = m[1]
        self.header = m[2]
        self.cert = m[3]
        self.index = m[4]
        self.proof = m[5] or []
        self.env = env
        self.height = self.header[2]
        self.tx_id = H(self.tx)
        self.kind, self.payload = env.content[1], env.content[schema.KINDS[env.content[1]][0]]


def decode_receipt_map(raw):
    m = dcbor.decode(raw)
    schema.check(m, schema.RECEIPT, "receipt")
    return m


def verify_receipt_map(gen, m):
    """Steps 2-7 of section 10 on a decoded (and structure-checked) receipt map."""
    h = m[2]
    if h[1] != gen.chain_id:
        raise ProofError("receipt: header chain id %r" % h[1], "ErrReceipt")
    try:
        env = cose.decode_envelope(m[1], gen.max_tx_bytes)
    except CBORError as e:
        raise ProofError("receipt: tx: %s" % e, "ErrReceipt")
    if env.content[2] != gen.chain_id:
        raise ProofError("receipt: tx chain id %r" % env.content[2], "ErrReceipt")
    if m[4] >= h[5]:
        raise ProofError("receipt: index %d >= num_txs %d" % (m[4], h[5]), "ErrReceipt")
    if not verify_inclusion(m[1], m[4], h[5], m[5] or [], h[4]):
        raise ProofError("receipt: inclusion proof does not lead to tx_root")
    verify_cert(gen, h, m[3])
    return Receipt(m, env)


def verify_receipt(gen, raw):
    """Section 10 on receipt bytes; returns a Receipt."""
    try:
        m = dcbor.decode(raw)
    except CBORError as e:
        raise ProofError("receipt: %s" % e, "ErrNotCanonical")
    try:
        schema.check(m, schema.RECEIPT, "receipt")
    except CBORError as e:
        raise ProofError("receipt: %s" % e, "ErrReceipt")
    return verify_receipt_map(gen, m)


# ---- member sets and membership proofs (sections 8.1, 10.2) ----

CHECKPOINT_INTERVAL, WINDOW = 16, 64
MAX_MEMBERSHIP_PROOF_BYTES = 1 << 20


def members_from(h):
    """Section 8.1: the first height the set named by a change committed at h certifies."""
    return CHECKPOINT_INTERVAL * ((h + WINDOW + CHECKPOINT_INTERVAL - 1) // CHECKPOINT_INTERVAL) + 1


class MemberSet:
    """One member set, with what verify_cert and verify_receipt_map read of a genesis."""

    def __init__(self, gen, start, nodes):
        self.chain_id, self.max_tx_bytes = gen.chain_id, gen.max_tx_bytes
        self.start = start
        self.nodes = nodes  # [(id, spki)] in primary order
        self.node_keys = dict(nodes)

    def quorum(self):
        n = len(self.nodes)
        return (n + (n - 1) // 3) // 2 + 1


class Members:
    """The member sets a device holds: the genesis nodes from height 1, then
    one set per change it followed."""

    def __init__(self, gen):
        self.gen = gen
        self.sets = [MemberSet(gen, 1, [(n[0], n[1]) for n in gen.nodes])]

    def at(self, height):
        for s in reversed(self.sets):
            if s.start <= height:
                return s
        return self.sets[0]

    def verify_receipt_map(self, m):
        return verify_receipt_map(self.at(m[2][2]), m)

    def follow(self, m):
        """Section 10.2, one link: m is a structure-checked receipt map."""
        r = self.verify_receipt_map(m)
        if r.kind != "cluster.reconfig":
            raise ProofError("a receipt of a %s, not a cluster.reconfig" % r.kind, "ErrMembers")
        admins = dict(self.gen.admins)
        if r.env.kid not in admins:
            raise ProofError("cluster.reconfig by %r, not a genesis admin" % r.env.kid, "ErrMembers")
        if not r.env.verify(admins[r.env.kid]):
            raise ProofError("cluster.reconfig: bad signature", "ErrMembers")
        last = self.sets[-1]
        if last.start > r.height:
            raise ProofError("the change to the set from %d is pending at %d" % (last.start, r.height), "ErrMembers")
        if len(last.nodes) < 4:
            raise ProofError("a set of %d nodes cannot change" % len(last.nodes), "ErrMembers")
        nodes = [(n[1], n[2]) for n in r.payload[1]]
        for nid, key in nodes:
            for s in reversed(self.sets):
                if nid in s.node_keys:
                    if s.node_keys[nid] != key:
                        raise ProofError("node id %s was a member with another key" % nid, "ErrMembers")
                    break
        self.sets.append(MemberSet(self.gen, members_from(r.height), nodes))


def verify_membership(gen, raw):
    """Section 10.2: verify a MembershipProof's bytes with the genesis; returns Members."""
    if len(raw) > MAX_MEMBERSHIP_PROOF_BYTES:
        raise ProofError("membership proof of %d bytes" % len(raw), "ErrMembers")
    try:
        p = dcbor.decode(raw)
        if not isinstance(p, list):
            raise Malformed("membership proof: not an array")
        for i, m in enumerate(p):
            schema.check(m, schema.RECEIPT, "membership proof[%d]" % i)
    except CBORError as e:
        raise ProofError("membership proof: %s" % e, "ErrMembers")
    ms = Members(gen)
    for i, m in enumerate(p):
        try:
            ms.follow(m)
        except ProofError as e:
            raise ProofError("membership proof receipt %d: %s" % (i, e), "ErrMembers")
    return ms


# ---- answers (section 11) ----

MAX_AGE_MS = 600000


def freshness(gen, head, receipts, now_ms, max_age=MAX_AGE_MS):
    """Section 11.1 with receipt maps (present ones)."""
    verify_cert(gen, head[1], head[2])
    if now_ms - head[1][6] > max_age:
        raise ProofError("head is stale: %d ms old" % (now_ms - head[1][6]), "ErrStaleHead")
    for r in receipts:
        if r[2][2] > head[1][2]:
            raise ProofError("a receipt is above the head (%d > %d)" % (r[2][2], head[1][2]))


def decode_answer(raw, sch, name):
    try:
        a = dcbor.decode(raw)
        schema.check(a, sch, name)
    except CBORError as e:
        raise ProofError("%s: %s" % (name, e))
    return a


class ConfigState:
    """The last accepted configuration (target, version, height, sha256), kept in a JSON file."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                self.last = json.load(f)
        except FileNotFoundError:
            self.last = None

    def store(self, target, version, height, sha):
        import os
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"target": target, "version": version, "height": height, "sha256": sha.hex()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.last = {"target": target, "version": version, "height": height, "sha256": sha.hex()}


def enrolled(e, device):
    """The attributes an enrollment proves (section 11, 6.18): a device.enroll's,
    or a device.claim's (no encryption key), if its device_id is device.
    Returns (signing key, enc key, model, groups) or None."""
    p = e.payload
    if e.kind == "device.enroll" and p[1] == device:
        return p[2], p.get(5), p.get(3), p.get(4, [])
    if e.kind == "device.claim" and p[1] == device:
        return p[5], None, p.get(6), p.get(7, [])
    return None


def enrollment(gen, r, device):
    """The answers' enrollment receipt (ConfigAnswer key 5, FirmwareAnswer key 9;
    11.2 step 5, 11.5 step 3), used by a device that does not keep its model or
    groups: it MUST be present, verify and be this device's device.enroll or
    device.claim. Returns (model, groups)."""
    if r is None:
        raise ProofError("no enrollment receipt in the answer")
    got = enrolled(verify_receipt_map(gen, r), device)
    if got is None:
        raise ProofError("enrollment receipt is not this device's enrollment")
    return got[2], got[3]


LEDGER_CODES = ("ErrCert", "ErrReceipt", "ErrNotCanonical")


def as_device_error(fn):
    """In the checks of section 11 a failed receipt or certificate is a proof error."""
    import functools

    @functools.wraps(fn)
    def w(*a, **kw):
        try:
            return fn(*a, **kw)
        except ProofError as e:
            if e.code in LEDGER_CODES:
                raise ProofError(str(e), "ErrProof")
            raise
    return w


@as_device_error
def config_manifest(gen, a, device, groups, last, now_ms, h=None, max_age=MAX_AGE_MS):
    """Section 11.2 steps 1-6 (and 7 when h is given). Returns (receipt, config.set)."""
    if a[1] != device:
        raise ProofError("config answer is about %r, not %r" % (a[1], device))
    present = [a[2]] if 2 in a else []  # not the enrollment (11.2 step 5)
    freshness(gen, a[3], present, now_ms, max_age)
    if 2 not in a:
        raise ProofError("no configuration published", "ErrNoConfig")
    r = verify_receipt_map(gen, a[2])
    if r.kind != "config.set":
        raise ProofError("config answer receipt is a %s" % r.kind)
    cs = r.payload
    t = cs[1]
    if t.startswith("group:") and not groups:
        groups = enrollment(gen, a.get(5), device)[1]
    if not (t == device or (t.startswith("group:") and t[6:] in groups)):
        raise ProofError("config.set target %r is not this device or its groups" % t)
    if last is not None:
        if r.height < last["height"] or (t == last["target"] and cs[2] < last["version"]):
            raise ProofError("configuration rollback", "ErrRollback")
    if h is not None and cs[3] != h:
        raise ProofError("hash is not the current configuration", "ErrNotCurrent")
    return r, cs


def verify_config(gen, a, device, groups, state, h, now_ms, max_age=MAX_AGE_MS):
    """Section 11.2 steps 1-8; stores the new last before returning."""
    r, cs = config_manifest(gen, a, device, groups, state.last, now_ms, h, max_age)
    state.store(cs[1], cs[2], r.height, cs[3])
    return r, cs


@as_device_error
def verify_keys(gen, a, x, now_ms, max_age=MAX_AGE_MS):
    """Section 11.3. Returns dict with signing key, enc key, revoked, model, groups."""
    if a[1] != x:
        raise ProofError("keys answer is about %r" % a[1])
    freshness(gen, a[5], [a[k] for k in (2, 3, 4) if k in a], now_ms, max_age)
    e = verify_receipt_map(gen, a[2])
    got = enrolled(e, x)
    if got is None:
        raise ProofError("enroll receipt is not the enrollment of %s" % x)
    sign, enc, model, groups = got
    height = e.height
    if 3 in a:
        rk = verify_receipt_map(gen, a[3])
        if rk.kind != "device.rekey" or rk.payload[1] != x or rk.height < e.height:
            raise ProofError("rekey receipt does not fit")
        sign, enc, height = rk.payload[3], rk.payload.get(4), rk.height
    schema.parse_spki(sign)
    revoked = None
    if 4 in a:
        rv = verify_receipt_map(gen, a[4])
        if rv.kind != "device.revoke" or rv.payload[1] != x:
            raise ProofError("revoke receipt does not fit")
        revoked = rv.payload.get(2, "")
    return {"sign": sign, "enc": enc, "revoked": revoked, "model": model, "height": height,
            "groups": groups}


@as_device_error
def check_firmware(gen, vk_spki, a, device, model, groups, installed, now_ms, max_age=MAX_AGE_MS):
    """Section 11.5 steps 1-14. Returns the firmware.publish body F."""
    if a[1] != device:
        raise ProofError("firmware answer is about %r" % a[1])
    present = [a[k] for k in (3, 4, 5, 7) if k in a] + list(a.get(6, []))  # not enrollment
    freshness(gen, a[8], present, now_ms, max_age)
    if model is None or not groups:  # 11.5 step 3
        m2, g2 = enrollment(gen, a.get(9), device)
        model = m2 if model is None else model
        groups = groups or g2
    rel = verify_receipt_map(gen, a[3])
    if rel.kind != "firmware.publish":
        raise ProofError("release receipt is a %s" % rel.kind)
    F = rel.payload
    if not rel.env.verify(vk_spki):
        raise ProofError("manifest not signed by the vendor key", "ErrVendorSignature")
    if F[1] != model:
        raise ProofError("manifest for model %s" % F[1], "ErrWrongModel")
    if F[2] <= installed:
        raise ProofError("version %d not above installed %d" % (F[2], installed), "ErrFirmwareRollback")
    if installed < F.get(6, 0):
        raise ProofError("installed below min_version", "ErrFirmwareRollback")
    if not now_ms < F[5]:
        raise ProofError("manifest expired", "ErrExpired")
    if 7 in a:
        try:
            rv = verify_receipt_map(gen, a[7])
            ok = rv.kind == "firmware.revoke" and (rv.payload[1], rv.payload[2]) == (F[1], F[2]) \
                and (3 not in rv.payload or rv.payload[3] in groups)
        except (ProofError, CBORError):
            ok = False
        if ok:
            raise ProofError("release revoked", "ErrReleaseRevoked")
    grp = a.get(2)
    if grp not in groups:
        raise ProofError("answer group %r not among the device's" % (grp,), "ErrPolicy")
    if 4 in a:
        pr = verify_receipt_map(gen, a[4])
        if pr.kind != "firmware.policy" or pr.payload[1] != grp:
            raise ProofError("policy receipt does not fit")
        P = pr.payload
    else:
        P = {1: grp, 2: True}
    if 5 in a:
        ap = verify_receipt_map(gen, a[5])
        if ap.kind != "firmware.approve" or (ap.payload[1], ap.payload[2], ap.payload[3]) != (F[1], F[2], grp):
            raise ProofError("approval does not fit")
        return blocked(a, F)
    if P.get(2, False):
        raise ProofError("approval required", "ErrPolicy")
    authors = set()
    for v in a.get(6, []):
        vr = verify_receipt_map(gen, v)
        if vr.kind != "firmware.vote":
            raise ProofError("vote receipt is a %s" % vr.kind)
        if vr.payload[3] is True and (vr.payload[1], vr.payload[2]) == (F[1], F[2]):
            authors.add(vr.env.kid)
    if len(authors) < P.get(3, 0):
        raise ProofError("not enough good votes", "ErrPolicy")
    return blocked(a, F)


def blocked(a, F):
    """11.4: any `blocked` value means "do not install this one"."""
    if 10 in a:
        raise ProofError("the gateway says blocked: %s" % a[10], "ErrBlocked")
    return F


def check_image(F, image):
    if len(image) != F[4] or H(image) != F[3]:
        raise ProofError("image size or hash", "ErrImage")
