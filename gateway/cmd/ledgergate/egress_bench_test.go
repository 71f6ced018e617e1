package main

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkEgressDeadSink measures what an egress connector costs the
// commit path: a fresh dev gateway per case, 100 devices each publishing
// records over MQTT one after the other (the next once the previous is
// acknowledged, that is committed) for 5 s, with no [[egress]], with a
// NATS connector whose server is not there, and with a webhook connector
// whose receiver answers 204 at once (that connector reads, encodes and
// sends every record as it commits). It reports committed records/s and
// the gateway process's CPU time per committed record (user + system,
// from /proc, until the webhook connector caught up), summed over the
// rounds. The devices run in this process on the same cores.
//
//	go test -run '^$' -bench EgressDeadSink -benchtime 1x ./gateway/cmd/ledgergate
func BenchmarkEgressDeadSink(b *testing.B) {
	const devices, run = 100, 5 * time.Second
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	cases := []struct {
		name, toml string
		live       bool // wait for the connector to catch up before reading the CPU time
	}{
		{"none", "", false},
		{"dead-nats", fmt.Sprintf("[[egress]]\nname = \"dead\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:%d\"\n", freePort(b)), false},
		{"webhook", fmt.Sprintf("[[egress]]\nname = \"hook\"\nkind = \"webhook\"\nurl = %q\n", hook.URL), true},
	}
	type total struct {
		records int
		cpu     time.Duration
		runs    int
	}
	totals := map[string]*total{}
	for round := 0; b.Loop(); round++ {
		// Each round starts with another case, so that the machine's
		// drift spreads over them.
		for k := range cases {
			c := cases[(k+round)%len(cases)]
			dir := b.TempDir()
			conf := filepath.Join(dir, "ledgergate.toml")
			if err := os.WriteFile(conf, []byte(c.toml), 0o644); err != nil {
				b.Fatal(err)
			}
			g := startGateway(b, filepath.Join(dir, "data"), "--config", conf)
			a := loadAdmin(b, g)
			keys := make([]crypto.Signer, devices)
			for i := range devices {
				keys[i] = a.enroll(b, g.api, "bench-"+strconv.Itoa(i), ledger.ES256)
			}
			cpu0 := procCPU(b, g.cmd.Process.Pid)
			var mu sync.Mutex
			committed, failed := 0, 0
			end := time.Now().Add(run)
			var wg sync.WaitGroup
			for i := range devices {
				id := "bench-" + strconv.Itoa(i)
				cl, err := device.Dial(context.Background(), id, keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					defer cl.Close()
					for seq := uint64(1); time.Now().Before(end); seq++ {
						env, err := device.SignRecord(keys[i], a.chainID, ledger.Record{DeviceID: id, Stream: "bench", Seq: seq,
							Time: time.Now().UnixMilli(), ContentType: "application/json", Payload: []byte(`{"v":1}`)})
						if err != nil {
							b.Error(err)
							return
						}
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						err = cl.Publish(ctx, "bench", env)
						cancel()
						mu.Lock()
						if err == nil {
							committed++
						} else {
							failed++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if c.live {
				waitEgressLag(b, g.api, 60*time.Second)
			}
			cpu := procCPU(b, g.cmd.Process.Pid) - cpu0
			g.stop()
			if committed == 0 {
				b.Fatalf("%s: nothing committed, %d failed", c.name, failed)
			}
			b.Logf("%-9s %6.0f records/s  %5.0f µs gateway CPU/record  failed %d", c.name, float64(committed)/run.Seconds(),
				float64(cpu.Microseconds())/float64(committed), failed)
			tt := totals[c.name]
			if tt == nil {
				tt = &total{}
				totals[c.name] = tt
			}
			tt.records, tt.cpu, tt.runs = tt.records+committed, tt.cpu+cpu, tt.runs+1
		}
	}
	for name, tt := range totals {
		b.ReportMetric(float64(tt.records)/(float64(tt.runs)*run.Seconds()), name+"-records/s")
		b.ReportMetric(float64(tt.cpu.Microseconds())/float64(tt.records), name+"-cpu-µs/record")
	}
}

// waitEgressLag waits until every egress connector's lag_records is 0.
func waitEgressLag(b *testing.B, api string, max time.Duration) {
	b.Helper()
	deadline := time.Now().Add(max)
	for {
		var st struct {
			Egress []struct {
				LagRecords uint64 `json:"lag_records"`
			} `json:"egress"`
		}
		getJSON(b, api, "/api/v1/status", &st)
		behind := false
		for _, e := range st.Egress {
			behind = behind || e.LagRecords > 0
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("egress not caught up in %s", max)
		}
		time.Sleep(20 * time.Millisecond) // polling the status
	}
}

// procCPU is the user + system CPU time of process pid so far.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of proc(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const clkTck = 100                          // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}
