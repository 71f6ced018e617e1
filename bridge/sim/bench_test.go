package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	b.Cleanup(func() { s.Close() })
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
