package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// publishRecords connects device id over MQTT and publishes n JSON
// records on stream, from seq first on; each returns once committed (the
// PUBACK comes after the commit).
func publishRecords(t testing.TB, g *gateway, chainID, id string, key crypto.Signer, stream string, first, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := device.Dial(ctx, id, key, chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for seq := first; seq < first+n; seq++ {
		env, err := device.SignRecord(key, chainID, ledger.Record{DeviceID: id, Stream: stream, Seq: uint64(seq),
			Time: time.Now().UnixMilli(), ContentType: "application/json", Payload: fmt.Appendf(nil, `{"temp":%d.5,"rh":%d}`, 20+seq, 40+seq)})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Publish(ctx, stream, env); err != nil {
			t.Fatalf("publish %s seq %d: %v", id, seq, err)
		}
	}
}

// TestRecordsCLI: devices publish over MQTT to a real gateway and
// `ledgergate records` lists them with filters, in every format, across
// pages.
func TestRecordsCLI(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	a := loadAdmin(t, g)
	kA := a.enroll(t, g.api, "th-1", ledger.ES256)
	kB := a.enroll(t, g.api, "th-2", ledger.EdDSA)
	publishRecords(t, g, a.chainID, "th-1", kA, "temp", 1, 3)
	publishRecords(t, g, a.chainID, "th-2", kB, "temp", 1, 2)
	// Block times are milliseconds, and the block of th-2's last record
	// may have been cut in the very millisecond its PUBACK came back in:
	// mid is the next millisecond, and the hum records go out once the
	// clock has passed it, so every block before has a time below mid and
	// every block after one at or above it.
	mid := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	for time.Now().Before(mid) {
		time.Sleep(100 * time.Microsecond) // less than a millisecond in all
	}
	publishRecords(t, g, a.chainID, "th-1", kA, "hum", 4, 2)
	apiFlag := "--api=" + g.api

	// The table: newest first, a device's records.
	out := mustCLI(t, dir, "records", apiFlag, "--device", "th-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "BLOCK TIME (UTC)") || !strings.Contains(lines[1], `{"temp":25.5,"rh":45}`) {
		t.Fatalf("records --device th-1:\n%s", out)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "th-1") {
			t.Errorf("a record of another device: %s", l)
		}
	}

	// NDJSON, oldest first, a device's stream, at most 2.
	out = mustCLI(t, dir, "records", apiFlag, "--device", "th-1", "--stream", "temp", "--order", "asc", "--format", "ndjson", "--limit", "2")
	var seqs []uint64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r api.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("ndjson line %q: %v", l, err)
		}
		if r.Device != "th-1" || r.Stream != "temp" || r.Receipt == "" {
			t.Errorf("ndjson record %+v", r)
		}
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2]" {
		t.Errorf("th-1 temp, oldest first, limit 2: seqs %v, want [1 2]", seqs)
	}

	// A time range: --from the middle takes th-1's hum records only.
	out = mustCLI(t, dir, "records", apiFlag, "--from", mid.UTC().Format(time.RFC3339Nano), "--format", "json", "--all")
	var rs []api.Record
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("records --format json: %v\n%s", err, out)
	}
	if len(rs) != 2 || rs[0].Stream != "hum" || rs[0].Seq != 5 || rs[1].Seq != 4 {
		t.Errorf("records --from the middle: %+v", rs)
	}
	out = mustCLI(t, dir, "records", apiFlag, "--to", strconv.FormatInt(mid.UnixMilli(), 10), "--format", "json", "--all", "--device", "th-2")
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 2 {
		t.Errorf("records --to the middle --device th-2: %v\n%s", err, out)
	}

	// CSV of everything, in pages of 1000 from the API; and of 3, over
	// pages the CLI follows, with one header.
	for _, args := range [][]string{{"--all"}, {"--limit", "3"}} {
		out = mustCLI(t, dir, append([]string{"records", apiFlag, "--format", "csv"}, args...)...)
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		want := 7
		if args[0] == "--limit" {
			want = 3
		}
		if err != nil || len(rows) != want+1 || rows[0][0] != "tx_id" {
			t.Errorf("records --format csv %v: %d rows, %v\n%s", args, len(rows), err, out)
		}
	}

	// What the CLI does for more records than a page: follow the pages,
	// here of 2, in every format.
	ctx := context.Background()
	c := apiClient(&apiTarget{source: source{v: g.api}}, "")
	for _, remaining := range []int{-1, 5} {
		var got []uint64
		err := pageRecords(ctx, c, url.Values{"order": {"asc"}}, remaining, 2, func(r *api.Record) error { got = append(got, r.Seq); return nil })
		want := "[1 2 3 1 2 4 5]"
		if remaining == 5 {
			want = "[1 2 3 1 2]"
		}
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("pageRecords(%d records, pages of 2): %v, %v; want %s", remaining, got, err, want)
		}
		for _, format := range []string{"ndjson", "csv"} {
			var b bytes.Buffer
			if err := exportRecords(ctx, c, url.Values{"order": {"asc"}}, format, remaining, 2, &b); err != nil {
				t.Fatal(err)
			}
			n := strings.Count(b.String(), "\n")
			if format == "csv" {
				n-- // the header
			}
			if want := strings.Count(want, " ") + 1; n != want {
				t.Errorf("exportRecords(%s, %d records, pages of 2): %d records\n%s", format, remaining, n, b.String())
			}
		}
	}

	// Bad flags are usage errors; the API's refusals say why.
	if _, errs, code := cli(t, dir, "records", apiFlag, "--order", "sideways"); code != 2 || !strings.Contains(errs, "--order") {
		t.Errorf("--order sideways: exit %d\n%s", code, errs)
	}
	if _, errs, code := cli(t, dir, "records", apiFlag, "--from", "last tuesday"); code != 2 || !strings.Contains(errs, "--from") {
		t.Errorf("--from 'last tuesday': exit %d\n%s", code, errs)
	}
	if _, errs, code := cli(t, dir, "records", apiFlag, "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"); code != 1 || !strings.Contains(errs, "malformed") {
		t.Errorf("from after to: exit %d\n%s", code, errs)
	}
}

// TestRecordsCLIToken: the CLI sends --token, or $LEDGERGATE_TOKEN, as
// a bearer token.
func TestRecordsCLIToken(t *testing.T) {
	got := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.RecordsBody{Records: []api.Record{}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	mustCLI(t, dir, "records", "--api", srv.URL, "--token", "t0k3n")
	if a := <-got; a != "Bearer t0k3n" {
		t.Errorf("--token: Authorization %q", a)
	}
	cmd := []string{"records", "--api", srv.URL}
	var out bytes.Buffer
	code := runWithEnv(t, dir, []string{"LEDGERGATE_TOKEN=fr0m-env"}, &out, cmd...)
	if a := <-got; code != 0 || a != "Bearer fr0m-env" {
		t.Errorf("$LEDGERGATE_TOKEN: exit %d, Authorization %q\n%s", code, a, out.String())
	}
}

// runWithEnv runs a ledgergate subcommand with env added to its
// environment, its stdout and stderr into out; it returns the exit code.
func runWithEnv(t testing.TB, dir string, env []string, out *bytes.Buffer, args ...string) int {
	t.Helper()
	cmd := exec.Command(ledgergateBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}
