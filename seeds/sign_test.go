package seeds

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Records signed in Go with miekg/dns, for the unit tests of the validator
// and the fuzz target. The end-to-end tests use zones signed by BIND
// (seedstest) instead.

// testKey is a zone key and its private half.
type testKey struct {
	dnskey *dns.DNSKEY
	priv   crypto.Signer
}

// newTestKey generates a zone key (flags 257) of algorithm alg for zone.
func newTestKey(tb testing.TB, zone string, alg uint8) testKey {
	tb.Helper()
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: dns.ZONE | dns.SEP, Protocol: 3, Algorithm: alg}
	bits := map[uint8]int{dns.RSASHA256: 2048, dns.ECDSAP256SHA256: 256, dns.ECDSAP384SHA384: 384, dns.ED25519: 256}[alg]
	priv, err := k.Generate(bits)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return testKey{dnskey: k, priv: priv.(crypto.Signer)}
}

// fixedTestKey is an Ed25519 zone key made from seed: the same key on every
// run, so that signed messages are the same bytes too (fuzz seeds).
func fixedTestKey(zone string, seed byte) testKey {
	priv := ed25519.NewKeyFromSeed(append(make([]byte, ed25519.SeedSize-1), seed))
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: dns.ZONE | dns.SEP, Protocol: 3, Algorithm: dns.ED25519,
		PublicKey: base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))}
	return testKey{dnskey: k, priv: priv}
}

// sign returns the RRSIG of k over rrset, valid from an hour before now to a
// day after.
func (k testKey) sign(tb testing.TB, now time.Time, rrset ...dns.RR) *dns.RRSIG {
	tb.Helper()
	return k.signWindow(tb, now.Add(-time.Hour), now.Add(24*time.Hour), rrset...)
}

func (k testKey) signWindow(tb testing.TB, inception, expiration time.Time, rrset ...dns.RR) *dns.RRSIG {
	tb.Helper()
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Ttl: rrset[0].Header().Ttl},
		KeyTag:     k.dnskey.KeyTag(),
		SignerName: k.dnskey.Hdr.Name,
		Algorithm:  k.dnskey.Algorithm,
		Inception:  uint32(inception.Unix()),
		Expiration: uint32(expiration.Unix()),
	}
	if err := sig.Sign(k.priv, rrset); err != nil {
		tb.Fatalf("sign %v: %v", rrset[0].Header(), err)
	}
	return sig
}

// mustRR parses one record in zone-file text.
func mustRR(tb testing.TB, s string) dns.RR {
	tb.Helper()
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return rr
}

// keysOf is a keysFunc that knows one zone's keys and no other.
func keysOf(zone string, keys ...*dns.DNSKEY) keysFunc {
	zk := &zoneKeys{zone: mustName(zone), keys: tagKeys(keys)}
	return func(z dname) (*zoneKeys, error) {
		if !z.equal(zk.zone) {
			return nil, ErrNoTrustAnchor
		}
		return zk, nil
	}
}

// reply is an answer message for (name, qtype) with the given sections.
func reply(name string, qtype uint16, rcode int, answer, ns []dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Response = true
	m.Rcode = rcode
	m.Answer = answer
	m.Ns = ns
	return m
}
