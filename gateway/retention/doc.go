// Package retention prunes the payloads of old device records from a
// gateway's disk under a policy: records older than a duration (by block
// time), and/or the oldest records while the block log, the index and its
// WAL together pass a budget of bytes.
//
// What is pruned is the envelope of each data.record tx of a sealed
// segment of the block log: the segment is rewritten with its blocks in
// pruned form (ledger.Prune: a stub with the leaf hash, tx id, device and
// seq in place of each record), and then the records' rows leave the
// index (index.PruneRecords). Every block header, certificate and Merkle
// root, and every tx that is not a record, stay. So the chain still
// verifies, the receipts devices hold still verify, and the state that a
// restart replays keeps every device's last seq.
//
// The Pruner's duties and guarantees:
//
//  1. It runs on a goroutine of its own (Run), never on the commit path:
//     Log.Rewrite lets Append and Read go on while it rewrites.
//  2. It prunes a segment only once the index has indexed all its blocks,
//     and the index only after the log: a crash between the two leaves
//     rows of pruned records, which the next pass deletes (pruning a
//     pruned segment again changes nothing and rewrites nothing).
//  3. Only sealed segments are pruned, so the budget must leave room for
//     the segment being written (see config.Retention.SegmentBytes), the
//     headers and certificates of every block, and the index's rows.
//  4. It does not depend on state snapshots: a restart replays the whole
//     log, stubs included.
package retention
