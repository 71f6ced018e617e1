#!/usr/bin/env python3
"""An independent ledgergate device, written from docs/protocol.md and the
guides only. Each command prints `ok ...` lines and exits 0, or prints
`FAIL ...` and exits 1.

    device.py keygen   --dir D [--alg es256|ed25519]
    device.py mqtt     --dir D --id ID --genesis G --broker H:P --stream S --count N [--v311]
    device.py coap     --dir D --id ID --genesis G --coap H:P --stream S
    device.py config   --dir D --id ID --genesis G --broker H:P --groups a,b --expect TEXT
    device.py firmware --dir D --id ID --genesis G --broker H:P --api URL --vendor-pub P
                       --model M --groups a,b --installed N
    device.py resync   ... --broker H:P            (MQTT 5 replay refusal, last_seq)
    device.py rekey    ... --broker H:P            (device.rekey, then new/old key)
    device.py coap-answers ... --coap H:P --vendor-pub P --model M --installed N
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

import cose
import dcbor
import hpke
import schema
import transport
import verify
from cose import H


def now_ms():
    return int(time.time() * 1000)


class Device:
    def __init__(self, a):
        self.dir = a.dir
        self.id = a.id
        self.gen = verify.load_genesis(a.genesis)
        self.groups = [g for g in (getattr(a, "groups", "") or "").split(",") if g]
        self.model = getattr(a, "model", None)

    @property
    def key(self):
        return cose.load_key(os.path.join(self.dir, "key"))

    @property
    def enc_key(self):
        return cose.load_key(os.path.join(self.dir, "key.enc"))

    def next_seq(self):
        """Section 6.4: store the counter durably before sending with it."""
        p = os.path.join(self.dir, "seq")
        try:
            with open(p) as f:
                n = int(f.read().strip() or 0)
        except FileNotFoundError:
            n = 0
        n += 1
        self.store_seq(n)
        return n

    def store_seq(self, n):
        p = os.path.join(self.dir, "seq")
        with open(p + ".tmp", "w") as f:
            f.write(str(n))
            f.flush()
            os.fsync(f.fileno())
        os.replace(p + ".tmp", p)

    def body(self, kind, payload):
        key = schema.KINDS[kind][0]
        return {1: kind, 2: self.gen.chain_id, key: payload}

    def record(self, stream, data, seq=None, key=None):
        seq = self.next_seq() if seq is None else seq
        rec = {1: self.id, 2: stream, 3: seq, 4: now_ms(), 5: "application/json", 6: data}
        return cose.sign_body(key or self.key, self.id, self.body("data.record", rec))

    def token(self, key=None):
        return transport.make_token(key or self.key, self.id, self.gen.chain_id)

    def mqtt(self, broker, v5=True, suffix=None, key=None):
        return transport.MQTTDevice(broker, self.id, self.token(key), v5=v5, suffix=suffix)

    def check_receipt(self, raw, env):
        r = verify.verify_receipt(self.gen, raw)
        if r.tx_id != H(env):
            raise verify.ProofError("receipt is for another tx")
        return r


def ok(*words):
    print("ok", *words, flush=True)


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


# ---- commands ----

def cmd_keygen(a):
    os.makedirs(a.dir, exist_ok=True)
    cose.write_key(os.path.join(a.dir, "key"), cose.generate(a.alg))
    cose.write_key(os.path.join(a.dir, "key.enc"), cose.generate("x25519"))
    ok("keygen", os.path.join(a.dir, "key.pub"), os.path.join(a.dir, "key.enc.pub"))


def publish_record(d, m, stream, data, seq=None, key=None):
    """Publish a record QoS 1; return (env, code, props)."""
    env = d.record(stream, data, seq, key)
    code, props = m.publish("data/" + stream, env)
    return env, code, props


def wait_receipt(d, m, env):
    msg = m.wait_message(lambda x: x.topic == m.topic("receipts") and _receipt_for(x.payload, env),
                         "receipt of %s" % H(env).hex())
    return d.check_receipt(bytes(msg.payload), env)


def _receipt_for(payload, env):
    try:
        return dcbor.decode(bytes(payload))[1] == env
    except Exception:  # noqa: BLE001 - not a receipt: keep waiting
        return False


def cmd_mqtt(a):
    d = Device(a)
    v5 = not a.v311
    m = d.mqtt(a.broker, v5=v5)
    try:
        m.subscribe("receipts")
        m.subscribe("rejects")
        for i in range(a.count):
            env, code, props = publish_record(d, m, a.stream, json.dumps({"i": i, "v5": v5}).encode())
            if code != 0:
                fail("PUBACK 0x%02x %s" % (code, props))
            if a.api:
                # 13.1: the PUBACK comes only after commit, so the receipt exists
                # already (asked once, no retry).
                st, _, _ = http_req("%s/api/v1/txs/%s/receipt" % (a.api, H(env).hex()), accept="application/cbor")
                if st != 200:
                    fail("PUBACK before commit: the receipt is %d right after it" % st)
            r = wait_receipt(d, m, env)
            ok("mqtt%s" % ("5" if v5 else "311"), "height=%d" % r.height, "index=%d" % r.index,
               "quorum=%d" % d.gen.quorum(), "tx=%s" % r.tx_id.hex())
    finally:
        m.close()


def cmd_burst(a):
    """Many records in flight at once (MQTT 5), so that blocks hold several
    txs and the receipts carry real inclusion proofs (section 9.2)."""
    d = Device(a)
    m = d.mqtt(a.broker)
    try:
        m.subscribe("receipts")
        envs, mids = [], []
        for i in range(a.count):
            env = d.record(a.stream, json.dumps({"burst": i}).encode())
            envs.append(env)
            mids.append(m.publish_nowait("data/" + a.stream, env))
        for mid in mids:
            code, props = m.wait_puback(mid)
            if code != 0:
                fail("PUBACK 0x%02x %s" % (code, props))
        most, proofs = 0, 0
        for env in envs:
            r = wait_receipt(d, m, env)
            most = max(most, r.header[5])
            proofs = max(proofs, len(r.proof))
        ok("burst", "records=%d" % len(envs), "max_num_txs=%d" % most, "max_proof=%d" % proofs)
    finally:
        m.close()


def cmd_keys(a):
    """keys/get for this device (MQTT 5, default answer topic); check the
    KeysAnswer (section 11.3) and that block 1's prev is the genesis hash."""
    d = Device(a)
    m = d.mqtt(a.broker)
    try:
        m.subscribe("keys")
        ct, raw, code = m.request("keys/get", (a.lookup or d.id).encode())
        if code != 0 or ct != "application/cbor":
            fail("keys/get: PUBACK 0x%02x, %s %r" % (code, ct, raw[:200]))
        ka = verify.decode_answer(raw, schema.KEYS_ANSWER, "KeysAnswer")
        k = verify.verify_keys(d.gen, ka, a.lookup or d.id, now_ms())
        if not a.lookup:
            if k["sign"] != cose.load_pub_der(os.path.join(d.dir, "key.pub")):
                fail("the ledger's signing key is not mine")
            if k["enc"] != cose.load_pub_der(os.path.join(d.dir, "key.enc.pub")):
                fail("the ledger's encryption key is not mine")
            if sorted(k["groups"]) != sorted(d.groups) or (a.model and k["model"] != a.model):
                fail("groups/model %s %s" % (k["groups"], k["model"]))
        enroll = ka[2][2]
        if enroll[2] == 1:
            if enroll[3] != d.gen.hash():
                fail("block 1's prev %s is not the genesis hash %s" % (enroll[3].hex(), d.gen.hash().hex()))
            ok("genesis-hash", d.gen.hash().hex())
        ok("keys", "device=%s" % (a.lookup or d.id), "height=%d" % k["height"], "model=%s" % k["model"],
           "groups=%s" % ",".join(k["groups"]))
    finally:
        m.close()


