// Package state is ledgergate's deterministic application: the registry of
// device keys that the ledger's txs build, and the rules a tx must meet.
//
// The caller's duties:
//
//  1. Check a submitted envelope with State.Check. It decodes the tx,
//     checks that its author may issue it and verifies its signature. It
//     takes only a read lock, so Checks run in parallel on every core.
//  2. Before putting checked txs into a block, add them one by one to a
//     Batch (State.NewBatch). The Batch applies the order-dependent rules
//     (strictly increasing sequence numbers, no enrolling twice, the key
//     that verified the signature is still the device's key) against the
//     committed state plus the txs already in the batch.
//  3. Once a block is committed, call State.Apply with its txs, in height
//     order. Apply is the only writer; it trusts that the block was
//     validated before it was certified.
//  4. To save the state, take State.Snapshot (a quick copy under the read
//     lock) and Encode it off the commit path; its SHA-256 (SnapshotHash)
//     is the snapshot's hash. Restore builds a state from an encoding,
//     which is outside bytes: it checks the encoding, not that the state
//     is the one the chain's blocks build (the caller compares the tip
//     with its block log, or the hash with a certificate).
//
// A rejected tx gets a *ledger.RefusedError whose Reason is stable and machine
// readable (the API and the device protocols report it).
package state
