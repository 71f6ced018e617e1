package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/sim"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// presignDevices are BenchmarkPresign's devices, and presignPhases its
// loads: K messages in flight per device, count records per device, and
// an offered rate (0: as fast as the window allows).
const presignDevices = 100

var presignPhases = []struct {
	k, count int
	rate     float64
	eddsa    bool // Ed25519 devices instead of ES256 ones
}{
	{k: 1, count: 100},
	{k: 16, count: 200},
	{k: 128, count: 400},
	{k: 128, count: 250, rate: 5000},
	{k: 16, count: 60, rate: 1000},
	{k: 128, count: 400, eddsa: true},
}

// BenchmarkPresign sends the same pre-signed load, signed records over
// MQTT 5 QoS 1 from 100 devices (ES256, and EdDSA in the last phase), to a dev gateway process (PUBACK after a
// durable commit) and to Debian's mosquitto (PUBACK at once), in one run,
// and reports for each the acknowledged msgs/s, the broker process's CPU
// time per message (user+system from /proc/PID/stat: the load-independent
// figure on a shared machine) and context switches per message (its
// hand-offs between threads), PUBACK p50/p99, and the ratios
// gateway/mosquitto; for the gateway also the committed txs per block
// (the fixed cost of a block weighs on small ones). The phases paced at
// 5,000 and 1,000 msgs/s are the latency and small-block cases.
// The last phase has Ed25519 devices (the EdDSA goal).
// The records of a phase are signed before it, so the simulator (in this
// process, sharing the cores) only writes and reads packets; its own CPU
// per message is reported too.
//
// The gateway runs with batch.commit_timeout 60s: with 12,800 messages in
// flight a slow machine takes longer than the default 5 s to commit the
// last of them, and a message answered "unavailable" (queued still, but
// unacknowledged) would spoil the count. Each phase runs once whatever
// b.N:
//
//	go test -run '^$' -bench Presign -benchtime 1x -timeout 10m ./gateway/cmd/ledgergate
func BenchmarkPresign(b *testing.B) {
	dir := b.TempDir()
	conf := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(conf, []byte("[batch]\ncommit_timeout = \"60s\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	g := startGateway(b, filepath.Join(dir, "data"), "--config", conf)
	m := startMosquitto(b)
	a := loadAdmin(b, g)
	devs, took := sbsEnroll(b, a, g.api, presignDevices)
	edDevs, _ := enrollDevices(b, a, g.api, presignDevices, ledger.EdDSA, "bench-ed-")
	load0 := loadAvg()
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tmsgs\tgateway msgs/s\tµs/msg\tswitches/msg\tp50 ms\tp99 ms\ttxs/block\tmosquitto msgs/s\tµs/msg\tswitches/msg\tp50 ms\tp99 ms\tmsgs/s ratio\tCPU ratio\tsim µs/msg\t")
	seq, edSeq := uint64(1), uint64(1)
	for i, ph := range presignPhases {
		name := fmt.Sprintf("K=%d", ph.k)
		if ph.rate > 0 {
			name += fmt.Sprintf("/rate=%.0f", ph.rate)
		}
		phDevs, phSeq := devs, &seq
		if ph.eddsa {
			name = "EdDSA/" + name
			phDevs, phSeq = edDevs, &edSeq
		}
		load, err := sim.Presign(phDevs, a.chainID, ph.count, *phSeq, 64)
		if err != nil {
			b.Fatal(err)
		}
		*phSeq += uint64(ph.count)
		b.Run(name, func(b *testing.B) {
			run := func(addr string, pid int, anonymous bool) sim.PresignResult {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				r, err := sim.RunPresigned(ctx, sim.PresignConfig{Brokers: []string{"tcp://" + addr}, Load: load,
					Inflight: ph.k, Rate: ph.rate, Anonymous: anonymous, PID: pid, Timeout: 2 * time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				if r.Acked != uint64(load.Messages()) {
					b.Fatalf("%s: %d of %d acknowledged, %d refused %v, %d failed devices", addr, r.Acked, load.Messages(),
						r.Refused, r.Reasons, r.Failures)
				}
				return r
			}
			h0 := presignHeight(b, g.api)
			gw := run(g.mqtt, g.cmd.Process.Pid, false)
			blocks := presignHeight(b, g.api) - h0
			mq := run(m.addr, m.cmd.Process.Pid, true)
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(gw.Rate, "gw_msgs/s")
			b.ReportMetric(us(gw.CPUPerMsg), "gw_us/msg")
			b.ReportMetric(gw.SwitchesPerMsg, "gw_ctxsw/msg")
			b.ReportMetric(sbsMs(gw.P50), "gw_p50_ms")
			b.ReportMetric(sbsMs(gw.P99), "gw_p99_ms")
			b.ReportMetric(mq.Rate, "mosq_msgs/s")
			b.ReportMetric(us(mq.CPUPerMsg), "mosq_us/msg")
			b.ReportMetric(mq.SwitchesPerMsg, "mosq_ctxsw/msg")
			b.ReportMetric(sbsMs(mq.P99), "mosq_p99_ms")
			b.ReportMetric(gw.Rate/mq.Rate, "ratio_msgs/s")
			cpuRatio := 0.0
			if gw.CPUPerMsg > 0 {
				cpuRatio = us(mq.CPUPerMsg) / us(gw.CPUPerMsg)
			}
			b.ReportMetric(cpuRatio, "ratio_cpu")
			txsPerBlock := 0.0
			if blocks > 0 {
				txsPerBlock = float64(load.Messages()) / float64(blocks)
			}
			b.ReportMetric(txsPerBlock, "gw_txs/block")
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.2f\t%.1f\t%.1f\t%.2f\t%.3f\t%.0f/%.0f\t\n", name, load.Messages(),
				gw.Rate, us(gw.CPUPerMsg), gw.SwitchesPerMsg, sbsMs(gw.P50), sbsMs(gw.P99), txsPerBlock, mq.Rate, us(mq.CPUPerMsg), mq.SwitchesPerMsg, sbsMs(mq.P50), sbsMs(mq.P99),
				gw.Rate/mq.Rate, cpuRatio, us(gw.ClientCPU), us(mq.ClientCPU))
			if i < len(presignPhases)-1 {
				return
			}
			// The last phase logs the table: a benchmark with
			// sub-benchmarks prints no log of its own.
			tw.Flush()
			b.Logf("BenchmarkPresign: %d ES256 devices (enrolled in %s; as many Ed25519 ones for the EdDSA phase), 64-byte payloads, MQTT 5 QoS 1; "+
				"load average %s at the start, %s at the end; ratios are gateway/mosquitto (msgs/s) and mosquitto/gateway (CPU per message); "+
				"sim µs/msg is this process's CPU per message (gateway/mosquitto runs)\n%s", presignDevices, took, load0, loadAvg(), table.String())
		})
	}
}

// presignHeight is the gateway's chain height.
func presignHeight(b *testing.B, api string) uint64 {
	var st struct {
		Height uint64 `json:"height"`
	}
	if code := getJSON(b, api, "/api/v1/status", &st); code != http.StatusOK {
		b.Fatalf("status: HTTP %d", code)
	}
	return st.Height
}

// loadAvg is the machine's 1-minute load average, from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