def last_seq_of(m, props, txid):
    """last_seq of a replay refusal (section 14.2): the PUBACK's User Property,
    else the reject message on lg/v1/<id>/rejects. None when absent."""
    for k, v in props.get("UserProperty", []) or []:
        if k == "last_seq":
            return int(v), "puback"
    msg = m.wait_message(lambda x: x.topic == m.topic("rejects") and _reject_for(x.payload, txid), "reject")
    rj = json.loads(bytes(msg.payload))
    if rj.get("reason") != "replay":
        fail("reject reason %r" % rj.get("reason"))
    if "last_seq" in rj:
        return int(rj["last_seq"]), "reject"
    return None, "none"


def _reject_for(payload, txid):
    try:
        return json.loads(bytes(payload)).get("tx_id") == txid.hex()
    except ValueError:
        return False


def cmd_resync(a):
    """The device lost its counter: a record with an old seq is refused
    replay; it takes last_seq from the refusal, signs again above it, and
    the record commits (section 14.1, action resync)."""
    d = Device(a)
    m = d.mqtt(a.broker)
    try:
        m.subscribe("receipts")
        m.subscribe("rejects")
        d.store_seq(0)  # as after a reset that lost the counter
        env, code, props = publish_record(d, m, a.stream, b'{"resync":1}')
        if code < 0x80 or props.get("ReasonString") != "replay":
            fail("an old seq was not refused replay: PUBACK 0x%02x %s" % (code, props))
        ok("replay-refused", "code=0x%02x" % code)
        last, src = last_seq_of(m, props, H(env))
        if last is None:
            if a.require_last_seq:
                fail("the replay refusal carries no last_seq (protocol.md 14.2)")
            last, src = 1000, "margin"  # no last_seq: own counter plus a margin
        d.store_seq(last)
        env, code, props = publish_record(d, m, a.stream, b'{"resync":2}')
        if code != 0:
            fail("after resync: PUBACK 0x%02x %s" % (code, props))
        r = wait_receipt(d, m, env)
        ok("resync", "last_seq=%d" % last, "source=%s" % src, "seq=%d" % (last + 1), "height=%d" % r.height)
    finally:
        m.close()


