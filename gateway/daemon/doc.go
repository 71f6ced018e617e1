// Package daemon is ledgergate's composition root: it builds every part
// from the configuration and owns their lifecycle. Nothing imports it
// but main.
//
// Start-up, in order: load the genesis and the node key; open the block
// log (cutting a torn tail); replay the log into the state; bring the
// index up to the log (rebuilding it if it is missing, behind or ahead);
// build the chain, the replica, the front ends, the API and the
// dashboard, and register their commit listeners on the chain (Run: build,
// listen); bind the listeners and report ready (run). Shutdown runs in
// reverse: stop
// accepting requests (waiting a bounded time for submits in flight), stop
// ordering, close the index and the log.
package daemon
