package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/sim"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkCluster measures four PBFT gateways on this machine against
// one, with 1,000 simulated devices spread over their MQTT front ends:
// committed msgs/s and PUBACK latency at the highest rate they take and
// at 1,000 msgs/s, and the time from killing the primary to the next
// commit. Run it alone: `make bench`, or
//
//	go test -run '^$' -bench Cluster -benchtime 1x -timeout 30m ./gateway/cmd/ledgergate
func BenchmarkCluster(b *testing.B) {
	const devices = 1000
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			gws, a := benchGateways(b, n)
			devs := enrollMany(b, a, gws[0].api, devices)
			var brokers []string
			for _, g := range gws {
				brokers = append(brokers, "tcp://"+g.mqtt)
			}
			for _, rate := range []float64{16000, 1000} {
				r, err := sim.Run(context.Background(), sim.Config{Brokers: brokers, ChainID: a.chainID, Devices: devs,
					Rate: rate, Duration: 10 * time.Second, Payload: 64})
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("nodes %d, offered %.0f/s: %.0f msgs/s, p50 %v, p99 %v, failures %d", n, rate, r.Rate, r.P50, r.P99, r.Failures)
				name := "max"
				if rate == 1000 {
					name = "at1000"
				}
				b.ReportMetric(r.Rate, name+"-msgs/s")
				b.ReportMetric(float64(r.P50.Milliseconds()), name+"-p50-ms")
				b.ReportMetric(float64(r.P99.Milliseconds()), name+"-p99-ms")
			}
			if n > 1 {
				killPrimary(b, gws, a, devs[:300])
			}
		})
	}
}

// benchGateways starts one dev gateway or a cluster of n.
func benchGateways(b *testing.B, n int) ([]*gateway, *admin) {
	if n == 1 {
		g := startGateway(b, filepath.Join(b.TempDir(), "data"))
		return []*gateway{g}, loadAdmin(b, g)
	}
	c := newCluster(b, n)
	return c.gws, c.admin
}

// enrollMany enrolls n devices, 16 at a time, and waits until every
// gateway knows them.
func enrollMany(b *testing.B, a *admin, api string, n int) []sim.Device {
	devs := make([]sim.Device, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := "bench-" + strconv.Itoa(i)
				devs[i] = sim.Device{ID: id, Key: a.enroll(b, api, id, ledger.ES256)}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return devs
}

// killPrimary kills the primary with SIGKILL while devices publish at
// about 750 msgs/s to the other gateways, and reports how long the others
// took to install the next view and to commit a block in it.
func killPrimary(b *testing.B, gws []*gateway, a *admin, devs []sim.Device) {
	c := &testCluster{t: b, gws: gws}
	st := c.status(1)
	primary := -1
	for i := range gws {
		if fmt.Sprintf("node-%d", i+1) == st.Cluster.Primary {
			primary = i
		}
	}
	if primary < 0 {
		b.Fatalf("primary %q is not one of the gateways", st.Cluster.Primary)
	}
	var live []string
	for i, g := range gws {
		if i != primary {
			live = append(live, "tcp://"+g.mqtt)
		}
	}
	probe := (primary + 1) % len(gws)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sim.Run(ctx, sim.Config{Brokers: live, ChainID: a.chainID, Devices: devs, Rate: 750, Duration: 20 * time.Second, Payload: 64})
	}()
	time.Sleep(3 * time.Second) // let the load settle: this measures, it waits for nothing
	start := time.Now()
	gws[primary].cmd.Process.Signal(syscall.SIGKILL)
	var viewAt, commitAt time.Duration
	var heightAtView uint64
	for time.Since(start) < 30*time.Second && commitAt == 0 {
		var s struct {
			Height  uint64 `json:"height"`
			Cluster struct {
				View     uint64 `json:"view"`
				Changing bool   `json:"view_changing"`
			} `json:"cluster"`
		}
		getJSON(b, gws[probe].api, "/api/v1/status", &s)
		if viewAt == 0 && s.Cluster.View > st.Cluster.View && !s.Cluster.Changing {
			viewAt, heightAtView = time.Since(start), s.Height
		}
		if viewAt != 0 && s.Height > heightAtView {
			commitAt = time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if commitAt == 0 {
		b.Fatalf("no commit in a new view within 30s of killing the primary")
	}
	b.Logf("primary killed: next view after %v, next commit after %v", viewAt, commitAt)
	b.ReportMetric(float64(viewAt.Milliseconds()), "kill-to-view-ms")
	b.ReportMetric(float64(commitAt.Milliseconds()), "kill-to-commit-ms")
}
