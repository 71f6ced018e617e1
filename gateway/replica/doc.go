// Package replica runs a gateway's PBFT replica: it drives the consensus
// core (gateway/pbft) with the ledger as its application, and is the
// chain's Orderer.
//
// One goroutine (Run) owns the core and does all the I/O around it, in
// the order the core asks (STYLE.md 2): persist the replica's hard state
// and prepared certificates, commit blocks to the chain, send messages,
// then check forwarded requests and fetch blocks from peers. Forwarded
// requests are checked, signatures included, as they arrive, by
// GOMAXPROCS checker goroutines from a bounded queue, and handed to the
// core in the order they came in.
//
// Proposals are ledger blocks without their certificate; a proposal's
// digest is the block hash, so the 2f+1 commit signatures the core
// collects are the block's commit certificate. A backup first sees the
// requests other gateways forwarded in the primary's PRE-PREPARE: it
// verifies their signatures as that message arrives, against the
// committed state, on every core and off the Run goroutine, before it
// hands the message on (precheck.go). It then validates the proposal
// against the registry as the uncommitted blocks before it leave it
// (state.Batch on a parent batch), verifying every tx signature it has
// not verified before (a tx its own chain, its checkers or the precheck
// verified is not verified again), on every core. The primary does not
// validate again a block it built itself.
//
// A replica that falls behind (it was down or cut off) fetches blocks
// from a peer and checks each one's certificate and its link to the block
// before, then tells the core (pbft.Core.Caught).
//
// Member changes (cluster.reconfig, docs/cluster.md). The member sets
// are the state's (state.State.Members): the core starts with the genesis
// ids and every change the state applied (pbft.Config.Reconfigs), the app
// names the change a block it executes carries (pbft.Reconfigurer), and
// state transfer tells the core of each change it applied
// (pbft.Core.Reconfigured) before Caught. Votes verify with the key of any
// node that was ever a member (the core counts each with the set of its
// sequence number); a fetched block's certificate and a proposal's
// proposer are checked with the set in force at its height. A gateway
// that is not a member of the set in force (removed, or added and not in
// force yet) takes no txs: Propose refuses them as unavailable
// (ErrRemoved, ErrNotYetMember).
//
// The caller's duties: 1. build it with New; 2. hand its Message and
// Blocks methods to the transport as the handler; 3. use it as the chain's
// Orderer (chain.Run calls Run).
package replica
