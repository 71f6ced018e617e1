package webui

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
)

func TestCharts(t *testing.T) {
	rec := func(stream string, ms int64, payload string) api.Record {
		r := api.Record{Stream: stream, BlockTime: ms}
		if json.Valid([]byte(payload)) {
			r.Payload = json.RawMessage(payload)
		} else {
			b64 := "eA=="
			r.PayloadBase64 = &b64
		}
		return r
	}
	// Newest first, as the page reads them.
	recs := []api.Record{
		rec("env", 4000, `{"t":22,"s":{"v":3.3,"deep":{"x":1,"too":{"deep":9}}},"name":"a","on":true}`),
		rec("raw", 3500, `not json`),
		rec("env", 3000, `{"t":21,"s":{"v":3.3}}`),
		rec("log", 2500, `"text"`),
		rec("env", 2000, `{"t":20,"list":[1,2]}`),
	}
	cs := charts(recs)
	var names []string
	for _, c := range cs {
		names = append(names, c.Stream+"/"+c.Field)
	}
	if want := []string{"env/s.deep.x", "env/s.v", "env/t"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("charts %v, want %v", names, want)
	}
	temp := cs[2]
	if len(temp.Dots) != 3 || temp.YMin != "20" || temp.YMax != "22" || temp.XFrom == temp.XTo {
		t.Errorf("t chart: %d dots, y %s..%s, x %s..%s", len(temp.Dots), temp.YMin, temp.YMax, temp.XFrom, temp.XTo)
	}
	// Oldest on the left at the bottom, newest on the right at the top.
	if temp.Dots[0].X != "64.0" || temp.Dots[0].Y != "178.0" || temp.Dots[2].X != "628.0" || temp.Dots[2].Y != "12.0" {
		t.Errorf("t chart dots %+v", temp.Dots)
	}
	// A constant is a flat line in the middle, and says so.
	flat := cs[1]
	if len(flat.Dots) != 2 || flat.Dots[0].Y != flat.Dots[1].Y || !strings.Contains(flat.Summary, "all 3.3") {
		t.Errorf("flat chart: %+v", flat)
	}
	// A single point does not divide by zero.
	one := cs[0]
	if len(one.Dots) != 1 || strings.Contains(one.Line, "NaN") || strings.Contains(one.Line, "Inf") {
		t.Errorf("one-point chart: %+v", one)
	}
	if got := charts(nil); len(got) != 0 {
		t.Errorf("charts of nothing: %v", got)
	}
}

// oneDevice is an index with one device, "th-1", of n records.
type oneDevice struct {
	emptyIndex
	n uint64
}

func (o *oneDevice) Device(id string) (*index.Device, error) {
	if id != "th-1" {
		return nil, index.ErrNotFound
	}
	return &index.Device{ID: id, Status: index.StatusActive, Records: o.n, Groups: []string{}}, nil
}

