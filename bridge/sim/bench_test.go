package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// BenchmarkMQTT runs the simulator against a single ledgergate node (MQTT
// front end, PUBACK after a durable commit) and, in the same run, against
// a plain mochi broker with no ledger, and reports both and their ratio.
// "max" offers more than either can take; "5k" offers 5,000 msgs/s for
// latency.
func BenchmarkMQTT(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, n := range []int{100, 1000} {
		node := nodetest.Start(b, nodetest.Options{})
		devs := make([]Device, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range devs {
			devs[i].ID = "dev-" + strconv.Itoa(i)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				devs[i].Key = node.Enroll(b, devs[i].ID, ledger.ES256)
				<-sem
			}()
		}
		wg.Wait()
		srv, err := mqtt.New(mqtt.Config{Listen: "127.0.0.1:0", MaxClients: 5000},
			mqtt.Deps{Committer: node.Committer(), Directory: node.Directory(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		gw, _ := srv.Addrs()
		plain := plainBroker(b, quiet)
		for _, load := range []struct {
			name string
			rate float64
		}{{"max", 40_000}, {"5k", 5_000}} {
			b.Run(fmt.Sprintf("devices=%d/%s", n, load.name), func(b *testing.B) {
				var ledgerRate float64
				for _, target := range []struct{ name, addr string }{{"ledgergate", gw}, {"plain", plain}} {
					var res Result
					for i := 0; i < b.N; i++ {
						r, err := Run(context.Background(), Config{Broker: "tcp://" + target.addr, ChainID: node.Genesis.ChainID,
							Devices: devs, Rate: load.rate, Duration: 5 * time.Second, Payload: 64})
						if err != nil {
							b.Fatal(err)
						}
						if r.Failures > 0 || r.Refused > 0 {
							b.Fatalf("%s: %d failures, %d refused", target.name, r.Failures, r.Refused)
						}
						res = r
					}
					ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
					b.ReportMetric(res.Rate, target.name+"_msgs/s")
					b.ReportMetric(ms(res.P50), target.name+"_p50_ms")
					b.ReportMetric(ms(res.P99), target.name+"_p99_ms")
					if target.name == "ledgergate" {
						ledgerRate = res.Rate
					} else {
						b.ReportMetric(ledgerRate/res.Rate, "ratio")
					}
				}
			})
		}
		srv.Close()
	}
}

// plainBroker starts a mochi broker that accepts anyone, for comparison.
func plainBroker(b *testing.B, log *slog.Logger) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := mochi.New(&mochi.Options{Logger: log})
	if err := s.AddHook(new(allowAll), nil); err != nil {
		b.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "plain", Address: addr})); err != nil {
		b.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// mochi's Clients.GetByListener, which Close calls, takes its read
		// lock twice and deadlocks when a client is deleted in between
		// (the gateway's own listener does not use it, bridge/mqtt
		// listener.go); make bench once hung here for 10 minutes, as the
		// last run's devices were leaving. Let them finish leaving first.
		for deadline := time.Now().Add(10 * time.Second); s.Clients.Len() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		s.Close()
	})
	return addr
}

// allowAll lets every client connect, publish and subscribe.
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }
func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

// BenchmarkMQTTPresigned sends a pre-signed load (100 ES256 devices, K
// QoS 1 messages in flight each) to a single node in this process: the
// MQTT front end on a real socket, the chain, its one-node PBFT replica,
// block log and SQLite index, as `ledgergate run --dev` has them, without
// the API, dashboard and egress. It reports msgs/s and this process's
// CPU per message, which includes the simulator's; it is there to
// profile the path from PUBLISH to PUBACK:
//
//	go test -run '^$' -bench MQTTPresigned -benchtime 1x -cpuprofile cpu.out ./bridge/sim
//
// The records are signed before the timer starts, so the profile holds
// no device signing. BenchmarkPresign in gateway/cmd/ledgergate measures
// the real gateway process beside mosquitto.
func BenchmarkMQTTPresigned(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := nodetest.Start(b, nodetest.Options{MaxDelay: 2 * time.Millisecond})
	devs := make([]Device, 100)
	for i := range devs {
		devs[i].ID = "dev-" + strconv.Itoa(i)
		devs[i].Key = node.Enroll(b, devs[i].ID, ledger.ES256)
	}
	srv, err := mqtt.New(mqtt.Config{Listen: "127.0.0.1:0"},
		mqtt.Deps{Committer: node.Committer(), Directory: node.Directory(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	addr, _ := srv.Addrs()
	seq := uint64(1)
	for _, k := range []int{1, 128} {
		count := 100
		if k > 1 {
			count = 400
		}
		b.Run(fmt.Sprintf("K=%d", k), func(b *testing.B) {
			b.StopTimer()
			load, err := Presign(devs, node.Genesis.ChainID, count, seq, 64)
			if err != nil {
				b.Fatal(err)
			}
			seq += uint64(count)
			b.StartTimer()
			r, err := RunPresigned(context.Background(), PresignConfig{Brokers: []string{"tcp://" + addr}, Load: load,
				Inflight: k, PID: os.Getpid(), Timeout: 2 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			if r.Acked != uint64(load.Messages()) {
				b.Fatalf("%d of %d acknowledged, %d refused %v", r.Acked, load.Messages(), r.Refused, r.Reasons)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(r.Rate, "msgs/s")
			b.ReportMetric(float64(r.CPUPerMsg)/float64(time.Microsecond), "process_us/msg")
			b.ReportMetric(float64(r.P99)/float64(time.Millisecond), "p99_ms")
		})
	}
}
