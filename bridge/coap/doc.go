// Package coap is the devices' CoAP front end (RFC 7252): go-coap v3
// servers over UDP and over DTLS 1.2 (pion/dtls v3) whose one handler
// takes devices' signed records and reports to the ledger, serves their
// receipts, and serves devices what the MQTT front end serves them: their
// configuration manifests, verdicts, sealed blobs, other devices' keys,
// firmware answers and images (bridge.Answers, Images). It checks
// records and reports with bridge.CheckRecord and bridge.CheckReport, the
// checks the MQTT front end uses, and takes their bytes from the
// bridge.Limiter budget the front ends share.
//
// # The caller's duties
//
//  1. Build with New (no I/O), then Start, which returns once every
//     listener is bound: report READY after it.
//  2. Call Committed(ids) with the ids of the txs of every committed
//     block (a commit listener on the chain), whichever front end they came
//     through, so that observers of their receipts are notified. It does
//     not block.
//  3. Call Changed(devices) with the devices whose answers a committed
//     block may have changed (directory.Affected, what the MQTT front
//     end republishes), so that observers of their manifests are
//     notified. It does not block.
//  4. Give every front end the same *bridge.Limiter.
//  5. Call Close before stopping the Committer, so that records in
//     flight get their answers. Close waits for them a few seconds at
//     most, then cancels them.
//
// # Resources
//
//	POST /lg/v1/data/{stream}                 a data.record tx (COSE_Sign1); Content-Format 18 or none
//	GET  /lg/v1/receipts/{tx id}              its receipt (CBOR, Content-Format 60); observable
//	GET  /lg/v1/{device}/config               its ConfigAnswer (CBOR, 60); observable
//	GET  /lg/v1/{device}/config/verify?h={sha256}  the ConfigAnswer about that hash (CBOR, 60)
//	GET  /lg/v1/{device}/config/blob          its current sealed blob (octet-stream, 42)
//	GET  /lg/v1/{device}/config/blob/{sha256} a sealed blob of its configurations (42)
//	POST /lg/v1/{device}/config/report        a config.report tx, as a record
//	GET  /lg/v1/{device}/keys/{other}         the KeysAnswer of other (CBOR, 60)
//	GET  /lg/v1/{device}/firmware             its FirmwareAnswer (CBOR, 60); observable
//	GET  /lg/v1/{device}/firmware/{sha256}    a firmware image (42), a block per request
//	POST /lg/v1/{device}/firmware/report      a firmware.report tx, as a record
//	GET  /.well-known/core                    the resources, link format (RFC 6690)
//
// Records. The payload of a POST to /lg/v1/data/{stream} is a
// data.record tx on stream {stream}, application/cose;
// cose-type="cose-sign1" (Content-Format 18) or without Content-Format;
// another Content-Format is refused with 4.15. The device is the
// record's author (its kid): over UDP there is no transport identity,
// the signature is the authentication, and the ledger checks signature,
// sequence number and revocation when the record is submitted, as for
// MQTT. Over DTLS the author must also be the device whose enrolled key
// is the session's client certificate key (its SubjectPublicKeyInfo,
// byte for byte), else the record is refused (4.03 wrong_cert).
//
// The answer 2.04 Changed comes only when the record is committed (in a
// block that 2f+1 gateways committed and this one wrote to disk). Its
// payload is the receipt (ledger.Receipt, CBOR, Content-Format 60) if it
// fits one block (BlockSize, or the smaller Block2 size the request
// names, RFC 7959 2.4); a larger receipt is not sent: the 2.04 carries
// the tx id as 64 hex digits (text/plain) and Location-Path
// lg/v1/receipts/{tx id}, to GET block-wise. A commit that takes longer
// than AckWait (1s) is acknowledged with an empty ACK, and the response
// follows as a separate CON, resent until the client acknowledges it
// (RFC 7252 5.2.2); to a NON request it comes as a NON.
//
// The ledger refuses a seq that is not above the device's last one: a
// device keeps one record in flight (NSTART 1, RFC 7252 4.7) and sends
// the next after the answer. Resending a record is safe. A resend with
// the same message id from the same endpoint within EXCHANGE_LIFETIME
// gets the first answer again without a second submit (RFC 7252 4.5;
// the server keeps an endpoint's last 16 answers); another resend is
// submitted again and the chain answers it with the existing receipt.
//
// Receipts. GET /lg/v1/receipts/{tx id} answers 2.05 with the receipt
// (CBOR, with an ETag; block-wise if it is larger than a block), or 4.04
// if the tx is not committed. A GET with Observe 0 (RFC 7641) of a tx
// not committed yet registers the client: the answer is 2.05 with
// Observe, no payload and Max-Age ObserveTimeout. When the tx commits
// the client gets one notification, 2.05 with Observe and the receipt
// (CON to a CON registration; the first block of a larger receipt, the
// rest by GET, RFC 7959 3.4), and the registration ends. One that has
// not been notified after ObserveTimeout ends with a 4.04 without
// Observe. A client over MaxObservationsPerPeer or MaxObservations is
// not registered (the plain answer, RFC 7641 4.1). A GET without
// Observe 0 ends the registration with its token. Receipts are served to
// anyone who names the tx id, the hash of the signed record: they prove
// what was committed, as the ledger's API does.
//
// Devices' resources. The answers are bridge.Answers', CBOR that the
// device verifies itself; without Answers (or Images) they are 4.04.
// "data", "receipts" and "cluster" are not device ids in these paths;
// GET lg/v1/cluster/proof serves the membership proof (bridge.Membership)
// to any session. Over DTLS
// {device} must be the device whose enrolled key is the session's client
// certificate key (else 4.03 wrong_cert; a revoked one 4.03 revoked): a
// device asks only about itself, and about other devices' keys under its
// own path, as on MQTT. Over UDP anyone may ask, as on the HTTP API: the
// answers are proofs, the blobs sealed, the images published releases;
// reports are authenticated by their signatures as records are. An
// unknown device is 4.04. config/verify takes the hash as one Uri-Query
// h=<64 hex digits> (else 4.00 malformed). A config or firmware GET with
// Observe 0 registers, if there is room, for changes: the answer is 2.05
// with Observe, Max-Age ObserveTimeout and the manifest (no payload: none
// yet, where a plain GET is 4.04); Changed sends each registration a
// notification with a higher Observe number (RFC 7641 4.4), the manifest
// read after the commit, CON to a CON registration; if it is larger than
// BlockSize, its first block, NON. A registration ends ObserveTimeout after
// its registration or last notification, on Observe 1, or when a CON
// notification is not acknowledged (RFC 7641 4.5); the client registers
// again before Max-Age runs out. Answers carry an ETag and go in Block2
// blocks when large or asked for.
//
// # Response codes
//
// Every refusal carries a diagnostic payload (RFC 7252 5.5.2: UTF-8
// text without Content-Format, at most 256 bytes) "<reason>: <detail>",
// with the ledger's reasons and package bridge's as for MQTT:
//
//	2.04 Changed                     the record or report is committed
//	2.05 Content                     a receipt, an answer, a blob, an image, the link format;
//	                                 an observation registered or notified
//	2.31 Continue                    a Block1 block was taken: send the next
//	4.00 Bad Request                 malformed, not_record, not_report, wrong_chain
//	4.01 Unauthorized                unknown_author, bad_signature
//	4.02 Bad Option                  bad_option: a critical option not supported (If-Match,
//	                                 If-None-Match, OSCORE, ...) or Block2 past the end
//	4.03 Forbidden                   forbidden, revoked, replay, exists, stale_version, wrong_topic (the record's
//	                                 stream is not the path's; a report not by the path's
//	                                 device), wrong_cert (DTLS)
//	4.04 Not Found                   not_found: no such resource, stream, tx id, device,
//	                                 configuration, blob, firmware or image; a receipt not
//	                                 committed; unknown_device, unknown_release
//	4.05 Method Not Allowed          method_not_allowed
//	4.06 Not Acceptable              not_acceptable: Accept other than 60 (receipts, answers),
//	                                 42 (blobs, images) or 40 (core)
//	4.08 Request Entity Incomplete   incomplete: a Block1 block out of order or of no transfer
//	4.13 Request Entity Too Large    too_large, with Size1: the largest record taken
//	4.15 Unsupported Content-Format  content_format
//	4.29 Too Many Requests           overloaded (RFC 8516), with Max-Age 2: retry after it
//	5.00 Internal Server Error       internal
//	5.03 Service Unavailable         unavailable: not committed within commit_timeout (no
//	                                 quorum), or the gateway is shutting down; Max-Age 2;
//	                                 storage_full: the gateway's disk is full; Max-Age 60
//	5.05 Proxying Not Supported      proxy: Proxy-Uri or Proxy-Scheme
//
// 4.01 means the gateway cannot tell the record comes from an enrolled
// device (no such device, or the signature does not verify with its
// key): the device must enroll or sign with its key. 4.03 means it can
// and refuses the record for good: the device is revoked, the seq was
// used (a replay; CoAP's 4.09 Conflict, RFC 8132, is for PATCH), the
// record is not for this path, or the DTLS session is another device's.
// Resending a 4.0x request unchanged never helps; resending after a
// 4.29, 5.00 or 5.03 does. A CON message that is not a request, other
// than an empty one, is answered with a Reset.
//
// # Block-wise transfer (RFC 7959)
//
// A record larger than a message is POSTed in Block1 blocks of any size
// from 16 to 1024 bytes (not BERT), each but the last full. Blocks of one
// transfer are matched by endpoint, path and Request-Tag (RFC 9175), not
// by token; each is answered 2.31 with its Block1, the last with the
// record's answer and its Block1. A block that does not continue the
// transfer at the next offset ends it with 4.08 (the last block resent
// with a new message id is answered 2.31 again); one that starts a
// transfer again (block 0) restarts it. Answers larger than BlockSize
// (1024) are sent in Block2 blocks, the first with Size2; the block size
// a GET asks for is honoured down to 16. go-coap's own block-wise layer
// is off on the server: it keeps a transfer per token with no bound on
// their number. This package keeps at most MaxTransfers transfers
// (256), MaxTransfersPerPeer of an endpoint (4; a fifth replaces the
// endpoint's least recently used one), MaxTransfersPerAddr of the UDP
// endpoints of one address, whatever their ports (16; likewise; an IPv6
// address counts by its /64), MaxTransferBytes of buffers in all
// (8 MiB), each at most the largest record. A record's signature is at
// its end, so nothing authenticates a UDP transfer before its last
// block: one idle for UDPBlockTimeout (10s) is dropped. A DTLS session's
// transfers are an enrolled device's (the handshake checked its key):
// they do not count by address and are dropped idle for BlockTimeout
// (60s). A new transfer beyond MaxTransfers or MaxTransferBytes is
// refused with 4.29.
//
// # DTLS profile (RFC 7925)
//
// DTLS 1.2 with certificates: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, the
// profile's suite, and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 for
// clients that rank CCM_8 below their security level (OpenSSL 3). The
// server's certificate (DTLSCertificate) has a P-256 key. The extended
// master secret (RFC 7627) is required. Every handshake starts with a
// HelloVerifyRequest cookie exchange (RFC 6347 4.2.1): pion does it
// unless told otherwise, and the server states it, so a spoofed
// ClientHello gets a small answer and no certificate flight
// (amplification). A client certificate is required, self-signed is
// fine, with a P-256 or Ed25519 key that is the current key of an
// enrolled device that is not revoked (Directory.DeviceByKey): the ledger
// is the PKI. Any other certificate ends the handshake (a fatal alert)
// before it holds a session; the key is also matched per record (above).
// Pre-shared keys are not supported: the ledger holds no PSKs, only
// public keys. Connection IDs (RFC 9146) are not offered: a device whose
// address changes handshakes again.
//
// Handshakes, which anyone may start, and sessions, each a device's, have
// budgets of their own. At most MaxHandshakes (256) are under way, and
// MaxHandshakesPerAddr (8) from one address; a new one beyond takes the
// place of the oldest (of its address, or of all), and each has
// HandshakeTimeout (30s). At most MaxSessions (1024) sessions are kept,
// MaxSessionsPerAddr (256) of one address and MaxSessionsPerDevice (4)
// of one client key; a device that completes a handshake always gets a
// session, in place of the one silent longest of its key, of its
// address, or of all. A session or UDP endpoint silent for
// IdleTimeout (5 minutes) is forgotten, unless it has an observation, a
// transfer or a record in flight. Malformed datagrams end nothing but
// the state of the endpoint they come from: pion drops records that do
// not authenticate, and go-coap forgets a UDP endpoint that sends a
// message it cannot decode.
//
// # Other limits
//
// A message is at most MaxMessageBytes (4096) long; a longer one is
// dropped, and over DTLS it ends the session. A record is at most MaxRecordBytes, at most the chain's
// max_tx_bytes. Records wait for their commits within the shared
// Limiter budget, and an endpoint may have MaxInflight (16) of them in
// flight; beyond either a record is refused with 4.29. An endpoint may
// have 8 messages waiting to be handled; more are dropped (the client
// resends). The server keeps state for MaxPeers UDP endpoints (4096); a
// new one beyond them replaces the longest silent one that is not busy,
// or is ignored. Metrics: ledgergate_coap_requests_total{resource,result},
// ledgergate_coap_ack_latency_seconds, ledgergate_coap_peers{transport},
// ledgergate_coap_dtls_handshakes_total{result},
// ledgergate_coap_block_transfers, ledgergate_coap_block_bytes,
// ledgergate_coap_observations, ledgergate_coap_notifications_total,
// ledgergate_coap_duplicates_total, ledgergate_coap_dropped_total and
// ledgergate_coap_peers_refused_total.
package coap
