package seeds

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ledgergate/ledgergate/seeds/seedstest"
)

func TestWindow(t *testing.T) {
	t.Parallel()
	const hour = 3600
	// 2106-02-07T06:28:16Z is 2^32 seconds after the epoch: the serial clock
	// wraps there, and RFC 1982 arithmetic must not care.
	wrap := time.Unix(1<<32, 0)
	cases := []struct {
		name                  string
		now                   time.Time
		inception, expiration int64 // seconds relative to now
		want                  error
		left                  uint32
	}{
		{"inside", time.Unix(1_700_000_000, 0), -hour, hour, nil, hour},
		{"expires now", time.Unix(1_700_000_000, 0), -hour, 0, nil, 0},
		{"expired", time.Unix(1_700_000_000, 0), -2 * hour, -1, ErrSignatureExpired, 0},
		{"incepts now", time.Unix(1_700_000_000, 0), 0, hour, nil, hour},
		{"not yet valid", time.Unix(1_700_000_000, 0), 1, hour, ErrSignatureNotYetValid, 0},
		{"across the wrap", wrap.Add(100 * time.Second), -hour, hour, nil, hour},
		{"expired across the wrap", wrap.Add(100 * time.Second), -2 * hour, -110, ErrSignatureExpired, 0},
		{"not yet valid across the wrap", wrap.Add(-100 * time.Second), 200, hour, ErrSignatureNotYetValid, 0},
		{"68 years is the horizon", time.Unix(1_700_000_000, 0), -hour, 1<<31 - 1, nil, 1<<31 - 1},
		{"past the horizon is the past", time.Unix(1_700_000_000, 0), -hour, 1 << 31, ErrSignatureExpired, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := c.now.Unix()
			sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: "a.test."}, TypeCovered: dns.TypeA,
				Inception: uint32(now + c.inception), Expiration: uint32(now + c.expiration)}
			left, err := newValidation(c.now).window(sig)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("window: %v, want %v", err, c.want)
			}
			if err == nil && left != c.left {
				t.Errorf("left = %d, want %d", left, c.left)
			}
		})
	}
}

// TestVerify checks single RRset validation: each case changes the records,
// the signatures or the keys of a valid RRset.
func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	p384 := newTestKey(t, "site.test.", dns.ECDSAP384SHA384)
	for _, alg := range []uint8{dns.RSASHA256, dns.ECDSAP256SHA256, dns.ED25519} {
		t.Run(fmt.Sprintf("alg%d", alg), func(t *testing.T) {
			t.Parallel()
			k := newTestKey(t, "site.test.", alg)
			other := newTestKey(t, "site.test.", alg)
			rrset := func() []dns.RR {
				return []dns.RR{mustRR(t, "gw1.site.test. 300 IN A 192.0.2.1"), mustRR(t, "GW1.site.test. 300 IN A 192.0.2.2")}
			}
			good := k.sign(t, now, rrset()...)
			cases := []struct {
				name string
				edit func(rrs []dns.RR, sigs []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY)
				want error
				ttl  uint32
			}{
				{"valid", nil, nil, 300},
				{"records in another order", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					slices.Reverse(rrs)
					return rrs, s, nil
				}, nil, 300},
				{"TTL above the original TTL", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					rrs[0].Header().Ttl, rrs[1].Header().Ttl = 86400, 86400
					return rrs, s, nil
				}, nil, 300},
				{"TTL capped by the signature's lifetime", func(rrs []dns.RR, _ []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, []*dns.RRSIG{k.signWindow(t, now.Add(-time.Hour), now.Add(time.Minute), rrs...)}, nil
				}, nil, 60},
				{"changed record", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					rrs[1] = mustRR(t, "gw1.site.test. 300 IN A 203.0.113.66")
					return rrs, s, nil
				}, ErrBogusSignature, 0},
				{"record added", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return append(rrs, mustRR(t, "gw1.site.test. 300 IN A 203.0.113.66")), s, nil
				}, ErrBogusSignature, 0},
				{"record removed", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs[:1], s, nil
				}, ErrBogusSignature, 0},
				{"signed by another key of the zone", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, []*dns.RRSIG{other.sign(t, now, rrs...)}, nil
				}, ErrBogusSignature, 0},
				{"signer is another zone", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					s[0].SignerName = "test."
					return rrs, s, nil
				}, ErrMissingSignature, 0},
				{"labels above the owner's", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					s[0].Labels = 4
					return rrs, s, nil
				}, ErrBogusSignature, 0},
				{"RRSIG for another type", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					s[0].TypeCovered = dns.TypeAAAA
					return rrs, s, nil
				}, ErrMissingSignature, 0},
				{"no RRSIG", func(rrs []dns.RR, _ []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, nil, nil
				}, ErrMissingSignature, 0},
				{"expired", func(rrs []dns.RR, _ []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, []*dns.RRSIG{k.signWindow(t, now.Add(-2*time.Hour), now.Add(-time.Hour), rrs...)}, nil
				}, ErrSignatureExpired, 0},
				{"not yet valid", func(rrs []dns.RR, _ []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, []*dns.RRSIG{k.signWindow(t, now.Add(time.Hour), now.Add(2*time.Hour), rrs...)}, nil
				}, ErrSignatureNotYetValid, 0},
				{"expired and valid", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, append([]*dns.RRSIG{k.signWindow(t, now.Add(-2*time.Hour), now.Add(-time.Hour), rrs...)}, s...), nil
				}, nil, 300},
				{"unsupported algorithm", func(rrs []dns.RR, _ []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, []*dns.RRSIG{p384.sign(t, now, rrs...)}, []*dns.DNSKEY{k.dnskey, p384.dnskey}
				}, ErrUnsupportedAlgorithm, 0},
				{"unsupported and supported", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return rrs, append([]*dns.RRSIG{p384.sign(t, now, rrs...)}, s...), []*dns.DNSKEY{k.dnskey, p384.dnskey}
				}, nil, 300},
				{"records of two types", func(rrs []dns.RR, s []*dns.RRSIG) ([]dns.RR, []*dns.RRSIG, []*dns.DNSKEY) {
					return append(rrs, mustRR(t, "gw1.site.test. 300 IN AAAA 2001:db8::1")), s, nil
				}, ErrBadAnswer, 0},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					rrs, sigs, keys := rrset(), []*dns.RRSIG{dns.Copy(good).(*dns.RRSIG)}, []*dns.DNSKEY(nil)
					if c.edit != nil {
						rrs, sigs, keys = c.edit(rrs, sigs)
					}
					if keys == nil {
						keys = []*dns.DNSKEY{k.dnskey}
					}
					v := newValidation(now)
					res, err := v.verify(rrs, sigs, &zoneKeys{zone: mustName("site.test."), keys: tagKeys(keys)})
					if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
						t.Fatalf("verify: %v, want %v", err, c.want)
					}
					if err == nil && res.ttl != c.ttl {
						t.Errorf("TTL = %d, want %d", res.ttl, c.ttl)
					}
				})
			}
		})
	}
}

