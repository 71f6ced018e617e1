package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// recordsServer runs a node with two devices that committed records of
// JSON, text and binary payloads, and the API on it.
type recordsServer struct {
	n   *nodetest.Node
	url string
	ids []string // the records' tx ids, in commit order
}

func startRecordsServer(t *testing.T) *recordsServer {
	n := nodetest.Start(t, nodetest.Options{})
	keys := map[string]crypto.Signer{"dev-a": n.Enroll(t, "dev-a", ledger.EdDSA), "dev-b": n.Enroll(t, "dev-b", ledger.ES256)}
	s := &recordsServer{n: n}
	seq := map[string]uint64{}
	for _, r := range []struct{ dev, stream, ctype, payload string }{
		{"dev-a", "temp", "application/json", `{"c":21.5,"ok":true}`},
		{"dev-b", "temp", "application/json", `{"c":19}`},
		{"dev-a", "log", "text/plain; charset=utf-8", "boot, \"ok\"\nline 2"},
		{"dev-a", "raw", "application/octet-stream", "\x00\x01\xff"},
		{"dev-a", "temp", "application/json", `not json`},
		{"dev-a", "temp", "application/json", `{"c":22}`},
	} {
		seq[r.dev]++
		env, err := ledger.SignTx(keys[r.dev], r.dev, &ledger.Body{Kind: ledger.KindRecord, ChainID: n.Genesis.ChainID,
			Record: &ledger.Record{DeviceID: r.dev, Stream: r.stream, Seq: seq[r.dev], Time: 1_700_000_000_000 + int64(len(s.ids)),
				ContentType: r.ctype, Payload: []byte(r.payload)}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = n.Chain.Submit(ctx, env)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		id := ledger.TxID(env)
		s.ids = append(s.ids, hex.EncodeToString(id[:]))
	}
	srv := New(NodeInfo{ChainID: n.Genesis.ChainID, MaxTxBytes: 4096}, n.Chain, n.Index(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	s.url = hs.URL + "/api/v1/records"
	return s
}

func get(t *testing.T, u string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func getRecords(t *testing.T, u string) RecordsBody {
	t.Helper()
	resp, body := get(t, u)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	var rb RecordsBody
	if err := json.Unmarshal(body, &rb); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
	compact(t, rb.Records)
	return rb
}

// compact removes the indentation the JSON answer gives payloads.
func compact(t *testing.T, rs []Record) {
	for i := range rs {
		if rs[i].Payload == nil {
			continue
		}
		var b bytes.Buffer
		if err := json.Compact(&b, rs[i].Payload); err != nil {
			t.Fatal(err)
		}
		rs[i].Payload = b.Bytes()
	}
}

func TestRecordsJSON(t *testing.T) {
	s := startRecordsServer(t)
	rb := getRecords(t, s.url+"?device=dev-a&order=asc")
	if len(rb.Records) != 5 || rb.Next != "" {
		t.Fatalf("dev-a's records: %d, next %q; want 5 and no next", len(rb.Records), rb.Next)
	}
	payloads := []string{`{"c":21.5,"ok":true}`, `"boot, \"ok\"\nline 2"`, "", "", `{"c":22}`}
	b64 := []string{"", "", base64.StdEncoding.EncodeToString([]byte("\x00\x01\xff")), base64.StdEncoding.EncodeToString([]byte("not json")), ""}
	for i, r := range rb.Records {
		if string(r.Payload) != payloads[i] {
			t.Errorf("record %d (%s): payload %s, want %s", i, r.ContentType, r.Payload, payloads[i])
		}
		got := ""
		if r.PayloadBase64 != nil {
			got = *r.PayloadBase64
		}
		if got != b64[i] {
			t.Errorf("record %d (%s): payload_base64 %q, want %q", i, r.ContentType, got, b64[i])
		}
		if r.Device != "dev-a" || r.Receipt != "/api/v1/txs/"+r.TxID+"/receipt" || r.BlockTime == 0 || r.Time == 0 || r.Block == 0 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	// The receipt link answers.
	if resp, body := get(t, strings.TrimSuffix(s.url, "/api/v1/records")+rb.Records[0].Receipt); resp.StatusCode != http.StatusOK {
		t.Errorf("receipt link: %d %s", resp.StatusCode, body)
	}
	// Newest first by default; device and stream combine.
	rb = getRecords(t, s.url+"?device=dev-a&stream=temp")
	var seqs []uint64
	for _, r := range rb.Records {
		seqs = append(seqs, r.Seq)
	}
	if !reflect.DeepEqual(seqs, []uint64{5, 4, 1}) {
		t.Errorf("dev-a temp, newest first: seqs %v, want [5 4 1]", seqs)
	}
	// Pages of 2 follow next to the end, across blocks, in both orders.
	for _, order := range []string{"asc", "desc"} {
		var ids []string
		u := s.url + "?limit=2&order=" + order
		for range 10 {
			rb := getRecords(t, u)
			for _, r := range rb.Records {
				ids = append(ids, r.TxID)
			}
			if rb.Next == "" {
				break
			}
			u = s.url + "?limit=2&order=" + order + "&after=" + rb.Next
		}
		want := append([]string(nil), s.ids...)
		if order == "desc" {
			for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
				want[i], want[j] = want[j], want[i]
			}
		}
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("pages %s: %v\nwant %v", order, ids, want)
		}
	}
	// A time range on the block time: from the first record's block on,
	// in RFC 3339, takes them all; to it, exclusive, takes none.
	first := getRecords(t, s.url+"?order=asc&limit=1").Records[0]
	from := time.UnixMilli(first.BlockTime).UTC().Format(time.RFC3339Nano)
	if rb := getRecords(t, s.url+"?from="+url.QueryEscape(from)); len(rb.Records) != len(s.ids) {
		t.Errorf("from %s: %d records, want %d", from, len(rb.Records), len(s.ids))
	}
	if rb := getRecords(t, s.url+"?to="+strconv.FormatInt(first.BlockTime, 10)); len(rb.Records) != 0 {
		t.Errorf("to %d: %d records, want none", first.BlockTime, len(rb.Records))
	}
}

func TestRecordsNDJSONAndCSV(t *testing.T) {
	s := startRecordsServer(t)
	want := getRecords(t, s.url+"?order=asc").Records

	for _, u := range [][]string{{s.url + "?order=asc&format=ndjson"}, {s.url + "?order=asc", "Accept", "application/x-ndjson"}} {
		resp, body := get(t, u[0], u[1:]...)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var got []Record
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
			}
			got = append(got, r)
		}
		compact(t, got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("NDJSON of %v differs from JSON:\n%v\n%v", u, got, want)
		}
	}

	resp, body := get(t, s.url+"?order=asc&format=csv")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want)+1 || !reflect.DeepEqual(rows[0], CSVHeader) {
		t.Fatalf("CSV: %d rows, header %v", len(rows), rows[0])
	}
	for i, r := range want {
		row := rows[i+1]
		if row[0] != r.TxID || row[1] != strconv.FormatUint(r.Block, 10) || row[4] != r.Device || row[6] != strconv.FormatUint(r.Seq, 10) {
			t.Errorf("CSV row %d: %v, want record %+v", i, row, r)
		}
	}
	if got := rows[3][9]; got != "boot, \"ok\"\nline 2" { // text as is, quoted by CSV
		t.Errorf("CSV text payload %q", got)
	}
	if got := rows[4][9]; got != base64.StdEncoding.EncodeToString([]byte("\x00\x01\xff")) {
		t.Errorf("CSV binary payload %q, want base64", got)
	}
	if got := rows[1][9]; got != `{"c":21.5,"ok":true}` {
		t.Errorf("CSV JSON payload %q", got)
	}
}

// TestRecordsExport: limit=all streams every record in pages of
// exportPage, without a next; a limited export names the next page.
func TestRecordsExport(t *testing.T) {
	s := startRecordsServer(t)
	defer func(n int) { exportPage = n }(exportPage)
	exportPage = 2
	resp, body := get(t, s.url+"?format=ndjson&limit=all&order=asc")
	if n := strings.Count(string(body), "\n"); resp.StatusCode != http.StatusOK || n != len(s.ids) || resp.Header.Get("X-Next-Cursor") != "" {
		t.Errorf("export of all: %d, %d lines, next %q; want %d lines, no next", resp.StatusCode, n, resp.Header.Get("X-Next-Cursor"), len(s.ids))
	}
	resp, body = get(t, s.url+"?format=csv&limit=4&order=asc")
	next := resp.Header.Get("X-Next-Cursor")
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rows); n != 5 || next == "" || !strings.Contains(resp.Header.Get("Link"), "after="+next) {
		t.Fatalf("CSV of 4: %d lines, next %q, link %q", n, next, resp.Header.Get("Link"))
	}
	p, err := DecodeCursor(next)
	if err != nil {
		t.Fatal(err)
	}
	rest := getRecords(t, s.url+"?order=asc&after="+next)
	if len(rest.Records) != 2 || rest.Records[0].TxID != s.ids[4] || p.Height == 0 {
		t.Errorf("after the CSV's next: %d records", len(rest.Records))
	}
}

