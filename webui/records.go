package webui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
)

// What the device page charts and lists of a device's records.
const (
	chartRecords    = 200 // the newest records the charts plot
	tableRecords    = 20  // the newest records the table lists
	maxChartStreams = 8   // streams charted, in name order
	maxFields       = 6   // numeric fields charted per stream, in name order
	fieldDepth      = 3   // how deep nested JSON objects are looked into ("a.b.c")
)

// The charts' drawing area in SVG user units (viewBox 0 0 chartW chartH).
const (
	chartW, chartH = 640, 220
	plotL, plotR   = 64, 628 // left and right of the plot area
	plotT, plotB   = 12, 178 // top and bottom
)

// recordsData is the records part of the device page: the charts, the
// newest records, and where to download the range shown.
type recordsData struct {
	Device   string
	Count    uint64 // the device's records; the page asks again when it changes
	Charts   []chart
	Records  []recordRow
	From, To int64  // block time range shown, Unix ms (To exclusive)
	CSV      string // download links, of the query API
	NDJSON   string
	Shown    int // records the charts are drawn from
}

// chart is one numeric field of one stream over block time.
type chart struct {
	ID            string // unique in the page, for aria-labelledby
	Stream, Field string
	Line          string // polyline points
	Dots          []dot
	YMin, YMax    string // axis labels
	XFrom, XTo    string
	Summary       string // what a screen reader says of the chart
}

type dot struct {
	X, Y  string
	Title string // "time: value"
}

// recordRow is a record in the table.
type recordRow struct {
	api.Record
	Text string // the payload as one short line
}

// deviceRecords reads and lays out the records part of device d's page.
func (s *Server) deviceRecords(d *index.Device) (*recordsData, error) {
	recs, err := s.newestRecords(d.ID)
	if err != nil {
		return nil, err
	}
	rd := &recordsData{Device: d.ID, Count: d.Records, Shown: len(recs)}
	for i := range recs[:min(len(recs), tableRecords)] {
		rd.Records = append(rd.Records, recordRow{Record: recs[i], Text: payloadText(&recs[i])})
	}
	if len(recs) == 0 {
		return rd, nil
	}
	rd.From, rd.To = recs[len(recs)-1].BlockTime, recs[0].BlockTime+1
	link := func(format string) string {
		v := url.Values{"device": {d.ID}, "from": {strconv.FormatInt(rd.From, 10)}, "to": {strconv.FormatInt(rd.To, 10)},
			"order": {"asc"}, "limit": {"all"}, "format": {format}}
		return "/api/v1/records?" + v.Encode()
	}
	rd.CSV, rd.NDJSON = link("csv"), link("ndjson")
	rd.Charts = charts(recs)
	return rd, nil
}

// recentRecords keeps the newest chartRecords records of the devices
// whose pages were open lately. Each record's payload costs a read of its
// block from the log; records never change once committed, so a page that
// follows commits reads only the records committed since its last look.
type recentRecords struct {
	mu   sync.Mutex
	devs map[string][]api.Record // newest first
}

// maxRecentDevices bounds the devices recentRecords keeps (about 60 KiB each).
const maxRecentDevices = 64