// TestVerifyLimits runs the KeyTrap zone's records (RSA keys sharing one tag,
// RRSIGs that verify with none) through verify and counts the work.
func TestVerifyLimits(t *testing.T) {
	t.Parallel()
	z := seedstest.KeyTrapZone(t, t.TempDir(), "site.test.", 50)
	www := mustName("www.site.test.")
	rrset := rrsetOf(z.RRs, www, dns.TypeA)
	sigs := sigsFor(z.RRs, www, dns.TypeA)
	if len(rrset) != 1 || len(sigs) != 50 {
		t.Fatalf("KeyTrap zone: %d records, %d RRSIGs", len(rrset), len(sigs))
	}
	cases := []struct {
		name  string
		keys  int // how many of the colliding keys the zone has
		sigs  int
		left  int // budget of the lookup
		want  error
		tried int
	}{
		{"every key against every signature", 50, 50, MaxVerificationsPerLookup, ErrKeyTrap, MaxVerificationsPerRRset},
		{"one signature, many keys with its tag", 50, 1, MaxVerificationsPerLookup, ErrKeyTrap, MaxKeysPerTag},
		{"few keys and signatures: bogus", 1, 3, MaxVerificationsPerLookup, ErrBogusSignature, 3},
		{"up to the per-tag limit: bogus", MaxKeysPerTag, 1, MaxVerificationsPerLookup, ErrBogusSignature, MaxKeysPerTag},
		{"lookup budget spent", 1, 3, 2, ErrKeyTrap, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newValidation(time.Now())
			v.left = c.left
			_, err := v.verify(rrset, sigs[:c.sigs], &zoneKeys{zone: mustName(z.Origin), keys: tagKeys(z.DNSKEY[:c.keys])})
			if !errors.Is(err, c.want) {
				t.Errorf("verify: %v, want %v", err, c.want)
			}
			if v.tried != c.tried {
				t.Errorf("%d verifications, want %d", v.tried, c.tried)
			}
		})
	}
}

