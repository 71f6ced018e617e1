package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/sim"
)

var cometbftBin = flag.String("cometbft", "", "BenchmarkPeer: the cometbft binary (v0.38.26) to measure four gateways against; make bench-peer builds it")

// BenchmarkPeer's loads, the same on both sides: peerInflight messages in
// flight in all (below the 5,000 txs of CometBFT's default mempool, which
// refuses more), a max phase of peerMax messages and a phase paced at
// peerRate msgs/s for peerRateFor, each cut off after peerTimeout.
const (
	peerInflight = 4000
	peerDevices  = 200 // our side: 200 devices, 20 in flight each
	peerMax      = 40_000
	peerRate     = 1000
	peerRateFor  = 10 * time.Second
	peerTimeout  = 45 * time.Second
	peerPayload  = 64 // bytes of each record's payload and each kvstore tx's value
)

// BenchmarkPeer measures, in one run, four ledgergate gateways and four
// CometBFT v0.38 validators running its built-in kvstore application,
// each network as real processes on 127.0.0.1 of this machine, under the
// same kind of bounded load (docs/cluster.md, "Measuring four gateways:
// make bench"):
//
//   - ledgergate: four gateways as BenchmarkCluster sets them up, 200
//     ES256 devices spread over their MQTT front ends, records signed
//     before each phase (sim.RunPresigned), 20 QoS 1 messages in flight
//     per device; a message counts when its PUBACK (sent after the
//     durable commit) comes back;
//   - CometBFT: `cometbft testnet --v 4` on loopback ports, CometBFT's
//     default configuration; unique `key=value` txs built before each
//     phase, sent with broadcast_tx_sync in JSON-RPC batches of 10 to all
//     four nodes' RPC, 4,000 in flight; a tx counts when it is in a block
//     of node 0 (polled every 10 ms).
//
// Phases, on each network: max (40,000 messages, as fast as the window
// allows) and rate1000 (1,000 msgs/s for 10 s), each cut off after 45 s.
// The gateways run their phases, are killed, and then the validators run
// theirs: one network at a time, as an idle network still uses CPU. The
// table gives committed msgs/s, the network's CPU per committed message
// (all four processes), p50/p99 latency, and the ratios ours ÷ CometBFT.
//
// It needs the cometbft binary: `make bench-peer` builds it and runs
//
//	go test -run '^$' -bench '^BenchmarkPeer$' -benchtime 1x -timeout 15m ./gateway/cmd/ledgergate -args -cometbft $PWD/bin/peer/cometbft
func BenchmarkPeer(b *testing.B) {
	if *cometbftBin == "" {
		b.Fatal("BenchmarkPeer needs the cometbft binary (-cometbft PATH): run it with `make bench-peer`, which builds CometBFT v0.38.26 into bin/peer")
	}
	version, err := exec.Command(*cometbftBin, "version").Output()
	if err != nil {
		b.Fatalf("cometbft version: %v", err)
	}
	load0 := loadAvg()

	dir := b.TempDir()
	conf := filepath.Join(dir, "gateway.toml")
	// 4,000 in flight on a loaded machine can wait longer than the default
	// 5 s for their commit; an "unavailable" answer would spoil the count.
	if err := os.WriteFile(conf, []byte("[batch]\ncommit_timeout = \"60s\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	c, devs, took := benchCluster(b, peerDevices, "--config", conf)

	var rows []peerRow
	seq := uint64(1)
	ours := func(phase string, count int, rate float64) {
		load, err := sim.Presign(devs, c.admin.chainID, count, seq, peerPayload)
		if err != nil {
			b.Fatal(err)
		}
		seq += uint64(count)
		h0 := presignHeight(b, c.gws[0].api)
		cpu0, err := procsCPU(gatewayPIDs(c.gws))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout+time.Minute)
		defer cancel()
		r, err := sim.RunPresigned(ctx, sim.PresignConfig{Brokers: sbsBrokers(c.gws), Load: load,
			Inflight: peerInflight / peerDevices, Rate: rate, Timeout: peerTimeout})
		if err != nil {
			b.Fatal(err)
		}
		cpu1, err := procsCPU(gatewayPIDs(c.gws))
		if err != nil {
			b.Fatal(err)
		}
		h1 := presignHeight(b, c.gws[0].api)
		row := peerRow{system: "ledgergate", phase: phase, offered: rate, msgs: load.Messages(), res: r.Result,
			unacked: r.Unacked, clientCPU: r.ClientCPU, reasons: r.Reasons, blocks: int(h1 - h0), blockTxs: int(r.Acked)}
		if r.Acked > 0 {
			row.cpu = (cpu1 - cpu0) / time.Duration(r.Acked)
		}
		rows = append(rows, row)
		h, _ := c.head(0)
		c.converge(h, 2*time.Minute) // this phase's backlog, if it was cut off, is not the next one's
	}
	var comet *cometNet
	theirs := func(phase string, count int, rate float64, batch int) {
		r, err := comet.load(cometLoad{Phase: phase, Count: count, Payload: peerPayload, Inflight: peerInflight,
			Batch: batch, Workers: 8, Rate: rate, Timeout: peerTimeout})
		if err != nil {
			b.Fatal(err)
		}
		rows = append(rows, peerRow{system: "cometbft", phase: phase, offered: rate, msgs: count, res: r.Result,
			unacked: r.Unacked, cpu: r.CPUPerMsg, clientCPU: r.ClientCPU, reasons: r.Reasons, retried: r.Retried,
			blocks: r.Blocks, blockTxs: r.BlockTxs, lost: r.Lost})
		comet.drain(2 * time.Minute)
	}
	// One network at a time: each idle network still uses CPU (CometBFT
	// makes an empty block every second), which would go to the other's
	// account.
	rateMsgs := int(peerRate * peerRateFor.Seconds())
	b.Run("ledgergate", func(b *testing.B) {
		ours("max", peerMax/peerDevices, 0)
		ours("rate1000", rateMsgs/peerDevices, peerRate)
		peerReport(b, rows[0], rows[1])
		// The gateways' rows alone, for runs without the CometBFT half
		// (-bench 'Peer/ledgergate', e.g. to compare two LEDGERGATE_BIN).
		b.Logf("ledgergate: load average %s\n%s", loadAvg(), peerTable(rows))
		for _, g := range c.gws {
			g.kill()
		}
	})
	b.Run("cometbft", func(b *testing.B) {
		comet = startComet(b, *cometbftBin, 4)
		theirs("max", peerMax, 0, 10)
		// One tx per RPC call: a batch would wait for its last tx.
		theirs("rate1000", rateMsgs, peerRate, 1)
		peerReport(b, rows[2], rows[3])
		// The last phase logs the table: a benchmark with sub-benchmarks
		// prints no log of its own.
		b.Logf("BenchmarkPeer: four ledgergate gateways (%d ES256 devices, enrolled in %s), then four CometBFT %s validators (kvstore), "+
			"%d messages in flight on each side, %d-byte payloads; load average %s at the start, %s at the end\n%s",
			peerDevices, took, strings.TrimSpace(string(version)), peerInflight, peerPayload, load0, loadAvg(), peerTable(rows))
	})
}

// benchCluster starts four gateways (extra goes to each `ledgergate
// run`), enrolls n ES256 devices through the first, and waits until every
// gateway knows every device. It returns the devices and how long the
// enrollment took.
func benchCluster(b *testing.B, n int, extra ...string) (*testCluster, []sim.Device, time.Duration) {
	b.Helper()
	c := newCluster(b, 4, extra...)
	devs, took := sbsEnroll(b, c.admin, c.gws[0].api, n)
	h, _ := c.head(0)
	c.converge(h, time.Minute)
	return c, devs, took
}

// gatewayPIDs are the gateways' processes.
func gatewayPIDs(gws []*gateway) []int {
	var p []int
	for _, g := range gws {
		p = append(p, g.cmd.Process.Pid)
	}
	return p
}

// peerRow is one line of BenchmarkPeer's table.
type peerRow struct {
	system, phase    string
	offered          float64 // 0: as fast as the window allows
	msgs             int
	res              sim.Result
	unacked          uint64
	cpu, clientCPU   time.Duration // per committed message
	retried          uint64        // CometBFT: txs sent again after "mempool is full"
	lost             string        // CometBFT: where the first tx sent and not committed is
	reasons          map[string]uint64
	blocks, blockTxs int // blocks committed in the phase (ours: by the first gateway), and the txs in them
}

// peerReport reports a network's numbers: msgs/s at max, p99 at 1,000
// msgs/s, and CPU per message at max.
func peerReport(b *testing.B, max, rate1000 peerRow) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(max.res.Rate, "msgs/s")
	b.ReportMetric(float64(max.cpu)/float64(time.Microsecond), "us/msg")
	b.ReportMetric(sbsMs(rate1000.res.P99), "p99_ms@1000")
}