def cmd_rekey(a):
    """Re-key over MQTT (device-protocol.md "Re-key", rekey branch): sign a
    device.rekey with the current key on lg/v1/<id>/rekey; after commit,
    records signed with the new key commit on the same connection, records
    signed with the old key are refused bad_signature, a new-key token
    connects and an old-key token does not."""
    d = Device(a)
    old = d.key
    new = cose.generate("es256" if a.alg == "es256" else "ed25519")
    new_enc = cose.generate("x25519")
    # Store the new keys durably before sending the re-key.
    cose.write_key(os.path.join(d.dir, "key.next"), new)
    cose.write_key(os.path.join(d.dir, "key.next.enc"), new_enc)
    m = d.mqtt(a.broker)
    try:
        m.subscribe("receipts")
        m.subscribe("rejects")
        seq = d.next_seq()
        rk = {1: d.id, 2: seq, 3: cose.spki(new.public_key()), 4: cose.spki(new_enc.public_key())}
        env = cose.sign_body(old, d.id, d.body("device.rekey", rk))
        code, props = m.publish("rekey", env)
        if code != 0:
            fail("device.rekey PUBACK 0x%02x %s" % (code, props))
        r = wait_receipt(d, m, env)
        for suffix in ("", ".pub", ".enc", ".enc.pub"):
            os.replace(os.path.join(d.dir, "key.next" + suffix), os.path.join(d.dir, "key" + suffix))
        ok("rekey", "height=%d" % r.height)
        env, code, props = publish_record(d, m, a.stream, b'{"key":"new"}', key=new)
        if code != 0:
            fail("new-key record: PUBACK 0x%02x %s" % (code, props))
        wait_receipt(d, m, env)
        ok("new-key-record")
        env, code, props = publish_record(d, m, a.stream, b'{"key":"old"}', key=old)
        if props.get("ReasonString") != "bad_signature":
            fail("old-key record: PUBACK 0x%02x %s, want bad_signature" % (code, props))
        ok("old-key-refused", "code=0x%02x" % code)
    finally:
        m.close()
    m = d.mqtt(a.broker, key=new, suffix="after")
    m.close()
    ok("new-key-connect")
    try:
        d.mqtt(a.broker, key=old, suffix="old").close()
        fail("an old-key token connected after the re-key")
    except transport.MQTTError as e:
        ok("old-key-connect-refused", str(e).replace(" ", "_"))


