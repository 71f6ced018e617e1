// Package webui is ledgergate's operator dashboard: server-rendered pages
// (html/template, embedded with embed.FS) with a little JavaScript that
// keeps them current over Server-Sent Events. No build step.
//
// Pages: Overview (node, key, cluster, charts, refusals, blocks being
// committed), Devices (search, status, enroll, revoke), Ledger (blocks,
// txs, receipt check), Seeds, Tokens (the API's tokens: list, create,
// revoke), Settings (read only).
//
// The caller's duties:
//
//  1. Build it with New; it reads the operator password file and nothing
//     else. If SetupToken is not empty, log it: it sets the password once.
//  2. Run it (it samples the metrics for the charts) and call Committed
//     with every committed block.
//  3. Serve it on the API listener, under the API's own routes; serve it
//     over TLS when the listener is not loopback.
//  4. Give the API its Operator method, so that an operator's session
//     reads the API's JSON (GET only) where the API asks for tokens.
//
// Security: one operator with a bcrypt password; sessions in memory (a
// restart logs everyone out) with a new id at every login, idle and
// absolute timeouts; the cookie is __Host- and Secure over TLS and on
// loopback, HttpOnly and SameSite=Strict; non-safe requests pass Go's
// http.CrossOriginProtection and carry the session's CSRF token; failed
// logins are limited per address and overall. Enroll and revoke are admin
// txs signed with the admin key the gateway holds for its operator
// (docs/dashboard.md says why).
package webui
