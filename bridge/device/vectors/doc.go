// Package vectors keeps docs/vectors, the test vectors of the device
// protocol (docs/protocol.md), honest. It has no code of its own: its
// test
//
//  1. regenerates every vector file in memory, from fixed keys and times,
//     and compares it with the committed file, so the files cannot drift
//     from the code (regenerate them with `make vectors`, which runs the
//     test with -update);
//  2. checks every case of every committed file against the live code
//     (ledger decoders and verifiers, and this module's device checks)
//     and its expected verdict;
//  3. flips every byte of every positive case's bytes, one at a time,
//     and checks that the case then fails.
//
// The vectors are deterministic: Ed25519 is; ES256 and the node votes are
// signed with RFC 6979 deterministic ECDSA (crypto/ecdsa with a nil
// random source); the sealed blobs' HPKE ephemeral keys, content keys and
// nonces come from testing/cryptotest.SetGlobalRandom with a fixed seed.
// The COSE envelopes are also built a second time here, from the
// specification and without package ledger, and the two must agree.
package vectors
