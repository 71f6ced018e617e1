package egress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkPipeline measures records/s from a sink to a real nats-server
// (JetStream) and a real mosquitto (MQTT 5 and 3.1.1, set_tcp_nodelay:
// without it Nagle's algorithm holds back its small PUBACKs) behind a TCP proxy
// that delays every byte by 20 ms each way (a 40 ms round trip, a broker
// in the cloud), with window = 1 (one message per round trip, as before
// pipelining) and window = 64. Batches as a connector sends them (100
// rounded up to a multiple of the window); each message is a 1 KiB
// record.
//
//	go test -run '^$' -bench Pipeline -benchtime 1x ./gateway/egress
func BenchmarkPipeline(b *testing.B) {
	const delay = 20 * time.Millisecond
	dir := b.TempDir()
	natsPort := benchServer(b, "nats-server", func(port int) []string {
		return []string{"-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", dir}
	})
	conf := filepath.Join(dir, "mosquitto.conf")
	mqttPort := benchServer(b, "mosquitto", func(port int) []string {
		os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nuser root\nallow_anonymous true\nset_tcp_nodelay true\n", port), 0o644)
		return []string{"-c", conf}
	})
	natsAddr := delayProxy(b, fmt.Sprintf("127.0.0.1:%d", natsPort), delay)
	mqttAddr := delayProxy(b, fmt.Sprintf("127.0.0.1:%d", mqttPort), delay)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"nats", Config{Kind: KindNATS, URL: "nats://" + natsAddr}},
		{"mqtt5", Config{Kind: KindMQTT, URL: "tcp://" + mqttAddr}},
		{"mqtt3.1.1", Config{Kind: KindMQTT, URL: "tcp://" + mqttAddr, Protocol: MQTT311}},
	} {
		for _, window := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/window=%d", c.name, window), func(b *testing.B) {
				cfg := c.cfg
				cfg.Name, cfg.ClientID, cfg.Window, cfg.Timeout = "bench", "bench-"+c.name, window, 30*time.Second
				cfg = withDefaults(cfg)
				var s sink
				var err error
				switch {
				case cfg.Kind == KindNATS:
					s, err = newNATSSink(cfg)
				case cfg.Protocol == MQTT311:
					s, err = newMQTT3Sink(cfg)
				default:
					s, err = newMQTTSink(cfg)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer s.close()
				n := 40 // records per round: 1 s with one per round trip
				if window > 1 {
					n = 2000
				}
				batch := (&connector{cfg: cfg}).batch()
				if m, ok := s.(*mqttSink); ok {
					defer func() { b.Logf("window %d: the least of window and the broker's Receive Maximum", m.window) }()
				}
				records := 0
				for b.Loop() {
					msgs := benchMessages(n)
					for len(msgs) > 0 {
						k := min(batch, len(msgs))
						got, err := s.send(context.Background(), msgs[:k])
						if err != nil {
							b.Fatal(err)
						}
						msgs = msgs[got:]
						records += got
					}
				}
				b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// benchMessages returns n messages with new tx ids (JetStream would drop
// repeated ones) and 1 KiB of envelope and receipt.
func benchMessages(n int) []*Message {
	msgs := make([]*Message, n)
	for i := range msgs {
		id := make([]byte, 32)
		rand.Read(id)
		msgs[i] = &Message{ChainID: "bench", TxID: hex.EncodeToString(id), Block: uint64(i/100 + 1), Index: uint64(i % 100),
			Device: "d-1", Stream: "s", Seq: uint64(i + 1), ContentType: "application/json", Payload: []byte(`{"t":21.5}`),
			Envelope: make([]byte, 400), Receipt: make([]byte, 600)}
	}
	return msgs
}

// benchServer starts a Debian sink server on a free port and returns the
// port once it accepts connections.
func benchServer(b *testing.B, name string, args func(port int) []string) int {
	b.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		path = "/usr/sbin/" + name
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, args(port)...)
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v (Debian package %s)", name, err, name)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port
		}
		time.Sleep(20 * time.Millisecond) // polling a port
	}
	b.Fatalf("%s not listening on %d", name, port)
	return 0
}

// delayProxy listens on 127.0.0.1 and forwards each connection to
// upstream, delivering every byte delay after it was read, in each
// direction: latency without a bandwidth limit. It returns its address.
func delayProxy(b *testing.B, upstream string, delay time.Duration) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go delayCopy(u, c, delay)
			go delayCopy(c, u, delay)
		}
	}()
	return ln.Addr().String()
}

// delayCopy copies src to dst, each chunk delay after it was read.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	defer src.Close()
	for c := range q {
		time.Sleep(time.Until(c.at)) // the simulated link's latency
		if _, err := dst.Write(c.data); err != nil {
			io.Copy(io.Discard, src)
			return
		}
	}
}
