package sim

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestRunSeveralBrokers spreads six devices over three brokers: one
// that goes away during the run, one that stays, and one no one listens
// on. The devices of the first two publish, the two of the dead address
// and the two of the closed broker count as failures, and the devices of
// the broker that stays go on after the other one closed.
func TestRunSeveralBrokers(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (*mqtt.Server, string) {
		srv, err := mqtt.New(mqtt.Config{Listen: "127.0.0.1:0"},
			mqtt.Deps{Committer: node.Committer(), Directory: node.Directory(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		addr, _ := srv.Addrs()
		return srv, "tcp://" + addr
	}
	closing, a := start()
	_, b := start()
	dead := "tcp://" + deadAddr(t)

	devs := make([]Device, 6)
	for i := range devs {
		devs[i].ID = "dev-" + strconv.Itoa(i)
		devs[i].Key = node.Enroll(t, devs[i].ID, ledger.ES256)
	}
	var once sync.Once
	var ackedAtClose uint64
	res, err := Run(context.Background(), Config{
		Brokers: []string{a, b, dead}, ChainID: node.Genesis.ChainID, Devices: devs,
		Rate: 60, Duration: 3 * time.Second, Payload: 8,
		Progress: func(s Stats) {
			once.Do(func() {
				ackedAtClose = s.Acked
				go closing.Close()
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != 4 || res.Refused != 0 {
		t.Errorf("%d failures, %d refused; want 4 failures (2 on the dead address, 2 on the closed broker) and none refused",
			res.Failures, res.Refused)
	}
	// Two devices at 10 msgs/s each for the last two seconds.
	if res.Acked < ackedAtClose+20 {
		t.Errorf("%d acked at the close, %d at the end: the devices of the other broker stopped", ackedAtClose, res.Acked)
	}
	if res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("latency p50 %s p99 %s", res.P50, res.P99)
	}
}

// TestRunNoBroker fails when no device can connect; Broker serves when
// Brokers is empty.
func TestRunNoBroker(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	devs := []Device{{ID: "dev-0", Key: node.Enroll(t, "dev-0", ledger.ES256)}}
	_, err := Run(context.Background(), Config{Broker: "tcp://" + deadAddr(t), ChainID: node.Genesis.ChainID,
		Devices: devs, Rate: 1, Duration: time.Second})
	if err == nil {
		t.Fatal("run with no broker listening: no error")
	}
}

// deadAddr returns a loopback address no one listens on right now.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
