package coap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// rogueHandshake runs a DTLS handshake from 127.0.0.1 with a fresh
// self-signed certificate of a key no device is enrolled with, and
// returns the session if the gateway took it.
func rogueHandshake(ctx context.Context, addr string) (*piondtls.Conn, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := newCertificate(key, "rogue")
	if err != nil {
		return nil, err
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := piondtls.DialWithOptions("udp", ra,
		piondtls.WithCertificates(*cert),
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// TestDTLSHandshakeFlood: 1,100 DTLS handshakes from one address, 32 at
// a time, each with a fresh self-signed certificate of an unenrolled
// key, get no session, and an enrolled device at another address gets
// one whenever it asks: each of its records, each on a new session,
// commits during the flood and after it (issue 20, defect 4: the
// flood's sessions filled the table and locked devices out for the
// idle timeout).
func TestDTLSHandshakeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("1,100 handshakes")
	}
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)

	const rogues, parallel = 1100, 32
	ctx, cancel := context.WithCancel(context.Background())
	var (
		flood    = make(chan struct{})
		accepted atomic.Int64
		mu       sync.Mutex
		open     []*piondtls.Conn
	)
	go func() {
		defer close(flood)
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for range rogues {
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if c, err := rogueHandshake(ctx, s.dtlsAddr); err == nil {
					accepted.Add(1)
					mu.Lock()
					open = append(open, c) // held open, as an attacker would
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}()
	t.Cleanup(func() { // before the server closes
		cancel()
		<-flood
		for _, c := range open {
			_ = c.Close()
		}
	})

	seq := uint64(0)
	// send commits one record over a new DTLS session. Like a device, it
	// tries the handshake again when one does not finish in time (on 2
	// busy cores, the flood's own handshakes can starve one past 10 s);
	// a device locked out fails all three.
	send := func() {
		t.Helper()
		seq++
		env := d.record(t, "temp", seq, []byte("during the flood"))
		var errs []error
		for range 3 {
			cc, err := dialDTLSFrom(t, otherHost, s.dtlsAddr, d.key)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			resp, err := cc.Post(ctx, "/lg/v1/data/temp", message.AppCoseSign1, bytes.NewReader(env))
			cancel()
			_ = cc.Close()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			mustCommit(t, node, resp, env)
			return
		}
		t.Fatalf("record %d: no session in 3 tries: %v", seq, errors.Join(errs...))
	}
	deadline := time.After(2 * time.Minute)
	for flooding := true; flooding; {
		select {
		case <-flood:
			flooding = false
		case <-deadline:
			t.Fatal("the flood did not end in 2 minutes")
		default:
			send()
		}
	}
	during := seq
	for range 3 {
		send()
	}
	if n := accepted.Load(); n > 0 {
		t.Fatalf("%d handshakes with unenrolled keys were accepted", n)
	}
	// What is left of the flood is at most its address's share of
	// handshakes (stray retransmissions start some; they time out), and
	// of sessions at most the device's.
	if h, n := s.dtlsLn.counts(); h > DefaultMaxHandshakesPerAddr || n > DefaultMaxSessionsPerDevice {
		t.Fatalf("%d handshakes and %d sessions after the flood", h, n)
	}
	t.Logf("%d records committed during the flood, 3 after it", during)
	if during < 3 {
		t.Fatalf("only %d records during the flood", during)
	}
}

// TestBlockwiseFlood: 300 Block1 uploads from one address, each from a
// port of its own, that never go past block 0 keep at most that
// address's share of the transfers, and another device's block-wise
// record from another address commits (issue 20, defect 5: they took
// every slot, and everyone got 4.29).
func TestBlockwiseFlood(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	chunk := bytes.Repeat([]byte{0xd2}, 16)
	for i := range 300 {
		r := dialRaw(t, s.udpAddr)
		resp := r.do(block1("temp", 0, true, chunk))
		if i < DefaultMaxTransfers {
			wantCode(t, resp, codes.Continue)
		}
	}
	if n, _, _ := s.blocks.usage(); n > DefaultMaxTransfersPerAddr {
		t.Fatalf("one address keeps %d transfers, want at most %d", n, DefaultMaxTransfersPerAddr)
	}
	cc := dialUDP(t, s.udpAddr, blockwise.SZX64, from(otherHost))
	env := d.record(t, "temp", 1, bytes.Repeat([]byte("y"), 600))
	mustCommit(t, node, post(t, cc, "temp", env), env)
}