func TestRecordsBadParameters(t *testing.T) {
	s := startRecordsServer(t)
	for _, c := range []struct{ query, names string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=all", "limit"}, // JSON has pages
		{"limit=x&format=csv", "limit"},
		{"order=up", "order"},
		{"from=yesterday", "from"},
		{"to=-5", "to"},
		{"from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"},
		{"after=bm9wZQ", "after"}, // "nope"
		{"after=" + EncodeCursor(index.Position{Height: 1 << 40}), "after"},
		{"format=xml", "format"},
		{"devce=a", "devce"},
		{"device=a&device=b", "device"},
	} {
		resp, body := get(t, s.url+"?"+c.query)
		var eb errorBody
		json.Unmarshal(body, &eb)
		if resp.StatusCode != http.StatusBadRequest || eb.Reason != string(ledger.ReasonMalformed) || !strings.Contains(eb.Error, c.names) {
			t.Errorf("?%s: %d %s; want 400 malformed naming %s", c.query, resp.StatusCode, body, c.names)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, p := range []index.Position{{Height: 1}, {Height: 7, Index: 999}, {Height: 1<<64 - 1, Index: 1<<64 - 1}} {
		got, err := DecodeCursor(EncodeCursor(p))
		if err != nil || got != p {
			t.Errorf("cursor of %+v = %+v, %v", p, got, err)
		}
	}
	for _, c := range []string{"", "!!", base64.RawURLEncoding.EncodeToString([]byte("0.1")), base64.RawURLEncoding.EncodeToString([]byte("5")),
		base64.RawURLEncoding.EncodeToString([]byte("5.x"))} {
		if _, err := DecodeCursor(c); err == nil {
			t.Errorf("DecodeCursor(%q) accepted", c)
		}
	}
}

// FuzzDecodeCursor: a cursor from outside decodes without panicking, and
// what it accepts encodes back to itself.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(index.Position{Height: 12, Index: 3}))
	f.Add("")
	f.Add("MC4w")
	f.Fuzz(func(t *testing.T, c string) {
		if len(c) > 256 {
			return
		}
		p, err := DecodeCursor(c)
		if err != nil {
			return
		}
		if p.Height == 0 {
			t.Fatalf("DecodeCursor(%q) accepted height 0", c)
		}
		if again, err := DecodeCursor(EncodeCursor(p)); err != nil || again != p {
			t.Fatalf("DecodeCursor(%q) = %+v; its encoding decodes to %+v, %v", c, p, again, err)
		}
	})
}
