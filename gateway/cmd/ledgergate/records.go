package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
)

func tokenFlag(fs *flagSet) *string {
	return fs.String("token", "", "API token, sent as 'Authorization: Bearer TOKEN' (default: $"+tokenEnv+")")
}

// apiClient is the client of --api and --token (newClient already took
// $LEDGERGATE_TOKEN; --token wins).
func apiClient(apiURL *apiTarget, token string) *client {
	c := apiURL.client()
	if token != "" {
		c.token = token
	}
	return c
}

const recordsExamples = `
The time flags take RFC 3339 (2026-12-06T10:00:00Z), Unix milliseconds, or a
duration before now (90m, 24h). They bound the block time, the time the
gateways certified: --from inclusive, --to exclusive.

Examples:
  ledgergate records --device sensor-7
      the device's newest 100 records, as a table
  ledgergate records --device sensor-7 --stream temp --from 24h --order asc
      its temperature records of the last day, oldest first
  ledgergate records --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z --all --format csv > day.csv
      every record of one day, as CSV (streamed, whatever the size)
  ledgergate records --format ndjson --all | jq .payload
      every record, one JSON object a line
`

func cmdRecords(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "records")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(fs.Output(), recordsExamples) }
	apiURL := apiFlag(fs)
	token := tokenFlag(fs)
	deviceID := fs.String("device", "", "only this device's records")
	stream := fs.String("stream", "", "only records of this stream")
	from := fs.String("from", "", "only records in blocks at or after this time")
	to := fs.String("to", "", "only records in blocks before this time")
	limit := fs.Int("limit", 100, "print at most this many records")
	all := fs.Bool("all", false, "print every matching record (no --limit)")
	order := fs.String("order", "desc", "asc (oldest first) or desc (newest first)")
	format := fs.String("format", "table", "table, json (an array), ndjson (a record a line) or csv")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument "+strconv.Quote(pos[0]))
	}
	switch {
	case *order != "asc" && *order != "desc":
		return usageError(fs, "--order: want asc or desc")
	case *format != "table" && *format != "json" && *format != "ndjson" && *format != "csv":
		return usageError(fs, "--format: want table, json, ndjson or csv")
	case !*all && *limit < 1:
		return usageError(fs, "--limit: want 1 or more (or --all)")
	}
	q := url.Values{}
	for name, v := range map[string]string{"device": *deviceID, "stream": *stream, "order": *order} {
		if v != "" {
			q.Set(name, v)
		}
	}
	now := time.Now()
	for name, v := range map[string]string{"from": *from, "to": *to} {
		t, err := timeArg(v, now)
		if err != nil {
			return usageError(fs, "--"+name+": "+err.Error())
		}
		if t != "" {
			q.Set(name, t)
		}
	}
	remaining := *limit
	if *all {
		remaining = -1
	}
	c := apiClient(apiURL, *token)
	switch *format {
	case "ndjson", "csv":
		return exportRecords(ctx, c, q, *format, remaining, recordsPage, e.stdout)
	}
	out := newRecordPrinter(*format, e.stdout)
	err = pageRecords(ctx, c, q, remaining, recordsPage, out.add)
	if errEnd := out.end(); err == nil {
		err = errEnd
	}
	return err
}

// timeArg maps a time flag to the API's from or to: RFC 3339 and Unix
// milliseconds as they are, a duration as that long before now.
func timeArg(v string, now time.Time) (string, error) {
	if v == "" {
		return "", nil
	}
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return v, nil
	}
	if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return v, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil && d > 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%q: want RFC 3339 (2026-12-06T10:00:00Z), Unix milliseconds or a duration before now (24h)", v)
}

// recordsPage is the most records the CLI asks the API for at a time (the
// API's most).
const recordsPage = 1000

// pageRecords gets the JSON pages of q, of up to page records, following
// next, and hands each record to add: remaining of them, or all if
// remaining < 0.
func pageRecords(ctx context.Context, c *client, q url.Values, remaining, page int, add func(*api.Record) error) error {
	for remaining != 0 {
		n := page
		if remaining > 0 {
			n = min(remaining, n)
		}
		q.Set("limit", strconv.Itoa(n))
		var page api.RecordsBody
		if err := c.do(ctx, http.MethodGet, "/api/v1/records?"+q.Encode(), "", nil, &page); err != nil {
			return err
		}
		for i := range page.Records {
			if err := add(&page.Records[i]); err != nil {
				return err
			}
		}
		if remaining > 0 {
			remaining -= len(page.Records)
		}
		if page.Next == "" {
			return nil
		}
		q.Set("after", page.Next)
	}
	return nil
}

