package seeds

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// keysFunc returns the validated keys of a zone, building the chain of trust
// from the anchor down when needed.
type keysFunc func(zone dname) (*zoneKeys, error)

// answer validates resp as the answer to (qname, qtype) and returns the
// validated RRset, each record's TTL lowered to the validated TTL. A
// validated denial is an error wrapping ErrNoData or ErrNXDomain. resp must be
// for that question (the transport checks it). Nothing in resp is trusted
// but what the signatures cover: not the AD bit, not the sections the
// records came in, not the signer names.
func (v *validation) answer(resp *dns.Msg, qname dname, qtype uint16, keys keysFunc) ([]dns.RR, error) {
	what := fmt.Sprintf("%s %s", dns.TypeToString[qtype], qname)
	ad := ""
	if resp.AuthenticatedData {
		ad = " (the server set AD, which is not trusted)"
	}

	if resp.Rcode == dns.RcodeSuccess {
		if rrset := rrsetOf(resp.Answer, qname, qtype); len(rrset) > 0 {
			sigs := sigsFor(resp.Answer, qname, qtype)
			if len(sigs) == 0 {
				return nil, fmt.Errorf("%w: %s: the answer has no RRSIG%s", ErrMissingSignature, what, ad)
			}
			zone, err := signer(sigs, qname, qtype)
			if err != nil {
				return nil, err
			}
			zk, err := keys(zone)
			if err != nil {
				return nil, err
			}
			res, err := v.verify(rrset, sigs, zk)
			if err != nil {
				return nil, err
			}
			if res.wildcard != nil {
				// RFC 4035 5.3.4: a wildcard answered; prove that qname
				// itself does not exist.
				if err := v.deny(resp.Ns, zk, denial{kind: denyCloser, name: qname, qtype: qtype, ce: res.wildcard}); err != nil {
					return nil, err
				}
			}
			out := make([]dns.RR, len(rrset))
			for i, rr := range rrset {
				out[i] = dns.Copy(rr)
				out[i].Header().Ttl = min(out[i].Header().Ttl, res.ttl)
			}
			return out, nil
		}
		if qtype != dns.TypeCNAME && len(rrsetOf(resp.Answer, qname, dns.TypeCNAME)) > 0 {
			return nil, fmt.Errorf("%w: %s is an alias (CNAME), which is not followed", ErrBadAnswer, qname)
		}
	}

	var kind denialKind
	switch resp.Rcode {
	case dns.RcodeSuccess:
		kind = denyType
	case dns.RcodeNameError:
		kind = denyName
	default:
		return nil, fmt.Errorf("%w: %s: rcode %s", ErrBadAnswer, what, dns.RcodeToString[resp.Rcode])
	}
	q := denial{kind: kind, name: qname, qtype: qtype}

	// The zone that denies is named by the signatures in the authority
	// section (over its NSEC, NSEC3 or SOA records); its keys come first,
	// then deny checks the proof itself.
	var sigs []*dns.RRSIG
	proofs := 0
	for _, rr := range resp.Ns {
		switch rr := rr.(type) {
		case *dns.NSEC, *dns.NSEC3:
			proofs++
		case *dns.RRSIG:
			switch rr.TypeCovered {
			case dns.TypeNSEC, dns.TypeNSEC3, dns.TypeSOA:
				sigs = append(sigs, rr)
			}
		}
	}
	switch {
	case proofs == 0 && len(sigs) == 0:
		return nil, fmt.Errorf("%w: %s: no NSEC or NSEC3 records%s", ErrNoDenialProof, q, ad)
	case len(sigs) == 0:
		return nil, fmt.Errorf("%w: %s: %w: the NSEC or NSEC3 records have no RRSIG%s", ErrNoDenialProof, q, ErrMissingSignature, ad)
	}
	zone, err := signer(sigs, qname, qtype)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoDenialProof, q, err)
	}
	zk, err := keys(zone)
	if err != nil {
		return nil, err
	}
	if err := v.deny(resp.Ns, zk, q); err != nil {
		return nil, err
	}
	if kind == denyName {
		return nil, fmt.Errorf("%w: %s (validated)", ErrNXDomain, qname)
	}
	return nil, fmt.Errorf("%w: %s (validated)", ErrNoData, what)
}