// TestRecordsFragment: the records part of a device page, which the
// page's script asks for as blocks commit, needs a session, is 204
// while the device has no new record, and carries the charts, the table,
// the download links and the count otherwise.
func TestRecordsFragment(t *testing.T) {
	u := newTestUI(t, false)
	idx := &oneDevice{n: 2}
	u.ui.d.Index = idx
	// The device's records, oldest first; Records answers queries of them
	// as the index does.
	all := []api.Record{
		{TxID: "aa", Block: 7, BlockTime: 1_000, Device: "th-1", Stream: "env", Seq: 1, Payload: json.RawMessage(`{"temp":20}`)},
		{TxID: "bb", Block: 9, BlockTime: 2_000, Device: "th-1", Stream: "env", Seq: 2, Payload: json.RawMessage(`{"temp":21}`)},
	}
	var asked []index.RecordQuery
	u.ui.d.Records = func(q index.RecordQuery) ([]api.Record, error) {
		asked = append(asked, q)
		out := []api.Record{}
		for _, r := range all {
			if q.After == (index.Position{}) || !q.Desc && r.Block > q.After.Height || q.Desc && r.Block < q.After.Height {
				out = append(out, r)
			}
		}
		if q.Desc {
			slices.Reverse(out)
		}
		return out[:min(len(out), q.Limit)], nil
	}
	c := u.client()
	if code, _, h := u.do(c, "GET", "/devices/th-1/records?n=1", nil); code == http.StatusOK || h.Get("X-Record-Count") != "" {
		t.Errorf("without a session: %d, count %q; want no fragment", code, h.Get("X-Record-Count"))
	}
	u.login(c, testPassword)

	code, body, _ := u.do(c, "GET", "/devices/th-1", nil)
	if code != http.StatusOK || !strings.Contains(body, `id="device-records" data-records-src="/devices/th-1/records" data-n="2"`) {
		t.Fatalf("device page: %d\n%s", code, body)
	}
	if code, body, _ := u.do(c, "GET", "/devices/th-1/records?n=2", nil); code != http.StatusNoContent || body != "" {
		t.Errorf("no new record: %d %q; want 204", code, body)
	}
	idx.n = 3
	all = append(all, api.Record{TxID: "cc", Block: 12, BlockTime: 3_000, Device: "th-1", Stream: "env", Seq: 3, Payload: json.RawMessage(`{"temp":22}`)})
	code, body, h := u.do(c, "GET", "/devices/th-1/records?n=2", nil)
	if code != http.StatusOK || h.Get("X-Record-Count") != "3" {
		t.Fatalf("a new record: %d, count %q", code, h.Get("X-Record-Count"))
	}
	for _, want := range []string{`<svg class="rchart"`, `<title id="chart-0-t">temp (env)</title>`, `<circle class="pt"`,
		`format=csv`, `format=ndjson`, `from=1000`, `to=3001`, `device=th-1`, `<code>{&#34;temp&#34;:22}</code>`, "block time (UTC)"} {
		if !strings.Contains(body, want) {
			t.Errorf("fragment lacks %q:\n%s", want, body)
		}
	}
	if strings.Count(body, `<circle class="pt"`) != 3 || strings.Contains(body, "<html") {
		t.Errorf("fragment: want 3 points and no page around them:\n%s", body)
	}
	// The page read the newest records; the refresh only those after them.
	if q := asked[0]; q.Device != "th-1" || !q.Desc || q.Limit != chartRecords || q.After != (index.Position{}) {
		t.Errorf("records asked for by the page: %+v", q)
	}
	if q := asked[len(asked)-1]; q.Device != "th-1" || q.Desc || q.After != (index.Position{Height: 9}) {
		t.Errorf("records asked for by the refresh: %+v; want those after block 9", q)
	}
	if code, _, _ := u.do(c, "GET", "/devices/nobody/records", nil); code != http.StatusNotFound {
		t.Errorf("an unknown device: %d, want 404", code)
	}
}

// TestNewestRecords: the device pages' records are read once, then only
// what committed since; more new records than a chart holds, or a cursor
// the index no longer has, start over.
func TestNewestRecords(t *testing.T) {
	var all []api.Record // oldest first, a record per block
	add := func(n int) {
		for range n {
			h := uint64(len(all) + 1)
			all = append(all, api.Record{Block: h, Seq: h, Device: "d"})
		}
	}
	var reads int // records read, each a block read in the gateway
	gone := false // the index was rebuilt below the cursor
	s := &Server{d: Deps{Records: func(q index.RecordQuery) ([]api.Record, error) {
		if gone && q.After != (index.Position{}) {
			return nil, index.ErrNotFound
		}
		var out []api.Record
		for _, r := range all {
			if q.After == (index.Position{}) || !q.Desc && r.Block > q.After.Height {
				out = append(out, r)
			}
		}
		if q.Desc {
			slices.Reverse(out)
		}
		out = out[:min(len(out), q.Limit)]
		reads += len(out)
		return out, nil
	}}}
	check := func(what string, wantReads int) {
		t.Helper()
		got, err := s.newestRecords("d")
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(all[max(0, len(all)-chartRecords):])
		slices.Reverse(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d records from seq %d, want %d from seq %d", what, len(got), got[0].Seq, len(want), want[0].Seq)
		}
		if reads != wantReads {
			t.Errorf("%s: read %d records, want %d", what, reads, wantReads)
		}
		reads = 0
	}
	add(250)
	check("first look", chartRecords)
	add(3)
	check("3 new", 3)
	check("nothing new", 0)
	add(chartRecords + 5)
	check("more new than a chart holds", chartRecords+chartRecords)
	gone = true
	add(1)
	check("the index rebuilt below the cursor", chartRecords)
}
