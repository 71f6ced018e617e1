package api

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Record is a committed data.record as GET /api/v1/records answers it.
type Record struct {
	TxID        string `json:"tx_id"` // hex
	Block       uint64 `json:"block"` // height
	Index       uint64 `json:"index"` // in the block
	BlockTime   int64  `json:"block_time"`
	Device      string `json:"device"`
	Stream      string `json:"stream"`
	Seq         uint64 `json:"seq"`
	Time        int64  `json:"time"` // the device's clock, Unix ms
	ContentType string `json:"content_type"`
	// Payload is the payload as a JSON value: itself if the content type
	// is JSON and it parses, a string if the content type is text/* and
	// it is UTF-8. Otherwise PayloadBase64 holds it.
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 *string         `json:"payload_base64,omitempty"`
	Receipt       string          `json:"receipt"` // path of its receipt
}

// RecordsBody is the JSON answer of GET /api/v1/records.
type RecordsBody struct {
	Records []Record `json:"records"`
	// Next is the cursor (the after parameter) of the next page; empty
	// when this page was not full.
	Next string `json:"next,omitempty"`
	// PrunedHeight says that retention pruned the records of blocks 1 to
	// it: no query returns them (docs/retention.md). 0: none pruned.
	PrunedHeight uint64 `json:"pruned_height,omitempty"`
}

// Formats of the answer.
const (
	formatJSON   = "json"
	formatNDJSON = "ndjson"
	formatCSV    = "csv"
)

// exportPage is how many records an unlimited export reads at a time,
// the memory it holds, whatever the range.
var exportPage = index.MaxLimit // a variable for tests

// recordParams are the parameters GET /api/v1/records accepts.
var recordParams = []string{"device", "stream", "from", "to", "after", "limit", "order", "format"}

// CSVHeader is the header row of the CSV format.
var CSVHeader = []string{"tx_id", "block", "index", "block_time", "device", "stream", "seq", "time", "content_type", "payload"}

// EncodeCursor returns the opaque cursor of a position, as in next.
func EncodeCursor(p index.Position) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d", p.Height, p.Index))
}

// DecodeCursor is the inverse of EncodeCursor.
func DecodeCursor(c string) (index.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		h, i, ok := strings.Cut(string(b), ".")
		var p index.Position
		p.Height, err = strconv.ParseUint(h, 10, 64)
		if err == nil && ok && p.Height > 0 {
			if p.Index, err = strconv.ParseUint(i, 10, 64); err == nil {
				return p, nil
			}
		}
	}
	return index.Position{}, errors.New("not a cursor")
}

// recordRequest is a parsed GET /api/v1/records.
type recordRequest struct {
	q      index.RecordQuery
	all    bool // limit=all: every match, streamed (NDJSON and CSV only)
	format string
}

// badParam is a parameter's error: which one, what it got, what it takes.
func badParam(name, got, want string) error {
	return fmt.Errorf("parameter %s=%q: want %s", name, got, want)
}

func parseRecordRequest(r *http.Request) (recordRequest, error) {
	v := r.URL.Query()
	for name := range v {
		if !slices.Contains(recordParams, name) {
			return recordRequest{}, fmt.Errorf("unknown parameter %q: want %s", name, strings.Join(recordParams, ", "))
		}
	}
	for _, name := range recordParams {
		if len(v[name]) > 1 {
			return recordRequest{}, fmt.Errorf("parameter %s given %d times: want it once", name, len(v[name]))
		}
	}
	req := recordRequest{q: index.RecordQuery{Device: v.Get("device"), Stream: v.Get("stream"), Limit: 100}}
	var err error
	if req.q.From, err = parseTime(v, "from"); err != nil {
		return req, err
	}
	if req.q.To, err = parseTime(v, "to"); err != nil {
		return req, err
	}
	if req.q.From != 0 && req.q.To != 0 && req.q.From >= req.q.To {
		return req, fmt.Errorf("parameters from=%q and to=%q: want from before to", v.Get("from"), v.Get("to"))
	}
	switch o := v.Get("order"); o {
	case "", "desc":
		req.q.Desc = true
	case "asc":
	default:
		return req, badParam("order", o, "asc or desc")
	}
	if c := v.Get("after"); c != "" {
		if req.q.After, err = DecodeCursor(c); err != nil {
			return req, badParam("after", c, "the next of an earlier answer")
		}
	}
	if req.format, err = recordFormat(r); err != nil {
		return req, err
	}
	switch l := v.Get("limit"); {
	case l == "":
	case (l == "all" || l == "0") && req.format != formatJSON:
		req.all = true
	default:
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > index.MaxLimit {
			want := fmt.Sprintf("1 to %d (or all, with format ndjson or csv)", index.MaxLimit)
			return req, badParam("limit", l, want)
		}
		req.q.Limit = n
	}
	return req, nil
}

