// Package api serves ledgergate's HTTP JSON API, its Prometheus metrics
// and its health checks.
//
// Routes (all under /api/v1 answer JSON; errors are {"error": ..., "reason": ...}):
//
//	GET  /api/v1/status                 node, chain and key status
//	GET  /api/v1/devices[?after=&limit=] devices by id
//	GET  /api/v1/devices/{id}            one device
//	GET  /api/v1/devices/{id}/records    its newest records
//	GET  /api/v1/blocks[?before=&limit=] newest blocks first
//	GET  /api/v1/blocks/{height}         one block with its txs
//	GET  /api/v1/txs/{id}                one tx (hex id)
//	GET  /api/v1/txs/{id}/receipt        its receipt; raw CBOR with Accept: application/cbor
//	POST /api/v1/txs                     body: a COSE_Sign1 tx (application/cose);
//	                                     answers after commit with the receipt
//	GET  /healthz  /readyz  /metrics
//
// Access (auth.go, tokens.go): API tokens lgt_<id>_<secret> with scopes
// (read:records, read:ledger, submit, read:metrics, admin), kept hashed in
// the data directory's api-tokens.json. When the policy asks for tokens
// (api.auth; "auto": off loopback), each route needs the scope its rule
// names; a submit needs the scope of its tx's kind. Missing or bad
// tokens are 401 "unauthorized" with WWW-Authenticate: Bearer; a missing
// scope is 403 "forbidden".
package api
