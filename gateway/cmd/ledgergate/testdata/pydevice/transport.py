"""MQTT (paho, v5 and 3.1.1) and CoAP (libcoap's coap-client-notls) for
the device, per protocol.md section 13 and device-protocol.md."""

import base64
import json
import os
import queue
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import cose
import dcbor
import schema


# ---- tokens (section 7) ----

def make_token(key, device_id, chain_id, lifetime=3600, now=None):
    now = int(time.time()) if now is None else now
    claims = {2: device_id, 3: chain_id, 4: now + lifetime, 6: now}
    schema.check(claims, schema.CLAIMS, "claims")
    env = cose.sign_payload(key, device_id, dcbor.encode(claims))
    return base64.urlsafe_b64encode(env).rstrip(b"=").decode()


# ---- MQTT ----

class _Client(mqtt.Client):
    """paho 1.6.1 parses a v5 PUBACK's reason code and properties and drops
    them; a device needs both (section 14), so keep them per packet id."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.pubacks = {}
        self.puback_cv = threading.Condition()

    def _handle_pubackcomp(self, cmd):
        if cmd == "PUBACK":
            pkt = self._in_packet["packet"]
            rl = self._in_packet["remaining_length"]
            if rl >= 2:
                mid = struct.unpack("!H", pkt[:2])[0]
                code, props = 0, {}
                if self._protocol == mqtt.MQTTv5 and rl > 2:
                    code = pkt[2]
                    if rl > 3:
                        p = Properties(PacketTypes.PUBACK)
                        p.unpack(pkt[3:])
                        props = p.json()
                with self.puback_cv:
                    self.pubacks[mid] = (code, props)
                    self.puback_cv.notify_all()
        return super()._handle_pubackcomp(cmd)


class MQTTError(Exception):
    pass


class MQTTDevice:
    def __init__(self, broker, device_id, password, v5=True, suffix=None, timeout=20):
        host, port = broker.rsplit(":", 1)
        self.id = device_id
        self.v5 = v5
        self.timeout = timeout
        cid = device_id if suffix is None else device_id + "/" + suffix
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.c = _Client(client_id=cid, protocol=proto) if v5 else _Client(client_id=cid, clean_session=True, protocol=proto)
        self.c.username_pw_set(device_id, password)
        self.msgs = queue.Queue()
        self.suback = queue.Queue()
        self.conn = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        if v5:
            self.c.on_connect = lambda c, u, f, rc, p=None: self.conn.put(rc.value if hasattr(rc, "value") else rc)
            self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.suback.put((mid, [getattr(r, "value", r) for r in rcs]))
        else:
            self.c.on_connect = lambda c, u, f, rc: self.conn.put(rc)
            self.c.on_subscribe = lambda c, u, mid, rcs: self.suback.put((mid, list(rcs)))
        if v5:
            self.c.connect(host, int(port), keepalive=30, clean_start=True)
        else:
            self.c.connect(host, int(port), keepalive=30)
        self.c.loop_start()
        try:
            rc = self.conn.get(timeout=timeout)
        except queue.Empty:
            raise MQTTError("no CONNACK in %ss" % timeout)
        if rc != 0:
            self.close()
            raise MQTTError("CONNECT refused: 0x%02x" % rc)
        self.rest = []  # messages seen but not yet consumed

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()

    def topic(self, suffix):
        return "lg/v1/%s/%s" % (self.id, suffix)

    def subscribe(self, suffix):
        """SUBSCRIBE QoS 1; again on SUBACK 0x91 (device-protocol.md), at most 5 times."""
        for _ in range(5):
            rc, mid = self.c.subscribe(self.topic(suffix), qos=1)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise MQTTError("subscribe: %d" % rc)
            deadline = time.time() + self.timeout
            while True:
                try:
                    m, codes = self.suback.get(timeout=max(0.01, deadline - time.time()))
                except queue.Empty:
                    raise MQTTError("no SUBACK for %s" % suffix)
                if m == mid:
                    break
            if codes[0] in (0, 1):
                return
            if codes[0] != 0x91:
                raise MQTTError("SUBACK 0x%02x for %s" % (codes[0], suffix))
        raise MQTTError("SUBACK 0x91 five times for %s" % suffix)

    def publish(self, suffix, payload, qos=1, props=None):
        """Publish and wait for the PUBACK; returns (reason code, properties dict)."""
        info = self.c.publish(self.topic(suffix), payload, qos=qos, properties=props)
        if qos == 0:
            return 0, {}
        return self.wait_puback(info.mid, suffix)

    def publish_nowait(self, suffix, payload):
        """Publish QoS 1 without waiting; returns the packet id for wait_puback."""
        return self.c.publish(self.topic(suffix), payload, qos=1).mid

    def wait_puback(self, mid, suffix=""):
        deadline = time.time() + self.timeout
        with self.c.puback_cv:
            while mid not in self.c.pubacks:
                left = deadline - time.time()
                if left <= 0:
                    raise MQTTError("no PUBACK for %s in %ss" % (suffix, self.timeout))
                self.c.puback_cv.wait(left)
            return self.c.pubacks.pop(mid)

    def wait_message(self, pred, what, timeout=None):
        """The first message (seen before or arriving) for which pred holds."""
        for i, m in enumerate(self.rest):
            if pred(m):
                return self.rest.pop(i)
        deadline = time.time() + (timeout or self.timeout)
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise MQTTError("timed out waiting for %s" % what)
            try:
                m = self.msgs.get(timeout=left)
            except queue.Empty:
                continue
            if pred(m):
                return m
            self.rest.append(m)

    def request(self, suffix, payload, answer_suffix=None):
        """A request (section 13.1). With answer_suffix (v5), use it as the
        Response Topic with random Correlation Data; else the default topic.
        Returns (content type or None, payload)."""
        props = None
        corr = None
        if answer_suffix is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.topic(answer_suffix)
            corr = uuid.uuid4().bytes
            props.CorrelationData = corr
            target = self.topic(answer_suffix)
        else:
            target = self.topic(DEFAULT_ANSWER[suffix])
        code, p = self.publish(suffix, payload, 1, props)

        def pred(m):
            if m.topic != target:
                return False
            if corr is not None:
                return getattr(m.properties, "CorrelationData", None) == corr
            return True
        m = self.wait_message(pred, "answer on " + target)
        ct = getattr(m.properties, "ContentType", None) if self.v5 and m.properties else None
        return ct, bytes(m.payload), code


DEFAULT_ANSWER = {"config/verify": "config/verdict", "config/blob/get": "config/blob", "keys/get": "keys"}


# ---- CoAP through libcoap's coap-client-notls ----

class CoAPResult:
    def __init__(self, code, payload, out):
        self.code, self.payload, self.out = code, payload, out


def coap(method, uri, payload=None, content_format=None, block=None, timeout=30, accept=None):
    """Run coap-client-notls; return CoAPResult(code, payload bytes, text).
    The response code is read from coap-client's verbose log (-v 6)."""
    with tempfile.TemporaryDirectory() as d:
        outp = os.path.join(d, "out")
        args = ["coap-client-notls", "-B", str(timeout), "-v", "6", "-m", method, "-o", outp]
        if payload is not None:
            inp = os.path.join(d, "in")
            with open(inp, "wb") as f:
                f.write(payload)
            args += ["-f", inp]
        if content_format is not None:
            args += ["-t", str(content_format)]
        if accept is not None:
            args += ["-A", str(accept)]
        if block is not None:
            args += ["-b", str(block)]
        args.append(uri)
        p = subprocess.run(args, capture_output=True, timeout=timeout + 10)
        text = (p.stdout + p.stderr).decode("utf-8", "replace")
        data = b""
        if os.path.exists(outp):
            with open(outp, "rb") as f:
                data = f.read()
        return CoAPResult(_last_code(text), data, text)


