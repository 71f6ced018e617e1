// Package snapshot keeps a gateway's state snapshots on disk and starts
// the state from the newest usable one.
//
// A snapshot (gateway/state: Snapshot, Restore) is the whole state at one
// height in one deterministic encoding; its SHA-256 is its hash. This
// package owns the files:
//
//	snapshots/00000000000000001234.snap   the snapshot at height 1234
//	snapshots/*.tmp                       a write in progress (a crash may leave one)
//
// A file is the encoding followed by its 32-byte SHA-256, so a damaged
// file is told from a good one without anything else.
//
// The caller's duties:
//
//  1. Open the Store once, before anything reads or writes it: it
//     removes what an interrupted write left.
//  2. On start, call Load with the open block log: it returns the state
//     of the newest snapshot whose height is within the log and whose tip
//     is the hash of the log's block at that height (or a new state), and
//     the caller replays the blocks after it (chain.Replay). A snapshot
//     that fails any check is logged and skipped: it is never trusted
//     blindly, and never stops the start.
//  3. After each committed block, while the state is at that block (a
//     commit listener), ask the Policy whether a snapshot is due and, if
//     so, hand State.Snapshot() to the Writer. Taking the copy is quick;
//     the Writer encodes and writes on its own goroutine, off the commit
//     path, and keeps the newest Keep files.
package snapshot
