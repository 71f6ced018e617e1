package seeds

import (
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// Limits against KeyTrap (CVE-2023-50387) and NSEC3 hash floods
// (CVE-2023-50868). A validator that tries every key with a colliding tag
// against every signature does keys×signatures expensive verifications;
// these bound the work an answer can ask for. Legitimate zones need far
// less: one signature per RRset, a handful of RRsets per lookup.
const (
	// MaxKeysPerTag is how many DNSKEYs sharing one key tag (and
	// algorithm) are tried for one RRSIG.
	MaxKeysPerTag = 4
	// MaxVerificationsPerRRset is how many signature verifications one
	// RRset may cost.
	MaxVerificationsPerRRset = 8
	// MaxVerificationsPerLookup is how many signature verifications one
	// lookup may cost, the chain of trust up to the anchor included.
	MaxVerificationsPerLookup = 32
	// MaxNSEC3Hashes is how many NSEC3 hashes one lookup may compute.
	MaxNSEC3Hashes = 64
	// MaxNSEC3Iterations is the most NSEC3 iterations accepted (RFC 9276
	// 3.2); more is insecure and refused with ErrInsecureNSEC3.
	MaxNSEC3Iterations = 100
)

// supportedAlgorithm: RSASHA256 (8), ECDSAP256SHA256 (13), ED25519 (15).
func supportedAlgorithm(alg uint8) bool {
	return alg == dns.RSASHA256 || alg == dns.ECDSAP256SHA256 || alg == dns.ED25519
}

// supportedDigest: DS digests SHA-256 (2) and SHA-384 (4).
func supportedDigest(t uint8) bool { return t == dns.SHA256 || t == dns.SHA384 }

// zoneKeys are the validated DNSKEYs of a zone: those that may verify its
// RRSIGs (zone flag, protocol 3, not revoked, a supported algorithm).
type zoneKeys struct {
	zone dname
	keys []taggedKey
}

type taggedKey struct {
	key *dns.DNSKEY
	tag uint16
}

func tagKeys(keys []*dns.DNSKEY) []taggedKey {
	out := make([]taggedKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, taggedKey{key: k, tag: k.KeyTag()})
	}
	return out
}

// usableKey reports whether k may verify RRSIGs: a zone key (RFC 4034
// 2.1.1) of protocol 3, not revoked (RFC 5011 3), of a supported algorithm.
func usableKey(k *dns.DNSKEY) bool {
	return k.Flags&dns.ZONE != 0 && k.Flags&dns.REVOKE == 0 && k.Protocol == 3 && supportedAlgorithm(k.Algorithm)
}

// validation is the state of one lookup's validation: the clock, what is left
// of the budget, and what was validated (for Result.Chain and Result.TTL).
type validation struct {
	now    time.Time
	left   int // signature verifications left in this lookup
	hashes int // NSEC3 hashes left in this lookup
	tried  int // signature verifications attempted, over all lookups

	links   map[Link]bool
	chain   []Link
	ttl     uint32 // smallest validated TTL
	haveTTL bool
}

func newValidation(now time.Time) *validation {
	v := &validation{now: now, links: map[Link]bool{}}
	v.reset()
	return v
}

// reset starts the budget of a new lookup.
func (v *validation) reset() {
	v.left = MaxVerificationsPerLookup
	v.hashes = MaxNSEC3Hashes
}

func (v *validation) link(l Link) {
	if !v.links[l] {
		v.links[l] = true
		v.chain = append(v.chain, l)
	}
}

func (v *validation) noteTTL(ttl uint32) {
	if !v.haveTTL || ttl < v.ttl {
		v.ttl, v.haveTTL = ttl, true
	}
}

// verified is what verifying an RRset established.
type verified struct {
	ttl uint32 // min(RR TTLs, original TTL, signature lifetime left)
	// wildcard is the closest encloser when the RRset was synthesized from
	// a wildcard (the RRSIG labels field is smaller than the owner's label
	// count, RFC 4035 5.3.4): the caller must prove that the owner does
	// not exist. Nil otherwise.
	wildcard dname
}