// exportRecords copies the API's NDJSON or CSV to w as it arrives: in
// one answer for --all, else in pages that follow X-Next-Cursor (the CSV
// header printed once).
func exportRecords(ctx context.Context, c *client, q url.Values, format string, remaining, pageSize int, w io.Writer) error {
	q.Set("format", format)
	// An export streams for as long as its range takes: no client timeout.
	c = &client{base: c.base, token: c.token, http: &http.Client{}}
	for page := 0; remaining != 0; page++ {
		if remaining < 0 {
			q.Set("limit", "all")
		} else {
			q.Set("limit", strconv.Itoa(min(remaining, pageSize)))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/records?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		resp, err := c.send(req)
		if err != nil {
			return err
		}
		var n int
		if format == "csv" {
			n, err = copyCSV(w, resp.Body, page == 0)
		} else {
			n, err = copyLines(w, bufio.NewReader(resp.Body))
		}
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		next := resp.Header.Get("X-Next-Cursor")
		if remaining < 0 || next == "" {
			return nil
		}
		if remaining -= n; remaining <= 0 {
			return nil
		}
		q.Set("after", next)
	}
	return nil
}

// copyCSV copies the CSV rows of r to w, the header row only if header,
// and returns how many records it copied.
func copyCSV(w io.Writer, r io.Reader, header bool) (int, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(api.CSVHeader)
	cw := csv.NewWriter(w)
	n := -1 // the header
	for {
		row, err := cr.Read()
		if err == io.EOF {
			cw.Flush()
			return max(n, 0), cw.Error()
		}
		if err != nil {
			return max(n, 0), err
		}
		if n >= 0 || header {
			if err := cw.Write(row); err != nil {
				return n, err
			}
		}
		n++
	}
}

// copyLines copies the NDJSON of r to w and returns how many records (lines)
// it copied.
func copyLines(w io.Writer, r *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return n, werr
			}
			n++
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// recordPrinter prints records as a table or a JSON array, as they come.
type recordPrinter struct {
	format string
	w      io.Writer
	tw     *tabwriter.Writer
	n      int
}

func newRecordPrinter(format string, w io.Writer) *recordPrinter {
	p := &recordPrinter{format: format, w: w}
	if format == "table" {
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(p.tw, "BLOCK TIME (UTC)\tDEVICE\tSTREAM\tSEQ\tBLOCK\tTX\tPAYLOAD")
	}
	return p
}

func (p *recordPrinter) add(r *api.Record) error {
	defer func() { p.n++ }()
	if p.format == "json" {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		sep := ",\n  "
		if p.n == 0 {
			sep = "[\n  "
		}
		_, err = fmt.Fprintf(p.w, "%s%s", sep, b)
		return err
	}
	var b bytes.Buffer
	json.Compact(&b, r.Payload) // the API indents it
	payload := b.String()
	if r.PayloadBase64 != nil {
		payload = "base64:" + *r.PayloadBase64
	}
	if rs := []rune(payload); len(rs) > 60 {
		payload = string(rs[:57]) + "..."
	}
	_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", time.UnixMilli(r.BlockTime).UTC().Format("2006-01-02 15:04:05.000"),
		r.Device, r.Stream, r.Seq, r.Block, r.TxID[:16], strings.ReplaceAll(payload, "\n", `\n`))
	if p.n%1000 == 999 { // a long table is printed as it comes, in chunks aligned on their own
		p.tw.Flush()
	}
	return err
}

func (p *recordPrinter) end() error {
	if p.format == "json" {
		if p.n == 0 {
			_, err := fmt.Fprintln(p.w, "[]")
			return err
		}
		_, err := fmt.Fprintln(p.w, "\n]")
		return err
	}
	if p.n == 0 {
		fmt.Fprintln(p.tw, "(no records)")
	}
	return p.tw.Flush()
}
