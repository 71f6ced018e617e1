package seeds

import (
	"errors"
	"strings"
)

// The reasons an answer is refused. Errors returned by this package wrap one
// or more of them with detail (the name, type, key tag, time); check them with
// errors.Is.
var (
	// ErrBogusSignature: an RRSIG does not verify over its RRset with the
	// key it names (a changed record or a forged signature), or names a
	// signer, label count or key the RRset cannot have (RFC 4035 5.3.1).
	ErrBogusSignature = errors.New("seeds: bogus signature")
	// ErrSignatureExpired: every usable RRSIG of an RRset has expired.
	ErrSignatureExpired = errors.New("seeds: signature expired")
	// ErrSignatureNotYetValid: every usable RRSIG of an RRset has its
	// inception in the future.
	ErrSignatureNotYetValid = errors.New("seeds: signature not yet valid")
	// ErrDSMismatch: no DNSKEY of a zone matches its DS records in the
	// parent, or the configured trust anchor (a wrong anchor, a stale DS).
	ErrDSMismatch = errors.New("seeds: DS mismatch")
	// ErrMissingSignature: an RRset of a signed zone came without an RRSIG
	// by that zone: stripped signatures, or an unsigned answer, whatever
	// the server's AD bit says.
	ErrMissingSignature = errors.New("seeds: missing signature")
	// ErrNoDenialProof: an NXDOMAIN or NODATA answer (or a wildcard
	// expansion) without valid NSEC or NSEC3 records that prove it.
	ErrNoDenialProof = errors.New("seeds: no denial proof")
	// ErrInsecureNSEC3: NSEC3 records with more than 100 iterations, which
	// RFC 9276 lets a validator treat as insecure; they are refused.
	ErrInsecureNSEC3 = errors.New("seeds: insecure NSEC3 (too many iterations)")
	// ErrUnsupportedAlgorithm: signatures, keys or DS records only of
	// algorithms other than 8, 13 and 15 (or DS digests other than
	// SHA-256 and SHA-384): the zone is insecure to this validator.
	ErrUnsupportedAlgorithm = errors.New("seeds: unsupported algorithm")
	// ErrInsecureDelegation: the chain of trust is provably broken below
	// the anchor (no DS for a zone that signs answers): the zone is
	// unsigned as far as the parent says, and is refused.
	ErrInsecureDelegation = errors.New("seeds: insecure delegation")
	// ErrNoTrustAnchor: an answer is signed by a zone that no configured
	// trust anchor covers.
	ErrNoTrustAnchor = errors.New("seeds: no trust anchor")
	// ErrKeyTrap: validation needed more work than the limits allow (key
	// tag collisions, signatures per RRset, per lookup, NSEC3 hashes):
	// the answer is refused as a KeyTrap attack (CVE-2023-50387).
	ErrKeyTrap = errors.New("seeds: validation budget exceeded (KeyTrap)")
	// ErrNoData: a validated NODATA: the name exists, the type does not.
	ErrNoData = errors.New("seeds: no data")
	// ErrNXDomain: a validated NXDOMAIN: the name does not exist.
	ErrNXDomain = errors.New("seeds: no such name")
	// ErrBadAnswer: an answer the validator cannot use: an alias (CNAME)
	// instead of the record, an rcode other than NOERROR and NXDOMAIN,
	// records that do not form an RRset.
	ErrBadAnswer = errors.New("seeds: bad answer")
	// ErrNoAnswer: no server gave an answer to the question (timeouts,
	// refused connections, answers to another question, server failures).
	ErrNoAnswer = errors.New("seeds: no answer")
	// ErrBadRecord: a validated record whose content is wrong for
	// discovery: a malformed lg1 TXT pin, a target without an address.
	ErrBadRecord = errors.New("seeds: bad record")
	// ErrConflict: the seed data disagrees with itself: one node id with
	// two keys, or one key under two node ids.
	ErrConflict = errors.New("seeds: conflicting peers")
	// ErrNoPeers: discovery accepted no peer.
	ErrNoPeers = errors.New("seeds: no peers")
)

// ZoneError is why one seed zone contributed no peers to a Result.
type ZoneError struct {
	Zone string
	Err  error
}

// Error reads "seeds: zone Z: <reason>".
func (e *ZoneError) Error() string {
	return "seeds: zone " + e.Zone + ": " + strings.TrimPrefix(e.Err.Error(), "seeds: ")
}

// Unwrap returns the reason.
func (e *ZoneError) Unwrap() error { return e.Err }
