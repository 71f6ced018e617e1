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
//  8. Reconfiguration (membership change, not in PBFT): the member set is
//     a function of the sequence number; see Reconfiguration below.
//
// Every message but REQUEST and VIEW-QUERY is signed (Crypto); a message
// that does not verify, or does not fit the replica's state, is dropped.
//
// The driver's duties (one goroutine owns a Core):
//
//  1. Build the core with New from the persisted HardState and prepared
//     certificates and the last executed proposal with its certificate,
//     with the genesis set (Config.Nodes) and every reconfiguration
//     executed up to it (Config.Reconfigs). The App implements
//     Reconfigurer if its proposals may carry a reconfiguration.
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
//     it with Caught, after calling Reconfigured for each reconfiguration
//     among the proposals it fetched; then call Advance.
//  4. Send messages To "" to every member of every epoch the replica
//     knows from its current one on (the joining members too: they
//     follow the old set's commits and checkpoints until they are in).
//
// # Reconfiguration
//
// After BFT-SMaRt's, which installs a new member set after the consensus
// instance that decided it (Bessani, Sousa, Alchieri, "State Machine
// Replication for the Masses with BFT-SMaRt", DSN 2014, section V). The
// member set (ids, hence n, f, the quorum and the primary of each view)
// is a function of the sequence number: an epoch is a member set and the
// sequence numbers it orders. A proposal committed at s that carries a
// reconfiguration (the App says so: Reconfigurer) names the whole new
// set; the old set orders up to Boundary(s), the first checkpoint at or
// after s+Window, the new set from Boundary(s)+1 on. Two committed before
// one boundary: the later set wins there. The rules, and why:
//
//  1. A vote counts with the set of its own sequence number: prepares,
//     commits and pre-prepares of seq (and the certificates made of
//     them), checkpoints at seq, with the set of seq. The checkpoint at
//     the boundary is signed by the old set: it is the new set's first
//     stable checkpoint, which joining members verify knowing the genesis
//     set and the reconfigurations.
//  2. A replica knows the set of seq only once it executed every proposal
//     that could change it: up to known = Boundary(told+1), told being the
//     last proposal it executed. Since s+Window is below the boundary, a
//     replica that has not executed s yet, with its low watermark at or
//     below what it executed, accepts no message at or above the
//     boundary: the window needs no draining at checkpoints. (A replica
//     whose watermark is above what it executed, after a new view started
//     there, drops messages above known until it fetched.)
//  3. The barrier: a replica orders only sequence numbers of the epoch it
//     is in, the epoch of the first number above what it knows decided
//     (executed, stable, or a commit certificate a new view started at).
//     No prepared or commit certificate, no new-view and no window ever
//     mixes two sets.
//  4. Each epoch's first view is installed by a new-view of its own
//     members: a replica that enters an epoch (it executed the old one's
//     last proposal, or fetched past it) asks for view+1 at once. View
//     numbers stay global and only grow, so HardState's votes keep their
//     meaning; HardState.Epoch remembers which epoch the view was
//     installed in, for a restart at the boundary. A view-change counts in
//     the epoch above where it starts (its stable checkpoint or commit
//     certificate) and carries no prepared certificate beyond that
//     epoch's end; a new-view is made of 2f+1 view-changes of one epoch,
//     is sent by that epoch's primary for the view, and re-proposes only
//     up to the epoch's end; a replica past an epoch ignores its
//     new-views.
//  5. A replica that is not a member of its epoch (removed, or not yet
//     added) votes nothing, starts no view change, takes no requests
//     from peers, and its messages count nowhere: it follows by the
//     commits it receives and by state transfer. A joining one starts as
//     such and becomes a member once it executed or fetched past the
//     boundary (testdata/reconfig_replace.txt, reconfig_grow.txt).
//
// Why it is safe. Within an epoch it is PBFT: anything committed at seq
// was prepared by 2f+1 members of seq's epoch, all of them in that epoch
// (rule 3), in views installed there (rule 4); any 2f+1 view-changes of
// that epoch share a correct member with them, which reports the
// certificate. Across epochs: a new set's first new-view starts at or
// above the boundary, which the old set decided; an old set's new-view
// re-proposes nothing above it. A view change and a reconfiguration
// racing cannot split the chain: the old set changes views among itself
// up to the boundary (testdata/reconfig_view_change.txt).
//
// The old set must reach its boundary: while Status.Pending is set the
// driver keeps blocks coming (ledgergate's heartbeat tx).
//
// A limit: the recovery of protocol item 4 (a later new view that starts
// below another replica's commit certificate re-proposes the blocks the
// replicas that executed them lost with a wiped disk) works within one
// epoch; blocks of an old set below a new set's first view come back by
// state transfer only.
package pbft
