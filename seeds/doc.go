// Package seeds finds the gateways of a site through DNSSEC-signed DNS
// "seed" zones, and accepts only answers whose signatures validate up to a
// configured trust anchor.
//
// The operator publishes, in a signed zone:
//
//	_ledgergate._tcp.<zone>  SRV  <prio> <weight> <port> <target>
//	<target>                 A / AAAA  <address>
//	<target>                 TXT  "lg1 node=<node id> spki-sha256=<64 hex>"
//
// where spki-sha256 is the SHA-256 of the node key's DER SubjectPublicKeyInfo.
// Discover returns the peers (node id, key hash, host:port addresses) that at
// least Config.MinSeeds zones agree on; Lookup returns any one validated
// RRset (device discovery uses it for _mqtt._tcp).
//
// # What is validated
//
// The package is a validating stub resolver on miekg/dns, which verifies
// single signatures; the chain of trust is built here (RFC 4033, 4034, 4035):
//
//  1. Queries carry EDNS0 with DO and a 1232-byte buffer, and CD (RFC 4035
//     3.2.2), over UDP, again over TCP when truncated, to each configured
//     server in turn. The AD bit of an answer is ignored: an unsigned answer
//     is refused whatever the server says.
//  2. From the trust anchor down: the anchor's DS (or DNSKEY) records must
//     match a zone key (zone flag, protocol 3, not revoked; key tag,
//     algorithm and SHA-256 or SHA-384 digest), and that key must sign the
//     zone's DNSKEY RRset (RFC 4035 5.2). Below the anchor each zone's DS
//     RRset is itself validated in its parent, the zone named by the DS
//     RRSIG's signer, which must be a proper ancestor; an answer's signer
//     must be an ancestor of (or equal to) its owner. A zone whose parent
//     proves it has no DS is refused (ErrInsecureDelegation): nothing
//     insecure is accepted.
//  3. Each RRset needs one RRSIG (RFC 4035 5.3) with the zone as signer,
//     the RRset's type, owner and class, a labels field no larger than the
//     owner's, an algorithm of 8 (RSASHA256), 13 (ECDSAP256SHA256) or 15
//     (ED25519), a key of the zone with its key tag, and a validity window
//     holding Config.Now, compared in RFC 1982 serial arithmetic (RFC 4034
//     3.1.5). The TTL of a validated RRset is min(record TTLs, original TTL,
//     the signature's remaining lifetime). Other algorithms make an RRset
//     insecure, which is refused (ErrUnsupportedAlgorithm).
//  4. NXDOMAIN and NODATA need NSEC (RFC 4035 3.1.3, 5.4) or NSEC3 (RFC
//     5155 section 8) proofs with valid signatures, including the wildcard
//     part, empty non-terminals, and the parent-side rules of RFC 6840 4.1
//     and 4.4. An
//     answer synthesized from a wildcard needs the proof that the name
//     itself does not exist (RFC 4035 5.3.4, RFC 5155 8.8). NSEC3 records
//     with more than 100 iterations are insecure (RFC 9276 3.2) and refused
//     (ErrInsecureNSEC3); so is an NXDOMAIN covered by an opt-out NSEC3.
//  5. Against KeyTrap (CVE-2023-50387) and NSEC3 hash floods
//     (CVE-2023-50868): at most MaxKeysPerTag keys are tried for one RRSIG,
//     MaxVerificationsPerRRset verifications per RRset,
//     MaxVerificationsPerLookup per lookup (the chain of trust included), and
//     MaxNSEC3Hashes NSEC3 hashes per lookup. Beyond them the answer is
//     refused with ErrKeyTrap; Result.Verifications counts the work done.
//
// Every refusal is an error wrapping one of the exported Err values, with the
// name, type and reason; check it with errors.Is.
//
// # What is not
//
// CNAME and DNAME are not followed (an alias is ErrBadAnswer: SRV targets
// must not be aliases, RFC 2782). There is no cache across calls: each
// Discover fetches the chain again, each Lookup too. Answers are validated,
// not their transport: a forged answer is refused, but an attacker on the
// path can still withhold answers, which makes discovery fail, never
// succeed wrongly. The trust anchor is static configuration; RFC 5011
// rollover is not automated. DS digests SHA-1 and GOST and algorithms other
// than 8, 13 and 15 are not supported (RFC 8624 recommends these three).
//
// # The caller's duties
//
//  1. Configure anchors that cover every seed zone; Config.Validate says
//     which do not.
//  2. Run Discover again after Result.TTL (within bounds of its choosing),
//     and on error keep using its last good Result: a failed discovery
//     leaves the peer list as it was.
//  3. Pin peers to their keys: Peer.KeySHA256 says which key a node must
//     present; DNS only says where to dial.
package seeds
