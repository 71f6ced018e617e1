package sim

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestRunPresigned sends a pre-signed load with 8 messages in flight per
// device to a gateway (an in-process node and MQTT front end): every
// message is acknowledged and the CPU time of this process, which is the
// broker here, is read. The same load again is answered from the ledger
// (a resend of a committed tx gets its receipt); other records with the
// same sequence numbers are refused message by message as replays,
// counted by reason. A window beyond the broker's
// receive maximum is an error before anything is sent.
func TestRunPresigned(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := mqtt.New(mqtt.Config{Listen: "127.0.0.1:0", ReceiveMaximum: 16},
		mqtt.Deps{Committer: node.Committer(), Directory: node.Directory(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr, _ := srv.Addrs()
	broker := []string{"tcp://" + addr}

	devs := make([]Device, 4)
	for i := range devs {
		devs[i].ID = "dev-" + strconv.Itoa(i)
		devs[i].Key = node.Enroll(t, devs[i].ID, ledger.ES256)
	}
	// 1,000 messages: their CPU spans several of /proc's 10 ms ticks (160
	// messages, ~11 ms, read 0 s once).
	const count = 250
	load, err := Presign(devs, node.Genesis.ChainID, count, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	if load.Messages() != len(devs)*count {
		t.Fatalf("load of %d messages, want %d", load.Messages(), len(devs)*count)
	}
	if pid, err := ListenerPID(addr); err != nil || pid != os.Getpid() {
		t.Errorf("ListenerPID(%s) = %d, %v; want this process, %d", addr, pid, err, os.Getpid())
	}

	res, err := RunPresigned(context.Background(), PresignConfig{Brokers: broker, Load: load, Inflight: 8, PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked != uint64(load.Messages()) || res.Refused != 0 || res.Unacked != 0 || res.Failures != 0 {
		t.Fatalf("%d acked, %d refused %v, %d unacked, %d failed; want all %d acked",
			res.Acked, res.Refused, res.Reasons, res.Unacked, res.Failures, load.Messages())
	}
	if res.CPU <= 0 || res.CPUPerMsg <= 0 || res.SwitchesPerMsg <= 0 || res.Rate <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("cpu %s (%s and %.2f context switches per message), rate %.0f, p50 %s, p99 %s: want them positive and p99 >= p50",
			res.CPU, res.CPUPerMsg, res.SwitchesPerMsg, res.Rate, res.P50, res.P99)
	}

	again, err := RunPresigned(context.Background(), PresignConfig{Brokers: broker, Load: load, Inflight: 8})
	if err != nil {
		t.Fatal(err)
	}
	if again.Acked != uint64(load.Messages()) {
		t.Errorf("the load again: %d acked, %d refused %v; want all acked", again.Acked, again.Refused, again.Reasons)
	}
	replays, err := Presign(devs, node.Genesis.ChainID, count, 1, 17)
	if err != nil {
		t.Fatal(err)
	}
	again, err = RunPresigned(context.Background(), PresignConfig{Brokers: broker, Load: replays, Inflight: 8})
	if err != nil {
		t.Fatal(err)
	}
	if again.Acked != 0 || again.Refused != uint64(load.Messages()) || again.Reasons[string(ledger.ReasonReplay)] != again.Refused {
		t.Errorf("replays: %d acked, %d refused %v; want all refused as %s", again.Acked, again.Refused, again.Reasons, ledger.ReasonReplay)
	}
	if again.CPU != 0 || again.CPUPerMsg != 0 {
		t.Errorf("without a pid: cpu %s, %s per message; want 0", again.CPU, again.CPUPerMsg)
	}

	if _, err := RunPresigned(context.Background(), PresignConfig{Brokers: broker, Load: load, Inflight: 17}); err == nil {
		t.Error("17 in flight with a receive maximum of 16: no error")
	}
}
