"""Deterministic CBOR (protocol.md section 2), written from the spec.

Values: int, bytes, str, bool, None, list, dict (keys int or str), Tag.
The decoder is strict: it refuses everything section 2 refuses that can be
seen without a schema (non-shortest forms, indefinite lengths, unsorted or
duplicate keys, tags other than 18 at the top, floats, simple values other
than false/true/null, trailing bytes, depth > 16). Unknown/empty-optional
keys need the schema and are checked by body.py.
"""

import struct


class CBORError(ValueError):
    """malformed: the bytes are not deterministic CBOR as section 2 says."""


class Tag:
    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


MAX_DEPTH = 16
MAX_MAP = 1024
MAX_ARRAY = 1 << 20


def _head(major, arg):
    if arg < 0:
        raise CBORError("negative argument")
    if arg < 24:
        return bytes([(major << 5) | arg])
    if arg < 1 << 8:
        return bytes([(major << 5) | 24, arg])
    if arg < 1 << 16:
        return bytes([(major << 5) | 25]) + struct.pack(">H", arg)
    if arg < 1 << 32:
        return bytes([(major << 5) | 26]) + struct.pack(">I", arg)
    if arg < 1 << 64:
        return bytes([(major << 5) | 27]) + struct.pack(">Q", arg)
    raise CBORError("integer too large")


def encode(v):
    """Deterministic encoding of v (RFC 8949 4.2.1, protocol.md 2)."""
    if v is False:
        return b"\xf4"
    if v is True:
        return b"\xf5"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        if v >= 0:
            return _head(0, v)
        return _head(1, -1 - v)
    if isinstance(v, (bytes, bytearray)):
        return _head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(v, (list, tuple)):
        return _head(4, len(v)) + b"".join(encode(x) for x in v)
    if isinstance(v, dict):
        items = sorted((encode(k), encode(x)) for k, x in v.items())
        for i in range(1, len(items)):
            if items[i][0] == items[i - 1][0]:
                raise CBORError("duplicate map key")
        return _head(5, len(items)) + b"".join(k + x for k, x in items)
    if isinstance(v, Tag):
        return _head(6, v.tag) + encode(v.value)
    raise CBORError("cannot encode %r" % type(v))


class _Decoder:
    def __init__(self, data, allow_tag18_top):
        self.b = bytes(data)
        self.i = 0
        self.allow_tag18_top = allow_tag18_top

    def need(self, n):
        if self.i + n > len(self.b):
            raise CBORError("truncated")
        s = self.b[self.i:self.i + n]
        self.i += n
        return s

    def arg(self, info):
        if info < 24:
            return info
        if info == 24:
            v = self.need(1)[0]
            if v < 24:
                raise CBORError("not shortest form")
            return v
        if info == 25:
            v = struct.unpack(">H", self.need(2))[0]
            if v < 1 << 8:
                raise CBORError("not shortest form")
            return v
        if info == 26:
            v = struct.unpack(">I", self.need(4))[0]
            if v < 1 << 16:
                raise CBORError("not shortest form")
            return v
        if info == 27:
            v = struct.unpack(">Q", self.need(8))[0]
            if v < 1 << 32:
                raise CBORError("not shortest form")
            return v
        if info == 31:
            raise CBORError("indefinite length")
        raise CBORError("reserved additional info")

    def item(self, depth):
        if depth > MAX_DEPTH:
            raise CBORError("nesting too deep")
        ib = self.need(1)[0]
        major, info = ib >> 5, ib & 31
        if major == 7:
            if ib == 0xF4:
                return False
            if ib == 0xF5:
                return True
            if ib == 0xF6:
                return None
            raise CBORError("float or simple value 0x%02x" % ib)
        n = self.arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return self.need(n)
        if major == 3:
            try:
                return self.need(n).decode("utf-8")
            except UnicodeDecodeError:
                raise CBORError("invalid UTF-8")
        if major == 4:
            if n > MAX_ARRAY:
                raise CBORError("array too long")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if n > MAX_MAP:
                raise CBORError("map too large")
            out = {}
            prev = None
            for _ in range(n):
                ks = self.i
                k = self.item(depth + 1)
                kb = self.b[ks:self.i]
                if prev is not None and kb <= prev:
                    raise CBORError("map keys not sorted or duplicate")
                prev = kb
                if not isinstance(k, (int, str)) or isinstance(k, bool):
                    raise CBORError("map key type")
                out[k] = self.item(depth + 1)
            return out
        if major == 6:
            if not (depth == 0 and self.allow_tag18_top and n == 18):
                raise CBORError("tag %d not allowed here" % n)
            return Tag(n, self.item(depth + 1))
        raise CBORError("bad major type")


def decode(data, allow_tag18=False):
    """Strictly decode one deterministic CBOR item; no trailing bytes."""
    d = _Decoder(data, allow_tag18)
    v = d.item(0)
    if d.i != len(d.b):
        raise CBORError("trailing bytes")
    # Belt and braces: re-encode and compare (section 2: decode, re-encode, compare).
    if encode(v) != bytes(data):
        raise CBORError("not canonical")
    return v
