// Package mqtt is the devices' MQTT front end, a mochi-mqtt v2 broker
// whose one hook authenticates devices against the ledger and turns their
// publishes into submitted txs. It serves MQTT 3.1.1 and 5 over TCP and
// TLS.
//
// # The caller's duties
//
//  1. Build with New (no I/O), then Start, which returns once every
//     listener is bound: report READY after it.
//  2. Call Revoked(id) for every device.revoke that commits (the chain's
//     OnCommit hook), so the device is disconnected at once.
//  3. Call Close before stopping the Committer, so the submits in flight
//     are answered with their PUBACKs. Close waits for them a few seconds
//     at most.
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
//
// The credential is checked at CONNECT only: a connection may outlive its
// token. A revocation disconnects the device (v5: DISCONNECT 0x87).
// Keepalive is at most MaxKeepalive seconds; a client asking for more, or
// for none, is held to MaxKeepalive (v5 clients are told in the CONNACK).
// Sessions outlive a disconnect by at most MaxSessionExpiry seconds.
// Maximum QoS is 1; retained messages, shared subscriptions and MQTT 3.1
// are not available.
//
// Topics. Device <id> has the prefix lg/v1/<id>/ and may subscribe only
// to filters under it:
//
//	lg/v1/<id>/data/<stream>  device -> gateway: data.record txs
//	lg/v1/<id>/receipts       gateway -> device: receipts (CBOR, QoS 1)
//	lg/v1/<id>/rejects        gateway -> device: refusals (JSON, QoS 1)
//
// Publishing. The payload of a publish to lg/v1/<id>/data/<stream> is a
// data.record tx (COSE_Sign1) by device <id> on stream <stream>. Nothing
// a device publishes is forwarded to any subscriber. For QoS 1 the PUBACK
// is sent when the record is committed (in a block on disk) or refused,
// never before; many QoS 1 messages may be in flight, up to the Receive
// Maximum the CONNACK announces (a client that exceeds it is
// disconnected, 0x93). A device's records are submitted in the order
// they arrive, one after the other, because the ledger refuses a seq that
// is not above the last committed one: a device must put its records on
// the wire in seq order. QoS 0 records are checked and submitted the
// same way, without an acknowledgement; at most Receive Maximum of them
// may wait per client, the rest are refused as overloaded. Records of
// all devices together may take up 64 MiB while they wait; beyond that
// they are refused as overloaded too. A QoS 2 publish ends the
// connection (v5: DISCONNECT 0x9B).
//
// Every committed record's receipt (ledger.Receipt, CBOR) is published to
// lg/v1/<id>/receipts; every refusal to lg/v1/<id>/rejects as
// {"tx_id": hex tx id, or "" if the payload was not read as a tx,
// "reason": ..., "error": ...}. Receipts and rejects are best effort (a client that does
// not read may miss some); the PUBACK is the acknowledgement. The v5
// PUBACK of a refusal carries the reason as its reason string and the
// code:
//
//	malformed, not_record, too_large                    0x99 payload format invalid
//	wrong_topic, forbidden, unknown_author,             0x87 not authorized
//	bad_signature, revoked
//	overloaded                                          0x97 quota exceeded
//	replay, exists, anything else                       0x80 unspecified error
//
// A 3.1.1 client gets a plain PUBACK either way (3.1.1 has no reason
// codes) and learns of a refusal from the rejects topic. A publish to any
// other topic is refused as wrong_topic. Resending a record that was
// committed is safe: it is answered with its receipt again.
//
// Misbehaviour. A malformed packet, a packet over MaxPacketBytes, a
// CONNACK or second CONNECT from the client, or no CONNECT within 10
// seconds of connecting ends that client's connection only (v5 clients
// get a DISCONNECT with a reason where mochi has one). A publish topic
// over 256 bytes is refused by the broker itself: v5 PUBACK 0x87 without
// a reject message, QoS 0 dropped, 3.1.1 disconnected.
package mqtt
