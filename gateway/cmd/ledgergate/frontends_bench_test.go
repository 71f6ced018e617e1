package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkFrontEnds measures one dev gateway with 100 ES256 devices,
// each sending records one after the other (the next once the previous is
// acknowledged, that is committed) for 5 s, over CoAP/UDP, CoAP/DTLS and
// MQTT in the same run: committed records per second, and the ack
// latency's p50 and p99. The devices run in this process on the same
// cores.
//
//	go test -run '^$' -bench FrontEnds -benchtime 1x ./gateway/cmd/ledgergate
func BenchmarkFrontEnds(b *testing.B) {
	const devices, run = 100, 5 * time.Second
	g := startGateway(b, filepath.Join(b.TempDir(), "data"))
	a := loadAdmin(b, g)
	keys := make([]crypto.Signer, devices)
	seqs := make([]uint64, devices)
	for i := range devices {
		keys[i] = a.enroll(b, g.api, fmt.Sprintf("bench-%d", i), ledger.ES256)
	}
	id := func(i int) string { return fmt.Sprintf("bench-%d", i) }
	record := func(i int) []byte {
		seqs[i]++
		env, err := device.SignRecord(keys[i], a.chainID, ledger.Record{DeviceID: id(i), Stream: "bench", Seq: seqs[i],
			Time: time.Now().UnixMilli(), Payload: []byte(`{"v":1}`)})
		if err != nil {
			b.Fatal(err)
		}
		return env
	}
	coapSend := func(cc *udpClient.Conn) func(context.Context, []byte) error {
		return func(ctx context.Context, env []byte) error {
			resp, err := cc.Post(ctx, "/lg/v1/data/bench", message.AppCoseSign1, bytes.NewReader(env))
			if err != nil {
				return err
			}
			if resp.Code() != codes.Changed {
				return fmt.Errorf("answer %v", resp.Code())
			}
			return nil
		}
	}
	phases := []struct {
		name string
		dial func(i int) (send func(context.Context, []byte) error, closer func())
	}{
		{"coap-udp", func(int) (func(context.Context, []byte) error, func()) {
			cc, err := udp.Dial(g.coap)
			if err != nil {
				b.Fatal(err)
			}
			return coapSend(cc), func() { cc.Close() }
		}},
		{"coap-dtls", func(i int) (func(context.Context, []byte) error, func()) {
			cc := dialDTLSBounded(b, g.dtls, keys[i])
			return coapSend(cc), func() { cc.Close() }
		}},
		{"mqtt", func(i int) (func(context.Context, []byte) error, func()) {
			cl, err := device.Dial(context.Background(), id(i), keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
			if err != nil {
				b.Fatal(err)
			}
			return func(ctx context.Context, env []byte) error { return cl.Publish(ctx, "bench", env) }, func() { cl.Close() }
		}},
	}
	b.ResetTimer()
	for b.Loop() {
		for _, ph := range phases {
			var mu sync.Mutex
			var lat []time.Duration
			failed := 0
			var wg sync.WaitGroup
			end := time.Now().Add(run)
			for i := range devices {
				send, closer := ph.dial(i)
				wg.Go(func() {
					defer closer()
					for time.Now().Before(end) {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						t0 := time.Now()
						err := send(ctx, record(i))
						d := time.Since(t0)
						cancel()
						mu.Lock()
						if err != nil {
							failed++
						} else {
							lat = append(lat, d)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.Sort(lat)
			if len(lat) == 0 {
				b.Fatalf("%s: nothing committed, %d failed", ph.name, failed)
			}
			rate := float64(len(lat)) / run.Seconds()
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			b.Logf("%-9s %6.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms  failed %d", ph.name, rate,
				float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, failed)
			b.ReportMetric(rate, ph.name+"-msgs/s")
			b.ReportMetric(float64(p99.Microseconds())/1000, ph.name+"-p99-ms")
		}
	}
}

// clientCert is a self-signed certificate of key, for DTLS.
func clientCert(tb testing.TB, key crypto.Signer) tls.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// dialDTLSBounded connects a CoAP/DTLS client and runs its handshake at
// once, at most 10 s a try, three tries. go-coap's client otherwise
// handshakes lazily on its read loop without a deadline, holding pion's
// handshake lock: when the gateway drops a handshake under load (its
// HandshakeTimeout), that client's requests wait for the lock for ever
// and the benchmark never ends.
func dialDTLSBounded(tb testing.TB, addr string, key crypto.Signer) *udpClient.Conn {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	for try := 1; ; try++ {
		conn, err := piondtls.DialWithOptions("udp", ra,
			piondtls.WithCertificates(clientCert(tb, key)), piondtls.WithInsecureSkipVerify(true),
			piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
			piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8))
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = conn.HandshakeContext(ctx)
		cancel()
		if err == nil {
			return coapdtls.Client(conn, options.WithCloseSocket())
		}
		_ = conn.Close()
		if try == 3 {
			tb.Fatalf("DTLS handshake with %s, three tries: %v", addr, err)
		}
	}
}
