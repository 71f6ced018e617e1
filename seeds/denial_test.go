package seeds

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testZoneNames is the zone the denial tables prove things about, with the
// types each name has (nil: an empty non-terminal):
var testZoneNames = map[string][]uint16{
	"site.test.":          {dns.TypeSOA, dns.TypeNS, dns.TypeDNSKEY, dns.TypeRRSIG},
	"alias.site.test.":    {dns.TypeCNAME, dns.TypeRRSIG},
	"b.site.test.":        nil,
	"a.b.site.test.":      {dns.TypeA, dns.TypeRRSIG},
	"child.site.test.":    {dns.TypeNS, dns.TypeDS, dns.TypeRRSIG}, // a signed delegation
	"gw1.site.test.":      {dns.TypeA, dns.TypeTXT, dns.TypeRRSIG},
	"insecure.site.test.": {dns.TypeNS}, // an unsigned delegation
	"wild.site.test.":     nil,
	"*.wild.site.test.":   {dns.TypeTXT, dns.TypeRRSIG},
}

// denialCases hold for NSEC and NSEC3 alike.
var denialCases = []struct {
	kind  denialKind
	name  string
	qtype uint16
	want  bool
}{
	{denyName, "nosuch.site.test.", dns.TypeA, true},
	{denyName, "a.nosuch.site.test.", dns.TypeA, true},
	{denyName, "zzz.gw1.site.test.", dns.TypeA, true},
	{denyName, "gw1.site.test.", dns.TypeA, false},        // exists
	{denyName, "b.site.test.", dns.TypeA, false},          // an empty non-terminal exists
	{denyName, "x.child.site.test.", dns.TypeA, false},    // below a delegation: the child's business
	{denyName, "x.insecure.site.test.", dns.TypeA, false}, // same, unsigned
	{denyName, "x.wild.site.test.", dns.TypeA, false},     // the wildcard answers for it
	{denyName, "nosuch.other.test.", dns.TypeA, false},    // another zone

	{denyType, "gw1.site.test.", dns.TypeAAAA, true},
	{denyType, "gw1.site.test.", dns.TypeA, false},
	{denyType, "site.test.", dns.TypeSRV, true},
	{denyType, "b.site.test.", dns.TypeA, true}, // an empty non-terminal has no types
	{denyType, "nosuch.site.test.", dns.TypeA, false},
	{denyType, "alias.site.test.", dns.TypeA, false}, // the CNAME answers
	{denyType, "alias.site.test.", dns.TypeCNAME, false},
	{denyType, "child.site.test.", dns.TypeDS, false},
	{denyType, "child.site.test.", dns.TypeA, false}, // the parent cannot say
	{denyType, "insecure.site.test.", dns.TypeDS, true},
	{denyType, "site.test.", dns.TypeDS, false}, // the apex's own record cannot deny its DS
	{denyType, "x.wild.site.test.", dns.TypeA, true},
	{denyType, "x.wild.site.test.", dns.TypeTXT, false},
}

// testNSECChain is the NSEC chain of testZoneNames.
func testNSECChain(t *testing.T) []*dns.NSEC {
	t.Helper()
	var names []dname
	for n, types := range testZoneNames {
		if types != nil {
			names = append(names, mustName(n))
		}
	}
	slices.SortFunc(names, dname.compare)
	var out []*dns.NSEC
	for i, n := range names {
		next := names[(i+1)%len(names)]
		types := append(slices.Clone(testZoneNames[n.String()]), dns.TypeNSEC)
		slices.Sort(types)
		out = append(out, &dns.NSEC{Hdr: dns.RR_Header{Name: n.String(), Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 300},
			NextDomain: next.String(), TypeBitMap: types})
	}
	return out
}

