// Package daemon is ledgergate's composition root: it builds every part
// from the configuration and owns their lifecycle. Nothing imports it
// but main.
//
// Start-up, in order: load the genesis and the node key; open the block
// log (cutting a torn tail); replay the log into the state; bring the
// index up to the log (rebuilding it if it is missing, behind or ahead);
// bind the API listener; then report ready. Shutdown runs in reverse: stop
// accepting requests (waiting a bounded time for submits in flight), stop
// ordering, close the index and the log.
package daemon
