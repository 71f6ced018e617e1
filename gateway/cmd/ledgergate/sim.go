package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/bridge/sim"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// simHelp explains the two modes of sim after its usage line.
const simHelp = `
Two modes:

  paced (default): each device signs its records as it goes, keeps one
  in flight, and all together offer --rate msgs/s for --duration.

  --presign: each device's --count records are signed and encoded
  before the timed phase; then each device keeps --inflight K QoS 1
  PUBLISHes unacknowledged (K must be within the broker's receive
  maximum; the gateway's is 256) until all are acknowledged, or
  --duration ends. --rate, if given, paces the sends. The output
  adds the broker's CPU time per acknowledged message (user+system,
  /proc/PID/stat, 10 ms resolution) when the broker is a process on
  this machine: --gateway-pid, or found as the process listening on
  the first --broker address. On a shared machine CPU per message is
  the figure to compare, not msgs/s.

  --presign --no-enroll sends the same kind of load to any MQTT 5
  broker (e.g. mosquitto with allow_anonymous): no API, no enrollment,
  anonymous CONNECTs; records are signed for --chain-id, and a plain
  broker acknowledges at once. Its CPU per message is the denominator
  of the gateway's. mosquitto's receive maximum is 20 unless its
  config has max_inflight_messages 0 (or a number above K).

Besides a human summary, --presign prints one line that starts with
"result " followed by key=value fields: broker, devices, inflight,
msgs, acked, refused, unacked, failed, secs, msgs_per_s, p50_ms,
p90_ms, p99_ms, max_ms, when the broker's CPU was read pid, cpu_s,
cpu_us_per_msg and ctxsw_per_msg (the broker's context switches per
message, /proc/PID/task/*/status: its hand-offs between threads, which
the machine's other load barely moves), and last sim_cpu_us_per_msg,
the CPU time this simulator itself spent per acknowledged message.
`

