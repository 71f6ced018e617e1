package seeds

import (
	"crypto/sha1"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// denialKind is what a set of NSEC or NSEC3 records must prove.
type denialKind int

const (
	// denyName: the name does not exist, and no wildcard could have
	// answered for it (RFC 4035 3.1.3.2, RFC 5155 8.4).
	denyName denialKind = iota
	// denyType: the name, or the wildcard that would answer for it, has no
	// RRset of the type (RFC 4035 3.1.3.1 and 3.1.3.4, RFC 5155 8.5-8.7).
	// For DS, an insecure delegation (NS without DS, or NSEC3 opt-out,
	// RFC 5155 8.6) also proves that there is no DS.
	denyType
	// denyCloser: the name does not exist, so a wildcard at the closest
	// encloser ce answered for it (RFC 4035 5.3.4, RFC 5155 8.8).
	denyCloser
)

func (k denialKind) String() string {
	switch k {
	case denyName:
		return "NXDOMAIN"
	case denyType:
		return "NODATA"
	}
	return "wildcard"
}

// denial is one question a negative answer must settle.
type denial struct {
	kind  denialKind
	name  dname
	qtype uint16
	ce    dname // denyCloser only: the wildcard's closest encloser
}

func (q denial) String() string {
	switch q.kind {
	case denyName:
		return fmt.Sprintf("NXDOMAIN %s", q.name)
	case denyType:
		return fmt.Sprintf("NODATA %s %s", dns.TypeToString[q.qtype], q.name)
	}
	return fmt.Sprintf("wildcard %s from *.%s", q.name, q.ce)
}

// deny checks that the NSEC or NSEC3 records among auth, each signed by the
// zone of zk, prove q. Records of other zones, and ones whose signatures do
// not verify, are left out of the proof.
func (v *validation) deny(auth []dns.RR, zk *zoneKeys, q denial) error {
	var (
		nsecs  []*dns.NSEC
		nsec3s []*dns.NSEC3
		sigErr error
		seen   = map[string]bool{}
	)
	for _, rr := range auth {
		h := rr.Header()
		if h.Rrtype != dns.TypeNSEC && h.Rrtype != dns.TypeNSEC3 || h.Class != dns.ClassINET {
			continue
		}
		owner := mustName(h.Name)
		k := fmt.Sprint(h.Rrtype, string(owner.wire()))
		if seen[k] || !owner.under(zk.zone) || h.Rrtype == dns.TypeNSEC3 && !validNSEC3Owner(owner, zk.zone) {
			continue
		}
		seen[k] = true
		set := rrsetOf(auth, owner, h.Rrtype)
		if len(set) != 1 {
			continue // one NSEC or NSEC3 per owner name
		}
		res, err := v.verify(set, sigsFor(auth, owner, h.Rrtype), zk)
		if err == nil && res.wildcard != nil {
			err = fmt.Errorf("%w: %s %s: synthesized from a wildcard", ErrBogusSignature, dns.TypeToString[h.Rrtype], owner)
		}
		if errKeyTrap(err) {
			return err
		}
		if err != nil {
			if sigErr == nil {
				sigErr = err
			}
			continue
		}
		switch r := set[0].(type) {
		case *dns.NSEC:
			nsecs = append(nsecs, r)
		case *dns.NSEC3:
			nsec3s = append(nsec3s, r)
		}
	}

	fail := func(reason string) error {
		if sigErr != nil {
			return fmt.Errorf("%w: %s: %s: %w", ErrNoDenialProof, q, reason, sigErr)
		}
		return fmt.Errorf("%w: %s: %s", ErrNoDenialProof, q, reason)
	}
	if len(nsecs) == 0 && len(nsec3s) == 0 {
		return fail("no signed NSEC or NSEC3 records of " + zk.zone.String())
	}
	if len(nsecs) > 0 && nsecProves(nsecs, q) {
		v.link(Link{Step: "NSEC", Name: q.name.String(), Type: dns.TypeToString[q.qtype], Zone: zk.zone.String(), Denial: q.kind.String()})
		return nil
	}
	if len(nsec3s) > 0 {
		p, err := v.newNSEC3Proof(nsec3s, zk.zone)
		if err != nil {
			return err
		}
		ok, reason, err := p.proves(q)
		if err != nil {
			return err
		}
		if ok {
			v.link(Link{Step: "NSEC3", Name: q.name.String(), Type: dns.TypeToString[q.qtype], Zone: zk.zone.String(), Denial: q.kind.String()})
			return nil
		}
		return fail(reason)
	}
	return fail("the NSEC records do not prove it")
}

func hasType(bitmap []uint16, t uint16) bool { return slices.Contains(bitmap, t) }

// delegation reports whether a bitmap is that of a zone cut seen from the
// parent (NS without SOA) or a DNAME: such a record proves nothing about the
// names below its owner (RFC 6840 4.1).
func delegation(bitmap []uint16) bool {
	return hasType(bitmap, dns.TypeDNAME) || hasType(bitmap, dns.TypeNS) && !hasType(bitmap, dns.TypeSOA)
}

// typeAbsent reports whether a bitmap at a name proves that the name has no
// RRset of type t, nor a CNAME that would answer instead (RFC 4035 5.4).
func typeAbsent(bitmap []uint16, t uint16) bool {
	return !hasType(bitmap, t) && (t == dns.TypeCNAME || !hasType(bitmap, dns.TypeCNAME))
}

// nsecCovers reports whether n proves that name does not exist: owner < name
// < next in canonical order, or owner < name for the last NSEC of the zone,
// whose next name is the apex (RFC 4034 4.1.1).
func nsecCovers(n *dns.NSEC, name dname) bool {
	owner, next := mustName(n.Hdr.Name), mustName(n.NextDomain)
	if owner.compare(name) >= 0 {
		return false
	}
	if name.strictlyUnder(owner) && delegation(n.TypeBitMap) {
		return false
	}
	if next.strictlyUnder(name) {
		return false // name is an empty non-terminal: it exists
	}
	return name.compare(next) < 0 || next.compare(owner) <= 0
}

// nsecEncloser is the closest encloser of a name that n covers: the longest
// ancestor the name shares with the owner or the next name.
func nsecEncloser(n *dns.NSEC, name dname) dname {
	a := name.commonAncestor(mustName(n.Hdr.Name))
	b := name.commonAncestor(mustName(n.NextDomain))
	if len(b) > len(a) {
		return b
	}
	return a
}

// nsecProves reports whether the validated NSEC records nsecs prove q.
func nsecProves(nsecs []*dns.NSEC, q denial) bool {
	covered := func(name dname) bool {
		return slices.ContainsFunc(nsecs, func(n *dns.NSEC) bool { return nsecCovers(n, name) })
	}
	switch q.kind {
	case denyName:
		for _, n := range nsecs {
			if nsecCovers(n, q.name) && covered(nsecEncloser(n, q.name).child("*")) {
				return true
			}
		}
	case denyType:
		for _, n := range nsecs {
			owner, next := mustName(n.Hdr.Name), mustName(n.NextDomain)
			switch {
			case owner.equal(q.name):
				if !typeAbsent(n.TypeBitMap, q.qtype) {
					continue
				}
				if q.qtype == dns.TypeDS {
					// The parent's NSEC at the cut, not the child's at its apex
					// (RFC 6840 4.4).
					if !hasType(n.TypeBitMap, dns.TypeSOA) || len(q.name) == 0 {
						return true
					}
					continue
				}
				if !delegation(n.TypeBitMap) {
					return true
				}
			case owner.compare(q.name) < 0 && next.strictlyUnder(q.name) &&
				!(q.name.strictlyUnder(owner) && delegation(n.TypeBitMap)):
				return true // an empty non-terminal: it exists, with no types
			}
		}
		// No such name, and the wildcard that answers for it lacks the type
		// (RFC 4035 3.1.3.4).
		for _, n := range nsecs {
			if !nsecCovers(n, q.name) {
				continue
			}
			wc := nsecEncloser(n, q.name).child("*")
			for _, w := range nsecs {
				if mustName(w.Hdr.Name).equal(wc) && typeAbsent(w.TypeBitMap, q.qtype) {
					return true
				}
			}
		}
	case denyCloser:
		for _, n := range nsecs {
			if nsecCovers(n, q.name) && nsecEncloser(n, q.name).equal(q.ce) {
				return true
			}
		}
	}
	return false
}

var base32Hex = base32.HexEncoding.WithPadding(base32.NoPadding)

// validNSEC3Owner reports whether owner is a hashed name directly below zone:
// 32 base32hex digits, the SHA-1 hash (RFC 5155 3).
func validNSEC3Owner(owner, zone dname) bool {
	if len(owner) != len(zone)+1 || !owner.under(zone) {
		return false
	}
	b, err := base32Hex.DecodeString(strings.ToUpper(owner[0]))
	return err == nil && len(b) == sha1.Size
}

// nsec3Proof holds the validated NSEC3 records of one zone with one set of
// parameters, and the hashes computed so far.
type nsec3Proof struct {
	v    *validation
	zone dname
	recs []*dns.NSEC3
	salt []byte
	iter uint16
	memo map[string]string
}

// newNSEC3Proof keeps the records that a validator may use (hash SHA-1, no
// flags but opt-out, RFC 5155 8.1-8.2) with the parameters of the first, and
// refuses the lot if they ask for more than MaxNSEC3Iterations.
func (v *validation) newNSEC3Proof(recs []*dns.NSEC3, zone dname) (*nsec3Proof, error) {
	p := &nsec3Proof{v: v, zone: zone, memo: map[string]string{}}
	var params *dns.NSEC3
	for _, r := range recs {
		next, err := base32Hex.DecodeString(strings.ToUpper(r.NextDomain))
		if r.Hash != dns.SHA1 || r.Flags&^1 != 0 || err != nil || len(next) != sha1.Size {
			continue
		}
		if r.Iterations > MaxNSEC3Iterations {
			return nil, fmt.Errorf("%w: NSEC3 %s: %d iterations, at most %d accepted (RFC 9276)",
				ErrInsecureNSEC3, mustName(r.Hdr.Name), r.Iterations, MaxNSEC3Iterations)
		}
		if params == nil {
			salt, err := hex.DecodeString(r.Salt)
			if err != nil {
				continue
			}
			params, p.salt, p.iter = r, salt, r.Iterations
		}
		if r.Iterations == params.Iterations && strings.EqualFold(r.Salt, params.Salt) {
			p.recs = append(p.recs, r)
		}
	}
	return p, nil
}

// hash is the NSEC3 hash of name in base32hex (RFC 5155 5), counted against
// the lookup's budget.
func (p *nsec3Proof) hash(name dname) (string, error) {
	w := name.wire()
	if h, ok := p.memo[string(w)]; ok {
		return h, nil
	}
	if p.v.hashes <= 0 {
		return "", fmt.Errorf("%w: more than %d NSEC3 hashes", ErrKeyTrap, MaxNSEC3Hashes)
	}
	p.v.hashes--
	h := sha1.New()
	h.Write(w)
	h.Write(p.salt)
	sum := h.Sum(nil)
	for range p.iter {
		h.Reset()
		h.Write(sum)
		h.Write(p.salt)
		sum = h.Sum(sum[:0])
	}
	s := base32Hex.EncodeToString(sum)
	p.memo[string(w)] = s
	return s, nil
}

func ownerHash(r *dns.NSEC3) string { return strings.ToUpper(mustName(r.Hdr.Name)[0]) }

// match is the record whose owner is the hash of name, or nil.
func (p *nsec3Proof) match(name dname) (*dns.NSEC3, error) {
	h, err := p.hash(name)
	if err != nil {
		return nil, err
	}
	for _, r := range p.recs {
		if ownerHash(r) == h {
			return r, nil
		}
	}
	return nil, nil
}

// cover is the record whose interval holds the hash of name, or nil: owner <
// hash < next, the last record of the chain wrapping around.
func (p *nsec3Proof) cover(name dname) (*dns.NSEC3, error) {
	h, err := p.hash(name)
	if err != nil {
		return nil, err
	}
	for _, r := range p.recs {
		o, n := ownerHash(r), strings.ToUpper(r.NextDomain)
		if n > o && o < h && h < n || n <= o && (h > o || h < n) {
			return r, nil
		}
	}
	return nil, nil
}

// encloser is the closest encloser proof (RFC 5155 8.3) for name: its
// longest existing ancestor ce, with the record covering the next closer
// name. exact is set instead when name itself exists.
type encloser struct {
	ce      dname
	exact   *dns.NSEC3 // the record matching name, when it exists
	nextRec *dns.NSEC3 // the record covering the next closer name
}

func (p *nsec3Proof) closestEncloser(name dname) (encloser, string, error) {
	if !name.under(p.zone) {
		return encloser{}, "name is outside the zone", nil
	}
	for l := len(name); l >= len(p.zone); l-- {
		c := name.suffix(l)
		m, err := p.match(c)
		if err != nil {
			return encloser{}, "", err
		}
		if m == nil {
			continue
		}
		if l == len(name) {
			return encloser{ce: c, exact: m}, "", nil
		}
		if delegation(m.TypeBitMap) {
			return encloser{}, fmt.Sprintf("closest encloser %s is a delegation or DNAME", c), nil
		}
		nc, err := p.cover(name.suffix(l + 1))
		if err != nil {
			return encloser{}, "", err
		}
		if nc == nil {
			return encloser{}, fmt.Sprintf("no NSEC3 covers the next closer name %s", name.suffix(l+1)), nil
		}
		return encloser{ce: c, nextRec: nc}, "", nil
	}
	return encloser{}, "no NSEC3 matches an ancestor of the name", nil
}

// proves reports whether the records prove q; if not, reason says why.
func (p *nsec3Proof) proves(q denial) (ok bool, reason string, err error) {
	if len(p.recs) == 0 {
		return false, "no usable NSEC3 records", nil
	}
	switch q.kind {
	case denyCloser:
		// RFC 5155 8.8: the next closer name below the wildcard's closest
		// encloser does not exist.
		if !q.name.strictlyUnder(q.ce) || !q.ce.under(p.zone) {
			return false, "wildcard outside the zone", nil
		}
		nc := q.name.suffix(len(q.ce) + 1)
		r, err := p.cover(nc)
		if err != nil || r == nil {
			return false, fmt.Sprintf("no NSEC3 covers the next closer name %s", nc), err
		}
		return true, "", nil

	case denyName:
		e, why, err := p.closestEncloser(q.name)
		switch {
		case err != nil || why != "":
			return false, why, err
		case e.exact != nil:
			return false, "an NSEC3 matches the name: it exists", nil
		case e.nextRec.Flags&1 != 0:
			// Opt-out: an unsigned delegation may hold the name (RFC 5155
			// 6), so the answer is insecure, not proven.
			return false, "the next closer name is covered by an opt-out NSEC3", nil
		}
		wc, err := p.cover(e.ce.child("*"))
		if err != nil || wc == nil {
			return false, fmt.Sprintf("no NSEC3 covers the wildcard *.%s", e.ce), err
		}
		return true, "", nil

	case denyType:
		e, why, err := p.closestEncloser(q.name)
		if err != nil || why != "" {
			return false, why, err
		}
		if m := e.exact; m != nil { // RFC 5155 8.5 and 8.6
			switch {
			case !typeAbsent(m.TypeBitMap, q.qtype):
				return false, "the NSEC3 of the name lists the type", nil
			case q.qtype == dns.TypeDS && hasType(m.TypeBitMap, dns.TypeSOA) && len(q.name) > 0:
				return false, "the NSEC3 for DS is the child zone's (RFC 6840 4.4)", nil
			case q.qtype != dns.TypeDS && delegation(m.TypeBitMap):
				return false, "the NSEC3 of the name is a delegation's", nil
			}
			return true, "", nil
		}
		if q.qtype == dns.TypeDS && e.nextRec.Flags&1 != 0 {
			return true, "", nil // RFC 5155 8.6: opt-out, an unsigned delegation
		}
		// RFC 5155 8.7: the wildcard at the closest encloser lacks the type.
		w, err := p.match(e.ce.child("*"))
		if err != nil {
			return false, "", err
		}
		if w != nil && typeAbsent(w.TypeBitMap, q.qtype) {
			return true, "", nil
		}
		return false, "no NSEC3 matches the name or a wildcard without the type", nil
	}
	return false, "unknown proof", errors.New("seeds: invariant: unknown denial kind")
}
