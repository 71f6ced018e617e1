// Package sim runs simulated devices against a gateway over MQTT: each
// device signs records with its own key and sequence and publishes them
// with QoS 1, one in flight at a time, at a share of the total rate. It
// measures committed messages per second and PUBACK latency.
//
// The devices of one run may be spread over several gateways of a
// cluster (Config.Brokers). A device whose gateway fails stops and counts
// as a failure; the devices of the other gateways go on.
//
// Presign and RunPresigned are the other mode, for measuring a broker at
// its limit: every record is signed and encoded before the timed phase,
// each device keeps K QoS 1 PUBLISHes in flight, and the broker's CPU
// time per acknowledged message is read from /proc when it is a process
// on this machine (ProcessCPU, ListenerPID). The same load goes to a
// ledgergate gateway or to any MQTT 5 broker, for the ratio.
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
	// Broker is the gateway's MQTT address, as tcp://host:port, used when
	// Brokers is empty.
	Broker string
	// Brokers, if not empty, spreads the devices over several gateways:
	// device i connects to Brokers[i mod len(Brokers)].
	Brokers  []string
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
	Elapsed time.Duration
	Acked   uint64 // PUBACKed: committed
	Refused uint64
	// Failures are devices that could not connect or whose session broke
	// (its gateway went away, or a PUBACK did not come in time); each such
	// device stops and counts once.
	Failures uint64
}

// Result is a finished run.
type Result struct {
	Stats
	Rate               float64 // acked per second, from the start to the last PUBACK
	P50, P90, P99, Max time.Duration
	Devices            int
}

// Run connects every device, publishes for cfg.Duration, and reports.
// It fails only when no device can connect.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Devices) == 0 || cfg.Rate <= 0 || cfg.Duration <= 0 {
		return Result{}, errors.New("sim: need devices, a positive rate and a positive duration")
	}
	brokers := cfg.Brokers
	if len(brokers) == 0 {
		brokers = []string{cfg.Broker}
	}
	var acked, refused, failures atomic.Uint64
	clients := make([]*device.Client, len(cfg.Devices)) // nil: did not connect
	var firstErr error
	for i, d := range cfg.Devices {
		broker := brokers[i%len(brokers)]
		cl, err := device.Dial(ctx, d.ID, d.Key, cfg.ChainID, device.DialOptions{Broker: broker})
		if err != nil {
			failures.Add(1)
			if firstErr == nil {
				firstErr = fmt.Errorf("sim: connect %s to %s: %w", d.ID, broker, err)
			}
			continue
		}
		clients[i] = cl
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if failures.Load() == uint64(len(cfg.Devices)) {
		return Result{}, firstErr
	}
	var lastAck atomic.Int64 // since start
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
		if clients[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the devices' first sends over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(cfg.Devices)))
			var mine []time.Duration
		publish:
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
					lastAck.Store(int64(time.Since(start)))
				case errors.Is(err, device.ErrRefused):
					refused.Add(1)
				default:
					// Its gateway is gone or stuck: this device stops, the others go on.
					failures.Add(1)
					break publish
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
	waitReporting(&wg, cfg.Progress, stats)
	r := Result{Stats: stats(), Devices: len(cfg.Devices)}
	// The run can end later than its last PUBACK: a device whose
	// connection broke may wait out its MQTT client's packet timeout
	// (10 s) for a publish it sent just then.
	if r.Acked > 0 {
		r.Rate = float64(r.Acked) / time.Duration(lastAck.Load()).Seconds()
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		at := func(p float64) time.Duration { return lat[int(p*float64(n-1))] }
		r.P50, r.P90, r.P99, r.Max = at(0.50), at(0.90), at(0.99), lat[n-1]
	}
	return r, nil
}

// waitReporting waits for wg, calling progress (if not nil) with stats()
// every second meanwhile.
func waitReporting(wg *sync.WaitGroup, progress func(Stats), stats func() Stats) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if progress != nil {
				progress(stats())
			}
		}
	}
}
