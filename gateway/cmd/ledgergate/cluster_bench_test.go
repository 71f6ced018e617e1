package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/bridge/sim"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// clusterAlg is the devices' signature algorithm in BenchmarkCluster.
var clusterAlg = flag.String("cluster.alg", "ES256", "BenchmarkCluster: the devices' algorithm, ES256 or EdDSA")

// Phases of BenchmarkCluster.
const (
	sbsDevices  = 1000
	sbsMaxRate  = 40_000 // more than either setup takes: each device keeps one message in flight
	sbsPhase    = 10 * time.Second
	sbsKillLoad = 1000             // msgs/s while the primary is killed
	sbsKillAt   = 4 * time.Second  // into that load
	sbsKillRun  = 15 * time.Second // the whole load of the kill phase
	sbsFailover = 30 * time.Second // longest wait for the new view and its first commit
)

// BenchmarkCluster measures, in one run so the numbers sit
// side by side, one dev gateway and a cluster of four real ledgergate
// processes on this machine, each with 1,000 simulated ES256 devices
// (EdDSA with -cluster.alg EdDSA; spread over the four MQTT front ends
// for the cluster):
//
//   - single/max, cluster4/max: committed msgs/s and PUBACK p50/p99 when
//     more is offered than the gateways take, and the CPU the gateway
//     processes used per acknowledged message, all of them together
//     (user + system from /proc/PID/stat);
//   - cluster4/rate1000: PUBACK p50/p99 at 1,000 msgs/s;
//   - cluster4/kill-primary: under 1,000 msgs/s, the primary is killed with
//     SIGKILL; the live gateways' /api/v1/status is polled every 10 ms for
//     the time until one of them is in a later view and no longer changing
//     view (ms-to-view-change), and until one of them commits a block past
//     the height it had then (ms-to-next-commit).
//
// Each phase runs once whatever b.N, so run it with -benchtime 1x:
//
//	go test -run '^$' -bench Cluster -benchtime 1x -timeout 20m ./gateway/cmd/ledgergate
//
// The simulator runs in this process and shares the machine's cores with
// the gateways. The last phase logs a table of all of them, with the
// warnings and errors each gateway logged, counted by message.
func BenchmarkCluster(b *testing.B) {
	var rows []sbsRow
	var notes []string
	b.Run("single", func(b *testing.B) {
		g := startGateway(b, filepath.Join(b.TempDir(), "data"))
		a := loadAdmin(b, g)
		devs, took := sbsEnroll(b, a, g.api, sbsDevices)
		gws := []*gateway{g}
		b.Run("max", func(b *testing.B) {
			rows = append(rows, sbsLoad(b, "single/max", gws, a.chainID, devs, sbsMaxRate))
		})
		notes = append(notes, fmt.Sprintf("single: enrolled in %s; logged %s", took, sbsLogProblems(gws)))
	})
	b.Run("cluster4", func(b *testing.B) {
		c, devs, took := benchCluster(b, sbsDevices)
		b.Run("max", func(b *testing.B) {
			rows = append(rows, sbsLoad(b, "cluster4/max", c.gws, c.admin.chainID, devs, sbsMaxRate))
		})
		b.Run("rate1000", func(b *testing.B) {
			rows = append(rows, sbsLoad(b, "cluster4/rate1000", c.gws, c.admin.chainID, devs, 1000))
		})
		b.Run("kill-primary", func(b *testing.B) {
			row, note := sbsKillPrimary(b, c, devs)
			rows = append(rows, row)
			notes = append(notes, note, fmt.Sprintf("cluster4: enrolled in %s; logged %s", took, sbsLogProblems(c.gws)))
			// The last phase logs the table: go test prints the log of a
			// benchmark with sub-benchmarks only with -v, and at most 10
			// lines of a benchmark's log.
			b.Logf("%s", sbsTable(rows, notes))
		})
	})
}

// sbsTable formats the rows and notes.
func sbsTable(rows []sbsRow, notes []string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d %s devices, %s per load phase; failed: devices that stopped (their gateway died, or no PUBACK in 10 s); "+
		"CPU µs/msg: of all the phase's gateways together, per acknowledged message; load average %s\n",
		sbsDevices, *clusterAlg, sbsPhase, loadAvg())
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\toffered/s\tcommitted/s\tCPU µs/msg\tp50 ms\tp99 ms\tmax ms\tfailed\trefused\tview change ms\tnext commit ms\t")
	for _, r := range rows {
		fmt.Fprintln(tw, r.cells())
	}
	tw.Flush()
	return sb.String() + strings.Join(notes, "\n")
}

