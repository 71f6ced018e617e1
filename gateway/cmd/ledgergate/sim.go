package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/bridge/sim"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func cmdSim(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "sim")
	n := fs.Int("devices", 100, "number of simulated devices (enrolled fresh for this run)")
	rate := fs.Float64("rate", 1000, "messages per second, all devices together")
	duration := fs.Duration("duration", 10*time.Second, "how long to publish")
	qos := fs.Int("qos", 1, "MQTT QoS: 1 (acknowledged after commit)")
	alg := fs.String("alg", "es256", "device key algorithm: es256 or ed25519")
	payload := fs.Int("payload", 64, "payload bytes per record")
	var brokers brokerList
	fs.Var(&brokers, "broker", "gateway MQTT `URL`; repeat it or separate with commas to spread the devices\n"+
		"over the gateways of a cluster, device i to broker i mod n (default tcp://127.0.0.1:1883)")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *qos != 1 {
		return fmt.Errorf("--qos %d: only 1 is supported (the simulator measures PUBACK latency)", *qos)
	}
	if *n < 1 || *n > 100_000 || *rate <= 0 || *duration <= 0 {
		return fmt.Errorf("want 1 to 100000 --devices, a positive --rate and a positive --duration")
	}
	a, err := device.ParseAlg(*alg)
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		brokers = brokerList{"tcp://127.0.0.1:1883"}
	}
	c := newClient(*admin.api)
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	var run [3]byte
	rand.Read(run[:])
	prefix := "sim-" + hex.EncodeToString(run[:]) + "-"
	fmt.Fprintf(e.stderr, "enrolling %d devices %s0..%d\n", *n, prefix, *n-1)
	devs := make([]sim.Device, *n)
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(64)
	for i := range devs {
		key, err := device.GenerateKey(a)
		if err != nil {
			return err
		}
		devs[i] = sim.Device{ID: prefix + strconv.Itoa(i), Key: key}
		grp.Go(func() error {
			pub, err := ledger.MarshalPublicKey(key)
			if err != nil {
				return err
			}
			return admin.submitQuiet(gctx, st.ChainID, ledger.Body{Kind: ledger.KindEnroll,
				Enroll: &ledger.Enroll{DeviceID: devs[i].ID, PublicKey: pub}})
		})
	}
	if err := grp.Wait(); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	fmt.Fprintf(e.stderr, "running %d devices at %.0f msgs/s for %s over %s\n", *n, *rate, *duration, strings.Join(brokers, ", "))
	res, err := sim.Run(ctx, sim.Config{
		Brokers: brokers, ChainID: st.ChainID, Devices: devs, Rate: *rate, Duration: *duration, Payload: *payload, FirstSeq: 1,
		Progress: func(s sim.Stats) {
			fmt.Fprintf(e.stderr, "%4.0fs  %d committed (%.0f/s), %d refused, %d failed\n",
				s.Elapsed.Seconds(), s.Acked, float64(s.Acked)/s.Elapsed.Seconds(), s.Refused, s.Failures)
		},
	})
	if err != nil {
		return err
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(e.stdout, "devices %d, offered %.0f msgs/s for %s\ncommitted %d msgs in %.1fs: %.0f msgs/s\nPUBACK latency p50 %s p90 %s p99 %s max %s\nrefused %d, failed %d\n",
		res.Devices, *rate, *duration, res.Acked, res.Elapsed.Seconds(), res.Rate, ms(res.P50), ms(res.P90), ms(res.P99), ms(res.Max),
		res.Refused, res.Failures)
	if res.Failures > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d devices failed", res.Failures)}
	}
	return nil
}

// brokerList is the --broker flag: repeated, comma-separated, or both.
type brokerList []string

func (l *brokerList) String() string { return strings.Join(*l, ",") }

func (l *brokerList) Set(v string) error {
	for b := range strings.SplitSeq(v, ",") {
		if b = strings.TrimSpace(b); b == "" {
			return fmt.Errorf("empty broker address in %q", v)
		}
		*l = append(*l, b)
	}
	return nil
}
