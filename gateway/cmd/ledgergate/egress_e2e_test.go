package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/egress"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The egress tests run real sinks: Debian's mosquitto and nats-server
// (`make deps` installs them) and a Go HTTP server. Each publishes
// records to a real gateway, stops the sink and starts it again, kills
// the gateway (SIGKILL) and rewinds a connector's cursor (what a crash
// between the sink's acknowledgement and the cursor write does), and
// checks that every record arrived, in commit order, with a receipt that
// verifies against the genesis.

// sinkBinary returns the path of a Debian sink server; the test fails
// without it: a skipped test would pass with egress untested.
func sinkBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; fileExists(p) {
		return p
	}
	t.Fatalf("%s not found: run `make deps` (Debian package %s)", name, name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// server is a sink server process on a fixed port, so that it can be
// stopped and started again where the gateway's config points.
type server struct {
	t    *testing.T
	name string
	args func(port int) []string
	port int
	cmd  *exec.Cmd
	out  *os.File
	done chan struct{}
}

// startServer starts a server on a free port; a port taken between
// freePort and the server's bind makes it try another.
func startServer(t *testing.T, name string, args func(port int) []string) *server {
	t.Helper()
	s := &server{t: t, name: name, args: args}
	for try := 0; ; try++ {
		s.port = freePort(t)
		if s.start() == nil {
			break
		}
		if try == 4 {
			t.Fatalf("%s did not start on 5 ports", name)
		}
	}
	t.Cleanup(func() { s.kill(syscall.SIGKILL) })
	return s
}

// start runs the server on s.port and waits until it accepts connections.
func (s *server) start() error {
	s.t.Helper()
	out, err := os.CreateTemp(s.t.TempDir(), s.name+"-*.log")
	if err != nil {
		s.t.Fatal(err)
	}
	s.out = out
	s.cmd = exec.Command(sinkBinary(s.t, s.name), s.args(s.port)...)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(out.Name())
			s.t.Logf("%s on port %d exited: %s", s.name, s.port, b)
			return fmt.Errorf("%s exited", s.name)
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling a port
	}
	s.kill(syscall.SIGKILL)
	return fmt.Errorf("%s not listening after 15s", s.name)
}

// restart starts the server again on its port (tries for a while if
// another process took the port meanwhile).
func (s *server) restart() {
	s.t.Helper()
	for try := 0; s.start() != nil; try++ {
		if try == 20 {
			s.t.Fatalf("%s did not start again on port %d", s.name, s.port)
		}
		time.Sleep(250 * time.Millisecond) // the port is taken: wait for it
	}
}

// kill stops the server with sig and waits for it to be gone.
func (s *server) kill(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// egressRun is a gateway with an [[egress]] table and devices that
// publish records to it.
type egressRun struct {
	t       *testing.T
	dir     string
	data    string
	conf    string
	g       *gateway
	adm     *admin
	genesis *ledger.Genesis
	devices []string
	keys    map[string]crypto.Signer
	seq     map[string]uint64
	mu      sync.Mutex
	sent    map[string]sentRecord // tx id -> the record, of every record committed
}

// sentRecord is a committed record.
type sentRecord struct {
	device, stream string
}

// newEgressRun starts a gateway with egressTOML in its config and
// enrolls the devices, each in the groups after its id ("id:g1,g2").
func newEgressRun(t *testing.T, egressTOML string, devices ...string) *egressRun {
	t.Helper()
	r := &egressRun{t: t, dir: t.TempDir(), keys: map[string]crypto.Signer{}, seq: map[string]uint64{},
		sent: map[string]sentRecord{}}
	r.data = filepath.Join(r.dir, "data")
	r.conf = filepath.Join(r.dir, "ledgergate.toml")
	if err := os.WriteFile(r.conf, []byte("[batch]\nheartbeat = \"0s\"\n\n"+egressTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	r.g = startGateway(t, r.data, "--config", r.conf)
	r.adm = loadAdmin(t, r.g)
	g, err := daemon.LoadGenesis(r.data)
	if err != nil {
		t.Fatal(err)
	}
	r.genesis = g
	for _, d := range devices {
		id, groups, _ := strings.Cut(d, ":")
		r.devices = append(r.devices, id)
		r.keys[id] = r.enroll(id, strings.FieldsFunc(groups, func(c rune) bool { return c == ',' }))
	}
	return r
}

// enroll enrolls device id in groups with a new P-256 key.
func (r *egressRun) enroll(id string, groups []string) crypto.Signer {
	r.t.Helper()
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		r.t.Fatal(err)
	}
	pub, _ := ledger.MarshalPublicKey(key)
	slices.Sort(groups)
	env, err := ledger.SignTx(r.adm.key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: r.adm.chainID,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub, Groups: groups}})
	if err != nil {
		r.t.Fatal(err)
	}
	if code, reason, _, err := post(context.Background(), r.g.api, env); err != nil || code != http.StatusOK {
		r.t.Fatalf("enroll %s: %d %s %v", id, code, reason, err)
	}
	return key
}