// sbsRow is one line of the table.
type sbsRow struct {
	phase   string
	offered float64
	res     sim.Result
	cpu     time.Duration // the gateways' CPU per acknowledged message; 0 if not measured
	// Of the kill phase; negative when it did not happen in time.
	viewChange, nextCommit time.Duration
	kill                   bool
}

func (r sbsRow) cells() string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(sbsMs(d), 'f', 1, 64) }
	cpu := ""
	if r.cpu > 0 {
		cpu = strconv.FormatFloat(float64(r.cpu)/float64(time.Microsecond), 'f', 0, 64)
	}
	s := fmt.Sprintf("%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t", r.phase, r.offered, r.res.Rate, cpu,
		ms(r.res.P50), ms(r.res.P99), ms(r.res.Max), r.res.Failures, r.res.Refused)
	if !r.kill {
		return s + "\t\t"
	}
	return s + ms(r.viewChange) + "\t" + ms(r.nextCommit) + "\t"
}

func sbsMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sbsReport reports a load's numbers; ns/op (the length of the phase) is
// left out.
func sbsReport(b *testing.B, r sim.Result) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.Rate, "msgs/s")
	b.ReportMetric(sbsMs(r.P50), "p50-ms")
	b.ReportMetric(sbsMs(r.P99), "p99-ms")
}

// sbsEnroll makes n ES256 devices and enrolls them through the API at
// api, 32 at a time.
func sbsEnroll(b *testing.B, a *admin, api string, n int) ([]sim.Device, time.Duration) {
	alg := ledger.Alg(*clusterAlg)
	if alg != ledger.ES256 && alg != ledger.EdDSA {
		b.Fatalf("-cluster.alg %q: want ES256 or EdDSA", alg)
	}
	return enrollDevices(b, a, api, n, alg, "bench-")
}

// enrollDevices makes n devices with keys of alg, named prefix0,
// prefix1, ..., and enrolls them through the API at api, 32 at a time.
func enrollDevices(b *testing.B, a *admin, api string, n int, alg ledger.Alg, prefix string) ([]sim.Device, time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	devs := make([]sim.Device, n)
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(32)
	start := time.Now()
	for i := range devs {
		grp.Go(func() error {
			id := prefix + strconv.Itoa(i)
			key, err := device.GenerateKey(alg)
			if err != nil {
				return err
			}
			pub, err := ledger.MarshalPublicKey(key)
			if err != nil {
				return err
			}
			env, err := ledger.SignTx(a.key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: a.chainID,
				Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub}})
			if err != nil {
				return err
			}
			code, reason, _, err := post(gctx, api, env)
			if err != nil {
				return fmt.Errorf("enroll %s: %w", id, err)
			}
			if code != http.StatusOK {
				return fmt.Errorf("enroll %s: HTTP %d %s", id, code, reason)
			}
			devs[i] = sim.Device{ID: id, Key: key}
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		b.Fatal(err)
	}
	return devs, time.Since(start).Round(time.Millisecond)
}

// sbsBrokers are the gateways' MQTT front ends.
func sbsBrokers(gws []*gateway) []string {
	var brokers []string
	for _, g := range gws {
		brokers = append(brokers, "tcp://"+g.mqtt)
	}
	return brokers
}