// testNSEC3Chain is the NSEC3 chain of testZoneNames, made with miekg/dns's
// hash (not ours), every record with the given flags.
func testNSEC3Chain(t *testing.T, salt string, iterations uint16, flags uint8) []*dns.NSEC3 {
	t.Helper()
	type hashed struct {
		hash  string
		types []uint16
	}
	var hs []hashed
	for n, types := range testZoneNames {
		hs = append(hs, hashed{dns.HashName(n, dns.SHA1, iterations, salt), types})
	}
	slices.SortFunc(hs, func(a, b hashed) int { return strings.Compare(a.hash, b.hash) })
	var out []*dns.NSEC3
	for i, h := range hs {
		types := slices.Clone(h.types)
		slices.Sort(types)
		out = append(out, &dns.NSEC3{Hdr: dns.RR_Header{Name: strings.ToLower(h.hash) + ".site.test.", Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300},
			Hash: dns.SHA1, Flags: flags, Iterations: iterations, SaltLength: uint8(len(salt) / 2), Salt: salt,
			HashLength: 20, NextDomain: hs[(i+1)%len(hs)].hash, TypeBitMap: types})
	}
	return out
}

func TestNSECProofs(t *testing.T) {
	t.Parallel()
	chain := testNSECChain(t)
	for _, c := range denialCases {
		q := denial{kind: c.kind, name: mustName(c.name), qtype: c.qtype}
		if got := nsecProves(chain, q); got != c.want {
			t.Errorf("%s: proven = %v, want %v", q, got, c.want)
		}
	}
}

func TestNSEC3Proofs(t *testing.T) {
	t.Parallel()
	for _, params := range []struct {
		salt string
		iter uint16
	}{{"", 0}, {"aabbccdd", 12}, {"01", 100}} {
		chain := testNSEC3Chain(t, params.salt, params.iter, 0)
		for _, c := range denialCases {
			q := denial{kind: c.kind, name: mustName(c.name), qtype: c.qtype}
			p, err := newValidation(time.Now()).newNSEC3Proof(chain, mustName("site.test."))
			if err != nil {
				t.Fatal(err)
			}
			got, why, err := p.proves(q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if got != c.want {
				t.Errorf("salt %q iterations %d: %s: proven = %v (%s), want %v", params.salt, params.iter, q, got, why, c.want)
			}
		}
	}

	// Opt-out (RFC 5155 6): a name between two hashes may be an unsigned
	// delegation. That proves "no DS" but not "no such name".
	chain := testNSEC3Chain(t, "", 0, 1)
	p, err := newValidation(time.Now()).newNSEC3Proof(chain, mustName("site.test."))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    denial
		want bool
	}{
		{denial{kind: denyType, name: mustName("unsigned.site.test."), qtype: dns.TypeDS}, true},
		{denial{kind: denyName, name: mustName("unsigned.site.test."), qtype: dns.TypeA}, false},
		{denial{kind: denyType, name: mustName("unsigned.site.test."), qtype: dns.TypeA}, false},
	} {
		if got, why, _ := p.proves(c.q); got != c.want {
			t.Errorf("opt-out: %s: proven = %v (%s), want %v", c.q, got, why, c.want)
		}
	}
}