def cmd_coap_rekey(a):
    """Re-key over CoAP (protocol.md 13.2: POST /lg/v1/{device}/rekey, as a
    record): then a record signed with the new key commits over CoAP and one
    signed with the old key is 4.01 bad_signature."""
    d = Device(a)
    old = d.key
    new = cose.generate(a.alg)
    cose.write_key(os.path.join(d.dir, "key.next"), new)  # durably, before sending
    rk = {1: d.id, 2: d.next_seq(), 3: cose.spki(new.public_key())}  # no enc_key: none afterwards
    env = cose.sign_body(old, d.id, d.body("device.rekey", rk))
    r = coap_post_tx(d, a, "rekey", env)
    for suffix in ("", ".pub"):
        os.replace(os.path.join(d.dir, "key.next" + suffix), os.path.join(d.dir, "key" + suffix))
    ok("coap-rekey", "height=%d" % r.height)
    uri = "coap://%s/lg/v1/data/%s" % (a.coap, a.stream)
    env = d.record(a.stream, b'{"key":"new"}', key=new)
    res = transport.coap("post", uri, env, content_format=18)
    if res.code != "2.04":
        fail("new-key record over CoAP: %s %s" % (res.code, transport.diagnostic(res.out)))
    d.check_receipt(res.payload, env)
    ok("coap-new-key-record")
    env = d.record(a.stream, b'{"key":"old"}', key=old)
    res = transport.coap("post", uri, env, content_format=18)
    diag = transport.diagnostic(res.out)
    if res.code != "4.01" or not diag.startswith("bad_signature: "):
        fail("old-key record over CoAP: %s %r, want 4.01 bad_signature" % (res.code, diag))
    ok("coap-old-key-refused", "code=%s" % res.code)


def coap_get(a, path, what, block=None, accept=None):
    res = transport.coap("get", "coap://%s/lg/v1/%s/%s" % (a.coap, a.id, path), block=block, accept=accept)
    if res.code != "2.05":
        fail("GET %s: code %s\n%s" % (path, res.code, res.out[-2000:]))
    return res.payload


def coap_post_tx(d, a, path, env):
    res = transport.coap("post", "coap://%s/lg/v1/%s/%s" % (a.coap, a.id, path), env, content_format=18)
    if res.code != "2.04":
        fail("POST %s: code %s\n%s" % (path, res.code, res.out[-2000:]))
    return d.check_receipt(res.payload, env)


def cmd_coap_answers(a):
    """Configuration, verdict, blob, keys, firmware answer and image over
    CoAP (device-protocol.md, coap branch), answers larger than a block
    fetched with Block2 by coap-client; reports POSTed."""
    d = Device(a)
    state = verify.ConfigState(os.path.join(d.dir, "config.json"))
    raw = coap_get(a, "config", "manifest")
    ca = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
    r, cs = verify.config_manifest(d.gen, ca, d.id, d.groups, state.last, now_ms())
    ok("coap-manifest", "version=%d" % cs[2], "bytes=%d" % len(raw))
    blob = coap_get(a, "config/blob/" + cs[6].hex(), "blob", block=64)
    content = hpke.open_config(cs, blob, d.enc_key)
    if a.expect is not None and content != a.expect.encode():
        fail("content %r, want %r" % (content, a.expect))
    ok("coap-blob", "bytes=%d" % len(blob), "opened=%d" % len(content))
    raw = coap_get(a, "config/verify?h=" + H(content).hex(), "verdict")
    va = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
    r2, cs2 = verify.verify_config(d.gen, va, d.id, d.groups, state, H(content), now_ms())
    ok("coap-verified", "version=%d" % cs2[2])
    seq = d.next_seq()
    env = cose.sign_body(d.key, d.id, d.body("config.report", {1: d.id, 2: seq, 3: cs2[2], 4: cs2[3]}))
    coap_post_tx(d, a, "config/report", env)
    ok("coap-config-report", "version=%d" % cs2[2])
    raw = coap_get(a, "keys/" + d.id, "keys", block=64)
    k = verify.verify_keys(d.gen, verify.decode_answer(raw, schema.KEYS_ANSWER, "KeysAnswer"), d.id, now_ms())
    if k["sign"] != cose.load_pub_der(os.path.join(d.dir, "key.pub")):
        fail("CoAP keys answer: the ledger's key is not mine")
    ok("coap-keys", "height=%d" % k["height"], "rekeyed=%s" % (3 in verify.dcbor.decode(raw)))
    raw = coap_get(a, "firmware", "firmware answer")
    fa = verify.decode_answer(raw, schema.FIRMWARE_ANSWER, "FirmwareAnswer")
    F = verify.check_firmware(d.gen, load_vendor(a), fa, d.id, a.model, d.groups, a.installed, now_ms())
    ok("coap-firmware-answer", "version=%d" % F[2], "bytes=%d" % len(raw))
    image = coap_get(a, "firmware/" + F[3].hex(), "image", block=1024)
    verify.check_image(F, image[:F[4]] if len(image) > F[4] else image)
    ok("coap-image", "size=%d" % len(image))
    seq = d.next_seq()
    env = cose.sign_body(d.key, d.id, d.body("firmware.report", {1: d.id, 2: seq, 3: F[1], 4: F[2], 5: True}))
    coap_post_tx(d, a, "firmware/report", env)
    ok("coap-firmware-report", "version=%d" % F[2])