// sbsLoad runs the devices, spread over gws, at rate for one phase.
func sbsLoad(b *testing.B, phase string, gws []*gateway, chainID string, devs []sim.Device, rate float64) sbsRow {
	ctx, cancel := context.WithTimeout(context.Background(), sbsPhase+2*time.Minute)
	defer cancel()
	cpu := func() time.Duration {
		var sum time.Duration
		for _, g := range gws {
			t, err := sim.ProcessCPU(g.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			sum += t
		}
		return sum
	}
	cpu0 := cpu()
	r, err := sim.Run(ctx, sim.Config{Brokers: sbsBrokers(gws), ChainID: chainID, Devices: devs,
		Rate: rate, Duration: sbsPhase, Payload: 64})
	if err != nil {
		b.Fatal(err)
	}
	row := sbsRow{phase: phase, offered: rate, res: r}
	if r.Acked > 0 {
		row.cpu = (cpu() - cpu0) / time.Duration(r.Acked)
		b.ReportMetric(float64(row.cpu)/float64(time.Microsecond), "gw_us/msg")
	}
	sbsReport(b, r)
	return row
}

// sbsStatus is the part of /api/v1/status the kill phase reads.
type sbsStatus struct {
	Height  uint64 `json:"height"`
	Cluster struct {
		View         uint64 `json:"view"`
		Primary      string `json:"primary"`
		ViewChanging bool   `json:"view_changing"`
	} `json:"cluster"`
}

var sbsHTTP = &http.Client{Timeout: 2 * time.Second}

func sbsGetStatus(api string) (sbsStatus, error) {
	var st sbsStatus
	resp, err := sbsHTTP.Get(api + "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// sbsKillPrimary kills the primary with SIGKILL under load and measures
// how long the others take to install the next view and to commit in it.
// It returns the row and a line about what happened.
func sbsKillPrimary(b *testing.B, c *testCluster, devs []sim.Device) (sbsRow, string) {
	row := sbsRow{phase: "cluster4/kill-primary", offered: sbsKillLoad, kill: true, viewChange: -1, nextCommit: -1}
	type result struct {
		r   sim.Result
		err error
	}
	loadDone := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), sbsKillRun+2*time.Minute)
		defer cancel()
		r, err := sim.Run(ctx, sim.Config{Brokers: sbsBrokers(c.gws), ChainID: c.admin.chainID, Devices: devs,
			Rate: sbsKillLoad, Duration: sbsKillRun, Payload: 64})
		loadDone <- result{r, err}
	}()
	select {
	case <-time.After(sbsKillAt): // the load runs for a while: a measured interval, not a wait for an event
	case res := <-loadDone:
		b.Fatalf("load ended before the kill: %+v", res)
	}

	// The primary as the gateways see it now: the latest view any reports.
	var before sbsStatus
	for i, g := range c.gws {
		st, err := sbsGetStatus(g.api)
		if err != nil {
			b.Fatalf("node-%d: %v", i+1, err)
		}
		if i == 0 || st.Cluster.View > before.Cluster.View {
			before = st
		}
	}
	primary := -1
	var live []int
	for i := range c.gws {
		if before.Cluster.Primary == "node-"+strconv.Itoa(i+1) { // as newCluster names them
			primary = i
		} else {
			live = append(live, i)
		}
	}
	if primary < 0 || before.Cluster.ViewChanging {
		b.Fatalf("no settled primary to kill: %+v", before)
	}

	start := time.Now()
	c.gws[primary].kill()
	// heightAtView[i] is gateway i's height when it was first seen in the
	// new view; gateways not seen in it yet are not in the map.
	heightAtView := map[int]uint64{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var pollErrs int
poll:
	for time.Since(start) < sbsFailover {
		<-tick.C
		for _, i := range live {
			st, err := sbsGetStatus(c.gws[i].api)
			if err != nil {
				pollErrs++
				continue
			}
			at := time.Since(start)
			h, inView := heightAtView[i]
			switch {
			case !inView && st.Cluster.View > before.Cluster.View && !st.Cluster.ViewChanging:
				heightAtView[i] = st.Height
				if row.viewChange < 0 {
					row.viewChange = at
				}
			case inView && st.Height > h:
				row.nextCommit = at
				break poll
			}
		}
	}
	res := <-loadDone
	if res.err != nil {
		b.Fatal(res.err)
	}
	row.res = res.r
	if row.viewChange < 0 || row.nextCommit < 0 {
		b.Errorf("in %s after killing node-%d: view change after %s, next commit after %s (negative: not seen)",
			sbsFailover, primary+1, row.viewChange, row.nextCommit)
	}
	onKilled := 0
	for i := range devs {
		if i%len(c.gws) == primary {
			onKilled++
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(sbsMs(row.viewChange), "ms-to-view-change")
	b.ReportMetric(sbsMs(row.nextCommit), "ms-to-next-commit")
	return row, fmt.Sprintf("kill: node-%d, primary of view %d at height %d, killed %s into the load; %d devices on it, "+
		"%d failed in all, so %d on live gateways; %d status polls failed",
		primary+1, before.Cluster.View, before.Height, sbsKillAt, onKilled, res.r.Failures, int(res.r.Failures)-onKilled, pollErrs)
}

// sbsProblemRE matches a warning or error line of a gateway's text log.
var sbsProblemRE = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// sbsLogProblems counts the warnings and errors in the gateways' logs by
// message, on one line.
func sbsLogProblems(gws []*gateway) string {
	var out []string
	for i, g := range gws {
		count := map[string]int{}
		for _, m := range sbsProblemRE.FindAllStringSubmatch(g.log(), -1) {
			count[m[1]+" "+m[2]]++
		}
		keys := slices.Collect(maps.Keys(count))
		slices.SortFunc(keys, func(x, y string) int { return cmp.Or(count[y]-count[x], strings.Compare(x, y)) })
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%dx %s", count[k], k))
		}
		if len(parts) == 0 {
			parts = []string{"nothing"}
		}
		out = append(out, fmt.Sprintf("node-%d: %s", i+1, strings.Join(parts, ", ")))
	}
	return strings.Join(out, "; ")
}
