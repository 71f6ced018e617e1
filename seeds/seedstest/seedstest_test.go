package seedstest_test

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ledgergate/ledgergate/seeds/seedstest"
)

// records is a small seed zone: an address, an SRV and TXT for discovery, a
// CNAME, an empty non-terminal (deep.) and an RRset too big for UDP.
func records() []string {
	rrs := []string{
		"www A 192.0.2.1",
		"_ledgergate._tcp SRV 10 5 8883 gw1",
		"gw1 A 192.0.2.10",
		`seeds TXT "v=lg1 gw1.test."`,
		"alias CNAME www",
		"a.b.deep A 192.0.2.3",
	}
	for i := range 30 {
		rrs = append(rrs, fmt.Sprintf(`big TXT "%03d %s"`, i, strings.Repeat("x", 100)))
	}
	return rrs
}

func TestSignAndServe(t *testing.T) {
	t.Parallel()
	for _, alg := range []uint8{dns.RSASHA256, dns.ECDSAP256SHA256, dns.ED25519} {
		for _, nsec3 := range []bool{false, true} {
			t.Run(fmt.Sprintf("alg%d/nsec3=%v", alg, nsec3), func(t *testing.T) {
				t.Parallel()
				z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{
					Origin: "test", Records: records(), Algorithm: alg,
					NSEC3: nsec3, NSEC3Salt: "ab12", NSEC3Iterations: 5,
				})
				if len(z.DNSKEY) != 2 || z.DNSKEY[0].Algorithm != alg {
					t.Fatalf("DNSKEY = %v, want a KSK and a ZSK of algorithm %d", z.DNSKEY, alg)
				}
				s := seedstest.Serve(t, z)

				for _, q := range []struct {
					name  string
					qtype uint16
				}{
					{"www.test.", dns.TypeA},
					{"_ledgergate._tcp.test.", dns.TypeSRV},
					{"seeds.test.", dns.TypeTXT},
					{"test.", dns.TypeDNSKEY},
					{"alias.test.", dns.TypeA},
				} {
					m := query(t, "udp", s.Addr(), q.name, q.qtype)
					if m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) < 2 {
						t.Fatalf("%s %s: want a signed authoritative answer, got\n%v", q.name, dns.TypeToString[q.qtype], m)
					}
					verify(t, m.Answer, z.DNSKEY)
				}

				nodata := query(t, "udp", s.Addr(), "www.test.", dns.TypeAAAA)
				if nodata.Rcode != dns.RcodeSuccess || len(nodata.Answer) != 0 {
					t.Fatalf("NODATA: got\n%v", nodata)
				}
				verify(t, nodata.Ns, z.DNSKEY)
				checkDenial(t, nodata.Ns, "www.test.", "", "")

				ent := query(t, "udp", s.Addr(), "deep.test.", dns.TypeA)
				if ent.Rcode != dns.RcodeSuccess || len(ent.Answer) != 0 {
					t.Fatalf("empty non-terminal: got\n%v", ent)
				}
				verify(t, ent.Ns, z.DNSKEY)

				nx := query(t, "udp", s.Addr(), "no.such.test.", dns.TypeA)
				if nx.Rcode != dns.RcodeNameError {
					t.Fatalf("NXDOMAIN: got\n%v", nx)
				}
				verify(t, nx.Ns, z.DNSKEY)
				checkDenial(t, nx.Ns, "no.such.test.", "test.", "such.test.")
			})
		}
	}
}

func TestTCPFallback(t *testing.T) {
	t.Parallel()
	z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "test.", Records: records()})
	s := seedstest.Serve(t, z)

	udp := query(t, "udp", s.Addr(), "big.test.", dns.TypeTXT)
	if !udp.Truncated {
		t.Fatalf("UDP answer of %d records is not truncated", len(udp.Answer))
	}
	tcp := query(t, "tcp", s.Addr(), "big.test.", dns.TypeTXT)
	if tcp.Truncated || len(tcp.Answer) != 31 {
		t.Fatalf("TCP answer: truncated=%v, %d records, want 30 TXT and 1 RRSIG", tcp.Truncated, len(tcp.Answer))
	}
	verify(t, tcp.Answer, z.DNSKEY)
	if n := s.Queries(); n != 2 {
		t.Errorf("Queries() = %d, want 2", n)
	}
}

