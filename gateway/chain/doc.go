// Package chain commits txs: it checks what is submitted, hands it to an
// Orderer, and when the Orderer returns a certified block it makes the
// block durable, answers the submitters, and indexes it after.
//
// For every committed block, in this order:
//
//  1. the block is appended to the block log and fsynced;
//  2. it is kept in memory for the index stage, and the index is told to
//     expect it (index.Index.Expect); the state applies it;
//  3. each waiting Submit gets the tx's receipt, and each Ticket.Notify
//     of the tx calls back (a front end answers many txs this way, with
//     no goroutine blocked in Wait for each);
//  4. the commit listeners (OnCommit) hear of it, in the order they
//     registered;
//  5. later, on a goroutine of its own, the SQLite index applies it,
//     with the other blocks that queued up meanwhile in one SQL
//     transaction (at most maxBatchBlocks blocks and maxBatchTxs txs; a
//     batch of fewer than maxBatchBlocks blocks and lingerTxs txs waits
//     up to indexLinger for more, unless a read waits for it), and only
//     then is it dropped from memory.
//
// So a receipt (and every acknowledgement built on one) is only handed out
// for a block that is on disk; a crash after step 3 and before step 5
// loses no receipt that was given: the index catches up from the log on
// the next start.
//
// Reads see what was answered. Between steps 3 and 5 a block is in the
// log and the state but not in the index; two rules keep every read
// consistent with the answers already given:
//
//   - Receipt, and the replay checks of Propose and of the commit path
//     (a tx refused as a replay gets its receipt if it committed), look
//     in the blocks kept in memory first, then in the index without
//     waiting: a block leaves memory only once the index has it, so a
//     committed tx is always in one of the two.
//   - Every other read of the index (the API's txs, devices and records,
//     the directory, the dashboard, the egress connectors, the commit
//     listeners) waits until the index has applied the blocks that were in
//     the log when the read began. This is a read-your-writes barrier in
//     the index's one read path (index.Index.Expect): serving each query
//     from the blocks in memory instead would mean a second
//     implementation of every query (records by time, devices by model,
//     rollouts); the wait is short, the index stage being at most a few
//     transactions behind, and nobody waits while the index keeps up.
//
// If the index fails, the chain stops (Run returns the error) and the
// index stops making reads wait (index.Index.Abandon): the blocks answered
// and not indexed stay in memory for Receipt, and in the log for the next
// start, which indexes them before it takes txs.
//
// A tx is decoded once, where it enters the gateway (a front end, the
// API: Decode): Propose takes the decoded *ledger.Tx, whose id travels
// with it to the Orderer and the block; nothing on the way decodes or
// hashes its envelope again. Propose verifies its signature on the
// caller's goroutine, in parallel with ordering and with other callers;
// a block built from checked txs is not verified again.
//
// Verify and VerifyFrom check a whole block log as `ledger verify` does,
// each commit certificate with the member set in force at its height
// (ledger.Members, following the committed cluster.reconfig txs).
// ProveMembers (and Chain.MembershipProof) builds the chain's membership
// proof from the log: the one place the gateway makes it, for the
// snapshots it serves its peers, the API and the front ends.
//
// The Orderer is the seam for consensus: Solo orders on one node (f = 0)
// and signs the one-signature certificate itself; PBFT implements the same
// interface for a cluster.
package chain