// signer picks the zone whose signature to check: the deepest signer name
// among sigs that may sign for qname, an ancestor of it (a proper one for DS,
// which the parent signs, RFC 4035 5.2). Whether that zone is trusted is for
// the chain of trust to say.
func signer(sigs []*dns.RRSIG, qname dname, qtype uint16) (dname, error) {
	var best dname
	found := false
	for _, s := range sigs {
		z, ok := parseName(s.SignerName)
		if !ok || !qname.under(z) || qtype == dns.TypeDS && len(z) == len(qname) {
			continue
		}
		if !found || len(z) > len(best) {
			best, found = z, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s %s: no RRSIG names a signer above the name", ErrBogusSignature, dns.TypeToString[qtype], qname)
	}
	return best, nil
}

// keysFrom validates resp as the DNSKEY RRset of zone against its trust: the
// DS records validated in the parent, or the anchor's DS and DNSKEY records.
// One key that the trust matches must sign the RRset (RFC 4035 5.2). It
// returns the zone's usable keys.
func (v *validation) keysFrom(resp *dns.Msg, zone dname, ds []*dns.DS, trusted []*dns.DNSKEY) (*zoneKeys, error) {
	rrset := rrsetOf(resp.Answer, zone, dns.TypeDNSKEY)
	if len(rrset) == 0 {
		return nil, fmt.Errorf("%w: %s: no DNSKEY RRset in the answer (rcode %s)", ErrDSMismatch, zone, dns.RcodeToString[resp.Rcode])
	}
	sigs := sigsFor(resp.Answer, zone, dns.TypeDNSKEY)
	if len(sigs) == 0 {
		return nil, fmt.Errorf("%w: DNSKEY %s: the answer has no RRSIG", ErrMissingSignature, zone)
	}

	supported := len(trusted) > 0
	for _, d := range ds {
		supported = supported || supportedDigest(d.DigestType) && supportedAlgorithm(d.Algorithm)
	}
	if !supported {
		return nil, fmt.Errorf("%w: DS %s: no DS of a supported algorithm (8, 13, 15) and digest (SHA-256, SHA-384)", ErrUnsupportedAlgorithm, zone)
	}

	var sep, usable []*dns.DNSKEY
	var via *dns.DS
	for _, rr := range rrset {
		k, ok := rr.(*dns.DNSKEY)
		if !ok || !usableKey(k) {
			continue
		}
		usable = append(usable, k)
		if d, ok := matchTrust(k, ds, trusted); ok {
			sep = append(sep, k)
			via = cmp.Or(via, d)
		}
	}
	if len(sep) == 0 {
		return nil, fmt.Errorf("%w: DNSKEY %s: no key matches %s", ErrDSMismatch, zone, describeTrust(ds, trusted))
	}

	// The DNSKEY RRset must be signed by a key the trust matched.
	res, err := v.verify(rrset, sigs, &zoneKeys{zone: zone, keys: tagKeys(sep)})
	if err != nil {
		return nil, err
	}
	if res.wildcard != nil {
		return nil, fmt.Errorf("%w: DNSKEY %s: synthesized from a wildcard", ErrBogusSignature, zone)
	}
	l := Link{Step: "DNSKEY", Name: zone.String(), Type: "DNSKEY", Zone: zone.String()}
	if via != nil {
		l.KeyTag, l.Algorithm = via.KeyTag, via.Algorithm
	} else {
		l.KeyTag, l.Algorithm = sep[0].KeyTag(), sep[0].Algorithm
	}
	v.link(l)
	return &zoneKeys{zone: zone, keys: tagKeys(usable)}, nil
}

// matchTrust reports whether k is a trusted key: one of the anchor's
// DNSKEYs, or the key a DS names by key tag, algorithm and digest (RFC 4035
// 5.2), returned.
func matchTrust(k *dns.DNSKEY, ds []*dns.DS, trusted []*dns.DNSKEY) (*dns.DS, bool) {
	for _, t := range trusted {
		if sameKey(t, k) {
			return nil, true
		}
	}
	tag := k.KeyTag()
	for _, d := range ds {
		if !supportedDigest(d.DigestType) || d.Algorithm != k.Algorithm || d.KeyTag != tag {
			continue
		}
		if got := k.ToDS(d.DigestType); got != nil && strings.EqualFold(got.Digest, d.Digest) {
			return d, true
		}
	}
	return nil, false
}

// sameKey reports whether a and b hold the same key: flags, protocol,
// algorithm and public key bytes.
func sameKey(a, b *dns.DNSKEY) bool {
	if a.Flags != b.Flags || a.Protocol != b.Protocol || a.Algorithm != b.Algorithm {
		return false
	}
	ka, err1 := base64.StdEncoding.DecodeString(a.PublicKey)
	kb, err2 := base64.StdEncoding.DecodeString(b.PublicKey)
	return err1 == nil && err2 == nil && bytes.Equal(ka, kb)
}

func describeTrust(ds []*dns.DS, keys []*dns.DNSKEY) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("DS tag %d alg %d digest %d", d.KeyTag, d.Algorithm, d.DigestType))
	}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("anchor DNSKEY tag %d alg %d", k.KeyTag(), k.Algorithm))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
