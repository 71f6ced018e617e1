package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkConfigVerify measures the device's side of configuration
// control against one dev gateway: 20 devices, each asking config/verify
// over MQTT one request after the other for 5 s and checking every answer
// with device.VerifyConfig, in this process on the same cores. It reports
// answers per second and the request's p50/p99 (ask, answer, check).
//
//	go test -run '^$' -bench ConfigVerify -benchtime 1x ./gateway/cmd/ledgergate
func BenchmarkConfigVerify(b *testing.B) {
	const devices, run = 20, 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := b.TempDir()
	g := startGateway(b, filepath.Join(dir, "data"))
	gen := loadGenesis(b, g)
	var ds []*configDevice
	for i := range devices {
		ds = append(ds, newConfigDevice(b, ctx, g, dir, fmt.Sprintf("bench-%d", i), "bench"))
	}
	conf := []byte(strings.Repeat("key = value\n", 100))
	p := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(p, conf, 0o644); err != nil {
		b.Fatal(err)
	}
	mustCLI(b, dir, "config", "publish", "--target", "group:bench", "--file", p, "--api", g.api, "--data", g.data)
	sum := sha256.Sum256(conf)

	b.ResetTimer()
	for b.Loop() {
		var mu sync.Mutex
		var lat []time.Duration
		end := time.Now().Add(run)
		var grp errgroup.Group
		for _, d := range ds {
			grp.Go(func() error {
				for time.Now().Before(end) {
					t0 := time.Now()
					raw, err := d.cl.Request(ctx, "config/verify", sum[:])
					if err != nil {
						return err
					}
					a, err := ledger.DecodeConfigAnswer(raw)
					if err != nil {
						return err
					}
					if _, err := device.VerifyConfig(gen, a, sum, d.policy()); err != nil {
						return err
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
				return nil
			})
		}
		if err := grp.Wait(); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/run.Seconds(), "answers/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
