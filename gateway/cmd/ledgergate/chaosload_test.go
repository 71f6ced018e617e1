package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// chaosLoad is devices publishing records to the gateways of a chaos run,
// each to its own gateway, one record in flight: over MQTT with the device
// SDK (which sends a record refused as "unavailable" again), and over CoAP
// with go-coap (resending on 5.03 and 4.29 after their Max-Age). A device
// whose gateway is gone dials it again at its new address, and sends the
// same bytes again until they are acknowledged: so a record is resent
// across restarts, as a real device would, and the ledger must hold it
// once.
type chaosLoad struct {
	c      *chaosRun
	acked  ackSet
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	devs   []*chaosDevice

	mu   sync.Mutex
	odd  []string             // unexpected answers
	acks map[string]ackRecord // by tx id: who acknowledged it, when
	gens map[*gateway]int     // process generation of each gateway seen, from 1
	last [4]int               // the last generation given out, per gateway
}

// ackRecord is one acknowledgement, kept to explain a lost record: which
// gateway process acknowledged it, when, and at which height and block
// hash the gateway said it committed (CoAP's receipt; 0 and "" for
// MQTT, whose SDK returns none).
type ackRecord struct {
	dev    string
	node   int // 1..4
	gen    int // the gateway's process generation: 1 for the first process
	at     time.Duration
	try    int
	height uint64
	hash   string
}

func (a ackRecord) String() string {
	s := fmt.Sprintf("acknowledged at %.1fs by node-%d (process %d) to %s on try %d", a.at.Seconds(), a.node, a.gen, a.dev, a.try)
	if a.hash != "" {
		s += fmt.Sprintf(", receipt: height %d block %s", a.height, a.hash)
	}
	return s
}

type chaosDevice struct {
	id      string
	gw      int
	coap    bool
	key     crypto.Signer
	acks    atomic.Int64
	lastAck atomic.Int64 // unix nanoseconds
}

func (d *chaosDevice) String() string {
	proto := "mqtt"
	if d.coap {
		proto = "coap"
	}
	return fmt.Sprintf("%s(node-%d %s)", d.id, d.gw+1, proto)
}

// startLoad enrolls mqtt and coap devices per gateway and starts them.
func (c *chaosRun) startLoad(mqtt, coap int) *chaosLoad {
	t := c.t
	ctx, cancel := context.WithCancel(context.Background())
	l := &chaosLoad{c: c, ctx: ctx, cancel: cancel}
	for gw := range 4 {
		for k := range mqtt + coap {
			id := fmt.Sprintf("dev-%d-%d", gw+1, k)
			d := &chaosDevice{id: id, gw: gw, coap: k >= mqtt}
			d.key = c.admin.enroll(t, c.gw(0).api, id, ledger.ES256)
			l.devs = append(l.devs, d)
		}
	}
	// Every gateway knows every device before they connect.
	var h chaosStatus
	if err := getJSONTimeout(c.gw(0).api, "/api/v1/status", &h); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := range 4 {
		for {
			var st chaosStatus
			if err := getJSONTimeout(c.gw(i).api, "/api/v1/status", &st); err == nil && st.Height >= h.Height {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node-%d did not reach height %d", i+1, h.Height)
			}
			time.Sleep(50 * time.Millisecond) // polling another process's API
		}
	}
	c.event("%d devices enrolled at height %d: %d MQTT and %d CoAP on each gateway", len(l.devs), h.Height, mqtt, coap)
	for _, d := range l.devs {
		l.wg.Go(func() {
			if d.coap {
				l.runCoAP(d)
			} else {
				l.runMQTT(d)
			}
		})
	}
	return l
}

// stop ends the load and waits for every device; idempotent.
func (l *chaosLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// ack records an acknowledgement from gateway process g; receipt is the
// CoAP 2.04 body (nil for MQTT).
func (l *chaosLoad) ack(d *chaosDevice, g *gateway, try int, env, receipt []byte) {
	id := hexID(env)
	a := ackRecord{dev: d.String(), node: d.gw + 1, at: time.Since(l.c.start), try: try}
	if r, err := ledger.DecodeReceipt(receipt); err == nil {
		h := r.Header.Hash()
		a.height, a.hash = r.Header.Height, hex.EncodeToString(h[:])
	}
	l.mu.Lock()
	if l.acks == nil {
		l.acks, l.gens = map[string]ackRecord{}, map[*gateway]int{}
	}
	if l.gens[g] == 0 {
		l.last[d.gw]++
		l.gens[g] = l.last[d.gw]
	}
	a.gen = l.gens[g]
	l.acks[id] = a
	l.mu.Unlock()
	l.acked.add(id)
	d.acks.Add(1)
	d.lastAck.Store(time.Now().UnixNano())
}

// explain tells what is known of the acknowledgement of tx id, and the
// events within two seconds of it.
func (l *chaosLoad) explain(id string) string {
	l.mu.Lock()
	a, ok := l.acks[id]
	l.mu.Unlock()
	if !ok {
		return "no acknowledgement recorded"
	}
	lines := []string{a.String()}
	for _, e := range l.c.eventLog() {
		var at float64
		if _, err := fmt.Sscanf(strings.TrimSpace(e), "%fs", &at); err == nil && at >= a.at.Seconds()-2 && at <= a.at.Seconds()+2 {
			lines = append(lines, "  "+e)
		}
	}
	return strings.Join(lines, "\n")
}

// ackOf returns the acknowledgement recorded for tx id.
func (l *chaosLoad) ackOf(id string) (ackRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.acks[id]
	return a, ok
}

func (l *chaosLoad) anomaly(d *chaosDevice, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.odd = append(l.odd, fmt.Sprintf("%6.1fs %s: ", time.Since(l.c.start).Seconds(), d)+fmt.Sprintf(format, args...))
}

func (l *chaosLoad) anomalies() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.odd...)
}