// newestRecords returns the device's newest chartRecords records, newest
// first.
func (s *Server) newestRecords(device string) ([]api.Record, error) {
	c := &s.recent
	c.mu.Lock()
	old := c.devs[device]
	c.mu.Unlock()
	var recs []api.Record
	if len(old) > 0 {
		// What committed after the newest one kept, oldest first.
		newer, err := s.d.Records(index.RecordQuery{Device: device, After: index.Position{Height: old[0].Block, Index: old[0].Index},
			Limit: chartRecords})
		switch {
		case err != nil && !errors.Is(err, index.ErrNotFound): // not found: the index was rebuilt below it; start over
			return nil, err
		case err == nil && len(newer) < chartRecords:
			slices.Reverse(newer)
			recs = append(newer, old[:min(len(old), chartRecords-len(newer))]...)
		}
	}
	if recs == nil {
		var err error
		if recs, err = s.d.Records(index.RecordQuery{Device: device, Desc: true, Limit: chartRecords}); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.devs == nil {
		c.devs = map[string][]api.Record{}
	}
	if _, ok := c.devs[device]; !ok && len(c.devs) >= maxRecentDevices {
		for id := range c.devs { // any other device: the pages open lately come back
			delete(c.devs, id)
			break
		}
	}
	c.devs[device] = recs
	return recs, nil
}

// charts draws each numeric field of each stream's JSON payloads over
// the block times it has values at; recs are newest first.
func charts(recs []api.Record) []chart {
	type point struct {
		t int64
		v float64
	}
	series := map[string]map[string][]point{} // stream -> field -> points, oldest first
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		if r.Payload == nil {
			continue
		}
		var v any
		if json.Unmarshal(r.Payload, &v) != nil {
			continue
		}
		fields := map[string]float64{}
		numbers(v, "", 0, fields)
		for f, x := range fields {
			if series[r.Stream] == nil {
				series[r.Stream] = map[string][]point{}
			}
			series[r.Stream][f] = append(series[r.Stream][f], point{r.BlockTime, x})
		}
	}
	streams := sortedKeys(series)
	var out []chart
	for _, st := range streams[:min(len(streams), maxChartStreams)] {
		fields := sortedKeys(series[st])
		for _, f := range fields[:min(len(fields), maxFields)] {
			pts := series[st][f]
			lo, hi := pts[0].v, pts[0].v
			for _, p := range pts {
				lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
			}
			flat := lo == hi
			if flat { // a flat line in the middle
				lo, hi = lo-1, hi+1
			}
			from, to := pts[0].t, pts[len(pts)-1].t
			span := float64(max(1, to-from))
			c := chart{ID: fmt.Sprintf("chart-%d", len(out)), Stream: st, Field: f, YMin: num(lo), YMax: num(hi),
				XFrom: utcClock(from), XTo: utcClock(to)}
			var line []string
			for _, p := range pts {
				x := plotL + float64(p.t-from)/span*(plotR-plotL)
				y := plotB - (p.v-lo)/(hi-lo)*(plotB-plotT)
				xs, ys := strconv.FormatFloat(x, 'f', 1, 64), strconv.FormatFloat(y, 'f', 1, 64)
				line = append(line, xs+","+ys)
				c.Dots = append(c.Dots, dot{X: xs, Y: ys, Title: utcClock(p.t) + ": " + num(p.v)})
			}
			c.Line = strings.Join(line, " ")
			last := pts[len(pts)-1]
			c.Summary = fmt.Sprintf("%s of stream %s over block time, %d points from %s to %s; lowest %s, highest %s, last %s",
				f, st, len(pts), utcClock(pts[0].t), utcClock(last.t), num(lo), num(hi), num(last.v))
			if flat {
				c.Summary = fmt.Sprintf("%s of stream %s over block time, %d points from %s to %s, all %s",
					f, st, len(pts), utcClock(pts[0].t), utcClock(last.t), num(last.v))
			}
			out = append(out, c)
		}
	}
	return out
}

// numbers collects the numeric fields of a JSON value, nested objects'
// as "a.b", down to fieldDepth.
func numbers(v any, prefix string, depth int, out map[string]float64) {
	m, ok := v.(map[string]any)
	if !ok || depth >= fieldDepth {
		return
	}
	for k, x := range m {
		switch x := x.(type) {
		case float64:
			out[prefix+k] = x
		case map[string]any:
			numbers(x, prefix+k+".", depth+1, out)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// num is a value for a label: short, without float noise.
func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// clock is a block time for a label, in UTC.
func utcClock(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") }

// payloadText is a record's payload on one short line.
func payloadText(r *api.Record) string {
	var t string
	switch {
	case r.PayloadBase64 != nil:
		t = "base64: " + *r.PayloadBase64
	case len(r.Payload) > 0 && r.Payload[0] == '"':
		json.Unmarshal(r.Payload, &t)
	default:
		var b bytes.Buffer
		json.Compact(&b, r.Payload)
		t = b.String()
	}
	t = strings.Join(strings.Fields(t), " ")
	if rs := []rune(t); len(rs) > 80 {
		t = string(rs[:79]) + "…"
	}
	return t
}

// recordsFragment serves the records part of a device page alone: the
// page's script asks for it as blocks commit, with n, the record count it
// shows; 204 if the device has no other records since.
func (s *Server) recordsFragment(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	d, err := s.d.Index.Device(id)
	if errors.Is(err, index.ErrNotFound) {
		http.Error(w, "no such device", http.StatusNotFound)
		return
	} else if err != nil {
		http.Error(w, "reading the device failed", http.StatusInternalServerError)
		return
	}
	if s.d.Records == nil {
		http.Error(w, "record charts are off", http.StatusNotFound)
		return
	}
	if r.URL.Query().Get("n") == strconv.FormatUint(d.Records, 10) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rd, err := s.deviceRecords(d)
	if err != nil {
		s.d.Logger.Error("webui records failed", "device", id, "err", err)
		http.Error(w, "reading the records failed", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := s.pages["device"].ExecuteTemplate(&buf, "records", rd); err != nil {
		s.d.Logger.Error("webui template failed", "page", "records", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Record-Count", strconv.FormatUint(d.Records, 10))
	w.Write(buf.Bytes())
}