// parseTime reads a time parameter: RFC 3339 or Unix milliseconds; 0 if
// absent.
func parseTime(v url.Values, name string) (int64, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	want := "RFC 3339 (2026-01-02T15:04:05Z) or Unix milliseconds"
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms <= 0 {
			return 0, badParam(name, s, want+" after 1970")
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UnixMilli() <= 0 {
		return 0, badParam(name, s, want)
	}
	return t.UnixMilli(), nil
}

// recordFormat is the format parameter, else what Accept asks for, else JSON.
func recordFormat(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case formatJSON, formatNDJSON, formatCSV:
		return f, nil
	case "":
	default:
		return "", badParam("format", f, "json, ndjson or csv")
	}
	for _, a := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(a))
		switch mt {
		case "application/x-ndjson":
			return formatNDJSON, nil
		case "text/csv":
			return formatCSV, nil
		}
	}
	return formatJSON, nil
}

// Records returns the records that match q with their payloads, which it
// reads from the block log.
func (s *Server) Records(q index.RecordQuery) ([]Record, error) {
	infos, err := s.index.QueryRecords(q)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(infos))
	var b *ledger.Block // the block of the previous record: records of one block are read together
	for i := range infos {
		ri := &infos[i]
		if b == nil || b.Header.Height != ri.Height {
			if b, err = s.ledger.Block(ri.Height); err != nil {
				return nil, err
			}
		}
		rec, err := newRecord(ri, b)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func newRecord(ri *index.RecordInfo, b *ledger.Block) (Record, error) {
	if ri.Index >= uint64(len(b.Txs)) {
		return Record{}, fmt.Errorf("api: record %s: block %d has %d txs", ri.ID, ri.Height, len(b.Txs))
	}
	if len(b.Txs[ri.Index]) == 0 && b.IsPruned() {
		// Retention pruned it between the index query and this read.
		return Record{}, fmt.Errorf("api: record %s at %d.%d: %w", ri.ID, ri.Height, ri.Index, ledger.ErrPruned)
	}
	tx, err := ledger.DecodeTx(b.Txs[ri.Index], 0)
	if err != nil || tx.Body.Record == nil {
		return Record{}, fmt.Errorf("api: record %s at %d.%d: not a record in the block log: %v", ri.ID, ri.Height, ri.Index, err)
	}
	rec := Record{
		TxID: ri.ID, Block: ri.Height, Index: ri.Index, BlockTime: ri.BlockTime, Device: ri.Device, Stream: ri.Stream,
		Seq: ri.Seq, Time: ri.DeviceTime, ContentType: ri.ContentType, Receipt: "/api/v1/txs/" + ri.ID + "/receipt",
	}
	rec.Payload = decodePayload(ri.ContentType, tx.Body.Record.Payload)
	if rec.Payload == nil {
		b64 := base64.StdEncoding.EncodeToString(tx.Body.Record.Payload)
		rec.PayloadBase64 = &b64
	}
	return rec, nil
}

// decodePayload returns p as a JSON value if its content type says JSON
// and it parses, as a JSON string if the type is text/* and p is UTF-8;
// else nil.
func decodePayload(contentType string, p []byte) json.RawMessage {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if json.Valid(p) {
			return json.RawMessage(p)
		}
	case strings.HasPrefix(mt, "text/"):
		if utf8.Valid(p) {
			s, _ := json.Marshal(string(p))
			return s
		}
	}
	return nil
}

