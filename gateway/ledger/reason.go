package ledger

import (
	"errors"
	"fmt"
)

// Reason says why the gateway refused something a device sent: the one
// vocabulary of refusals (docs/protocol.md, "Refusals"). Every front end
// maps each Reason to one code of its protocol through one table, and a
// test checks that every Reason has a code in each. The strings are part
// of the protocol: never rename one.
type Reason string

// The refusal reasons, in the order of the table in docs/protocol.md.
const (
	// The message cannot be read.
	ReasonMalformed Reason = "malformed" // not a valid tx, request or field; the detail names what
	ReasonTooLarge  Reason = "too_large" // over the chain's max_tx_bytes or the transport's limit

	// The message is read but does not belong where it was sent.
	ReasonWrongChain Reason = "wrong_chain" // signed for another chain
	ReasonTopic      Reason = "wrong_topic" // the topic, path or session is another device's or another kind's
	ReasonNotRecord  Reason = "not_record"  // a data topic or resource takes data.record txs only
	ReasonNotReport  Reason = "not_report"  // a report topic or resource takes its kind of report only
	ReasonWrongCert  Reason = "wrong_cert"  // the DTLS client certificate is not the author's enrolled key

	// Who signed it.
	ReasonUnknownAuthor Reason = "unknown_author" // the kid names no enrolled device, admin, vendor or node
	ReasonBadSignature  Reason = "bad_signature"  // the signature does not verify with the author's current key
	ReasonForbidden     Reason = "forbidden"      // the author may not issue this tx or ask this
	ReasonRevoked       Reason = "revoked"        // the device is revoked, for good

	// What the ledger already holds.
	ReasonReplay         Reason = "replay"          // seq not above the device's last committed or queued seq
	ReasonExists         Reason = "exists"          // the id is enrolled already (or was, and is revoked)
	ReasonUnknownDevice  Reason = "unknown_device"  // the tx is about a device that is not enrolled
	ReasonStaleVersion   Reason = "stale_version"   // a config version not above the target's last
	ReasonUnknownRelease Reason = "unknown_release" // a vote, approval or revocation of a release never published
	ReasonNotFound       Reason = "not_found"       // no such resource, receipt, configuration, blob, device or release

	// The chain's policy (docs/policy.md).
	ReasonPolicy Reason = "policy" // a rule of the policy in force refuses the record; the detail names the rule

	// The transport (CoAP).
	ReasonBadOption     Reason = "bad_option"         // an unsupported critical option; Block2 past the end
	ReasonMethod        Reason = "method_not_allowed" // the resource has no such method
	ReasonNotAcceptable Reason = "not_acceptable"     // Accept asks for a format the resource does not have
	ReasonIncomplete    Reason = "incomplete"         // a Block1 block out of order or of no transfer
	ReasonFormat        Reason = "content_format"     // a Content-Format the resource does not take
	ReasonProxy         Reason = "proxy"              // Proxy-Uri or Proxy-Scheme

	// The gateway, not the message.
	ReasonOverloaded  Reason = "overloaded"   // too much in flight: resend after a pause
	ReasonUnavailable Reason = "unavailable"  // cannot commit now (no quorum, catching up, stopping): outcome unknown, resend the same bytes
	ReasonStorageFull Reason = "storage_full" // the gateway's disk is full: it stopped committing until an operator frees space and restarts it; outcome unknown, resend the same bytes later
	ReasonInternal    Reason = "internal"     // a fault of this gateway: resend the same bytes after a pause
)

// Action is what a device does on a refusal.
type Action string

// The actions (docs/protocol.md, "What a device does on a refusal").
const (
	// ActionResend: send the same bytes again after a pause (the
	// transport's retry hint, else a backoff). Sending the same tx twice
	// is safe: a committed one is answered with its receipt.
	ActionResend Action = "resend"
	// ActionResync: the device's counter is behind the ledger's. Take
	// the last seq the refusal carries, sign again with a higher one.
	ActionResync Action = "resync"
	// ActionRekey: the device's key is not the one the ledger holds.
	// Use the current key (a re-key may have committed), or be enrolled.
	ActionRekey Action = "rekey"
	// ActionFix: the message or request is wrong; sending it again will
	// not help. Fix it (the detail says what) or report it.
	ActionFix Action = "fix"
	// ActionGiveUp: the device is revoked; stop sending.
	ActionGiveUp Action = "give_up"
)

// ReasonInfo is one row of the refusal table.
type ReasonInfo struct {
	Reason Reason
	Action Action
}

// Reasons is every refusal reason with what a device does on it.
var Reasons = []ReasonInfo{
	{ReasonMalformed, ActionFix},
	{ReasonTooLarge, ActionFix},
	{ReasonWrongChain, ActionFix},
	{ReasonTopic, ActionFix},
	{ReasonNotRecord, ActionFix},
	{ReasonNotReport, ActionFix},
	{ReasonWrongCert, ActionRekey},
	{ReasonUnknownAuthor, ActionRekey},
	{ReasonBadSignature, ActionRekey},
	{ReasonForbidden, ActionFix},
	{ReasonRevoked, ActionGiveUp},
	{ReasonReplay, ActionResync},
	{ReasonExists, ActionFix},
	{ReasonUnknownDevice, ActionFix},
	{ReasonStaleVersion, ActionFix},
	{ReasonUnknownRelease, ActionFix},
	{ReasonNotFound, ActionFix},
	{ReasonPolicy, ActionFix},
	{ReasonBadOption, ActionFix},
	{ReasonMethod, ActionFix},
	{ReasonNotAcceptable, ActionFix},
	{ReasonIncomplete, ActionResend},
	{ReasonFormat, ActionFix},
	{ReasonProxy, ActionFix},
	{ReasonOverloaded, ActionResend},
	{ReasonUnavailable, ActionResend},
	{ReasonStorageFull, ActionResend},
	{ReasonInternal, ActionResend},
}

// ActionOf returns what a device does on r; ActionFix for a reason it
// does not know (a newer gateway's).
func ActionOf(r Reason) Action {
	for _, ri := range Reasons {
		if ri.Reason == r {
			return ri.Action
		}
	}
	return ActionFix
}

// RefusedError is a refusal: what a front end or the state refuses, with
// the reason the device is told and a detail for people.
type RefusedError struct {
	Reason Reason
	Detail string
	// LastSeq is, for ReasonReplay, the highest seq of the device that
	// this gateway has committed or queued: the device signs again with
	// a seq above it.
	LastSeq uint64
}

func (e *RefusedError) Error() string {
	return "ledger: refused: " + string(e.Reason) + ": " + e.Detail
}

// Refuse returns a RefusedError with a formatted detail.
func Refuse(r Reason, format string, a ...any) *RefusedError {
	return &RefusedError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the reason of a refusal, ReasonInternal for any other
// error, "" for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ReasonInternal
}

// LastSeqOf returns, for a replay refusal, the device's last seq that the
// gateway committed or queued, which the front ends tell the device; ok
// is false for any other error.
func LastSeqOf(err error) (last uint64, ok bool) {
	var re *RefusedError
	if errors.As(err, &re) && re.Reason == ReasonReplay {
		return re.LastSeq, true
	}
	return 0, false
}