func cmdSim(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "sim")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(fs.Output(), simHelp) }
	n := fs.Int("devices", 100, "number of simulated devices (enrolled fresh for this run)")
	rate := fs.Float64("rate", 1000, "messages per second, all devices together (with --presign: no pacing unless given)")
	duration := fs.Duration("duration", 10*time.Second, "how long to publish (with --presign: the most the timed phase may last, default 1m)")
	qos := fs.Int("qos", 1, "MQTT QoS: 1 (acknowledged after commit)")
	alg := fs.String("alg", "es256", "device key algorithm: es256 or ed25519")
	payload := fs.Int("payload", 64, "payload bytes per record")
	presign := fs.Bool("presign", false, "sign every record before the timed phase and keep --inflight messages in flight per device")
	inflight := fs.Int("inflight", 1, "with --presign: QoS 1 PUBLISHes each device keeps unacknowledged (K)")
	count := fs.Int("count", 100, "with --presign: records per device")
	pid := fs.Int("gateway-pid", 0, "with --presign: the broker's process, whose CPU per message is reported\n"+
		"(default: the process listening on the first --broker address, if local and readable)")
	noEnroll := fs.Bool("no-enroll", false, "with --presign: the broker is any MQTT broker, not a gateway: enroll nothing,\n"+
		"connect anonymously (devices get fresh keys; records are signed for --chain-id)")
	chainID := fs.String("chain-id", "sim", "with --no-enroll: the chain id the records are signed for")
	var brokers brokerList
	fs.Var(&brokers, "broker", "gateway MQTT `URL`; repeat it or separate with commas to spread the devices\n"+
		"over the gateways of a cluster, device i to broker i mod n (default tcp://127.0.0.1:1883)")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *qos != 1 {
		return fmt.Errorf("--qos %d: only 1 is supported (the simulator measures PUBACK latency)", *qos)
	}
	if *n < 1 || *n > 100_000 || *rate <= 0 || *duration <= 0 {
		return fmt.Errorf("want 1 to 100000 --devices, a positive --rate and a positive --duration")
	}
	if !*presign {
		for _, f := range []string{"inflight", "count", "gateway-pid", "no-enroll", "chain-id"} {
			if set[f] {
				return usageError(fs, "--"+f+" needs --presign")
			}
		}
	}
	if set["chain-id"] && !*noEnroll {
		return usageError(fs, "--chain-id needs --no-enroll (a gateway's chain id comes from its API)")
	}
	if *presign && (*inflight < 1 || *inflight > 65534 || *count < 1) {
		return fmt.Errorf("want 1 to 65534 --inflight and a positive --count")
	}
	a, err := device.ParseAlg(*alg)
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		brokers = brokerList{"tcp://127.0.0.1:1883"}
	}
	var devs []sim.Device
	chain := *chainID
	if *noEnroll {
		devs = make([]sim.Device, *n)
		for i := range devs {
			key, err := device.GenerateKey(a)
			if err != nil {
				return err
			}
			devs[i] = sim.Device{ID: "sim-" + strconv.Itoa(i), Key: key}
		}
	} else {
		if devs, chain, err = simEnroll(ctx, e, admin, a, *n); err != nil {
			return err
		}
	}
	if *presign {
		o := presignOpts{inflight: *inflight, count: *count, payload: *payload, pid: *pid, anonymous: *noEnroll, timeout: time.Minute}
		if set["rate"] {
			o.rate = *rate
		}
		if set["duration"] {
			o.timeout = *duration
		}
		return simPresigned(ctx, e, brokers, chain, devs, o)
	}
	fmt.Fprintf(e.stderr, "running %d devices at %.0f msgs/s for %s over %s\n", *n, *rate, *duration, strings.Join(brokers, ", "))
	res, err := sim.Run(ctx, sim.Config{
		Brokers: brokers, ChainID: chain, Devices: devs, Rate: *rate, Duration: *duration, Payload: *payload, FirstSeq: 1,
		Progress: func(s sim.Stats) {
			fmt.Fprintf(e.stderr, "%4.0fs  %d committed (%.0f/s), %d refused, %d failed\n",
				s.Elapsed.Seconds(), s.Acked, float64(s.Acked)/s.Elapsed.Seconds(), s.Refused, s.Failures)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "devices %d, offered %.0f msgs/s for %s\ncommitted %d msgs in %.1fs: %.0f msgs/s\nPUBACK latency p50 %s p90 %s p99 %s max %s\nrefused %d, failed %d\n",
		res.Devices, *rate, *duration, res.Acked, res.Elapsed.Seconds(), res.Rate, simMs(res.P50), simMs(res.P90), simMs(res.P99), simMs(res.Max),
		res.Refused, res.Failures)
	if res.Failures > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d devices failed", res.Failures)}
	}
	return nil
}

func simMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// simEnroll makes n devices with fresh keys of alg, named for this run,
// and enrolls them through the gateway's API as the admin; it returns
// them and the chain id.
func simEnroll(ctx context.Context, e *env, admin adminFlags, alg ledger.Alg, n int) ([]sim.Device, string, error) {
	st, err := admin.api.client().status(ctx)
	if err != nil {
		return nil, "", err
	}
	var run [3]byte
	rand.Read(run[:])
	prefix := "sim-" + hex.EncodeToString(run[:]) + "-"
	fmt.Fprintf(e.stderr, "enrolling %d devices %s0..%d\n", n, prefix, n-1)
	devs := make([]sim.Device, n)
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(64)
	for i := range devs {
		key, err := device.GenerateKey(alg)
		if err != nil {
			return nil, "", err
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
		return nil, "", fmt.Errorf("enroll: %w", err)
	}
	return devs, st.ChainID, nil
}

// presignOpts are sim's --presign settings.
type presignOpts struct {
	inflight, count, payload, pid int
	rate                          float64 // 0: unpaced
	anonymous                     bool
	timeout                       time.Duration
}

// simPresigned signs the devices' records, runs them with o.inflight in
// flight each, and prints a summary and the result line.
func simPresigned(ctx context.Context, e *env, brokers []string, chainID string, devs []sim.Device, o presignOpts) error {
	pid := o.pid
	if pid == 0 {
		if u, err := url.Parse(brokers[0]); err == nil {
			if p, err := sim.ListenerPID(u.Host); err == nil {
				pid = p
			} else {
				fmt.Fprintf(e.stderr, "no CPU per message: %v\n", err)
			}
		}
	}
	fmt.Fprintf(e.stderr, "signing %d records for %d devices\n", o.count*len(devs), len(devs))
	t0 := time.Now()
	load, err := sim.Presign(devs, chainID, o.count, 1, o.payload)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "signed in %s; sending with %d in flight per device over %s\n",
		time.Since(t0).Round(time.Millisecond), o.inflight, strings.Join(brokers, ", "))
	res, err := sim.RunPresigned(ctx, sim.PresignConfig{Brokers: brokers, Load: load, Inflight: o.inflight, Rate: o.rate,
		Anonymous: o.anonymous, PID: pid, Timeout: o.timeout,
		Progress: func(s sim.Stats) {
			fmt.Fprintf(e.stderr, "%4.0fs  %d acknowledged (%.0f/s), %d refused, %d failed\n",
				s.Elapsed.Seconds(), s.Acked, float64(s.Acked)/s.Elapsed.Seconds(), s.Refused, s.Failures)
		}})
	if err != nil {
		return err
	}
	cpu := "broker CPU unknown (not a local process, or not readable: --gateway-pid)"
	if pid > 0 {
		cpu = fmt.Sprintf("broker CPU %.0f µs and %.2f context switches per message (%.2fs over the run, pid %d); this simulator %.0f µs per message",
			float64(res.CPUPerMsg)/float64(time.Microsecond), res.SwitchesPerMsg, res.CPU.Seconds(), pid, float64(res.ClientCPU)/float64(time.Microsecond))
	}
	fmt.Fprintf(e.stdout, "%s\n%d devices, %d in flight each: %d of %d msgs acknowledged in %.1fs: %.0f msgs/s\n"+
		"PUBACK latency p50 %s p90 %s p99 %s max %s\nrefused %d, unacknowledged %d, failed devices %d\n",
		cpu, res.Devices, res.Inflight, res.Acked, load.Messages(), res.Elapsed.Seconds(), res.Rate,
		simMs(res.P50), simMs(res.P90), simMs(res.P99), simMs(res.Max), res.Refused, res.Unacked, res.Failures)
	for _, r := range slices.Sorted(maps.Keys(res.Reasons)) {
		fmt.Fprintf(e.stdout, "refused as %s: %d\n", r, res.Reasons[r])
	}
	fmt.Fprintln(e.stdout, resultLine(brokers, load.Messages(), res, pid))
	if res.Failures > 0 || res.Unacked > 0 || res.Refused > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d refused, %d unacknowledged, %d devices failed", res.Refused, res.Unacked, res.Failures)}
	}
	return nil
}

// resultLine is sim --presign's line for scripts: "result" and
// key=value fields, separated by spaces.
func resultLine(brokers []string, msgs int, r sim.PresignResult, pid int) string {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
	}
	s := fmt.Sprintf("result broker=%s devices=%d inflight=%d msgs=%d acked=%d refused=%d unacked=%d failed=%d secs=%.3f msgs_per_s=%.0f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s",
		strings.Join(brokers, ","), r.Devices, r.Inflight, msgs, r.Acked, r.Refused, r.Unacked, r.Failures, r.Elapsed.Seconds(), r.Rate,
		ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
	if pid > 0 {
		s += fmt.Sprintf(" pid=%d cpu_s=%.2f cpu_us_per_msg=%.1f ctxsw_per_msg=%.2f", pid, r.CPU.Seconds(), float64(r.CPUPerMsg)/float64(time.Microsecond), r.SwitchesPerMsg)
	}
	s += fmt.Sprintf(" sim_cpu_us_per_msg=%.1f", float64(r.ClientCPU)/float64(time.Microsecond))
	return s
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
