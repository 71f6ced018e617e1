"""A small parser and printer for CBOR diagnostic notation (RFC 8949
section 8), the subset the vectors use: unsigned and negative integers,
"text", h'hex', arrays, maps, true/false/null, tags N(x), and the `_`
indefinite-length marker (kept so that the bytes can be rebuilt)."""

import dcbor


class Indef(list):
    """An indefinite-length array; IndefMap for maps."""


class IndefMap(dict):
    pass


def parse(s):
    p = _P(s)
    v = p.value()
    p.ws()
    if p.i != len(s):
        raise ValueError("edn: trailing text at %d" % p.i)
    return v


class _P:
    def __init__(self, s):
        self.s, self.i = s, 0

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\n\r":
            self.i += 1

    def peek(self):
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def eat(self, c):
        if self.peek() != c:
            raise ValueError("edn: want %r at %d in %r" % (c, self.i, self.s[:80]))
        self.i += 1

    def value(self):
        c = self.peek()
        if c == "{":
            self.i += 1
            m = {}
            if self.peek() == "_":
                self.i += 1
                m = IndefMap()
            keys = []
            while self.peek() != "}":
                k = self.value()
                self.eat(":")
                v = self.value()
                keys.append((k, v))
                if self.peek() == ",":
                    self.i += 1
            self.i += 1
            # Keep duplicates and order: a list of pairs behind a dict subclass.
            out = _Pairs(keys, indef=isinstance(m, IndefMap))
            return out
        if c == "[":
            self.i += 1
            a = []
            indef = False
            if self.peek() == "_":
                self.i += 1
                indef = True
            while self.peek() != "]":
                a.append(self.value())
                if self.peek() == ",":
                    self.i += 1
            self.i += 1
            return Indef(a) if indef else a
        if c == '"':
            j = self.i + 1
            out = []
            while self.s[j] != '"':
                if self.s[j] == "\\":
                    j += 1
                    esc = self.s[j]
                    if esc == "u":
                        out.append(chr(int(self.s[j + 1:j + 5], 16)))
                        j += 4
                    else:
                        out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/"}[esc])
                else:
                    out.append(self.s[j])
                j += 1
            self.i = j + 1
            return "".join(out)
        if self.s.startswith("h'", self.i):
            j = self.s.index("'", self.i + 2)
            b = bytes.fromhex(self.s[self.i + 2:j])
            self.i = j + 1
            return b
        for word, v in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return v
        j = self.i
        if self.s[j] == "-":
            j += 1
        while j < len(self.s) and self.s[j].isdigit():
            j += 1
        if j == self.i:
            raise ValueError("edn: unexpected %r at %d" % (self.s[self.i:self.i + 10], self.i))
        n = int(self.s[self.i:j])
        self.i = j
        if self.peek() == "(":
            self.i += 1
            v = self.value()
            self.eat(")")
            return dcbor.Tag(n, v)
        return n


class _Pairs(dict):
    """A map as written: pairs in order (duplicates kept)."""

    def __init__(self, pairs, indef=False):
        super().__init__()
        for k, v in pairs:
            self[_hashable(k)] = v
        self.pairs = pairs
        self.indef = indef


def _hashable(k):
    return k


def to_plain(v):
    """Diagnostic value to dcbor value (a dict with sorted encoding on output)."""
    if isinstance(v, _Pairs):
        return {to_plain(k): to_plain(x) for k, x in v.pairs}
    if isinstance(v, list):
        return [to_plain(x) for x in v]
    if isinstance(v, dcbor.Tag):
        return dcbor.Tag(v.tag, to_plain(v.value))
    return v


def is_deterministic_form(v):
    """False if the diagnostic text itself shows something dcbor cannot
    write as given (indefinite lengths, duplicate or unsorted keys)."""
    if isinstance(v, _Pairs):
        if v.indef:
            return False
        enc = [dcbor.encode(to_plain(k)) for k, _ in v.pairs]
        if enc != sorted(set(enc)):
            return False
        return all(is_deterministic_form(x) for _, x in v.pairs)
    if isinstance(v, Indef):
        return False
    if isinstance(v, list):
        return all(is_deterministic_form(x) for x in v)
    return True


def show(v):
    """Print a decoded dcbor value in diagnostic notation."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return "h'%s'" % v.hex()
    if isinstance(v, str):
        import json
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (show(k), show(x)) for k, x in v.items()) + "}"
    if isinstance(v, dcbor.Tag):
        return "%d(%s)" % (v.tag, show(v.value))
    raise ValueError(repr(v))
