package seeds

import (
	"strings"

	"github.com/miekg/dns"
)

// dname is a domain name as its wire labels, leftmost first, with ASCII
// letters lowered: the form RFC 4034 6.1 orders and compares. The root is
// the empty dname. Escapes in presentation format are resolved, so
// "a\.b.test." has two labels and "\065.test." equals "a.test.".
type dname []string

// parseName converts a presentation-format name (a missing final dot is
// added) to a dname; ok is false for a name that is not a domain name.
func parseName(s string) (dname, bool) {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(s), buf[:], 0, nil, false)
	if err != nil {
		return nil, false
	}
	d := dname{}
	for off := 0; off < n && buf[off] != 0; {
		l := int(buf[off])
		if l > 63 || off+1+l > n {
			return nil, false
		}
		d = append(d, lowerASCII(buf[off+1:off+1+l]))
		off += 1 + l
	}
	return d, true
}

// mustName is parseName for names that came out of a parsed message or a
// validated config. A name that does not parse becomes one with a label
// longer than 63 octets, which equals, and is under, no real name.
func mustName(s string) dname {
	d, ok := parseName(s)
	if !ok {
		return dname{strings.Repeat("?", 64)}
	}
	return d
}

func lowerASCII(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// compare orders d and o canonically (RFC 4034 6.1): label by label from the
// right, each label as a string of lowered octets, a name before its
// descendants.
func (d dname) compare(o dname) int {
	for i, j := len(d)-1, len(o)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(d[i], o[j]); c != 0 {
			return c
		}
	}
	switch {
	case len(d) < len(o):
		return -1
	case len(d) > len(o):
		return 1
	}
	return 0
}

func (d dname) equal(o dname) bool { return d.compare(o) == 0 }

// under reports whether d is parent or a name below it.
func (d dname) under(parent dname) bool {
	if len(d) < len(parent) {
		return false
	}
	return d[len(d)-len(parent):].equal(parent)
}

// strictlyUnder reports whether d is a name below parent, not parent itself.
func (d dname) strictlyUnder(parent dname) bool {
	return len(d) > len(parent) && d.under(parent)
}

// suffix is the ancestor of d (or d itself) with n labels.
func (d dname) suffix(n int) dname {
	if n >= len(d) {
		return d
	}
	if n < 0 {
		n = 0
	}
	return d[len(d)-n:]
}

// child is d with label in front: "*" and "site.test." make "*.site.test.".
func (d dname) child(label string) dname {
	return append(dname{label}, d...)
}

// commonAncestor is the longest name that both d and o are under.
func (d dname) commonAncestor(o dname) dname {
	n := 0
	for n < len(d) && n < len(o) && d[len(d)-1-n] == o[len(o)-1-n] {
		n++
	}
	return d.suffix(n)
}

// wire is d in uncompressed wire format with lowered letters: the input of
// NSEC3 hashing (RFC 5155 5) and a map key.
func (d dname) wire() []byte {
	var b []byte
	for _, l := range d {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// String is d in presentation format, for messages.
func (d dname) String() string {
	if len(d) == 0 {
		return "."
	}
	var b strings.Builder
	for _, l := range d {
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c <= ' ' || c >= 0x7f:
				b.WriteByte('\\')
				b.WriteByte('0' + c/100)
				b.WriteByte('0' + c/10%10)
				b.WriteByte('0' + c%10)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('.')
	}
	return b.String()
}
