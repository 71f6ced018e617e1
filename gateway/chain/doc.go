// Package chain commits txs: it checks what is submitted, hands it to an
// Orderer, and when the Orderer returns a certified block it makes the
// block durable and visible, then answers the submitters.
//
// For every committed block, in this order:
//
//  1. the block is appended to the block log and fsynced;
//  2. the state applies it;
//  3. the SQLite index applies it;
//  4. each waiting Submit gets the tx's receipt, and each Ticket.Notify
//     of the tx calls back (a front end answers many txs this way, with
//     no goroutine blocked in Wait for each);
//  5. the commit listeners (OnCommit) hear of it, in the order they
//     registered.
//
// A tx is decoded once, where it enters the gateway (a front end, the
// API: Decode): Propose takes the decoded *ledger.Tx, whose id travels
// with it to the Orderer and the block; nothing on the way decodes or
// hashes its envelope again. Propose verifies its signature on the
// caller's goroutine, at most GOMAXPROCS at once, in parallel with
// ordering; a block built from checked txs is not verified again.
//
// So a receipt (and every acknowledgement built on one) is only handed out
// for a block that is on disk; a crash before step 4 loses no receipt that
// was given, and the index catches up from the log on the next start.
//
// The Orderer is the seam for consensus: Solo orders on one node (f = 0)
// and signs the one-signature certificate itself; PBFT implements the same
// interface for a cluster.
package chain
