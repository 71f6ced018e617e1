package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkClusterIdle measures what four gateways cost while nothing
// happens: they are started, their first blocks settle, and then for 20 s
// no device sends anything. It reports the four processes' CPU
// (utime+stime) per second of that time, and their voluntary context
// switches (wake-ups) per second. A cluster's core ticked every 2 ms,
// idle or not, before it slept until the next tick with work
// (pbft.Core.NextTick: docs/cluster.md).
//
//	go test -run '^$' -bench ClusterIdle -benchtime 1x ./gateway/cmd/ledgergate
func BenchmarkClusterIdle(b *testing.B) {
	const idle = 20 * time.Second
	c := newCluster(b, 4)
	h, _ := c.head(0)
	c.converge(h, time.Minute)
	time.Sleep(2 * time.Second) // the start's last blocks and connections
	pids := gatewayPIDs(c.gws)
	cpu0, err := procsCPU(pids)
	if err != nil {
		b.Fatal(err)
	}
	cs0, err := procsWakeups(pids)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(idle)
	cpu1, err := procsCPU(pids)
	if err != nil {
		b.Fatal(err)
	}
	cs1, err := procsWakeups(pids)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/idle.Seconds(), "cpu_ms/s")
	b.ReportMetric(float64(cs1-cs0)/idle.Seconds(), "wakeups/s")
	b.Logf("four idle gateways, %s: %v of CPU, %d voluntary context switches; load average %s", idle, cpu1-cpu0, cs1-cs0, loadAvg())
}

// procsWakeups sums the voluntary context switches of the processes'
// threads (/proc/PID/task/*/status): each is a thread that went to sleep,
// about one per wake-up.
func procsWakeups(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/task"
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return 0, err
		}
		for _, t := range tasks {
			data, err := os.ReadFile(dir + "/" + t.Name() + "/status")
			if err != nil {
				continue // the thread ended
			}
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
					n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					if err != nil {
						return 0, err
					}
					sum += n
				}
			}
		}
	}
	return sum, nil
}