def cmd_conformance(a):
    import conformance
    d = Device(a)
    if conformance.run(d, a.broker, a.other_dir, a.other_id):
        sys.exit(1)


def cmd_coap(a):
    d = Device(a)
    env = d.record(a.stream, b'{"via":"coap"}')
    res = transport.coap("post", "coap://%s/lg/v1/data/%s" % (a.coap, a.stream), env, content_format=18)
    if res.code != "2.04":
        fail("POST: code %s\n%s" % (res.code, res.out))
    if len(res.payload) == 64:  # the tx id, receipt too large for one block
        fail("POST answered with a tx id; expected the receipt in one block")
    r = d.check_receipt(res.payload, env)
    ok("coap", "height=%d" % r.height, "tx=%s" % r.tx_id.hex())
    # A record larger than a datagram, in Block1 blocks of 64 bytes: its
    # receipt is larger than a block, so the 2.04 carries the tx id and
    # Location-Path, and the receipt is fetched with Block2 (13.2).
    big = d.record(a.stream, b"x" * 3000)
    res = transport.coap("post", "coap://%s/lg/v1/data/%s" % (a.coap, a.stream), big, content_format=18, block=64)
    if res.code != "2.04":
        fail("POST (Block1): code %s\n%s" % (res.code, res.out[-2000:]))
    if res.payload.decode("ascii", "replace").strip().lower() != H(big).hex():
        fail("POST of a large record: want the tx id as payload, got %r" % res.payload[:100])
    if ("lg/v1/receipts/" not in res.out) and ("receipts" not in res.out):
        print("note: no Location-Path seen in coap-client's log")
    res2 = transport.coap("get", "coap://%s/lg/v1/receipts/%s" % (a.coap, H(big).hex()), block=256)
    if res2.code != "2.05":
        fail("GET large receipt: code %s" % res2.code)
    rb = d.check_receipt(res2.payload, big)
    ok("coap-block1-block2", "receipt_bytes=%d" % len(res2.payload), "height=%d" % rb.height)
    # A refusal: the diagnostic payload is "<reason>: <detail>" (13.2).
    old = d.record(a.stream, b"{}", seq=1)
    res3 = transport.coap("post", "coap://%s/lg/v1/data/%s" % (a.coap, a.stream), old, content_format=18)
    diag = transport.diagnostic(res3.out)
    if res3.code != "4.03" or not diag.startswith("replay: "):
        fail("old seq over CoAP: %s %r" % (res3.code, diag))
    ok("coap-replay", "code=%s" % res3.code, "last_seq=%s" % ("yes" if diag.startswith("replay: last_seq=") else "no"))
    # Observe 0 on the receipt of a tx not yet sent: registered (2.05 with
    # Observe, no payload), then one notification with the receipt (13.2).
    env2 = d.record(a.stream, b'{"observed":true}')
    proc, outp, log = transport.observe_receipt(a.coap, H(env2).hex())
    try:
        res4 = transport.coap("post", "coap://%s/lg/v1/data/%s" % (a.coap, a.stream), env2, content_format=18)
        if res4.code != "2.04":
            fail("POST while observed: %s" % res4.code)
        log = transport.wait_notification(proc, log)
        with open(outp, "rb") as f:
            ro = d.check_receipt(f.read(), env2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(outp)
    notes = log.decode("utf-8", "replace").count("Observe:")
    ok("coap-observe", "height=%d" % ro.height, "observe_messages=%d" % notes)
    # GET the receipt again by its id.
    res = transport.coap("get", "coap://%s/lg/v1/receipts/%s" % (a.coap, r.tx_id.hex()))
    if res.code != "2.05":
        fail("GET receipt: code %s\n%s" % (res.code, res.out))
    d.check_receipt(res.payload, env)
    ok("coap-get-receipt")


def report_config(d, m, cs):
    seq = d.next_seq()
    body = d.body("config.report", {1: d.id, 2: seq, 3: cs[2], 4: cs[3]})
    env = cose.sign_body(d.key, d.id, body)
    code, props = m.publish("config/report", env)
    if code != 0:
        fail("config.report PUBACK 0x%02x %s" % (code, props))
    r = wait_receipt(d, m, env)
    ok("config-report", "version=%d" % cs[2], "height=%d" % r.height)


def cmd_config(a):
    d = Device(a)
    state = verify.ConfigState(os.path.join(d.dir, "config.json"))
    m = d.mqtt(a.broker)
    try:
        m.subscribe("receipts")
        m.subscribe("config")
        # 1. the retained manifest; it may be empty (none yet) or old.
        msg = m.wait_message(lambda x: x.topic == m.topic("config") and len(x.payload) > 0, "manifest")
        a1 = verify.decode_answer(bytes(msg.payload), schema.CONFIG_ANSWER, "ConfigAnswer")
        r, cs = verify.config_manifest(d.gen, a1, d.id, d.groups, state.last, now_ms())
        ok("manifest", "target=%s" % cs[1], "version=%d" % cs[2], "retained=%s" % msg.retain)
        # 2. download the sealed blob over MQTT (default answer topic) and open it.
        m.subscribe("config/blob")
        _, blob, code = m.request("config/blob/get", cs[6].hex().encode())
        if code != 0:
            fail("config/blob/get PUBACK 0x%02x" % code)
        content = hpke.open_config(cs, blob, d.enc_key)
        ok("opened", "size=%d" % len(content))
        if a.expect is not None and content != a.expect.encode():
            fail("content %r, want %r" % (content, a.expect))
        # 3. ask config/verify (v5 Response Topic) and accept.
        m.subscribe("answers/#")
        ct, raw, code = m.request("config/verify", H(content), answer_suffix="answers/1")
        if ct != "application/cbor":
            fail("config/verify answered %s: %r" % (ct, raw[:200]))
        a2 = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
        r2, cs2 = verify.verify_config(d.gen, a2, d.id, d.groups, state, H(content), now_ms())
        ok("verified", "version=%d" % cs2[2], "match=%s" % (a2.get(4) is True))
        # 3b. a wrong hash is ErrNotCurrent.
        ct, raw, code = m.request("config/verify", H(b"not it").hex().encode(), answer_suffix="answers/2")
        a3 = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
        try:
            verify.config_manifest(d.gen, a3, d.id, d.groups, state.last, now_ms(), H(b"not it"))
            fail("a wrong hash was accepted")
        except verify.ProofError as e:
            if e.code != "ErrNotCurrent":
                fail("wrong hash: %s" % e)
        ok("wrong-hash-not-current")
        # 4. apply and report.
        report_config(d, m, cs2)
    finally:
        m.close()


def http_get(url, accept=None, limit=None):
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.read(limit) if limit is not None else resp.read()


def http_req(url, data=None, ctype=None, accept=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if ctype:
        req.add_header("Content-Type", ctype)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def cmd_http(a):
    """The HTTP API as a device (or its proxy) uses it (protocol.md 13.4)."""
    import base64
    d = Device(a)
    env = d.record(a.stream, b'{"via":"http"}')
    st, ct, body = http_req(a.api + "/api/v1/txs", env, "application/cose")
    if st != 200:
        fail("POST /api/v1/txs: %d %s" % (st, body[:300]))
    j = json.loads(body)
    r = d.check_receipt(base64.b64decode(j["receipt"]), env)
    if j.get("tx_id") != r.tx_id.hex():
        fail("tx_id %r" % j.get("tx_id"))
    ok("http-post", "height=%d" % r.height)
    st, ct, raw = http_req("%s/api/v1/txs/%s/receipt" % (a.api, r.tx_id.hex().upper()), accept="application/cbor")
    if st != 200 or ct != "application/cbor":
        fail("GET receipt: %d %s" % (st, ct))
    d.check_receipt(raw, env)
    ok("http-receipt")
    st, ct, body = http_req(a.api + "/api/v1/txs", env, "application/cose")
    if st != 200 or json.loads(body).get("tx_id") != r.tx_id.hex():
        fail("resubmitted committed tx: %d %s" % (st, body[:300]))
    ok("http-resubmit")
    old = d.record(a.stream, b"{}", seq=1)
    st, ct, body = http_req(a.api + "/api/v1/txs", old, "application/cose")
    j = json.loads(body)
    if st != 409 or j.get("reason") != "replay":
        fail("old seq over HTTP: %d %s" % (st, body[:300]))
    ok("http-replay", "status=%d" % st, "last_seq=%s" % j.get("last_seq", "absent"))
    if a.config_version:
        state = verify.ConfigState(os.path.join(d.dir, "config.json"))
        st, ct, raw = http_req("%s/api/v1/devices/%s/config" % (a.api, d.id), accept="application/cbor")
        if st != 200 or ct != "application/cbor":
            fail("GET config: %d %s" % (st, ct))
        ca = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
        _, cs = verify.config_manifest(d.gen, ca, d.id, d.groups, state.last, now_ms())
        st, ct, blob = http_req("%s/api/v1/blobs/%s" % (a.api, cs[6].hex()))
        content = hpke.open_config(cs, blob, d.enc_key)
        st, ct, raw = http_req("%s/api/v1/devices/%s/config/verify" % (a.api, d.id), H(content),
                               "application/octet-stream", accept="application/cbor")
        if st != 200 or ct != "application/cbor":
            fail("POST config/verify: %d %s %r" % (st, ct, raw[:200]))
        va = verify.decode_answer(raw, schema.CONFIG_ANSWER, "ConfigAnswer")
        _, cs2 = verify.verify_config(d.gen, va, d.id, d.groups, state, H(content), now_ms())
        if cs2[2] != a.config_version:
            fail("config version %d, want %d" % (cs2[2], a.config_version))
        ok("http-config", "version=%d" % cs2[2])


def load_vendor(a):
    return cose.load_pub_der(a.vendor_pub)


def cmd_firmware(a):
    d = Device(a)
    vk = load_vendor(a)
    m = d.mqtt(a.broker)
    try:
        m.subscribe("receipts")
        m.subscribe("firmware")
        msg = m.wait_message(lambda x: x.topic == m.topic("firmware") and len(x.payload) > 0, "firmware answer")
        fa = verify.decode_answer(bytes(msg.payload), schema.FIRMWARE_ANSWER, "FirmwareAnswer")
        F = verify.check_firmware(d.gen, vk, fa, d.id, a.model, d.groups, a.installed, now_ms())
        ok("firmware-answer", "model=%s" % F[1], "version=%d" % F[2], "group=%s" % fa.get(2))
        # A device with the wrong vendor key, or that runs this version, refuses it.
        for what, args, code in (
                ("other-vendor", (cose.spki(cose.generate("es256").public_key()), a.model, a.installed), "ErrVendorSignature"),
                ("rollback", (vk, a.model, F[2]), "ErrFirmwareRollback"),
                ("other-model", (vk, "zz-9", a.installed), "ErrWrongModel")):
            try:
                verify.check_firmware(d.gen, args[0], fa, d.id, args[1], d.groups, args[2], now_ms())
                fail("%s accepted" % what)
            except verify.ProofError as e:
                if e.code != code:
                    fail("%s: %s (%s), want %s" % (what, e, e.code, code))
        ok("firmware-refusals")
        # A device that keeps neither its model nor its groups takes them from
        # the answer's enrollment receipt (key 9, protocol.md 11.5 step 3).
        F2 = verify.check_firmware(d.gen, vk, fa, d.id, None, [], a.installed, now_ms())
        if F2 != F:
            fail("from the enrollment: another release")
        ok("firmware-from-enrollment")
        image = http_get("%s/api/v1/firmware/images/%s" % (a.api, F[3].hex()), limit=F[4])
        verify.check_image(F, image)
        ok("image", "size=%d" % len(image))
        seq = d.next_seq()
        env = cose.sign_body(d.key, d.id, d.body("firmware.report",
                                                  {1: d.id, 2: seq, 3: F[1], 4: F[2], 5: True, 6: "pydevice"}))
        code, props = m.publish("firmware/report", env)
        if code != 0:
            fail("firmware.report PUBACK 0x%02x %s" % (code, props))
        wait_receipt(d, m, env)
        ok("firmware-report", "version=%d" % F[2])
    finally:
        m.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="device.py")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(name, fn):
        s = sub.add_parser(name)
        s.add_argument("--dir", required=True)
        s.add_argument("--id", required=True)
        s.add_argument("--genesis", required=True)
        s.add_argument("--groups", default="")
        s.set_defaults(fn=fn)
        return s

    s = sub.add_parser("keygen")
    s.add_argument("--dir", required=True)
    s.add_argument("--alg", default="es256", choices=["es256", "ed25519"])
    s.set_defaults(fn=cmd_keygen)

    s = common("mqtt", cmd_mqtt)
    s.add_argument("--broker", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--v311", action="store_true")
    s.add_argument("--api", help="also check over HTTP that each PUBACK came after commit")

    s = common("burst", cmd_burst)
    s.add_argument("--broker", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--count", type=int, default=20)

    s = common("keys", cmd_keys)
    s.add_argument("--broker", required=True)
    s.add_argument("--lookup", help="another device's id (default: this device)")
    s.add_argument("--model")

    s = common("resync", cmd_resync)
    s.add_argument("--broker", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--require-last-seq", action="store_true")

    s = common("rekey", cmd_rekey)
    s.add_argument("--broker", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--alg", default="es256", choices=["es256", "ed25519"])

    s = common("coap-rekey", cmd_coap_rekey)
    s.add_argument("--coap", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--alg", default="ed25519", choices=["es256", "ed25519"])

    s = common("coap-answers", cmd_coap_answers)
    s.add_argument("--coap", required=True)
    s.add_argument("--vendor-pub", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--installed", type=int, default=1)
    s.add_argument("--expect")

    s = common("conformance", cmd_conformance)
    s.add_argument("--broker", required=True)
    s.add_argument("--other-dir", required=True, help="another enrolled device's key directory")
    s.add_argument("--other-id", required=True)

    s = common("http", cmd_http)
    s.add_argument("--api", required=True)
    s.add_argument("--stream", default="temp")
    s.add_argument("--config-version", type=int, default=0)

    s = common("coap", cmd_coap)
    s.add_argument("--coap", required=True)
    s.add_argument("--stream", default="temp")

    s = common("config", cmd_config)
    s.add_argument("--broker", required=True)
    s.add_argument("--expect")

    s = common("firmware", cmd_firmware)
    s.add_argument("--broker", required=True)
    s.add_argument("--api", required=True)
    s.add_argument("--vendor-pub", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--installed", type=int, default=1)

    a = p.parse_args(argv)
    try:
        a.fn(a)
    except (verify.ProofError, dcbor.CBORError, transport.MQTTError, hpke.NotRecipient, ValueError) as e:
        fail("%s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
