// Package nodetest runs a real single-node ledgergate chain inside a test:
// genesis, block log, SQLite index, state and the commit pipeline with a
// one-node PBFT replica, as `ledgergate run --dev` has, all on files in a
// temporary directory. It is for tests
// only; front ends (bridge/mqtt, bridge/coap) test against it instead of
// mocking the gateway.
//
// A test
//
//  1. calls Start, which registers the node's shutdown with t.Cleanup;
//  2. enrolls devices with Enroll (and revokes them with Revoke), which
//     return once the admin tx is committed;
//  3. hands Node.Committer() and Node.Directory() to the
//     front end under test;
//  4. may call Restart to stop the node and start it again on the same
//     directory, as a gateway restart would.
package nodetest