// TestKeysFrom validates a DNSKEY RRset against DS records and anchors.
func TestKeysFrom(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ksk := newTestKey(t, "site.test.", dns.ECDSAP256SHA256)
	zsk := newTestKey(t, "site.test.", dns.ECDSAP256SHA256)
	zsk.dnskey.Flags = dns.ZONE
	keys := []dns.RR{ksk.dnskey, zsk.dnskey}
	signed := reply("site.test.", dns.TypeDNSKEY, dns.RcodeSuccess, append(keys, ksk.sign(t, now, keys...)), nil)
	byZSK := reply("site.test.", dns.TypeDNSKEY, dns.RcodeSuccess, append(keys, zsk.sign(t, now, keys...)), nil)
	unsigned := reply("site.test.", dns.TypeDNSKEY, dns.RcodeSuccess, keys, nil)
	empty := reply("site.test.", dns.TypeDNSKEY, dns.RcodeSuccess, nil, nil)
	badDigest := ksk.dnskey.ToDS(dns.SHA256)
	badDigest.Digest = "00" + badDigest.Digest[2:]
	sha1 := ksk.dnskey.ToDS(dns.SHA1)

	cases := []struct {
		name    string
		resp    *dns.Msg
		ds      []*dns.DS
		trusted []*dns.DNSKEY
		want    error
	}{
		{"DS SHA-256", signed, []*dns.DS{ksk.dnskey.ToDS(dns.SHA256)}, nil, nil},
		{"DS SHA-384", signed, []*dns.DS{ksk.dnskey.ToDS(dns.SHA384)}, nil, nil},
		{"DNSKEY anchor", signed, nil, []*dns.DNSKEY{ksk.dnskey}, nil},
		{"a bad DS and a good one", signed, []*dns.DS{badDigest, ksk.dnskey.ToDS(dns.SHA256)}, nil, nil},
		{"digest mismatch", signed, []*dns.DS{badDigest}, nil, ErrDSMismatch},
		{"DS of another key", signed, []*dns.DS{newTestKey(t, "site.test.", dns.ECDSAP256SHA256).dnskey.ToDS(dns.SHA256)}, nil, ErrDSMismatch},
		{"DNSKEY anchor of another key", signed, nil, []*dns.DNSKEY{zsk.dnskey}, ErrBogusSignature},
		{"not signed by the DS's key", byZSK, []*dns.DS{ksk.dnskey.ToDS(dns.SHA256)}, nil, ErrBogusSignature},
		{"SHA-1 DS only", signed, []*dns.DS{sha1}, nil, ErrUnsupportedAlgorithm},
		{"stripped RRSIG", unsigned, []*dns.DS{ksk.dnskey.ToDS(dns.SHA256)}, nil, ErrMissingSignature},
		{"no DNSKEY", empty, []*dns.DS{ksk.dnskey.ToDS(dns.SHA256)}, nil, ErrDSMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			zk, err := newValidation(now).keysFrom(c.resp, mustName("site.test."), c.ds, c.trusted)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("keysFrom: %v, want %v", err, c.want)
			}
			if err == nil && len(zk.keys) != 2 {
				t.Errorf("%d zone keys, want 2", len(zk.keys))
			}
		})
	}
}

// TestWildcard: an answer synthesized from *.w.site.test. is accepted only
// with the proof that the name asked for does not exist.
func TestWildcard(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	k := fixedTestKey("site.test.", 1)
	keys := keysOf("site.test.", k.dnskey)
	wild := mustRR(t, "*.w.site.test. 300 IN A 192.0.2.7")
	sig := k.sign(t, now, wild)
	expanded := mustRR(t, "a.w.site.test. 300 IN A 192.0.2.7")
	esig := dns.Copy(sig).(*dns.RRSIG)
	esig.Hdr.Name = "a.w.site.test."
	signed := func(rr dns.RR) []dns.RR { return []dns.RR{rr, k.sign(t, now, rr)} }

	covering := signed(mustRR(t, "*.w.site.test. 300 IN NSEC x.site.test. A RRSIG NSEC"))
	notCovering := signed(mustRR(t, "site.test. 300 IN NSEC *.w.site.test. NS SOA RRSIG NSEC DNSKEY"))
	nsec3 := signed(&dns.NSEC3{Hdr: dns.RR_Header{Name: "00000000000000000000000000000000.site.test.", Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300},
		Hash: dns.SHA1, HashLength: 20, NextDomain: "VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV", TypeBitMap: []uint16{dns.TypeA}})

	cases := []struct {
		name string
		ns   []dns.RR
		want error
	}{
		{"NSEC proof", covering, nil},
		{"NSEC3 proof", nsec3, nil},
		{"no proof", nil, ErrNoDenialProof},
		{"NSEC that does not cover the name", notCovering, ErrNoDenialProof},
		{"unsigned proof", covering[:1], ErrNoDenialProof},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := reply("a.w.site.test.", dns.TypeA, dns.RcodeSuccess, []dns.RR{expanded, esig}, c.ns)
			rrs, err := newValidation(now).answer(resp, mustName("a.w.site.test."), dns.TypeA, keys)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("answer: %v, want %v", err, c.want)
			}
			if err == nil && (len(rrs) != 1 || rrs[0].Header().Name != "a.w.site.test.") {
				t.Errorf("answer = %v", rrs)
			}
		})
	}
}
