package coap

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Resources of device protocol v1 over CoAP.
const (
	dataPath     = "lg/v1/data"          // POST lg/v1/data/<stream>: a record
	receiptsPath = "lg/v1/receipts"      // GET lg/v1/receipts/<tx id>: its receipt, observable
	proofPath    = "lg/v1/cluster/proof" // GET: the chain's membership proof
	corePath     = ".well-known/core"
)

// wellKnownCore is the RFC 6690 link format of the resources. A
// device's resources are listed as URI templates (RFC 6570) with
// {device}, {other} and {sha256}: the link names the resource type, the
// title how to fill it in.
const wellKnownCore = `</lg/v1/data>;rt="lg.record";ct=18;title="POST a data.record to /lg/v1/data/{stream}",` +
	`</lg/v1/receipts>;rt="lg.receipt";ct=60;obs;title="GET /lg/v1/receipts/{tx id}",` +
	`</lg/v1/cluster/proof>;rt="lg.cluster.proof";ct=60;title="GET the MembershipProof",` +
	`</lg/v1/{device}/config>;rt="lg.config";ct=60;obs;title="GET the ConfigAnswer of {device}",` +
	`</lg/v1/{device}/config/verify>;rt="lg.config.verify";ct=60;title="GET ?h={sha256}: the ConfigAnswer about a configuration",` +
	`</lg/v1/{device}/config/blob>;rt="lg.config.blob";ct=42;title="GET the current sealed blob",` +
	`</lg/v1/{device}/config/blob/{sha256}>;rt="lg.config.blob";ct=42;title="GET a sealed blob by address",` +
	`</lg/v1/{device}/config/report>;rt="lg.config.report";ct=18;title="POST a config.report",` +
	`</lg/v1/{device}/keys/{other}>;rt="lg.keys";ct=60;title="GET the KeysAnswer of {other}",` +
	`</lg/v1/{device}/firmware>;rt="lg.firmware";ct=60;obs;title="GET the FirmwareAnswer of {device}",` +
	`</lg/v1/{device}/firmware/{sha256}>;rt="lg.firmware.image";ct=42;title="GET a firmware image",` +
	`</lg/v1/{device}/firmware/report>;rt="lg.firmware.report";ct=18;title="POST a firmware.report",` +
	`</lg/v1/{device}/rekey>;rt="lg.rekey";ct=18;title="POST a device.rekey"`

// Results of requests_total besides refusal reasons.
const (
	resultAccepted  = "accepted"  // a committed record: 2.04
	resultAnswered  = "answered"  // a receipt or link format: 2.05
	resultObserving = "observing" // a receipt observed before its commit: 2.05 without payload
	resultContinue  = "continue"  // a Block1 block: 2.31
)

// responseCodes is the response code of each refusal reason: the CoAP
// column of the table in docs/protocol.md. TestReasonTable checks that
// every reason has one.
var responseCodes = map[ledger.Reason]codes.Code{
	ledger.ReasonMalformed:      codes.BadRequest,
	ledger.ReasonTooLarge:       codes.RequestEntityTooLarge,
	ledger.ReasonWrongChain:     codes.BadRequest,
	ledger.ReasonTopic:          codes.Forbidden,
	ledger.ReasonNotRecord:      codes.BadRequest,
	ledger.ReasonNotReport:      codes.BadRequest,
	ledger.ReasonWrongCert:      codes.Forbidden,
	ledger.ReasonUnknownAuthor:  codes.Unauthorized,
	ledger.ReasonBadSignature:   codes.Unauthorized,
	ledger.ReasonForbidden:      codes.Forbidden,
	ledger.ReasonRevoked:        codes.Forbidden,
	ledger.ReasonReplay:         codes.Forbidden,
	ledger.ReasonExists:         codes.Forbidden,
	ledger.ReasonUnknownDevice:  codes.NotFound,
	ledger.ReasonStaleVersion:   codes.Forbidden,
	ledger.ReasonUnknownRelease: codes.NotFound,
	ledger.ReasonPolicy:         codes.Forbidden,
	ledger.ReasonNotFound:       codes.NotFound,
	ledger.ReasonBadOption:      codes.BadOption,
	ledger.ReasonMethod:         codes.MethodNotAllowed,
	ledger.ReasonNotAcceptable:  codes.NotAcceptable,
	ledger.ReasonIncomplete:     codes.RequestEntityIncomplete,
	ledger.ReasonFormat:         codes.UnsupportedMediaType,
	ledger.ReasonProxy:          codes.ProxyingNotSupported,
	ledger.ReasonOverloaded:     codes.TooManyRequests,
	ledger.ReasonUnavailable:    codes.ServiceUnavailable,
	// CoAP has no Insufficient Storage (RFC 7252 12.1.2 registers 5.00
	// to 5.05); 5.03 with a long Max-Age says "not now, retry later".
	ledger.ReasonStorageFull: codes.ServiceUnavailable,
	ledger.ReasonInternal:    codes.InternalServerError,
}

