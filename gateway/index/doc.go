// Package index keeps a SQLite index of the block log: blocks, txs and
// devices, for the HTTP API, the dashboard and the command line.
//
// The block log is the truth; the index is derived from it and can be
// thrown away and rebuilt at any time. Hence the database runs in WAL mode
// with synchronous=NORMAL: a crash may lose the last few applied blocks,
// never the log's, and the caller catches up again with Rebuild.
//
// The contract:
//
//  1. The caller applies only committed blocks, in height order, starting at
//     height 1: ApplyBlock refuses a block whose height is not Height()+1
//     (ErrHeight), so the index never has gaps and is never ahead of the log
//     it was built from.
//  2. On start the caller runs Rebuild up to the log's height. If the index
//     is ahead of the log (the log's tail was cut after a crash, or the data
//     directory was restored), Rebuild returns ErrAhead and the caller calls
//     Reset and Rebuild again.
//  3. Open upgrades in place a file of an older schema version it knows how
//     to upgrade (adding columns and indexes, filling them from the rows it
//     has), and recreates the tables of any other version; the index is
//     then empty and step 2 refills it.
//  4. ApplyBlock trusts the block: it does not check the certificate, the
//     Merkle root or the signatures (the log and the state did). It only
//     decodes each tx's syntax, and a tx that does not decode is an error.
//  5. An Index is safe for concurrent use. Writes (ApplyBlock, Reset,
//     Rebuild) are serialized on one connection; reads run on a small pool
//     in parallel with them and see whole blocks only (the readers' page
//     caches are sized, and idle readers closed, so that lookups do not
//     take the writer's: readerCache). It must be the only
//     writer of its file (the block log's lock, taken first, sees to it):
//     the writer keeps the top block's height, last tx and running time in
//     memory instead of reading them for every block.
//  6. A caller that acknowledges blocks before it applies them (the chain
//     answers devices once a block is in the log) calls Expect with the
//     height it committed: every read (all of them go through one read
//     path) then waits until the index has applied that height, so it
//     sees what was acknowledged before it began. The caller applies the
//     expected blocks in order, on a goroutine that reads nothing of the
//     index (it would wait for itself), or calls Abandon if it cannot;
//     reads then answer from what is indexed. TxIndexed does not wait:
//     it is for a caller that keeps the expected blocks itself. Several
//     blocks can be applied in one SQL transaction (ApplyBatch).
//
// The schema is shaped for the write rate (thousands of txs per second in
// blocks of up to a thousand): each block is one SQL transaction, txs are
// keyed by their global ordinal so inserts append to the table's B-tree,
// the lookup by tx id goes through a small integer prefix of the id,
// kept in memory for the newest txs (the open generation, fewer than
// 131,072) and written to tx_ids in key order once their generation is
// full (a lookup probes the full generations newest first), and each
// device touched by a block is written
// once per block (a device that only sent records with one UPDATE, without
// reading its row). A device's records are indexed by (device, seq) and
// (device, stream, seq); the first serves the listings by the device's
// sequence number too. The statements every
// block runs, BEGIN and COMMIT included, are prepared once on the writing
// connection. The WAL is checkpointed every few thousand pages
// and cut back to a fixed size after, so it stays bounded however long the
// gateway runs.
//
// Unsigned numbers are stored bit for bit in SQLite's signed 64-bit
// integers, so any value round-trips. Records orders by device sequence
// number, which the state keeps increasing; a sequence number of 2^63 or
// more would be listed after the smaller ones.
package index