// csvPayload is a record's payload in the CSV format: the JSON text, the
// text, or base64.
func csvPayload(r *Record) string {
	if r.PayloadBase64 != nil {
		return *r.PayloadBase64
	}
	if r.Payload[0] == '"' {
		var s string
		if json.Unmarshal(r.Payload, &s) == nil {
			return s
		}
	}
	return string(r.Payload)
}

// CSVRow is a record's row in the CSV format (columns as CSVHeader).
func CSVRow(r *Record) []string {
	return []string{r.TxID, strconv.FormatUint(r.Block, 10), strconv.FormatUint(r.Index, 10), strconv.FormatInt(r.BlockTime, 10),
		r.Device, r.Stream, strconv.FormatUint(r.Seq, 10), strconv.FormatInt(r.Time, 10), r.ContentType, csvPayload(r)}
}

// queryRecords serves GET /api/v1/records.
func (s *Server) queryRecords(w http.ResponseWriter, r *http.Request) {
	req, err := parseRecordRequest(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, string(ledger.ReasonMalformed), err.Error())
		return
	}
	if req.all {
		req.q.Limit = exportPage
	}
	recs, err := s.Records(req.q)
	if errors.Is(err, index.ErrNotFound) {
		writeError(w, http.StatusBadRequest, string(ledger.ReasonMalformed),
			badParam("after", r.URL.Query().Get("after"), "the next of an earlier answer: it names no committed tx here").Error())
		return
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	next := ""
	if !req.all && len(recs) == req.q.Limit {
		next = EncodeCursor(index.Position{Height: recs[len(recs)-1].Block, Index: recs[len(recs)-1].Index})
	}
	pruned, _ := s.index.PrunedHeight() // a hint: an error leaves it out
	if req.format == formatJSON {
		writeJSON(w, http.StatusOK, RecordsBody{Records: recs, Next: next, PrunedHeight: pruned})
		return
	}
	h := w.Header()
	if pruned > 0 {
		h.Set("X-Pruned-Height", strconv.FormatUint(pruned, 10))
	}
	if next != "" {
		h.Set("X-Next-Cursor", next)
		u := *r.URL
		v := u.Query()
		v.Set("after", next)
		u.RawQuery = v.Encode()
		h.Set("Link", "<"+u.RequestURI()+`>; rel="next"`)
	}
	var write func(*Record) error
	var flush func() error
	switch req.format {
	case formatNDJSON:
		h.Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		write = func(rec *Record) error { return enc.Encode(rec) }
		flush = func() error { return nil }
	case formatCSV:
		h.Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		if err := cw.Write(CSVHeader); err != nil {
			return
		}
		write = func(rec *Record) error { return cw.Write(CSVRow(rec)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	}
	rc := http.NewResponseController(w)
	// An export may take longer than the server's write timeout.
	rc.SetWriteDeadline(time.Time{})
	for {
		for i := range recs {
			if write(&recs[i]) != nil {
				return // the client is gone
			}
		}
		if flush() != nil || rc.Flush() != nil {
			return
		}
		if !req.all || len(recs) < req.q.Limit || r.Context().Err() != nil {
			return
		}
		last := recs[len(recs)-1]
		req.q.After = index.Position{Height: last.Block, Index: last.Index}
		if recs, err = s.Records(req.q); err != nil {
			// The status is sent: abort the connection so the client sees
			// a broken transfer rather than a short export, and log why.
			s.logger.Error("api record export failed", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
}
