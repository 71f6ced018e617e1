// Package pbft is Practical Byzantine Fault Tolerance (Castro and Liskov,
// OSDI 1999, "PBFT" below) as a state machine with no I/O: messages and
// clock ticks go in, messages to send, state to persist and decided
// proposals come out. It starts no goroutines, reads no clock, and uses no
// randomness of its own, so a simulator can drive many replicas on one
// goroutine and replay a run exactly (package pbfttest).
//
// n replicas, n = 3f+1 or more, tolerate f faulty ones. A proposal is a
// batch of requests that names its parent proposal (for ledgergate, a
// block without its certificate; its digest is the block hash). The
// primary of view v is Nodes[v mod n].
//
// The protocol as implemented:
//
//  1. Normal case (PBFT 4.2): the primary cuts proposals from its queue and
//     sends PRE-PREPARE; every replica, the primary included, validates the
//     proposal with App.Validate on top of its parent and sends PREPARE;
//     2f+1 matching prepares make it prepared, and the replica sends
//     COMMIT, signed over Crypto.VoteBytes; 2f+1 matching commits make it
//     committed, and it is executed in sequence order with those 2f+1
//     signatures: the commit certificate. Up to MaxInFlight proposals are
//     out at once, within the watermarks (low, low+Window]; a partial
//     batch is cut only while fewer than PartialInFlight are out, so a
//     busy pipeline carries fewer, bigger proposals.
//  2. Prepares go out in sequence order: a replica prepares seq only once
//     seq-1 is prepared in the same view or executed. A prepared
//     certificate at seq thus implies f+1 correct replicas hold one at
//     seq-1, so the chain a new primary re-proposes has no gaps.
//  3. Checkpoints (PBFT 4.3): every CheckpointInterval executed proposals a
//     replica signs a CHECKPOINT; 2f+1 matching ones are a stable
//     checkpoint, the new low watermark; the log below it is dropped. f+1
//     matching checkpoints above what a replica executed tell it to fetch
//     (Ready.Fetch).
//  4. View change (PBFT 4.4, 4.5.2): a replica that waits too long for a
//     request sends VIEW-CHANGE with its stable checkpoint, its last commit
//     certificate and its prepared certificates. It joins a view change f+1
//     others ask for; its timer for the next view starts once 2f+1 ask, and
//     doubles each time (reset by progress). The new primary sends NEW-VIEW
//     with 2f+1 view-changes and re-proposes, above the highest stable
//     checkpoint or commit certificate among them, each sequence number's
//     prepared certificate of the highest view. Every replica recomputes
//     this from the view-changes before it accepts the new view. A
//     replica in a view change asks again every retransmission period.
//     A new primary that has not executed up to where the new view
//     starts proposes nothing until state transfer brought it there.
//     A replica keeps its prepared certificates above what it executed,
//     also below where a new view started (a commit certificate of
//     another replica, whose blocks it has yet to fetch): they go into
//     its view-changes until it executed them, since the replica that
//     executed them may lose them, and a later new view that starts
//     lower re-proposes them and lowers its watermark to take them.
//  5. Rejoining (not in PBFT): a replica left alone in a view change while
//     2f+1 others go on committing in a lower view (a view change it
//     alone asked for, or one it woke up into after being stopped) never
//     gets the 2f+1 view-changes that start its timer. When state
//     transfer brings it a block the others committed in that lower view
//     above what it had executed, it rejoins that view passively: it
//     executes on the others' votes and forwards its requests, but casts
//     no vote (prepare, commit, pre-prepare, new-view) in a view below
//     the highest it sent a view-change for (HardState.Asked), since
//     that view-change may still start a later view and would lack what
//     it voted for afterwards. It votes again from the next view on.
//  6. Requests: a backup forwards its requests to the primary and waits
//     for them to execute; a request waited for too long goes to every
//     replica, which all then wait for it too (PBFT 4.4 client
//     retransmission). The primary drops duplicates. Requests keep the
//     order they were proposed in at a replica: sent again, and proposed
//     again in a new view, in that order, never sorted (an application
//     may refuse a request ordered after a later one of the same client,
//     as ledgergate refuses a device's record as a replay).
//  7. Retransmission: when nothing executed for half a request timeout, a
//     replica sends again what peers may have lost; a replica that sees a
//     later view asks for the NEW-VIEW that installed it (VIEW-QUERY).
//
// Every message but REQUEST and VIEW-QUERY is signed (Crypto); a message
// that does not verify, or does not fit the replica's state, is dropped.
//
// The driver's duties (one goroutine owns a Core):
//
//  1. Build the core with New from the persisted HardState and prepared
//     certificates and the last executed proposal with its certificate.
//  2. Call Tick at a steady period (or sleep until the tick NextTick
//     names and then call Tick once for each period passed: the ticks
//     before it do nothing); Step for each message from a peer;
//     Propose for each local request; ProposeFor or RejectFor for each
//     forwarded request once it checked it, in the order the requests
//     came in (checks may run concurrently; their results may not
//     overtake one another).
//  3. While HasReady: take Ready; persist HardState and Certs durably
//     (fsync) before anything else; execute Committed in order; then send
//     Messages; check Requests; answer Rejected after checking them itself
//     (Forget when it agrees); start a state transfer for Fetch and report
//     it with Caught; then call Advance.
package pbft