func TestDelegation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "site.test.", Records: []string{"www A 192.0.2.7"}})
	parent := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "test.", Children: []*seedstest.Signed{child}})

	if len(child.DS) != 1 || child.DS[0].DigestType != dns.SHA256 {
		t.Fatalf("child DS = %v, want one SHA-256 DS", child.DS)
	}
	anchor, err := dns.NewRR(child.Anchor)
	if err != nil || anchor.String() != child.DS[0].String() {
		t.Fatalf("Anchor %q does not parse to the DS: %v", child.Anchor, err)
	}
	ksk := slices.IndexFunc(child.DNSKEY, func(k *dns.DNSKEY) bool { return k.Flags&dns.SEP != 0 })
	if ksk < 0 || !strings.EqualFold(child.DNSKEY[ksk].ToDS(dns.SHA256).Digest, child.DS[0].Digest) {
		t.Fatalf("child DS does not match its KSK")
	}
	if !slices.ContainsFunc(parent.RRs, func(rr dns.RR) bool { return rr.String() == child.DS[0].String() }) {
		t.Fatalf("the child's DS is not in the parent zone")
	}

	t.Run("parent only", func(t *testing.T) {
		s := seedstest.Serve(t, parent)
		m := query(t, "udp", s.Addr(), "www.site.test.", dns.TypeA)
		if m.Authoritative || len(m.Answer) != 0 || !hasType(m.Ns, dns.TypeNS) || !hasType(m.Extra, dns.TypeA) {
			t.Fatalf("want a referral with glue, got\n%v", m)
		}
		verify(t, m.Ns, parent.DNSKEY) // the DS and its RRSIG; NS is not signed at a cut
		if !hasType(m.Ns, dns.TypeDS) {
			t.Fatalf("referral without DS:\n%v", m)
		}
	})
	t.Run("both", func(t *testing.T) {
		s := seedstest.Serve(t, parent, child)
		ds := query(t, "udp", s.Addr(), "site.test.", dns.TypeDS)
		if !ds.Authoritative || len(ds.Answer) != 2 || ds.Answer[0].String() != child.DS[0].String() {
			t.Fatalf("DS from the parent side: got\n%v", ds)
		}
		verify(t, ds.Answer, parent.DNSKEY)
		a := query(t, "udp", s.Addr(), "www.site.test.", dns.TypeA)
		if !a.Authoritative || len(a.Answer) != 2 {
			t.Fatalf("child answer: got\n%v", a)
		}
		verify(t, a.Answer, child.DNSKEY)
	})
}

func TestValidityWindow(t *testing.T) {
	t.Parallel()
	inception := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	expiration := inception.Add(24 * time.Hour)
	z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{
		Origin: "test.", Records: []string{"www A 192.0.2.1"},
		Inception: inception, Expiration: expiration,
	})
	for _, rr := range z.RRs {
		if sig, ok := rr.(*dns.RRSIG); ok {
			if int64(sig.Inception) != inception.Unix() || int64(sig.Expiration) != expiration.Unix() {
				t.Fatalf("RRSIG window %d..%d, want %d..%d", sig.Inception, sig.Expiration, inception.Unix(), expiration.Unix())
			}
			if sig.ValidityPeriod(time.Now()) {
				t.Fatalf("expired RRSIG is valid now: %v", sig)
			}
		}
	}
}

func TestTamper(t *testing.T) {
	t.Parallel()
	z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "test.", Records: []string{"www A 192.0.2.1"}})
	s := seedstest.Serve(t, z)
	s.Tamper(func(m *dns.Msg) {
		m.AuthenticatedData = true
		m.Answer = slices.DeleteFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeRRSIG })
	})
	m := query(t, "udp", s.Addr(), "www.test.", dns.TypeA)
	if !m.AuthenticatedData || hasType(m.Answer, dns.TypeRRSIG) {
		t.Fatalf("tampered answer: got\n%v", m)
	}
	s.Tamper(nil)
	m = query(t, "udp", s.Addr(), "www.test.", dns.TypeA)
	if m.AuthenticatedData || !hasType(m.Answer, dns.TypeRRSIG) {
		t.Fatalf("answer after Tamper(nil): got\n%v", m)
	}
	if n := s.Queries(); n != 2 {
		t.Errorf("Queries() = %d, want 2", n)
	}
}