// verify checks that one of sigs, by zone, verifies rrset with one of keys at
// v.now (RFC 4035 5.3). rrset must be non-empty, one owner, type and class.
func (v *validation) verify(rrset []dns.RR, sigs []*dns.RRSIG, zk *zoneKeys) (verified, error) {
	h := rrset[0].Header()
	owner := mustName(h.Name)
	what := fmt.Sprintf("%s %s", dns.TypeToString[h.Rrtype], owner)
	// One RRset: one owner (compared canonically, then written alike, as
	// miekg/dns compares names byte by byte), one type, one class.
	set := make([]dns.RR, len(rrset))
	for i, rr := range rrset {
		if rh := rr.Header(); rh.Rrtype != h.Rrtype || rh.Class != h.Class || !mustName(rh.Name).equal(owner) {
			return verified{}, fmt.Errorf("%w: %s: records of several owners, types or classes", ErrBadAnswer, what)
		}
		set[i] = dns.Copy(rr)
		set[i].Header().Name = h.Name
	}
	labels := len(owner)
	if labels > 0 && owner[0] == "*" {
		labels-- // RFC 4034 3.1.3: the wildcard label is not counted
	}

	var (
		usable, unsupported, otherSigner, badLabels, noKey, bogus, trap bool
		timeErr                                                         error
		tries                                                           int
	)
sigs:
	for _, sig := range sigs {
		if sig.TypeCovered != h.Rrtype || sig.Hdr.Class != h.Class || !mustName(sig.Hdr.Name).equal(owner) {
			continue
		}
		switch {
		case !mustName(sig.SignerName).equal(zk.zone):
			otherSigner = true
			continue
		case !supportedAlgorithm(sig.Algorithm):
			unsupported = true
			continue
		case int(sig.Labels) > labels:
			badLabels = true
			continue
		}
		usable = true
		left, err := v.window(sig)
		if err != nil {
			timeErr = err
			continue
		}
		n := 0
		for _, k := range zk.keys {
			if k.tag != sig.KeyTag || k.key.Algorithm != sig.Algorithm {
				continue
			}
			if n == MaxKeysPerTag {
				trap = true // more colliding keys than we try; maybe another RRSIG
				continue sigs
			}
			if tries == MaxVerificationsPerRRset || v.left <= 0 {
				trap = true
				break sigs
			}
			n++
			tries++
			v.left--
			v.tried++
			if sig.Verify(k.key, set) != nil {
				bogus = true
				continue
			}
			ttl := min(sig.OrigTtl, left)
			for _, rr := range rrset {
				ttl = min(ttl, rr.Header().Ttl)
			}
			var wc dname
			if int(sig.Labels) < labels {
				wc = owner.suffix(int(sig.Labels))
			}
			v.noteTTL(ttl)
			v.link(Link{Step: "RRSIG", Name: owner.String(), Type: dns.TypeToString[h.Rrtype], Zone: zk.zone.String(),
				KeyTag: sig.KeyTag, Algorithm: sig.Algorithm, Until: v.now.Add(time.Duration(left) * time.Second).UTC().Truncate(time.Second)})
			return verified{ttl: ttl, wildcard: wc}, nil
		}
		if n == 0 {
			noKey = true
		}
	}

	switch {
	case trap:
		return verified{}, fmt.Errorf("%w: %s: gave up after %d signature verifications (at most %d keys per tag, %d per RRset, %d per lookup)",
			ErrKeyTrap, what, tries, MaxKeysPerTag, MaxVerificationsPerRRset, MaxVerificationsPerLookup)
	case bogus:
		return verified{}, fmt.Errorf("%w: %s: no RRSIG by %s verifies with its key", ErrBogusSignature, what, zk.zone)
	case timeErr != nil:
		return verified{}, timeErr
	case noKey:
		return verified{}, fmt.Errorf("%w: %s: RRSIG names a key %s does not have", ErrBogusSignature, what, zk.zone)
	case badLabels:
		return verified{}, fmt.Errorf("%w: %s: RRSIG labels field exceeds the owner's labels", ErrBogusSignature, what)
	case unsupported && !usable:
		return verified{}, fmt.Errorf("%w: %s: RRSIGs only of unsupported algorithms", ErrUnsupportedAlgorithm, what)
	case otherSigner:
		return verified{}, fmt.Errorf("%w: %s: no RRSIG by %s (signed by another zone)", ErrMissingSignature, what, zk.zone)
	}
	return verified{}, fmt.Errorf("%w: %s: no RRSIG", ErrMissingSignature, what)
}

// window checks the validity period of sig against v.now with RFC 1982
// serial arithmetic, as RFC 4034 3.1.5 asks, and returns the seconds left.
func (v *validation) window(sig *dns.RRSIG) (uint32, error) {
	now := uint32(v.now.Unix()) // the 32-bit serial clock
	what := fmt.Sprintf("RRSIG %s %s tag %d", dns.TypeToString[sig.TypeCovered], mustName(sig.Hdr.Name), sig.KeyTag)
	if int32(now-sig.Inception) < 0 {
		return 0, fmt.Errorf("%w: %s: inception %s is after now, %s", ErrSignatureNotYetValid, what,
			v.serialTime(sig.Inception), v.now.UTC().Format(time.RFC3339))
	}
	if int32(sig.Expiration-now) < 0 {
		return 0, fmt.Errorf("%w: %s: expired %s, now %s", ErrSignatureExpired, what,
			v.serialTime(sig.Expiration), v.now.UTC().Format(time.RFC3339))
	}
	return sig.Expiration - now, nil
}

// serialTime is the time within 68 years of v.now whose 32-bit serial is t.
func (v *validation) serialTime(t uint32) string {
	d := int32(t - uint32(v.now.Unix()))
	return v.now.Add(time.Duration(d) * time.Second).UTC().Truncate(time.Second).Format(time.RFC3339)
}

// sigsFor picks from rrs the RRSIGs covering type t at owner.
func sigsFor(rrs []dns.RR, owner dname, t uint16) []*dns.RRSIG {
	var out []*dns.RRSIG
	for _, rr := range rrs {
		if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == t && mustName(s.Hdr.Name).equal(owner) {
			out = append(out, s)
		}
	}
	return out
}

// rrsetOf picks from rrs the records of type t and class IN at owner.
func rrsetOf(rrs []dns.RR, owner dname, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		if h := rr.Header(); h.Rrtype == t && h.Class == dns.ClassINET && mustName(h.Name).equal(owner) {
			out = append(out, rr)
		}
	}
	return out
}

// errKeyTrap reports whether err is a budget refusal, which ends validation at
// once rather than trying another record.
func errKeyTrap(err error) bool { return errors.Is(err, ErrKeyTrap) }