// TestDeny runs signed proofs through deny: signatures, iterations, budget.
func TestDeny(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	k := fixedTestKey("site.test.", 2)
	zk := &zoneKeys{zone: mustName("site.test."), keys: tagKeys([]*dns.DNSKEY{k.dnskey})}
	sign := func(rrs ...dns.RR) []dns.RR {
		var out []dns.RR
		for _, rr := range rrs {
			out = append(out, rr, k.sign(t, now, rr))
		}
		return out
	}
	var nsecs, nsec3s, slow []dns.RR
	for _, n := range testNSECChain(t) {
		nsecs = append(nsecs, n)
	}
	for _, n := range testNSEC3Chain(t, "ab", 5, 0) {
		nsec3s = append(nsec3s, n)
	}
	for _, n := range testNSEC3Chain(t, "", 150, 0) {
		slow = append(slow, n)
	}
	tampered := sign(nsecs...)
	for _, rr := range tampered {
		if n, ok := rr.(*dns.NSEC); ok {
			n.NextDomain = "zzzz." + n.NextDomain
		}
	}
	nx := denial{kind: denyName, name: mustName("nosuch.site.test."), qtype: dns.TypeA}

	cases := []struct {
		name string
		auth []dns.RR
		q    denial
		want []error
	}{
		{"NSEC", sign(nsecs...), nx, nil},
		{"NSEC3", sign(nsec3s...), nx, nil},
		{"unsigned NSEC", nsecs, nx, []error{ErrNoDenialProof, ErrMissingSignature}},
		{"altered NSEC", tampered, nx, []error{ErrNoDenialProof, ErrBogusSignature}},
		{"NSEC3 with 150 iterations", sign(slow...), nx, []error{ErrInsecureNSEC3}},
		{"NSEC of another zone", sign(mustRR(t, "other.test. 300 IN NSEC z.other.test. A")), nx, []error{ErrNoDenialProof}},
		{"deep name: NSEC3 hashes bounded", sign(nsec3s...),
			denial{kind: denyName, name: mustName(strings.Repeat("x.", MaxNSEC3Hashes) + "site.test."), qtype: dns.TypeA},
			[]error{ErrKeyTrap}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The server's order of records is not ours to rely on.
			auth := slices.Clone(c.auth)
			rand.Shuffle(len(auth), func(i, j int) { auth[i], auth[j] = auth[j], auth[i] })
			err := newValidation(now).deny(auth, zk, c.q)
			if len(c.want) == 0 && err != nil {
				t.Fatalf("deny: %v", err)
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("deny: %v, want %v", err, w)
				}
			}
		})
	}
}

func TestCanonicalOrder(t *testing.T) {
	t.Parallel()
	// RFC 4034 6.1, in order.
	want := []string{`example.`, `a.example.`, `yljkjljk.a.example.`, `Z.a.example.`, `zABC.a.EXAMPLE.`,
		`z.example.`, `\001.z.example.`, `*.z.example.`, `\200.z.example.`}
	got := slices.Clone(want)
	rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	slices.SortFunc(got, func(a, b string) int { return mustName(a).compare(mustName(b)) })
	if !slices.Equal(got, want) {
		t.Errorf("sorted:\n%q\nwant\n%q", got, want)
	}
	for _, c := range []struct {
		a, b  string
		equal bool
	}{
		{"A.Example.", "a.example", true},
		{`\065.example.`, "a.example.", true},
		{`a\.b.example.`, "a.b.example.", false},
	} {
		if got := mustName(c.a).equal(mustName(c.b)); got != c.equal {
			t.Errorf("%s = %s: %v, want %v", c.a, c.b, got, c.equal)
		}
	}
	if _, ok := parseName(strings.Repeat("a", 64) + ".test."); ok {
		t.Error("a 64-octet label parsed")
	}
}

func TestNSEC3Hash(t *testing.T) {
	t.Parallel()
	// RFC 5155 Appendix A: salt aabbccdd, 12 iterations.
	p := &nsec3Proof{v: newValidation(time.Now()), salt: []byte{0xaa, 0xbb, 0xcc, 0xdd}, iter: 12, memo: map[string]string{}}
	for name, want := range map[string]string{
		"example.":      "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom",
		"a.example.":    "35mthgpgcu1qg68fab165klnsnk3dpvl",
		"ai.example.":   "gjeqe526plbf1g8mklp59enfd789njgi",
		"ns1.example.":  "2t7b4g4vsa5smi47k61mv5bv1a22bojr",
		"*.w.example.":  "r53bq7cc2uvmubfu5ocmm6pers9tk9en",
		"x.y.w.EXAMPLE": "2vptu5timamqttgl4luu9kg21e0aor3s",
	} {
		got, err := p.hash(mustName(name))
		if err != nil || got != strings.ToUpper(want) {
			t.Errorf("hash(%s) = %s, %v; want %s", name, got, err, strings.ToUpper(want))
		}
	}
}