// lateSince lists the devices with no acknowledgement after t.
func (l *chaosLoad) lateSince(t time.Time) []string {
	var late []string
	for _, d := range l.devs {
		if d.lastAck.Load() <= t.UnixNano() {
			late = append(late, d.String())
		}
	}
	return late
}

// waitAcks polls until n records are acknowledged.
func (l *chaosLoad) waitAcks(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for l.acked.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledgements in %s", l.acked.len(), within)
		}
		time.Sleep(20 * time.Millisecond) // polling a counter
	}
}

// pause waits a device's back-off, 100 ms to 1 s; false if the load ended.
func (l *chaosLoad) pause(d time.Duration) bool {
	if d == 0 {
		d = time.Duration(100+rand.IntN(900)) * time.Millisecond
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-l.ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (l *chaosLoad) sign(d *chaosDevice, seq uint64) []byte {
	env, err := device.SignRecord(d.key, l.c.admin.chainID, ledger.Record{DeviceID: d.id, Stream: "s", Seq: seq,
		Payload: []byte("chaos " + strconv.FormatUint(seq, 10))})
	if err != nil {
		panic("chaos: invariant: sign a record: " + err.Error())
	}
	return env
}

// retryable are the refusals a device answers by sending the same bytes
// again later (docs/protocol.md section 14).
func retryable(reason string) bool {
	switch ledger.Reason(reason) {
	case ledger.ReasonUnavailable, ledger.ReasonOverloaded, ledger.ReasonInternal:
		return true
	}
	return false
}

func (l *chaosLoad) runMQTT(d *chaosDevice) {
	var cl *device.Client
	var addr string
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for seq := uint64(1); l.ctx.Err() == nil; seq++ {
		env := l.sign(d, seq)
	send:
		for try := 1; l.ctx.Err() == nil; try++ {
			g := l.c.gw(d.gw)
			if g == nil {
				l.pause(0)
				continue
			}
			if cl != nil && addr != g.mqtt {
				cl.Close() // the gateway restarted elsewhere
				cl = nil
			}
			if cl == nil {
				ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
				c, err := device.Dial(ctx, d.id, d.key, l.c.admin.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
				cancel()
				if err != nil {
					l.pause(0)
					continue
				}
				cl, addr = c, g.mqtt
			}
			ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
			err := cl.Publish(ctx, "s", env)
			cancel()
			var re *device.RefusedError
			switch {
			case err == nil:
				l.ack(d, g, try, env, nil)
				break send
			case errors.As(err, &re) && retryable(re.Reason):
				l.pause(device.ResendPause)
			case errors.As(err, &re) && re.Reason == string(ledger.ReasonReplay) && try > 1:
				break send // an earlier send of these bytes was committed, unacknowledged
			case errors.As(err, &re):
				l.anomaly(d, "seq %d try %d: %v", seq, try, err)
				break send
			default: // the connection: dial again
				cl.Close()
				cl = nil
				l.pause(0)
			}
		}
	}
}

func (l *chaosLoad) runCoAP(d *chaosDevice) {
	var cc *udpclient.Conn
	var addr string
	defer func() {
		if cc != nil {
			cc.Close()
		}
	}()
	for seq := uint64(1); l.ctx.Err() == nil; seq++ {
		env := l.sign(d, seq)
	send:
		for try := 1; l.ctx.Err() == nil; try++ {
			g := l.c.gw(d.gw)
			if g == nil {
				l.pause(0)
				continue
			}
			if cc != nil && addr != g.coap {
				cc.Close()
				cc = nil
			}
			if cc == nil {
				// A gateway killed under the client is expected: go-coap
				// would print its read errors.
				c, err := udp.Dial(g.coap, options.WithErrors(func(error) {}))
				if err != nil {
					l.pause(0)
					continue
				}
				cc, addr = c, g.coap
			}
			ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
			resp, err := cc.Post(ctx, "/lg/v1/data/s", message.AppCoseSign1, bytes.NewReader(env))
			cancel()
			if err != nil {
				cc.Close()
				cc = nil
				l.pause(0)
				continue
			}
			code := resp.Code()
			body, _ := resp.ReadBody()
			cc.ReleaseMessage(resp)
			reason, _, _ := strings.Cut(string(body), ":")
			switch {
			case code == codes.Changed:
				l.ack(d, g, try, env, body)
				break send
			case code == codes.ServiceUnavailable || code == codes.TooManyRequests || retryable(reason):
				l.pause(device.ResendPause) // their Max-Age
			case reason == string(ledger.ReasonReplay) && try > 1:
				break send
			default:
				l.anomaly(d, "seq %d try %d: %v %s", seq, try, code, body)
				break send
			}
		}
	}
}
