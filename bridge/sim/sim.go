// Package sim runs simulated devices against a gateway over MQTT: each
// device signs records with its own key and sequence and publishes them
// with QoS 1, one in flight at a time, at a share of the total rate. It
// measures committed messages per second and PUBACK latency.
package sim

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Device is one simulated device.
type Device struct {
	ID  string
	Key crypto.Signer
}

// Config is one simulation run.
type Config struct {
	Broker   string
	ChainID  string
	Devices  []Device
	Rate     float64       // messages per second, all devices together
	Duration time.Duration // how long to publish
	Payload  int           // payload bytes per record
	// FirstSeq is every device's first sequence number. 0 means the
	// current time in microseconds, which is above any seq an earlier run
	// of the same devices used (a run sends far fewer records than it
	// lasts microseconds).
	FirstSeq uint64
	// Progress, if not nil, is called about once a second.
	Progress func(Stats)
}

// Stats are counts so far.
type Stats struct {
	Elapsed  time.Duration
	Acked    uint64 // PUBACKed: committed
	Refused  uint64
	Failures uint64 // connection or protocol errors
}

// Result is a finished run.
type Result struct {
	Stats
	Rate               float64 // acked per second
	P50, P90, P99, Max time.Duration
	Devices            int
}

// Run connects every device, publishes for cfg.Duration, and reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Devices) == 0 || cfg.Rate <= 0 || cfg.Duration <= 0 {
		return Result{}, errors.New("sim: need devices, a positive rate and a positive duration")
	}
	clients := make([]*device.Client, len(cfg.Devices))
	for i, d := range cfg.Devices {
		cl, err := device.Dial(ctx, d.ID, d.Key, cfg.ChainID, device.DialOptions{Broker: cfg.Broker})
		if err != nil {
			for _, c := range clients[:i] {
				c.Close()
			}
			return Result{}, fmt.Errorf("sim: connect %s: %w", d.ID, err)
		}
		clients[i] = cl
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	var acked, refused, failures atomic.Uint64
	var mu sync.Mutex
	var lat []time.Duration
	payload := make([]byte, cfg.Payload)
	first := cfg.FirstSeq
	if first == 0 {
		first = uint64(time.Now().UnixMicro())
	}
	interval := time.Duration(float64(time.Second) * float64(len(cfg.Devices)) / cfg.Rate)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, d := range cfg.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the devices' first sends over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(cfg.Devices)))
			var mine []time.Duration
			for seq := first; ; seq++ {
				if wait := time.Until(next); wait > 0 {
					select {
					case <-time.After(wait):
					case <-runCtx.Done():
					}
				}
				if runCtx.Err() != nil {
					break
				}
				next = next.Add(interval)
				env, err := device.SignRecord(d.Key, cfg.ChainID, ledger.Record{DeviceID: d.ID, Stream: "sim", Seq: seq,
					Time: time.Now().UnixMilli(), Payload: payload})
				if err != nil {
					failures.Add(1)
					break
				}
				t0 := time.Now()
				// The publish itself may finish after the run's end: it was sent in time.
				err = clients[i].Publish(ctx, "sim", env)
				switch {
				case err == nil:
					acked.Add(1)
					mine = append(mine, time.Since(t0))
				case errors.Is(err, device.ErrRefused):
					refused.Add(1)
				default:
					failures.Add(1)
					return
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	stats := func() Stats {
		return Stats{Elapsed: time.Since(start), Acked: acked.Load(), Refused: refused.Load(), Failures: failures.Load()}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(stats())
			}
		}
	}
	r := Result{Stats: stats(), Devices: len(cfg.Devices)}
	r.Rate = float64(r.Acked) / r.Elapsed.Seconds()
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		at := func(p float64) time.Duration { return lat[int(p*float64(n-1))] }
		r.P50, r.P90, r.P99, r.Max = at(0.50), at(0.90), at(0.99), lat[n-1]
	}
	return r, nil
}