// codeOf maps a refusal reason to its response code; a reason missing
// from the table (TestReasonTable keeps that from happening) is 5.00.
func codeOf(reason ledger.Reason) codes.Code {
	if c, ok := responseCodes[reason]; ok {
		return c
	}
	return codes.InternalServerError
}

// formatNone is an answer without Content-Format.
const formatNone = -1

// maxDiagnostic bounds the diagnostic payload of a refusal.
const maxDiagnostic = 256

// optUint is an optional uint option value.
type optUint struct {
	set bool
	v   uint32
}

func opt(v uint32) optUint { return optUint{set: true, v: v} }

// answer is a response before it is put in a message. Answers are kept
// for retransmissions and must not be changed once made.
type answer struct {
	code     codes.Code
	format   int // a message.MediaType, or formatNone
	body     []byte
	reason   string // the result for metrics: a refusal's reason or a result*
	etag     []byte
	location []string // Location-Path
	block1   optUint
	block2   optUint
	observe  optUint
	maxAge   optUint
	size1    optUint
	size2    optUint
	// separate: no response yet. A CON request gets an empty ACK and the
	// response follows in a message of its own; a NON request gets the
	// response only.
	separate bool
}

// refuse is a refusal with a diagnostic payload (RFC 7252 5.5.2: UTF-8
// text, no Content-Format) "<reason>: <detail>".
func refuse(reason ledger.Reason, format string, a ...any) answer {
	diag := strings.ToValidUTF8(string(reason)+": "+fmt.Sprintf(format, a...), "?")
	if len(diag) > maxDiagnostic {
		n := maxDiagnostic
		for n > 0 && !utf8.RuneStart(diag[n]) {
			n--
		}
		diag = diag[:n]
	}
	an := answer{code: codeOf(reason), format: formatNone, body: []byte(diag), reason: string(reason)}
	switch {
	case reason == ledger.ReasonStorageFull:
		an.maxAge = opt(retryStorageFull)
	case an.code == codes.TooManyRequests || an.code == codes.ServiceUnavailable:
		an.maxAge = opt(retryAfter) // RFC 8516 4, RFC 7252 5.9.3.4
	}
	return an
}

// refusal is the refusal of err, a Committer's or bridge.CheckRecord's.
func (s *Server) refusal(err error) answer {
	if s.ctx.Err() != nil {
		return refuse(ledger.ReasonUnavailable, "the gateway is shutting down")
	}
	reason := ledger.ReasonOf(err)
	if reason == ledger.ReasonInternal {
		s.log.Warn("coap record failed", "error", err)
		return refuse(reason, "the gateway could not commit the record")
	}
	var re *ledger.RefusedError
	if errors.As(err, &re) {
		if last, ok := ledger.LastSeqOf(err); ok {
			// "replay: last_seq=N: <detail>": the device resyncs its counter.
			return refuse(reason, "last_seq=%d: %s", last, re.Detail)
		}
		return refuse(reason, "%s", re.Detail)
	}
	return refuse(reason, "%v", err)
}

// isRequest reports whether c is a method code (RFC 7252 12.1.1).
func isRequest(c codes.Code) bool { return c >= 1 && c <= 31 }

// handle answers one message of peer p, leaving the response in resp
// (go-coap writes it if it was modified). It is the server's one entry
// for outside bytes after go-coap's decoder and is fuzzed.
func (s *Server) handle(p *peer, req, resp *pool.Message) {
	resp.SetModified(false)
	typ := req.Type()
	if typ != message.Confirmable && typ != message.NonConfirmable {
		return // an ACK or RST of nothing this server waits for
	}
	if !isRequest(req.Code()) {
		if typ == message.Confirmable && req.Code() != codes.Empty {
			// RFC 7252 4.2: a CON message that cannot be processed is
			// rejected with a Reset.
			resp.SetCode(codes.Empty)
			resp.SetToken(nil)
			resp.ResetOptionsTo(nil)
			resp.SetType(message.Reset)
			resp.SetMessageID(req.MessageID())
		}
		return
	}
	now := s.now()
	a, dup := p.replay(req.MessageID(), now)
	if dup {
		s.m.duplicates.Inc()
	} else {
		var resource string
		resource, a = s.serve(p, req, now)
		if !a.separate {
			s.m.requests.WithLabelValues(resource, a.reason).Inc()
		}
		p.remember(req.MessageID(), a, now)
	}
	if a.separate {
		if typ == message.Confirmable {
			// An empty ACK: the response follows (RFC 7252 5.2.2).
			resp.SetCode(codes.Empty)
			resp.SetToken(nil)
			resp.ResetOptionsTo(nil)
			resp.SetType(message.Acknowledgement)
			resp.SetMessageID(req.MessageID())
		}
		return
	}
	put(resp, a)
	if typ == message.Confirmable {
		resp.SetType(message.Acknowledgement) // piggybacked (RFC 7252 5.2.1)
		resp.SetMessageID(req.MessageID())
	} else {
		resp.SetType(message.NonConfirmable)
		resp.SetMessageID(p.cc.GetMessageID())
	}
}