// publish commits n records of each device (concurrently between
// devices, in seq order within one), on stream.
func (r *egressRun) publish(n int, stream string) {
	r.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(r.devices))
	for _, d := range r.devices {
		wg.Go(func() {
			for range n {
				r.mu.Lock()
				r.seq[d]++
				seq := r.seq[d]
				r.mu.Unlock()
				env, err := device.SignRecord(r.keys[d], r.genesis.ChainID, ledger.Record{DeviceID: d, Stream: stream, Seq: seq,
					Time: time.Now().UnixMilli(), ContentType: "application/json", Payload: fmt.Appendf(nil, `{"device":%q,"seq":%d}`, d, seq)})
				if err != nil {
					errs <- err
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				code, reason, id, err := post(ctx, r.g.api, env)
				cancel()
				if err != nil || code != http.StatusOK {
					errs <- fmt.Errorf("record %s/%d: %d %s %v", d, seq, code, reason, err)
					return
				}
				r.mu.Lock()
				r.sent[id] = sentRecord{device: d, stream: stream}
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
}

// want returns the ids of the committed records that pass, every one if
// pass is nil.
func (r *egressRun) want(pass func(sentRecord) bool) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := map[string]bool{}
	for id, s := range r.sent {
		if pass == nil || pass(s) {
			ids[id] = true
		}
	}
	return ids
}

// crash kills the gateway with SIGKILL; rewind, if not nil, then
// changes the connector's cursor file (as a crash after the sink's
// acknowledgement and before the cursor write leaves it: behind); and
// the gateway starts again.
func (r *egressRun) crash(connector string, rewind func(c *egress.Cursor)) {
	r.t.Helper()
	r.g.kill()
	if rewind != nil {
		path := filepath.Join(r.data, daemon.EgressDir, connector+".cursor")
		b, err := os.ReadFile(path)
		if err != nil {
			r.t.Fatal(err)
		}
		var c egress.Cursor
		if err := json.Unmarshal(b, &c); err != nil {
			r.t.Fatal(err)
		}
		rewind(&c)
		b, _ = json.Marshal(c)
		if err := os.WriteFile(path, b, 0o640); err != nil {
			r.t.Fatal(err)
		}
	}
	r.g = startGateway(r.t, r.data, "--config", r.conf)
}

// egressStatus is a connector's part of /api/v1/status.
func (r *egressRun) egressStatus(name string) egress.Status {
	r.t.Helper()
	var st struct {
		Egress []egress.Status `json:"egress"`
	}
	getJSON(r.t, r.g.api, "/api/v1/status", &st)
	for _, s := range st.Egress {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no egress %q in /api/v1/status", name)
	return egress.Status{}
}

// waitCaughtUp waits until the connector's lag is 0 in the status and in
// /metrics.
func (r *egressRun) waitCaughtUp(name string) {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := r.egressStatus(name)
		if s.LagRecords == 0 && s.LagBlocks == 0 && !s.Failing {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("egress %s not caught up in 60s: %+v\n%s", name, s, r.g.log())
		}
		time.Sleep(50 * time.Millisecond) // polling the status
	}
	resp, err := http.Get(r.g.api + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"lag_records", "lag_blocks", "failing"} {
		if want := fmt.Sprintf("ledgergate_egress_%s{name=%q} 0\n", m, name); !strings.Contains(string(b), want) {
			r.t.Errorf("/metrics lacks %q", want)
		}
	}
}

// checkDelivered checks what a sink received, in arrival order: the
// first arrival of each tx id comes in commit order, every message's tx
// id is its envelope's hash, its receipt verifies against the genesis
// and proves that envelope at the message's (block, index), and the
// records are exactly want. It returns how many arrivals were duplicates.
func (r *egressRun) checkDelivered(msgs []egress.Message, want map[string]bool) int {
	r.t.Helper()
	seen := map[string]bool{}
	var lastBlock, lastIndex uint64
	dups := 0
	for i, m := range msgs {
		id := sha256.Sum256(m.Envelope)
		if hex.EncodeToString(id[:]) != m.TxID {
			r.t.Fatalf("message %d: tx id %s is not the hash of its envelope", i, m.TxID)
		}
		rc, err := device.VerifyReceipt(r.genesis, m.Receipt)
		if err != nil {
			r.t.Fatalf("message %d (%s): receipt: %v", i, m.TxID, err)
		}
		if string(rc.Tx) != string(m.Envelope) || rc.Header.Height != m.Block || rc.Index != m.Index || m.ChainID != r.genesis.ChainID {
			r.t.Fatalf("message %d (%s): the receipt proves another tx or position (block %d index %d)", i, m.TxID, rc.Header.Height, rc.Index)
		}
		tx, err := ledger.DecodeTx(m.Envelope, 0)
		if err != nil || tx.Body.Record == nil || tx.Body.Record.Seq != m.Seq || tx.Body.Record.DeviceID != m.Device {
			r.t.Fatalf("message %d (%s): envelope does not match: %v", i, m.TxID, err)
		}
		var p struct {
			Device string `json:"device"`
			Seq    uint64 `json:"seq"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Device != m.Device || p.Seq != m.Seq || m.ContentType != "application/json" {
			r.t.Fatalf("message %d (%s): payload %s: %v", i, m.TxID, m.Payload, err)
		}
		if seen[m.TxID] {
			dups++
			continue
		}
		seen[m.TxID] = true
		if !want[m.TxID] {
			r.t.Fatalf("message %d: tx %s was not to be delivered (stream %s)", i, m.TxID, m.Stream)
		}
		if len(seen) > 1 && (m.Block < lastBlock || m.Block == lastBlock && m.Index <= lastIndex) {
			r.t.Fatalf("message %d: block %d index %d arrived after block %d index %d: not commit order", i, m.Block, m.Index, lastBlock, lastIndex)
		}
		lastBlock, lastIndex = m.Block, m.Index
	}
	if len(seen) != len(want) {
		r.t.Fatalf("%d of %d records arrived", len(seen), len(want))
	}
	return dups
}

// collected is what a test sink received, shared with its goroutines.
type collected struct {
	mu   sync.Mutex
	msgs []egress.Message
}

func (c *collected) add(m egress.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

func (c *collected) snapshot() []egress.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]egress.Message(nil), c.msgs...)
}

// waitIDs waits until every id of want arrived, for at most 60s.
func (c *collected) waitIDs(t *testing.T, want map[string]bool, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		for _, m := range c.snapshot() {
			if want[m.TxID] {
				got[m.TxID] = true
			}
		}
		if len(got) == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records arrived in 60s\n%s", len(got), len(want), logs())
		}
		time.Sleep(20 * time.Millisecond) // polling a counter
	}
}

// mosquittoUser keeps a mosquitto started by root from dropping its
// privileges to the mosquitto user, who cannot read the test's files.
const mosquittoUser = "user root\n"

// TestEgressMQTT: records reach a mosquitto broker that is stopped and
// started again, from a gateway that is killed and whose cursor is
// rewound: every tx id arrives at least once, first arrivals in commit
// order, each with its tx_id user property.
func TestEgressMQTT(t *testing.T) { testEgressMQTT(t, false) }

// TestEgressMQTT311: the same with protocol = "3.1.1" (paho.mqtt.golang),
// on a 3.1.1 connection, with the tx id in the body only (3.1.1 has no
// user properties).
func TestEgressMQTT311(t *testing.T) { testEgressMQTT(t, true) }

func testEgressMQTT(t *testing.T, v311 bool) {
	// What differs between the protocols: the topic template, and where
	// the tx id is besides the body.
	topic, extra := "ledgergate/{chain}/{device}/{stream}", ""
	if v311 {
		topic, extra = "v311/{device}/{stream}", "protocol = \"3.1.1\"\nwindow = 8\n"
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	broker := startServer(t, "mosquitto", func(port int) []string {
		// Persistence keeps the subscriber's session and its queued
		// messages across the broker's restart: a message the broker
		// acknowledged is then the broker's to deliver.
		os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\n%sallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\n"+
			"log_dest stderr\nlog_type all\n", port, mosquittoUser, dir), 0o644)
		return []string{"-c", conf}
	})
	gw := newGate(t, fmt.Sprintf("127.0.0.1:%d", broker.port))
	brokerURL := gw.url()

	var got collected
	u, _ := url.Parse(fmt.Sprintf("mqtt://127.0.0.1:%d", broker.port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribed := make(chan struct{}, 10)
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 5, CleanStartOnInitialConnection: true, SessionExpiryInterval: 3600,
		ReconnectBackoff: func(int) time.Duration { return 100 * time.Millisecond },
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: strings.SplitN(topic, "/", 2)[0] + "/#", QoS: 1}}}); err == nil {
					subscribed <- struct{}{}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "egress-test-sub",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				var m egress.Message
				if err := json.Unmarshal(pr.Packet.Payload, &m); err != nil || m.TxID == "" {
					t.Errorf("message on %s: %v", pr.Packet.Topic, err)
					return true, nil
				}
				var prop string
				if pr.Packet.Properties != nil {
					for _, p := range pr.Packet.Properties.User {
						if p.Key == "tx_id" {
							prop = p.Value
						}
					}
				}
				want := strings.NewReplacer("{chain}", m.ChainID, "{device}", m.Device, "{stream}", m.Stream).Replace(topic)
				if wantProp := map[bool]string{false: m.TxID, true: ""}[v311]; prop != wantProp || pr.Packet.Topic != want {
					t.Errorf("message of tx %s: user property tx_id %q (want %q), topic %s (want %s)", m.TxID, prop, wantProp, pr.Packet.Topic, want)
				}
				got.add(m)
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Disconnect(context.Background())
	select {
	case <-subscribed:
	case <-time.After(15 * time.Second):
		t.Fatal("test subscriber: no SUBACK in 15s")
	}

	r := newEgressRun(t, fmt.Sprintf("[[egress]]\nname = \"up\"\nkind = \"mqtt\"\nurl = %q\ntopic = %q\nbatch = 20\n%s", brokerURL, topic, extra),
		"m-1", "m-2", "m-3", "m-4")
	r.publish(15, "temp")
	got.waitIDs(t, r.want(nil), r.g.log)
	// mosquitto logs a client's protocol: p2 is MQTT 3.1.1, p5 MQTT 5.
	if b, _ := os.ReadFile(broker.out.Name()); !strings.Contains(string(b), fmt.Sprintf("as ledgergate-node-1-up (p%d,", map[bool]int{false: 5, true: 2}[v311])) {
		t.Errorf("the connector did not connect with the protocol asked (3.1.1: %t):\n%s", v311, b)
	}

	// The broker goes away: commits go on, the connector falls behind.
	// SIGTERM, not SIGKILL: mosquitto writes its persistence file (the
	// subscriber's session) only when it stops cleanly, and a message it
	// acknowledged but lost is not the connector's to resend.
	first := broker.out.Name()
	gw.set(true)
	broker.kill(syscall.SIGTERM)
	r.publish(15, "temp")
	s := r.egressStatus("up")
	if s.LagRecords == 0 || !s.Failing || s.LastError == "" {
		t.Errorf("broker down, status: %+v", s)
	}
	broker.restart()
	select {
	case <-subscribed:
	case <-time.After(15 * time.Second):
		t.Fatal("test subscriber: no SUBACK in 15s after the broker's restart")
	}
	gw.set(false)
	got.waitIDs(t, r.want(nil), func() string { return r.g.log() + brokerLogs(first, broker.out.Name()) })

	// A crash, and a cursor behind what the broker acknowledged: those
	// records are sent again.
	r.publish(10, "temp")
	r.crash("up", func(c *egress.Cursor) { *c = egress.Cursor{} })
	r.publish(10, "temp")
	got.waitIDs(t, r.want(nil), r.g.log)
	r.waitCaughtUp("up")
	dups := r.checkDelivered(got.snapshot(), r.want(nil))
	if dups == 0 {
		t.Errorf("no record arrived twice after the cursor was rewound to the start")
	}
	t.Logf("%d records, %d duplicates", len(r.want(nil)), dups)
}

// gate is a TCP proxy to a broker that the test can close to new
// connections. mosquitto 2.0.11 does not always restore a subscriber's
// session after a restart (seen: CONNACK with session present 0 from a
// database saved at SIGTERM), and records the connector delivers before
// the subscriber subscribed again are then dropped for want of a
// subscriber: the gateway reaches the broker through the gate, which
// opens once the test's subscriber is back.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	closed bool
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			u, err := net.Dial("tcp", target)
			if closed || err != nil {
				c.Close()
				if u != nil {
					u.Close()
				}
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return g
}

func (g *gate) set(closed bool) {
	g.mu.Lock()
	g.closed = closed
	g.mu.Unlock()
}

func (g *gate) url() string { return "tcp://" + g.ln.Addr().String() }

// brokerLogs returns the logs of a broker's runs.
func brokerLogs(paths ...string) string {
	var out strings.Builder
	for i, p := range paths {
		b, _ := os.ReadFile(p)
		fmt.Fprintf(&out, "\n--- broker run %d:\n%s", i+1, b)
	}
	return out.String()
}

// TestEgressNATS: records reach JetStream through a nats-server killed
// (SIGKILL) and started again and a gateway killed with its cursor
// rewound; the
// stream holds each record exactly once (Nats-Msg-Id), in commit order.
func TestEgressNATS(t *testing.T) {
	store := t.TempDir()
	srv := startServer(t, "nats-server", func(port int) []string {
		return []string{"-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", store}
	})
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", srv.port)
	r := newEgressRun(t, fmt.Sprintf("[[egress]]\nname = \"js\"\nkind = \"nats\"\nurl = %q\nstream = \"LG_TEST\"\nbatch = 25\n", natsURL),
		"n-1", "n-2", "n-3", "n-4")
	r.publish(15, "temp")
	r.waitCaughtUp("js")

	srv.kill(syscall.SIGKILL)
	r.publish(15, "temp")
	if s := r.egressStatus("js"); s.LagRecords == 0 || !s.Failing {
		t.Errorf("nats-server down, status: %+v", s)
	}
	srv.restart()
	r.waitCaughtUp("js")

	r.publish(10, "temp")
	r.crash("js", func(c *egress.Cursor) { *c = egress.Cursor{} })
	r.publish(10, "temp")
	r.waitCaughtUp("js")
	want := r.want(nil)

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "LG_TEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("stream holds %d messages, want exactly %d", info.State.Msgs, len(want))
	}
	var msgs []egress.Message
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream message %d: %v", seq, err)
		}
		var m egress.Message
		if err := json.Unmarshal(raw.Data, &m); err != nil {
			t.Fatal(err)
		}
		if raw.Header.Get(jetstream.MsgIDHeader) != m.TxID || raw.Subject != "ledgergate."+natsToken(m.ChainID)+"."+m.Device+"."+m.Stream {
			t.Fatalf("stream message %d: Nats-Msg-Id %q, subject %s, tx %s", seq, raw.Header.Get(jetstream.MsgIDHeader), raw.Subject, m.TxID)
		}
		msgs = append(msgs, m)
	}
	if dups := r.checkDelivered(msgs, want); dups != 0 {
		t.Fatalf("the stream holds %d duplicates", dups)
	}
}

func natsToken(s string) string { return strings.ReplaceAll(s, ".", "_") }

// receiver is a webhook receiver that checks signatures and delivery
// headers; it answers 500 to its first failures attempts.
type receiver struct {
	t        *testing.T
	secret   []byte
	maxBatch int
	got      collected

	mu       sync.Mutex
	attempts int
	failures int
	posts    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if sig := req.Header.Get(egress.SignatureHeader); sig != egress.Sign(rc.secret, body) {
		rc.t.Errorf("signature %q does not match the body", sig)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.attempts++
	fail := rc.attempts <= rc.failures
	if !fail {
		rc.posts++
	}
	rc.mu.Unlock()
	if fail {
		http.Error(w, "not yet", http.StatusInternalServerError)
		return
	}
	var batch []egress.Message
	if err := json.Unmarshal(body, &batch); err != nil || len(batch) == 0 || len(batch) > rc.maxBatch {
		rc.t.Errorf("batch of %d: %v", len(batch), err)
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	if d := req.Header.Get(egress.DeliveryHeader); d != batch[0].TxID {
		rc.t.Errorf("%s %q, first tx %s", egress.DeliveryHeader, d, batch[0].TxID)
	}
	for _, m := range batch {
		rc.got.add(m)
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestEgressWebhook: batches are POSTed with an HMAC signature; the
// receiver answers 500 to the first attempts, is stopped and started
// again, and the gateway is killed with its cursor rewound. Only the
// "temp" records of the devices in group line-1 are exported. A
// connector added later with start = "now" gets only what commits after
// it started; a connector for another node does not run.
func TestEgressWebhook(t *testing.T) {
	secret := []byte("a webhook secret")
	rc := &receiver{t: t, secret: secret, maxBatch: 7, failures: 3}
	late := &receiver{t: t, secret: secret, maxBatch: 100}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/ingest", rc)
	mux.Handle("/late", late)
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer func() { hs.Close() }()

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hook.secret"), append(secret, '\n'), 0o600)
	hook := fmt.Sprintf("[[egress]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://%s/ingest\"\nsecret_file = %q\nbatch = 7\nstreams = [\"temp\"]\ngroups = [\"line-1\"]\n\n"+
		"[[egress]]\nname = \"elsewhere\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nnodes = [\"node-x\"]\n",
		addr, filepath.Join(dir, "hook.secret"))
	r := newEgressRun(t, hook, "w-1:line-1", "w-2:line-1,line-2", "w-3:line-2")
	exported := func(s sentRecord) bool { return s.stream == "temp" && s.device != "w-3" }
	r.publish(20, "temp")
	r.publish(5, "hum")
	rc.got.waitIDs(t, r.want(exported), r.g.log)

	// The receiver goes away and comes back on the same address.
	hs.Close()
	r.publish(10, "temp")
	for try := 0; ; try++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if try == 100 {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // the port is still closing
	}
	hs = &http.Server{Handler: mux}
	go hs.Serve(ln)
	rc.got.waitIDs(t, r.want(exported), r.g.log)

	// A crash with the cursor rewound, and a new connector started "now".
	before := r.want(nil)
	f, err := os.OpenFile(r.conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[[egress]]\nname = \"late\"\nkind = \"webhook\"\nurl = \"http://%s/late\"\nsecret_file = %q\nstart = \"now\"\n", addr, filepath.Join(dir, "hook.secret"))
	f.Close()
	r.crash("hook", func(c *egress.Cursor) { *c = egress.Cursor{} })
	r.publish(10, "temp")
	r.publish(2, "hum")
	rc.got.waitIDs(t, r.want(exported), r.g.log)
	r.waitCaughtUp("hook")
	dups := r.checkDelivered(rc.got.snapshot(), r.want(exported))
	rc.mu.Lock()
	if rc.attempts < rc.failures+1 || dups == 0 {
		t.Errorf("%d attempts, %d duplicates", rc.attempts, dups)
	}
	t.Logf("%d records in %d POSTs after %d refused, %d duplicates", len(r.want(exported)), rc.posts, rc.failures, dups)
	rc.mu.Unlock()

	afterRestart := r.want(func(s sentRecord) bool { return true })
	for id := range before {
		delete(afterRestart, id)
	}
	r.waitCaughtUp("late")
	if dups := r.checkDelivered(late.got.snapshot(), afterRestart); dups != 0 {
		t.Errorf("late: %d duplicates", dups)
	}
	if s := r.egressStatus("elsewhere"); s.Exporting || s.Delivered != 0 {
		t.Errorf("connector of another node: %+v", s)
	}
	if fileExists(filepath.Join(r.data, daemon.EgressDir, "elsewhere.cursor")) {
		t.Errorf("connector of another node made a cursor")
	}

	// A clean stop writes the cursor of what the sink acknowledged.
	want := r.egressStatus("hook").Cursor
	r.g.stop()
	b, err := os.ReadFile(filepath.Join(r.data, daemon.EgressDir, "hook.cursor"))
	if err != nil {
		t.Fatal(err)
	}
	var got egress.Cursor
	if err := json.Unmarshal(b, &got); err != nil || got != want {
		t.Errorf("cursor file after stop %+v (%v), status said %+v", got, err, want)
	}
}

// TestEgressMQTTTLS: a connector reaches a mosquitto broker over TLS
// (mqtts://, the broker's certificate pinned with ca_file) with a
// username and a password_file, over MQTT 5 and over 3.1.1; a
// connector with a wrong password is refused at CONNECT, which is a
// rejection: logged as an error, shown in the status, retried slowly,
// its records kept.
func TestEgressMQTTTLS(t *testing.T) {
	dir := t.TempDir()
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfSigned(t, serverKey, "broker", filepath.Join(dir, "server.pem"))
	der, _ := x509.MarshalPKCS8PrivateKey(serverKey)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644)
	if out, err := exec.Command(sinkBinary(t, "mosquitto_passwd"), "-b", "-c", filepath.Join(dir, "passwd"), "gw", "right horse").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	os.Chmod(filepath.Join(dir, "passwd"), 0o644)
	conf := filepath.Join(dir, "mosquitto.conf")
	broker := startServer(t, "mosquitto", func(port int) []string {
		os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\n%scertfile %s\nkeyfile %s\nallow_anonymous false\npassword_file %s\n",
			port, mosquittoUser, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "passwd")), 0o644)
		return []string{"-c", conf}
	})

	var got, got311 collected
	u, _ := url.Parse(fmt.Sprintf("tls://127.0.0.1:%d", broker.port))
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "server.pem"))
	pool.AppendCertsFromPEM(caPEM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribed := make(chan struct{}, 10)
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, TlsCfg: &tls.Config{RootCAs: pool}, KeepAlive: 5, CleanStartOnInitialConnection: true,
		ConnectUsername: "gw", ConnectPassword: []byte("right horse"),
		ReconnectBackoff: func(int) time.Duration { return 100 * time.Millisecond },
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "plant/#", QoS: 1}, {Topic: "p311/#", QoS: 1}}}); err == nil {
					subscribed <- struct{}{}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "egress-tls-sub",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				var m egress.Message
				err := json.Unmarshal(pr.Packet.Payload, &m)
				switch {
				case err == nil && pr.Packet.Topic == "plant/"+m.Device+"/"+m.Stream:
					got.add(m)
				case err == nil && pr.Packet.Topic == "p311/"+m.Device+"/"+m.Stream:
					got311.add(m)
				default:
					t.Errorf("message on %s: %v", pr.Packet.Topic, err)
				}
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Disconnect(context.Background())
	select {
	case <-subscribed:
	case <-time.After(15 * time.Second):
		t.Fatal("test subscriber: no SUBACK in 15s")
	}

	os.WriteFile(filepath.Join(dir, "gw.password"), []byte("right horse\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong.password"), []byte("wrong horse\n"), 0o600)
	tmpl := "[[egress]]\nname = %q\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:%d\"\ntopic = \"plant/{device}/{stream}\"\nusername = \"gw\"\npassword_file = %q\nca_file = %q\n\n"
	// The same over MQTT 3.1.1 (paho.mqtt.golang).
	tmpl311 := "[[egress]]\nname = \"tls311\"\nkind = \"mqtt\"\nprotocol = \"3.1.1\"\nurl = \"mqtts://127.0.0.1:%d\"\ntopic = \"p311/{device}/{stream}\"\n" +
		"username = \"gw\"\npassword_file = %q\nca_file = %q\n\n"
	r := newEgressRun(t, fmt.Sprintf(tmpl, "tls", broker.port, filepath.Join(dir, "gw.password"), filepath.Join(dir, "server.pem"))+
		fmt.Sprintf(tmpl, "wrong", broker.port, filepath.Join(dir, "wrong.password"), filepath.Join(dir, "server.pem"))+
		fmt.Sprintf(tmpl311, broker.port, filepath.Join(dir, "gw.password"), filepath.Join(dir, "server.pem")), "t-1", "t-2")
	r.publish(10, "temp")
	got.waitIDs(t, r.want(nil), r.g.log)
	got311.waitIDs(t, r.want(nil), r.g.log)
	r.waitCaughtUp("tls")
	r.waitCaughtUp("tls311")
	if dups := r.checkDelivered(got.snapshot(), r.want(nil)); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if dups := r.checkDelivered(got311.snapshot(), r.want(nil)); dups != 0 {
		t.Errorf("3.1.1: %d duplicates", dups)
	}
	s := r.egressStatus("wrong")
	if !s.Failing || s.Delivered != 0 || s.LagRecords == 0 || !strings.Contains(s.LastError, "connect refused") {
		t.Errorf("connector with a wrong password: %+v", s)
	}
	if !strings.Contains(r.g.log(), `level=ERROR msg="egress sink rejected the records`) {
		t.Errorf("the refusal is not logged as an error:\n%s", r.g.log())
	}
}

// TestEgressCluster: in a cluster of four gateways, a connector without
// nodes runs on every gateway and JetStream keeps one copy of each record
// (Nats-Msg-Id); a connector with nodes = ["node-2"] runs on node-2 only.
func TestEgressCluster(t *testing.T) {
	store := t.TempDir()
	srv := startServer(t, "nats-server", func(port int) []string {
		return []string{"-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", store}
	})
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", srv.port)
	conf := filepath.Join(t.TempDir(), "ledgergate.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "[[egress]]\nname = \"all\"\nkind = \"nats\"\nurl = %q\nstream = \"LG_ALL\"\n\n"+
		"[[egress]]\nname = \"one\"\nkind = \"nats\"\nurl = %q\nstream = \"LG_ONE\"\nsubject = \"one.{chain}.{device}.{stream}\"\nnodes = [\"node-2\"]\n",
		natsURL, natsURL), 0o644)
	c := newCluster(t, 4, "--config", conf)

	const devices, perDevice = 2, 40
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	keys := make([]crypto.Signer, devices)
	for d := range devices {
		keys[d] = c.admin.enroll(t, c.gws[0].api, fmt.Sprintf("c-%d", d), ledger.ES256)
	}
	h, _ := c.head(0)
	c.converge(h, 30*time.Second) // every gateway knows every device
	for d := range devices {
		id, key := fmt.Sprintf("c-%d", d), keys[d]
		wg.Go(func() {
			for seq := uint64(1); seq <= perDevice; seq++ {
				env, err := device.SignRecord(key, c.admin.chainID, ledger.Record{DeviceID: id, Stream: "temp", Seq: seq, Time: time.Now().UnixMilli(),
					ContentType: "application/json", Payload: fmt.Appendf(nil, `{"device":%q,"seq":%d}`, id, seq)})
				if err != nil {
					t.Error(err)
					return
				}
				var code int
				var reason, txID string
				for try := 0; try < 10; try++ { // "unavailable" is answered to be sent again
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					code, reason, txID, err = post(ctx, c.gws[int(seq)%len(c.gws)].api, env)
					cancel()
					if err != nil || code != http.StatusServiceUnavailable {
						break
					}
				}
				if err != nil || code != http.StatusOK {
					t.Errorf("record %s/%d: %d %s %v", id, seq, code, reason, err)
					return
				}
				mu.Lock()
				want[txID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	r := &egressRun{t: t, genesis: mustGenesis(t, c.data[0])}
	for i, g := range c.gws {
		r.g = g
		r.waitCaughtUp("all")
		if s := r.egressStatus("one"); s.Exporting != (i == 1) || (i != 1 && s.Delivered != 0) {
			t.Errorf("node-%d: connector one: %+v", i+1, s)
		}
	}
	r.g = c.gws[1]
	r.waitCaughtUp("one")

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"LG_ALL", "LG_ONE"} {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != uint64(len(want)) {
			t.Fatalf("%s holds %d messages, want exactly %d", name, info.State.Msgs, len(want))
		}
		var msgs []egress.Message
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			raw, err := stream.GetMsg(ctx, seq)
			if err != nil {
				t.Fatalf("%s message %d: %v", name, seq, err)
			}
			var m egress.Message
			if err := json.Unmarshal(raw.Data, &m); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, m)
		}
		if name == "LG_ONE" {
			// One exporter: its stream is in commit order too.
			r.checkDelivered(msgs, want)
			continue
		}
		// Four exporters interleave: each record once, each verified; the
		// order is each gateway's first arrival, not one commit order.
		seen := map[string]bool{}
		for _, m := range msgs {
			if seen[m.TxID] || !want[m.TxID] {
				t.Fatalf("LG_ALL: tx %s twice or not sent", m.TxID)
			}
			seen[m.TxID] = true
			if _, err := device.VerifyReceipt(r.genesis, m.Receipt); err != nil {
				t.Fatalf("LG_ALL: tx %s: %v", m.TxID, err)
			}
		}
	}
}

func mustGenesis(t *testing.T, data string) *ledger.Genesis {
	t.Helper()
	g, err := daemon.LoadGenesis(data)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
