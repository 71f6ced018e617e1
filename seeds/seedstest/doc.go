// Package seedstest builds DNSSEC-signed seed zones with BIND's own tools and
// serves them from a real authoritative DNS server on 127.0.0.1, so that tests
// of seed discovery validate real signatures instead of mocks.
//
// The contract:
//
//  1. SignZone writes a zone file, generates a KSK and a ZSK with
//     dnssec-keygen, signs with dnssec-signzone and returns the signed records,
//     the DNSKEYs and the SHA-256 DS of the KSK (from dnssec-dsfromkey -2). The
//     DS in zone-file text is Signed.Anchor: what an operator configures as the
//     trust anchor. Zone.Children delegates to already signed child zones, so a
//     test can build a chain test. → site.test. and anchor at the parent.
//  2. The caller passes a directory it owns, normally t.TempDir(); keys, zone
//     files and BIND's dsset- files are written there. Several zones may share
//     one directory as long as their origins differ.
//  3. BIND's tools (Debian package bind9-utils, installed by `make deps`) must
//     be on PATH. A missing tool fails the test; it never skips it.
//  4. Serve answers for all zones given, as an authoritative server would from
//     the zone files: the RRset, or a CNAME, or a referral at a child cut that is
//     not itself served, or NODATA/NXDOMAIN with the SOA and the NSEC or NSEC3
//     records that prove it (RFC 4035 3.1.3, RFC 5155 7.2). RRSIGs and denial
//     records are included only when the query sets the DO bit. DS queries are
//     answered from the parent side of the cut when the parent is served.
//     Authoritative answers set AA; referrals do not (RFC 1034 4.3.2). UDP
//     answers larger than the client's EDNS buffer (512 without EDNS) are
//     truncated with TC set, so clients must retry over TCP on the same port.
//  5. Wildcard owner names are not expanded; Serve refuses zones that have one.
//  6. Server.Tamper and Server.Queries may be called at any time, from any
//     goroutine. The tamper function sees every answer before truncation and
//     before it is written, and may change it freely.
//  7. KeyTrapZone builds, in Go and without BIND, a zone in the shape of
//     CVE-2023-50387 (KeyTrap): many DNSKEYs sharing one key tag and RRSIGs that
//     name that tag but verify with none of them. Its DS matches one key, so a
//     validator anchored there gets as far as the expensive part.
//
// Everything here is for tests: failures call tb.Fatal, and servers and files
// are cleaned up with tb.Cleanup and the caller's temporary directory.
package seedstest
