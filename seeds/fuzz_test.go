package seeds

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// maxFuzzInput caps fuzzed messages: more bytes only make runs slower.
const maxFuzzInput = 4096

// fuzzFixture is a zone signed with a fixed Ed25519 key at a fixed time, so
// that the seed messages are the same bytes on every run.
type fuzzFixture struct {
	now    time.Time
	key    testKey
	ds     *dns.DS
	qname  dname
	rrset  []dns.RR // the one A RRset the zone signs
	seeds  [][]byte // packed messages: the answer, a denial attempt, the DNSKEY RRset
	keysFn keysFunc
}

func newFuzzFixture(tb testing.TB) *fuzzFixture {
	tb.Helper()
	fx := &fuzzFixture{now: time.Unix(1_700_000_000, 0), key: fixedTestKey("site.test.", 7), qname: mustName("gw1.site.test.")}
	fx.ds = fx.key.dnskey.ToDS(dns.SHA256)
	fx.keysFn = keysOf("site.test.", fx.key.dnskey)
	fx.rrset = []dns.RR{mustRR(tb, "gw1.site.test. 300 IN A 192.0.2.1"), mustRR(tb, "gw1.site.test. 300 IN A 192.0.2.2")}
	sign := func(rrs ...dns.RR) []dns.RR { return append(rrs, fx.key.sign(tb, fx.now, rrs...)) }

	// The records the zone signs besides the A RRset say that gw1 exists
	// with A and TXT: nothing in them may prove NXDOMAIN or NODATA for A.
	nsec := mustRR(tb, "gw1.site.test. 300 IN NSEC site.test. A TXT RRSIG NSEC")
	nsec3 := &dns.NSEC3{Hdr: dns.RR_Header{Name: strings.ToLower(dns.HashName("gw1.site.test.", dns.SHA1, 0, "")) + ".site.test.",
		Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300}, Hash: dns.SHA1, HashLength: 20,
		NextDomain: dns.HashName("site.test.", dns.SHA1, 0, ""), TypeBitMap: []uint16{dns.TypeA, dns.TypeTXT, dns.TypeRRSIG}}
	keys := []dns.RR{fx.key.dnskey}

	for _, m := range []*dns.Msg{
		reply("gw1.site.test.", dns.TypeA, dns.RcodeSuccess, sign(fx.rrset...), nil),
		reply("gw1.site.test.", dns.TypeA, dns.RcodeNameError, nil, append(sign(nsec), sign(nsec3)...)),
		reply("gw1.site.test.", dns.TypeA, dns.RcodeSuccess, nil, append(sign(nsec), sign(nsec3)...)),
		reply("site.test.", dns.TypeDNSKEY, dns.RcodeSuccess, sign(keys...), nil),
	} {
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		fx.seeds = append(fx.seeds, b)
	}
	return fx
}

// check validates b as the answer to gw1.site.test. A and as the DNSKEY RRset
// of site.test. It fails if anything is accepted that the zone did not sign.
func (fx *fuzzFixture) check(t *testing.T, b []byte) (accepted bool) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return false
	}
	rrs, err := newValidation(fx.now).answer(m, fx.qname, dns.TypeA, fx.keysFn)
	switch {
	case err == nil:
		if !sameRRset(rrs, fx.rrset) {
			t.Fatalf("accepted an RRset the zone never signed:\n%v\nfrom\n%v", rrs, m)
		}
		accepted = true
	case errors.Is(err, ErrNoData) || errors.Is(err, ErrNXDomain):
		t.Fatalf("validated a denial the zone never signed: %v\nfrom\n%v", err, m)
	case !strings.HasPrefix(err.Error(), "seeds: "):
		t.Fatalf("error without the package prefix: %v", err)
	}
	zk, err := newValidation(fx.now).keysFrom(m, mustName("site.test."), []*dns.DS{fx.ds}, nil)
	if err == nil {
		if len(zk.keys) != 1 || !sameKey(zk.keys[0].key, fx.key.dnskey) {
			t.Fatalf("accepted a DNSKEY RRset the zone never signed:\n%v", m)
		}
		accepted = true
	}
	return accepted
}

// sameRRset reports whether a and b hold the same records, whatever their
// order, TTLs, duplicates and the case of their names.
func sameRRset(a, b []dns.RR) bool {
	norm := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			c := dns.Copy(rr)
			c.Header().Ttl = 0
			c.Header().Name = strings.ToLower(c.Header().Name)
			out = append(out, c.String())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

// FuzzValidate feeds arbitrary bytes, as a DNS answer, to the validator with
// a fixed key set: it must never panic and never accept anything but the
// RRset (or DNSKEY RRset) the key signed.
func FuzzValidate(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, s := range fx.seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		fx.check(t, b)
	})
}

// TestFuzzSeeds checks the fixture: the signed answer and DNSKEY RRset are
// accepted, the denials are not.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()
	fx := newFuzzFixture(t)
	for i, want := range []bool{true, false, false, true} {
		if got := fx.check(t, fx.seeds[i]); got != want {
			t.Errorf("seed %d: accepted = %v, want %v", i, got, want)
		}
	}
}
