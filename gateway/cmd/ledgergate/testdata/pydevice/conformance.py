"""Refusals a device can provoke over MQTT, checked against protocol.md
sections 7, 13.1 and 14: CONNECT codes, PUBACK reason strings and codes,
reject messages, request refusals. Any difference is a FAIL line."""

import json
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import cose
import dcbor
import transport
from cose import H

# protocol.md 14.1, MQTT 5 PUBACK column (the table the front ends map
# through, checked by the gateway's TestReasonTableMatchesProtocol).
SPEC_PUBACK = {
    "malformed": 0x99, "too_large": 0x99, "wrong_chain": 0x99, "wrong_topic": 0x87, "not_record": 0x99,
    "not_report": 0x99, "wrong_cert": 0x87, "unknown_author": 0x87, "bad_signature": 0x87, "forbidden": 0x87,
    "revoked": 0x87, "replay": 0x83, "exists": 0x83, "unknown_device": 0x83, "stale_version": 0x83,
    "unknown_release": 0x83, "not_found": 0x83, "policy": 0x87, "bad_option": 0x99, "method_not_allowed": 0x99,
    "not_acceptable": 0x99, "incomplete": 0x99, "content_format": 0x99, "proxy": 0x99, "overloaded": 0x97,
    "unavailable": 0x80, "storage_full": 0x97, "internal": 0x80,
}


class Report:
    def __init__(self):
        self.fails = 0

    def ok(self, *w):
        print("ok", *w, flush=True)

    def fail(self, *w):
        self.fails += 1
        print("FAIL", *w, flush=True)


def connect_code(broker, client_id, user, password, v5=True):
    try:
        host, port = broker.rsplit(":", 1)
        m = transport.MQTTDevice.__new__(transport.MQTTDevice)
        # A bare connection attempt with exactly these credentials.
        c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        c.username_pw_set(user, password)
        import queue
        q = queue.Queue()
        if v5:
            c.on_connect = lambda cl, u, f, rc, p=None: q.put(rc.value)
        else:
            c.on_connect = lambda cl, u, f, rc: q.put(rc)
        c.connect(host, int(port), 30)
        c.loop_start()
        try:
            return q.get(timeout=10)
        except queue.Empty:
            return None
        finally:
            c.disconnect()
            c.loop_stop()
        del m
    except OSError as e:
        return "error %s" % e