func TestKeyTrapZone(t *testing.T) {
	t.Parallel()
	const n = 50
	start := time.Now()
	z := seedstest.KeyTrapZone(t, t.TempDir(), "trap.test.", n)
	t.Logf("built %d colliding keys in %v", n, time.Since(start))

	tag := z.DNSKEY[0].KeyTag()
	for _, k := range z.DNSKEY {
		if k.KeyTag() != tag {
			t.Fatalf("key tags %d and %d differ", k.KeyTag(), tag)
		}
	}
	if len(z.DNSKEY) != n || z.DS[0].KeyTag != tag || !strings.EqualFold(z.DNSKEY[0].ToDS(dns.SHA256).Digest, z.DS[0].Digest) {
		t.Fatalf("want %d keys and a DS for the first: %d keys, DS %v", n, len(z.DNSKEY), z.DS)
	}

	s := seedstest.Serve(t, z)
	m := query(t, "tcp", s.Addr(), "trap.test.", dns.TypeDNSKEY)
	if len(m.Answer) != 2*n {
		t.Fatalf("DNSKEY answer has %d records, want %d keys and %d RRSIGs", len(m.Answer), n, n)
	}
	var rrset []dns.RR
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeDNSKEY {
			rrset = append(rrset, rr)
		}
	}
	for _, rr := range m.Answer {
		sig, ok := rr.(*dns.RRSIG)
		if !ok {
			continue
		}
		if sig.KeyTag != tag {
			t.Fatalf("RRSIG names tag %d, want %d", sig.KeyTag, tag)
		}
		for _, k := range z.DNSKEY {
			// The RSA operation must run and fail, not be skipped as malformed.
			if err := sig.Verify(k, rrset); !errors.Is(err, rsa.ErrVerification) {
				t.Fatalf("Verify = %v, want %v", err, rsa.ErrVerification)
			}
		}
	}
}

func query(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, true)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return m
}

// verify checks that every RRset in rrs is covered by an RRSIG that verifies
// with one of keys and is valid now. This checks the fixture with miekg/dns,
// not ledgergate's validator.
func verify(t *testing.T, rrs []dns.RR, keys []*dns.DNSKEY) {
	t.Helper()
	sets := map[[2]string][]dns.RR{}
	var sigs []*dns.RRSIG
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.RRSIG:
			sigs = append(sigs, rr)
		case *dns.NS: // delegation NS is not signed (RFC 4035 2.2)
		default:
			k := [2]string{strings.ToLower(rr.Header().Name), dns.TypeToString[rr.Header().Rrtype]}
			sets[k] = append(sets[k], rr)
		}
	}
	for k, set := range sets {
		verified := false
		for _, sig := range sigs {
			if !strings.EqualFold(sig.Hdr.Name, k[0]) || dns.TypeToString[sig.TypeCovered] != k[1] {
				continue
			}
			for _, key := range keys {
				if key.KeyTag() == sig.KeyTag && sig.Verify(key, set) == nil && sig.ValidityPeriod(time.Now()) {
					verified = true
				}
			}
		}
		if !verified {
			t.Errorf("no valid RRSIG for %s %s", k[0], k[1])
		}
	}
}

// checkDenial checks that ns proves the denial with miekg/dns's own NSEC3
// matching and covering: for NODATA (ce == "") a record for name, for
// NXDOMAIN the closest encloser proof (NSEC3) or a covering NSEC.
func checkDenial(t *testing.T, ns []dns.RR, name, ce, nextCloser string) {
	t.Helper()
	var nsec []*dns.NSEC
	var nsec3 []*dns.NSEC3
	for _, rr := range ns {
		switch rr := rr.(type) {
		case *dns.NSEC:
			nsec = append(nsec, rr)
		case *dns.NSEC3:
			nsec3 = append(nsec3, rr)
		}
	}
	if !hasType(ns, dns.TypeSOA) || len(nsec)+len(nsec3) == 0 {
		t.Fatalf("denial of %s without SOA and NSEC/NSEC3:\n%v", name, ns)
	}
	match := func(n string) bool {
		return slices.ContainsFunc(nsec3, func(r *dns.NSEC3) bool { return r.Match(n) })
	}
	cover := func(n string) bool {
		return slices.ContainsFunc(nsec3, func(r *dns.NSEC3) bool { return r.Cover(n) })
	}
	switch {
	case len(nsec3) > 0 && ce == "":
		if !match(name) {
			t.Errorf("no NSEC3 matches %s", name)
		}
	case len(nsec3) > 0:
		if !match(ce) || !cover(nextCloser) || !cover("*."+ce) {
			t.Errorf("incomplete closest encloser proof for %s: %v", name, nsec3)
		}
	case ce == "":
		if !strings.EqualFold(nsec[0].Hdr.Name, name) || slices.Contains(nsec[0].TypeBitMap, dns.TypeAAAA) {
			t.Errorf("NSEC %v does not deny AAAA at %s", nsec[0], name)
		}
	default: // which NSEC covers what is left to the validator's tests
		if slices.ContainsFunc(nsec, func(r *dns.NSEC) bool { return strings.EqualFold(r.Hdr.Name, name) }) {
			t.Errorf("NSEC for %s in its NXDOMAIN: %v", name, nsec)
		}
	}
}

func hasType(rrs []dns.RR, t uint16) bool {
	return slices.ContainsFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype == t })
}