// put writes a into m: code, options and payload; the caller sets the
// type, message id and token.
func put(m *pool.Message, a answer) {
	m.SetCode(a.code)
	m.ResetOptionsTo(nil)
	if len(a.etag) > 0 {
		_ = m.SetETag(a.etag) // at most 8 bytes
	}
	if a.observe.set {
		m.SetObserve(a.observe.v)
	}
	for _, seg := range a.location {
		m.AddOptionString(message.LocationPath, seg)
	}
	if a.format != formatNone {
		m.SetContentFormat(message.MediaType(a.format))
	}
	if a.maxAge.set {
		m.SetOptionUint32(message.MaxAge, a.maxAge.v)
	}
	if a.block2.set {
		m.SetOptionUint32(message.Block2, a.block2.v)
	}
	if a.block1.set {
		m.SetOptionUint32(message.Block1, a.block1.v)
	}
	if a.size2.set {
		m.SetOptionUint32(message.Size2, a.size2.v)
	}
	if a.size1.set {
		m.SetOptionUint32(message.Size1, a.size1.v)
	}
	if len(a.body) > 0 {
		m.SetBody(bytes.NewReader(a.body))
	} else {
		m.SetBody(nil)
	}
}

// Options this server processes (RFC 7252 5.10, 7641, 7959, 9175).
// Uri-Host and Uri-Port are accepted and ignored, Uri-Query too except
// by config/verify; Echo and No-Response are elective and ignored.
var knownOptions = map[message.OptionID]bool{
	message.URIHost: true, message.ETag: true, message.Observe: true, message.URIPort: true,
	message.URIPath: true, message.ContentFormat: true, message.URIQuery: true, message.Accept: true,
	message.Block2: true, message.Block1: true, message.Size2: true, message.Size1: true,
}

// optRequestTag is the Request-Tag option (RFC 9175 3): it tells
// concurrent Block1 transfers to one resource apart.
const optRequestTag message.OptionID = 292

// serve routes a request and answers it. resource names it in metrics.
func (s *Server) serve(p *peer, req *pool.Message, now time.Time) (resource string, a answer) {
	for _, o := range req.Options() {
		if o.ID == message.ProxyURI || o.ID == message.ProxyScheme {
			return "other", refuse(ledger.ReasonProxy, "this server is no proxy")
		}
		if !knownOptions[o.ID] && o.ID&1 == 1 {
			// RFC 7252 5.4.1: an unrecognized critical option.
			return "other", refuse(ledger.ReasonBadOption, "critical option %d is not supported", o.ID)
		}
	}
	path, ok := uriPath(req)
	if !ok {
		return "other", refuse(ledger.ReasonNotFound, "no such resource")
	}
	parent, last, _ := cutLast(path)
	switch {
	case path == corePath:
		if req.Code() != codes.GET {
			return "core", refuse(ledger.ReasonMethod, "%s takes GET", corePath)
		}
		if acc, err := req.Accept(); err == nil && acc != message.AppLinkFormat {
			return "core", refuse(ledger.ReasonNotAcceptable, "%s is link format (40)", corePath)
		}
		a := answer{code: codes.Content, format: int(message.AppLinkFormat), body: []byte(wellKnownCore), reason: resultAnswered}
		return "core", s.block2(req, a)
	case path == proofPath:
		if req.Code() != codes.GET {
			return "proof", refuse(ledger.ReasonMethod, "%s takes GET", proofPath)
		}
		return "proof", s.getProof(req)
	case parent == dataPath:
		if req.Code() != codes.POST {
			return "data", refuse(ledger.ReasonMethod, "%s/<stream> takes POST", dataPath)
		}
		return "data", s.postRecord(p, req, last, now)
	case parent == receiptsPath:
		if req.Code() != codes.GET {
			return "receipts", refuse(ledger.ReasonMethod, "%s/<tx id> takes GET", receiptsPath)
		}
		return "receipts", s.getReceipt(p, req, last, now)
	}
	if device, rest, ok := deviceResource(path); ok {
		return s.serveDevice(p, req, device, rest, now)
	}
	return "other", refuse(ledger.ReasonNotFound, "no such resource")
}

// maxSegments bounds the Uri-Path options of a request.
const maxSegments = 8

// uriPath joins the request's Uri-Path options with '/'; false if a
// segment is empty or holds a '/' (it would name another path), or there
// are too many.
func uriPath(req *pool.Message) (string, bool) {
	var b strings.Builder
	n := 0
	for _, o := range req.Options() {
		if o.ID != message.URIPath {
			continue
		}
		n++
		if n > maxSegments || len(o.Value) == 0 || bytes.IndexByte(o.Value, '/') >= 0 {
			return "", false
		}
		if n > 1 {
			b.WriteByte('/')
		}
		b.Write(o.Value)
	}
	return b.String(), true
}

// cutLast splits a path at its last '/'.
func cutLast(path string) (parent, last string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", path, false
	}
	return path[:i], path[i+1:], true
}
