// Package mqtt is the devices' MQTT front end, a mochi-mqtt v2 broker
// (patched: bridge/mochi/README.md) whose one hook authenticates devices
// against the ledger and turns their publishes into submitted txs. It
// serves MQTT 3.1.1 and 5 over TCP and TLS.
//
// # The caller's duties
//
//  1. Build with New (no I/O), then Start, which returns once every
//     listener is bound: report READY after it.
//  2. Call Revoked(id) for every device.revoke that commits (a commit
//     listener on the chain), so the device is disconnected at once, and
//     Rekeyed(id, tx id) for every device.rekey that commits, so the
//     device's connections authenticated with the old key end (all but
//     the one the re-key was published on).
//  3. Call Changed(devices) whenever what Answers.Config or
//     Answers.Firmware returns changes for those devices (a config.set
//     commits: for a group target, every member), so subscribed devices
//     get the new manifests at once. It does not block.
//  4. Call Close before stopping the Committer and Answers, so the
//     submits and requests in flight are answered with their PUBACKs.
//     Close waits for them a few seconds at most, then cancels them.
//
// # The device contract
//
// CONNECT. The client id must be the device id. A device authenticates
// in one of two ways:
//
//   - over TLS, with a client certificate whose public key is the
//     device's enrolled key (its SubjectPublicKeyInfo, byte for byte).
//     The certificate may be self-signed: the ledger is the PKI, no CA is
//     checked. A presented certificate decides alone: if its key is not
//     the enrolled one the CONNECT is refused, whatever the password;
//   - with username = the device id and password = a device token
//     (ledger.SignToken: signed by the device key, audience the chain
//     id, at most 24 hours long).
//
// Refusals, as v5 reason code / 3.1.1 return code:
//
//	unknown device, bad or expired token, certificate    0x86 / 0x04
//	with another key, client id not the device id
//	revoked device (with a valid credential)             0x87 / 0x05
//	a will message (the broker would forward it)         0x87 / 0x05
//	MaxDeviceSessions other sessions of the device       0x97 / 0x03
//	connected (client ids <id> and <id>/... together)
//
// A device holds at most MaxDeviceSessions sessions, connected or kept
// after a disconnect; a CONNECT with a client id it does not hold, when
// only kept sessions are in the way, discards its oldest kept one. A
// client holds at most MaxSubscriptions topic filters: the filters of a
// SUBSCRIBE beyond them get SUBACK 0x97 (3.1.1: 0x80) and are not added.
// A filter over 256 bytes is refused as not authorized (0x87).
//
// A token's session ends when the token expires, by Deps.Now (v5:
// DISCONNECT 0xA0 maximum connect time; 3.1.1: the connection is
// closed); a certificate's has no end of its own. A revocation
// disconnects the device (v5: DISCONNECT 0x87). A
// re-key does too, except on the connection that published it: that
// session continues, and what it publishes is checked against the
// device's key at the time (signatures are checked on submit, against
// the ledger's current key, never a key cached at CONNECT).
// Keepalive is at most MaxKeepalive seconds; a client asking for more, or
// for none, is held to MaxKeepalive (v5 clients are told in the CONNACK).
// A client that sends nothing for 1.5 keepalives (in whole seconds) is
// disconnected within a second after [MQTT-3.1.2-22].
// Sessions outlive a disconnect by at most MaxSessionExpiry seconds; a
// session that expires takes its subscriptions with it.
// Maximum QoS is 1; shared subscriptions and MQTT 3.1 are not available.
// Retained messages are the server's own (the manifests): a device's
// publish is never retained, whatever its retain flag.
//
// Topics. Device <id> has the prefix lg/v1/<id>/ and may subscribe only
// to filters under it:
//
//	lg/v1/<id>/data/<stream>     device -> gateway: data.record txs
//	lg/v1/<id>/config/report     device -> gateway: config.report txs
//	lg/v1/<id>/firmware/report   device -> gateway: firmware.report txs
//	lg/v1/<id>/rekey             device -> gateway: device.rekey txs
//	lg/v1/<id>/receipts          gateway -> device: receipts (CBOR, QoS 1)
//	lg/v1/<id>/rejects           gateway -> device: refusals (JSON, QoS 1)
//	lg/v1/<id>/config            gateway -> device: manifest (CBOR, retained)
//	lg/v1/<id>/firmware          gateway -> device: manifest (CBOR, retained)
//	lg/v1/<id>/config/verify     device -> gateway: request, SHA-256
//	lg/v1/<id>/config/verdict    gateway -> device: its default answer topic
//	lg/v1/<id>/config/blob/get   device -> gateway: request, blob address
//	lg/v1/<id>/config/blob       gateway -> device: its default answer topic
//	lg/v1/<id>/keys/get          device -> gateway: request, device id
//	lg/v1/<id>/keys              gateway -> device: its default answer topic
//	lg/v1/<id>/cluster/proof/get device -> gateway: request, empty
//	lg/v1/<id>/cluster/proof     gateway -> device: its default answer topic
//
// Publishing. The payload of a publish to lg/v1/<id>/data/<stream> is a
// data.record tx (COSE_Sign1) by device <id> on stream <stream>; that of
// a publish to lg/v1/<id>/config/report a config.report tx by device
// <id> (firmware/report: a firmware.report), and that of a publish to
// lg/v1/<id>/rekey a device.rekey tx by device <id> (another kind there is
// wrong_topic). They are handled alike below ("records"): they share the
// device's queue and its seq counter. Nothing a device publishes is
// forwarded to any subscriber. For QoS 1 the PUBACK is sent when the
// record is committed (in a block on disk) or refused, never before; many QoS 1 messages may be in flight, up to the Receive
// Maximum the CONNACK announces (a client that exceeds it is
// disconnected, 0x93). A device's records are submitted in the order
// they arrive, one after the other, because the ledger refuses a seq that
// is not above the last committed one: a device must put its records on
// the wire in seq order. QoS 0 records are checked and submitted the
// same way, without an acknowledgement; at most Receive Maximum of them
// may wait per client, the rest are refused as overloaded. Records of
// all devices together may take up Deps.Limiter's budget, shared with the
// other front ends (64 MiB by default) while they wait; beyond that
// they are refused as overloaded too. A QoS 2 publish ends the
// connection (v5: DISCONNECT 0x9B).
//
// Every committed record's receipt (ledger.Receipt, CBOR) is published to
// lg/v1/<id>/receipts (not retained: when no subscription, a kept
// session's included, matches that topic, it is not even encoded);
// every refusal to lg/v1/<id>/rejects as {"tx_id": hex tx id, or "" if the payload was not read as a tx,
// "reason": ..., "error": ...}, and for a replay "last_seq": the
// device's last seq this gateway committed or queued (a device signs
// again above it). Receipts and rejects are best effort (a client that does
// not read may miss some); the PUBACK is the acknowledgement. The v5
// PUBACK of a refusal carries the reason as its reason string, for a
// replay the user property last_seq (decimal), and the code of
// pubackCodes (the MQTT 5 column of the refusal table in
// docs/protocol.md, which TestReasonTable keeps equal):
//
//	malformed, too_large, wrong_chain, not_record,      0x99 payload format invalid
//	not_report
//	wrong_topic, unknown_author, bad_signature,         0x87 not authorized
//	forbidden, revoked
//	replay, exists, unknown_device, stale_version,      0x83 implementation specific error
//	unknown_release, not_found
//	overloaded, storage_full                            0x97 quota exceeded
//	unavailable, internal                               0x80 unspecified error
//
// A 3.1.1 client gets a plain PUBACK either way (3.1.1 has no reason
// codes) and learns of a refusal from the rejects topic. A publish to any
// other topic (the answer and manifest topics included) is refused as
// wrong_topic. Resending a record that was committed is safe: it is
// answered with its receipt again; resending one answered unavailable
// joins it if it still waits to commit.
//
// Requests. A device asks the gateway (Answers) with a publish under
// lg/v1/<id>/ to
//
//	config/verify    payload: a SHA-256, 32 bytes or 64 hex digits  Answers.VerifyConfig
//	config/blob/get  payload: empty (the current configuration's     Answers.Blob
//	                 blob) or a blob address, as above
//	keys/get         payload: the other device's id, as text         Answers.Keys
//	cluster/proof/get  payload: empty                                Deps.Membership
//
// Any other payload is refused as malformed. The answer goes to the v5
// Response Topic of the publish, with its Correlation Data, or without
// one to the request's default answer topic (see Topics). A response
// topic must be a topic name under lg/v1/<id>/: else the request is
// refused as forbidden (as malformed if it has a wildcard) and nothing is
// published there. The answer is published at QoS 1: on success the
// Answers bytes (CBOR) with Content Type "application/cbor"; on refusal
// the reject message (tx_id "", and also on the rejects topic) with
// Content Type "application/json". For QoS 1 the PUBACK follows the
// answer, with the reason's code as for records. An answer larger than
// the client's Maximum Packet Size is refused as too_large. Answers run
// off the client's read loop; a device may have 4 requests being
// answered at once, over all its connections, and more are refused as
// overloaded. A gateway without Answers refuses every request but
// cluster/proof/get as not_found; without a Membership, that one.
//
// The manifests. A device has two, each retained on its topic:
//
//	lg/v1/<id>/config    Answers.Config, its configuration manifest
//	lg/v1/<id>/firmware  Answers.Firmware, the newest firmware it may install
//
// When a device subscribes with a filter that matches a manifest topic
// (for config: the topic itself, lg/v1/<id>/+, lg/v1/<id>/# or
// lg/v1/<id>/config/#), the server first publishes that manifest (CBOR,
// Content Type "application/cbor") retained on its topic, so the
// subscription gets it as its retained message; an empty message if
// there is none. A subscribe publishes only the manifests its filters
// match. (lg/v1/<id>/config/# and lg/v1/<id>/firmware/# get it as a
// live message, as mochi's retained scan misses the parent level of '#';
// lg/v1/<id>/+/# gets nothing.) Every Changed publishes the device's manifests to their
// topics' subscribers. Retained messages live in memory only and for at
// most MaxSessionExpiry seconds, but every subscribe brings the
// manifests back, after a gateway restart too.
//
// Misbehaviour. A malformed packet, a packet over MaxPacketBytes, a
// CONNACK or second CONNECT from the client, or no CONNECT within 10
// seconds of connecting ends that client's connection only (v5 clients
// get a DISCONNECT with a reason where mochi has one). A publish topic
// over 256 bytes is refused by the broker itself: v5 PUBACK 0x87 without
// a reject message, QoS 0 dropped, 3.1.1 disconnected.
package mqtt