def run(d, broker, other_dir, other_id):
    rep = Report()
    now = int(time.time())
    key = d.key

    def token(claims, k=None, kid=None):
        env = cose.sign_payload(k or key, kid or d.id, dcbor.encode(claims))
        import base64
        return base64.urlsafe_b64encode(env).rstrip(b"=").decode()

    good = {2: d.id, 3: d.gen.chain_id, 4: now + 600, 6: now}
    other_key = cose.load_key(other_dir + "/key")
    cases = [
        ("connect-valid", d.id, d.id, token(good), True, 0x00),
        ("connect-second-session", d.id + "/x", d.id, token(good), True, 0x00),
        ("connect-other-chain", d.id, d.id, token({**good, 3: "other-chain"}), True, 0x86),
        ("connect-expired", d.id, d.id, token({**good, 4: now - 10, 6: now - 3600}), True, 0x86),
        ("connect-lifetime-24h+1s", d.id, d.id, token({**good, 4: now + 86401, 6: now}), True, 0x86),
        ("connect-iat-future", d.id, d.id, token({**good, 4: now + 1200, 6: now + 600}), True, 0x86),
        ("connect-wrong-key", d.id, d.id, token(good, other_key), True, 0x86),
        ("connect-client-id-of-another", other_id, d.id, token(good), True, 0x86),
        ("connect-unknown-device", "nobody", "nobody", token({**good, 2: "nobody"}, kid="nobody"), True, 0x86),
        ("connect-v311-expired", d.id, d.id, token({**good, 4: now - 10, 6: now - 3600}), False, 0x04),
        ("connect-v311-valid", d.id, d.id, token(good), False, 0x00),
    ]
    for name, cid, user, pw, v5, want in cases:
        got = connect_code(broker, cid, user, pw, v5)
        if got == want:
            rep.ok(name, "code=0x%02x" % got)
        else:
            rep.fail(name, "CONNACK %r, protocol.md 7/13.1 says 0x%02x" % (got, want))

    # 13.1: a token session ends when the token expires (v5 DISCONNECT 0xA0).
    import queue
    c = mqtt.Client(client_id=d.id + "/short", protocol=mqtt.MQTTv5)
    t0 = int(time.time())  # not `now`: the CONNECT cases above took a while
    c.username_pw_set(d.id, token({**good, 4: t0 + 4, 6: t0}))
    conn, gone = queue.Queue(), queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p=None: conn.put(rc.value)
    c.on_disconnect = lambda cl, u, rc, p=None: gone.put(getattr(rc, "value", rc))
    host, port = broker.rsplit(":", 1)
    c.connect(host, int(port), 30)
    c.loop_start()
    try:
        rc = conn.get(timeout=10)
        code = gone.get(timeout=20) if rc == 0 else None
    except queue.Empty:
        code = "none within 20 s"
    finally:
        c.loop_stop()
    if code == 0xA0:
        rep.ok("token-expiry-disconnect", "code=0xa0")
    else:
        rep.fail("token-expiry-disconnect", "CONNACK %r, DISCONNECT %r, protocol.md 13.1 says 0xA0" % (rc, code))

    m = d.mqtt(broker, suffix="conf")
    m.subscribe("rejects")

    def expect(name, suffix, payload, reason, txid=None):
        code, props = m.publish(suffix, payload)
        got = props.get("ReasonString")
        if got != reason:
            rep.fail(name, "PUBACK 0x%02x reason %r, want %r" % (code, got, reason))
            return
        want = SPEC_PUBACK.get(reason)
        if want is not None and code != want:
            rep.fail(name, "reason %s: PUBACK 0x%02x, protocol.md 14.1 says 0x%02x" % (reason, code, want))
        else:
            rep.ok(name, "reason=%s" % reason, "code=0x%02x" % code)
        if True:
            tid = txid.hex() if txid is not None else ""
            msg = m.wait_message(lambda x: x.topic == m.topic("rejects") and json.loads(bytes(x.payload)).get("tx_id") == tid,
                                 "reject of " + name)
            rj = json.loads(bytes(msg.payload))
            if rj.get("reason") != reason or not isinstance(rj.get("error"), str):
                rep.fail(name, "reject message %r" % rj)

    seq = d.next_seq()

    def rec(stream="temp", chain=None, device=None, k=None, s=None):
        body = {1: "data.record", 2: chain or d.gen.chain_id,
                6: {1: device or d.id, 2: stream, 3: s or seq, 4: int(time.time() * 1000)}}
        return cose.sign_payload(k or key, device or d.id, dcbor.encode(body))

    e = rec(stream="humidity")
    expect("record-stream-not-topic", "data/temp", e, "wrong_topic", H(e))
    e = rec(device=other_id, k=other_key)
    expect("record-of-another-device", "data/temp", e, "wrong_topic", H(e))
    rep_env = cose.sign_body(key, d.id, {1: "config.report", 2: d.gen.chain_id, 8: {1: d.id, 2: seq, 3: 0, 4: b"\0" * 32}})
    expect("report-on-data-topic", "data/temp", rep_env, "not_record", H(rep_env))
    e = rec()
    expect("record-on-report-topic", "config/report", e, "not_report", H(e))
    e = rec(chain="other-chain")
    expect("record-other-chain", "data/temp", e, "wrong_chain", H(e))
    expect("garbage", "data/temp", b"\x01\x02garbage", "malformed")
    e = bytearray(rec())
    e[-1] ^= 1
    expect("bad-signature", "data/temp", bytes(e), "bad_signature", H(e))
    big = {1: "data.record", 2: d.gen.chain_id, 6: {1: d.id, 2: "temp", 3: seq, 4: 1, 6: b"x" * (d.gen.max_tx_bytes + 10)}}
    e = cose.sign_payload(key, d.id, dcbor.encode(big))
    expect("over-max-tx-bytes", "data/temp", e, "too_large")

    # A committed tx sent again: answered, not refused (6.4).
    m.subscribe("receipts")
    e = rec()
    code, props = m.publish("data/temp", e)
    code2, props2 = m.publish("data/temp", e)
    if code == 0 and code2 == 0:
        rep.ok("resend-committed", "code=0x00")
    else:
        rep.fail("resend-committed", "PUBACKs 0x%02x %s then 0x%02x %s" % (code, props, code2, props2))
    e2 = rec(s=seq)  # same seq, new envelope (other time): replay
    expect("replay", "data/temp", e2, "replay", H(e2))

    # Requests (13.1): bad response topics, unknown things.
    def request_refusal(name, suffix, payload, resp_topic, reason):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp_topic
        props.CorrelationData = b"c-" + name.encode()
        code, p = m.publish(suffix, payload, props=props)
        msg = m.wait_message(lambda x: x.topic == m.topic("rejects") and bytes(x.payload).find(b'"tx_id":""') >= 0,
                             "reject of " + name)
        rj = json.loads(bytes(msg.payload))
        if rj.get("reason") != reason or rj.get("tx_id") != "":
            rep.fail(name, "reject %r, want reason %s" % (rj, reason))
        elif code != SPEC_PUBACK[reason] or p.get("ReasonString") != reason:
            rep.fail(name, "PUBACK 0x%02x %s, protocol.md 14.1 says 0x%02x %s" % (code, p, SPEC_PUBACK[reason], reason))
        else:
            rep.ok(name, "reason=%s" % reason, "puback=0x%02x" % code)

    request_refusal("request-response-topic-wildcard", "config/verify", H(b"x"), m.topic("answers/#"), "malformed")
    request_refusal("request-response-topic-elsewhere", "config/verify", H(b"x"), "lg/v1/%s/answers" % other_id, "forbidden")
    m.subscribe("answers/#")
    ct, raw, code = m.request("keys/get", b"nobody-here", answer_suffix="answers/k")
    rj = json.loads(raw) if ct == "application/json" else None
    if rj and rj.get("reason") == "not_found" and rj.get("tx_id") == "" and code == SPEC_PUBACK["not_found"]:
        rep.ok("keys-of-unknown-device", "content_type=%s" % ct, "puback=0x%02x" % code)
    else:
        rep.fail("keys-of-unknown-device", "answer %s %r" % (ct, raw[:200]))
    ct, raw, code = m.request("config/blob/get", H(b"no such blob").hex().encode(), answer_suffix="answers/b")
    rj = json.loads(raw) if ct == "application/json" else None
    if rj and rj.get("reason") == "not_found" and code == SPEC_PUBACK["not_found"]:
        rep.ok("blob-unknown", "content_type=%s" % ct, "puback=0x%02x" % code)
    else:
        rep.fail("blob-unknown", "answer %s %r" % (ct, raw[:200]))
    # Section 1: a receiver MUST accept upper-case hex.
    ct, raw, code = m.request("config/verify", H(b"upper").hex().upper().encode(), answer_suffix="answers/u")
    if ct == "application/cbor" and code == 0:
        rep.ok("upper-case-hex-request")
    else:
        rep.fail("upper-case-hex-request", "answer %s %r PUBACK 0x%02x" % (ct, raw[:200], code))
    m.close()
    return rep.fails