def wait_notification(p, log, timeout=20):
    """Read coap-client's log until the notification (a CON 2.05 with Observe
    and a Content-Format) arrives, then end coap-client with SIGINT (it then
    closes its -o file) instead of waiting out its -s duration."""
    import re
    import select
    import signal
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if re.search(rb"t:CON c:2\.05 [^\n]*Observe:[^\n]*Content-Format", log):
            p.send_signal(signal.SIGINT)
            break
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            chunk = p.stdout.read1(4096)
            if not chunk:
                break
            log += chunk
    log += p.communicate(timeout=10)[0]
    return log


def observe_receipt(coap_addr, txid_hex, seconds=20, timeout=10):
    """GET /lg/v1/receipts/{id} with Observe 0 (13.2) in a background
    coap-client-notls; returns (process, output file) once the gateway has
    answered the registration (2.05 with Observe, no payload), so that the
    caller submits the tx only after it (polled with a deadline)."""
    import re
    import select
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    args = ["stdbuf", "-oL", "-eL", "coap-client-notls", "-B", str(seconds + 3), "-s", str(seconds), "-v", "6",
            "-m", "get", "-o", out.name, "coap://%s/lg/v1/receipts/%s" % (coap_addr, txid_hex)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    buf, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            chunk = p.stdout.read1(4096)
            if not chunk:
                break
            buf += chunk
            if re.search(rb"t:ACK c:2\.05 [^\n]*Observe:", buf):
                return p, out.name, buf
    p.kill()
    p.wait()
    raise RuntimeError("observe registration not answered:\n" + buf.decode("utf-8", "replace"))


def _last_code(text):
    """The code of the last response coap-client logged ("v:1 t:ACK c:2.04 ...")."""
    import re
    codes = re.findall(r"t:(?:ACK|CON|NON|RST)\s+c:(\d\.\d\d)", text)
    return codes[-1] if codes else None


def diagnostic(text):
    """The diagnostic payload of an error response, from coap-client's log:
    it prints the payload of a 4.xx/5.xx answer as `<code> <payload>`."""
    import re
    found = re.findall(r"^\d\.\d\d (.*)$", text, re.M)
    return found[-1].strip() if found else ""


def parse_reject(text):
    try:
        return json.loads(text)
    except ValueError:
        return None
