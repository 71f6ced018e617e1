// Package ledger holds ledgergate's data formats and the block log on disk.
//
// Everything here is deterministic and has no dependency on the rest of the
// gateway:
//
//  1. Transactions are COSE_Sign1 envelopes (RFC 9052) whose payload is a
//     deterministic CBOR Body (RFC 8949 section 4.2). The protected header
//     carries alg (ES256 or EdDSA) and kid (the author's id); the unprotected
//     header must be empty, because it is not covered by the signature. A tx's
//     id is the SHA-256 of its envelope bytes.
//  2. Decoders reject any encoding that is not the one the encoder would
//     produce (non-canonical CBOR, trailing bytes, unknown fields), so one
//     tx has exactly one byte string and one id.
//  3. A Block is a Header, the envelopes, and a commit certificate. The
//     block's hash is the SHA-256 of its encoded Header. The header's TxRoot
//     is the RFC 9162 Merkle tree head over the envelopes.
//  4. A Receipt (tx, header, certificate, inclusion proof) is verifiable by
//     anyone who holds the Genesis, with no other state: VerifyReceipt.
//  5. Log is the append-only block log: segment files of records, each
//     length + CRC32C + block bytes, fsynced per block.
package ledger