// peerTable formats the rows, then the ratios of each phase.
func peerTable(rows []peerRow) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tphase\toffered/s\tmsgs\tcommitted\tcommitted/s\tµs CPU/msg\tp50 ms\tp99 ms\tmax ms\trefused\tunacked\tclient µs/msg\ttxs/block\t")
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for _, r := range rows {
		offered, perBlock := "max", ""
		if r.offered > 0 {
			offered = fmt.Sprintf("%.0f", r.offered)
		}
		if r.blocks > 0 {
			perBlock = fmt.Sprintf("%.0f", float64(r.blockTxs)/float64(r.blocks))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.0f\t%s\t\n", r.system, r.phase, offered,
			r.msgs, r.res.Acked, r.res.Rate, us(r.cpu), sbsMs(r.res.P50), sbsMs(r.res.P99), sbsMs(r.res.Max),
			r.res.Refused, r.unacked, us(r.clientCPU), perBlock)
	}
	tw.Flush()
	// Ratios pair each phase of the gateways with CometBFT's: none when
	// only the gateways ran.
	half := len(rows) / 2
	if len(rows)%2 != 0 || half == 0 || rows[half].system == rows[0].system {
		half = 0
	}
	for i := range half {
		o, t := rows[i], rows[half+i]
		ratio := func(x, y float64) string {
			if y == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", x/y)
		}
		fmt.Fprintf(&sb, "%s: ledgergate ÷ CometBFT: msgs/s %s, CPU per message %s, p99 %s\n", o.phase,
			ratio(o.res.Rate, t.res.Rate), ratio(float64(o.cpu), float64(t.cpu)), ratio(float64(o.res.P99), float64(t.res.P99)))
	}
	// The notes on one line: go test prints at most 10 lines of a
	// benchmark's log.
	var notes []string
	for _, r := range rows {
		if len(r.reasons) > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s refused: %v", r.system, r.phase, r.reasons))
		}
		if r.retried > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s: %d txs answered \"mempool is full\" and sent again %s later", r.system, r.phase, r.retried, cometRetry))
		}
		if r.lost != "" {
			notes = append(notes, fmt.Sprintf("%s/%s: not committed: %s", r.system, r.phase, r.lost))
		}
	}
	sb.WriteString(strings.Join(notes, "; "))
	return sb.String()
}
