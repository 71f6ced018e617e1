package mqtt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// fakeAnswers is a bridge.Answers whose answers name what was asked, so a
// test sees that the device's argument reached it. Keys knows only the
// devices in keys; Blob waits while block is set.
type fakeAnswers struct {
	mu        sync.Mutex
	configs   map[string][]byte // device -> configuration manifest
	firmwares map[string][]byte // device -> firmware manifest
	keys      map[string]bool   // devices Keys knows
	block     chan struct{}     // not nil: Blob waits for it to close, or for its ctx
	inBlob    int               // Blob calls waiting
	blobErr   []error           // what the waiting Blob calls returned
}

func newFakeAnswers() *fakeAnswers {
	return &fakeAnswers{configs: map[string][]byte{}, firmwares: map[string][]byte{}, keys: map[string]bool{}}
}

func (f *fakeAnswers) Config(device string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.configs[device], nil
}

func (f *fakeAnswers) setConfig(device string, manifest []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configs[device] = manifest
}

func (f *fakeAnswers) Firmware(device string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firmwares[device], nil
}

func (f *fakeAnswers) setFirmware(device string, manifest []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.firmwares[device] = manifest
}

func (f *fakeAnswers) VerifyConfig(device string, hash []byte) ([]byte, error) {
	return fmt.Appendf(nil, "verdict %s %x", device, hash), nil
}

func (f *fakeAnswers) Blob(ctx context.Context, device string, ref []byte) ([]byte, error) {
	f.mu.Lock()
	block := f.block
	if block != nil {
		f.inBlob++
	}
	f.mu.Unlock()
	if block != nil {
		var err error
		select {
		case <-block:
		case <-ctx.Done():
			err = ctx.Err()
		}
		f.mu.Lock()
		f.inBlob--
		f.blobErr = append(f.blobErr, err)
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return fmt.Appendf(nil, "blob %s %x", device, ref), nil
}

func (f *fakeAnswers) Keys(device, other string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.keys[other] {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: "no device " + other}
	}
	return fmt.Appendf(nil, "keys %s %s", device, other), nil
}

func (f *fakeAnswers) know(device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[device] = true
}

func (f *fakeAnswers) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inBlob
}

// answerFilters are the topics a requesting client subscribes to: the
// default answer topics and its own response topics.
func answerFilters(id string) []string {
	p := "lg/v1/" + id + "/"
	return []string{p + "config/verdict", p + "config/blob", p + "keys", p + "answers/#"}
}

// request publishes a QoS 1 request on topic, with a response topic and
// correlation data if responseTopic is set, and returns the PUBACK and the
// answer, which must arrive on answerTo.
func (c *client) request(t testing.TB, topic string, payload []byte, responseTopic string, corr []byte, answerTo string) (*paho.PublishResponse, *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	pub := &paho.Publish{Topic: topic, QoS: 1, Payload: payload}
	if responseTopic != "" {
		pub.Properties = &paho.PublishProperties{ResponseTopic: responseTopic, CorrelationData: corr}
	}
	r, err := c.pc.Publish(ctx, pub)
	if r == nil {
		t.Fatalf("request on %s: no PUBACK: %v", topic, err)
	}
	return r, c.answer(t, answerTo)
}

// answer waits for the next message on c's other topics, which must be on
// topic.
func (c *client) answer(t testing.TB, topic string) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.other:
		if m.Topic != topic {
			t.Fatalf("message on %s (%q), want one on %s", m.Topic, m.Payload, topic)
		}
		return m
	case <-time.After(wait):
		t.Fatalf("no message on %s", topic)
	}
	return nil
}

// contentType is the v5 Content Type of m.
func contentType(m *paho.Publish) string {
	if m.Properties == nil {
		return ""
	}
	return m.Properties.ContentType
}

func correlation(m *paho.Publish) []byte {
	if m.Properties == nil {
		return nil
	}
	return m.Properties.CorrelationData
}

// TestReportCommitsThenAcks: a config.report goes the way records go:
// acknowledged once committed, with its receipt, and in order with the
// device's records, whose seq counter it shares.
func TestReportCommitsThenAcks(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	srv := startServerDeps(t, node, Config{}, Deps{Answers: newFakeAnswers()})
	key := node.Enroll(t, "dev", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev", key, node.Genesis.ChainID, connectOpts{})
	report := func(seq uint64) []byte {
		env, err := device.SignConfigReport(key, node.Genesis.ChainID, ledger.ConfigReport{DeviceID: "dev", Seq: seq, Version: seq, SHA256: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	env := report(1)
	if r := c.publish(t, "lg/v1/dev/config/report", env); r.ReasonCode != 0 {
		t.Fatalf("PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
	}
	if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
		t.Fatalf("acknowledged report not in the ledger: %v", err)
	}
	if err := ledger.VerifyReceipt(node.Genesis, c.receipt(t, env)); err != nil {
		t.Fatal(err)
	}

	// Records and reports in flight together, in seq order, all commit:
	// they are proposed one after the other from one queue.
	var envs [][]byte
	var topics []string
	for seq := uint64(2); seq <= 21; seq++ {
		if seq%3 == 0 {
			envs, topics = append(envs, report(seq)), append(topics, "lg/v1/dev/config/report")
		} else {
			envs, topics = append(envs, c.record(t, "s", seq, nil)), append(topics, dataTopic("dev", "s"))
		}
	}
	for len(c.conn.published) > 0 { // the signal of the publish above
		<-c.conn.published
	}
	codes := make(chan string, len(envs))
	for i, env := range envs {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			r, err := c.pc.Publish(ctx, &paho.Publish{Topic: topics[i], QoS: 1, Payload: env})
			switch {
			case r == nil:
				codes <- fmt.Sprintf("%s: no PUBACK: %v", topics[i], err)
			case r.ReasonCode != 0:
				codes <- fmt.Sprintf("%s #%d: PUBACK 0x%02x %s", topics[i], i, r.ReasonCode, r.Properties.ReasonString)
			default:
				codes <- ""
			}
		}()
		select {
		case <-c.conn.published:
		case <-time.After(wait):
			t.Fatal("publish not sent")
		}
	}
	for range envs {
		if e := <-codes; e != "" {
			t.Fatal(e)
		}
	}
	if d, _ := node.Chain.State().Device("dev"); d.LastSeq != 21 {
		t.Fatalf("last seq %d, want 21", d.LastSeq)
	}

	for _, tc := range []struct {
		name, topic string
		env         []byte
		reason      string
	}{
		{"record on the report topic", "lg/v1/dev/config/report", c.record(t, "s", 22, nil), "not_report"},
		{"report on a data topic", dataTopic("dev", "s"), report(22), "not_record"},
		{"replayed report", "lg/v1/dev/config/report", report(5), "replay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.publish(t, tc.topic, tc.env)
			if r.ReasonCode != codeOf(ledger.Reason(tc.reason)).Code || r.Properties.ReasonString != tc.reason {
				t.Fatalf("PUBACK 0x%02x %+v, want %s", r.ReasonCode, r.Properties, tc.reason)
			}
			if rj := c.nextReject(t); string(rj.Reason) != tc.reason || rj.TxID != fmt.Sprintf("%x", ledger.TxID(tc.env)) {
				t.Fatalf("reject %+v", rj)
			}
			notStored(t, node, tc.env)
		})
	}
}

// TestRequests: each request is answered with the Answers bytes (content
// type application/cbor) on its response topic with its correlation data,
// or on its default answer topic; the PUBACK follows.
func TestRequests(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	fa := newFakeAnswers()
	fa.keys["other"] = true
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	key := node.Enroll(t, "dev", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev", key, node.Genesis.ChainID, connectOpts{subscribe: answerFilters("dev")})
	hash := sha256.Sum256([]byte("configuration"))

	for _, tc := range []struct {
		name, topic string
		payload     []byte
		defaultTo   string
		want        string
	}{
		{"verify raw", "lg/v1/dev/config/verify", hash[:], "lg/v1/dev/config/verdict", fmt.Sprintf("verdict dev %x", hash)},
		{"verify hex", "lg/v1/dev/config/verify", []byte(hex.EncodeToString(hash[:])), "lg/v1/dev/config/verdict", fmt.Sprintf("verdict dev %x", hash)},
		{"current blob", "lg/v1/dev/config/blob/get", nil, "lg/v1/dev/config/blob", "blob dev "},
		{"blob by address", "lg/v1/dev/config/blob/get", []byte(strings.ToUpper(hex.EncodeToString(hash[:]))), "lg/v1/dev/config/blob", fmt.Sprintf("blob dev %x", hash)},
		{"keys", "lg/v1/dev/keys/get", []byte("other"), "lg/v1/dev/keys", "keys dev other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corr := []byte("corr-" + tc.name)
			r, m := c.request(t, tc.topic, tc.payload, "lg/v1/dev/answers/7", corr, "lg/v1/dev/answers/7")
			if r.ReasonCode != 0 {
				t.Fatalf("PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
			}
			if string(m.Payload) != tc.want || contentType(m) != "application/cbor" || !bytes.Equal(correlation(m), corr) {
				t.Fatalf("answer %q, content type %q, correlation %q", m.Payload, contentType(m), correlation(m))
			}
			r, m = c.request(t, tc.topic, tc.payload, "", nil, tc.defaultTo)
			if r.ReasonCode != 0 || string(m.Payload) != tc.want || contentType(m) != "application/cbor" {
				t.Fatalf("PUBACK 0x%02x; answer %q, content type %q", r.ReasonCode, m.Payload, contentType(m))
			}
		})
	}

	t.Run("qos 0", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := c.pc.Publish(ctx, &paho.Publish{Topic: "lg/v1/dev/keys/get", QoS: 0, Payload: []byte("other")}); err != nil {
			t.Fatal(err)
		}
		if m := c.answer(t, "lg/v1/dev/keys"); string(m.Payload) != "keys dev other" {
			t.Fatalf("answer %q", m.Payload)
		}
	})
	t.Run("answer larger than the client accepts", func(t *testing.T) {
		small := mustConnect(t, tcpAddr(srv), "dev", key, node.Genesis.ChainID, connectOpts{clientID: "dev/small", maxPacket: 64})
		// Neither the answer nor the reject fits: the PUBACK says why.
		// mochi drops the reject when its write goroutine comes to it; a
		// PUBACK written while the reject was still queued used to wait
		// in mochi's write buffer for a later write that never came
		// (about 1 run in 100 under load; see Start). The race is run
		// many times.
		for i := range 300 {
			if r := small.publish(t, "lg/v1/dev/keys/get", []byte("other")); r.ReasonCode != 0x99 || r.Properties.ReasonString != "too_large" {
				t.Fatalf("request %d: PUBACK 0x%02x %+v", i, r.ReasonCode, r.Properties)
			}
		}
	})
	if n := value(t, srv.m.requests.WithLabelValues("verify", resultAnswered)); n != 4 {
		t.Fatalf("answered verify requests metric %v, want 4", n)
	}
}

// TestRequestRefusals: a refused request gets the reason's PUBACK code,
// a Reject (application/json) on its answer topic with its correlation
// data, and a message on the rejects topic. A response topic outside the
// device's prefix gets nothing published there.
func TestRequestRefusals(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	fa := newFakeAnswers()
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	c := mustConnect(t, tcpAddr(srv), "dev", node.Enroll(t, "dev", ledger.ES256), chainID, connectOpts{subscribe: answerFilters("dev")})
	bob := mustConnect(t, tcpAddr(srv), "bob", node.Enroll(t, "bob", ledger.EdDSA), chainID, connectOpts{subscribe: answerFilters("bob")})

	for _, tc := range []struct {
		name, topic      string
		payload          []byte
		responseTopic    string
		answerTo         string // "": no answer message
		code             byte
		reason           string
		errorContains    string
		bobsTopicChecked bool
	}{
		{"short hash", "lg/v1/dev/config/verify", []byte("abc"), "lg/v1/dev/answers/1", "lg/v1/dev/answers/1", 0x99, "malformed", "SHA-256", false},
		{"bad hex", "lg/v1/dev/config/verify", []byte(strings.Repeat("g", 64)), "", "lg/v1/dev/config/verdict", 0x99, "malformed", "SHA-256", false},
		{"no hash", "lg/v1/dev/config/verify", nil, "", "lg/v1/dev/config/verdict", 0x99, "malformed", "SHA-256", false},
		{"short blob address", "lg/v1/dev/config/blob/get", make([]byte, 31), "", "lg/v1/dev/config/blob", 0x99, "malformed", "blob address", false},
		{"bad device id", "lg/v1/dev/keys/get", []byte("a/b"), "lg/v1/dev/answers/2", "lg/v1/dev/answers/2", 0x99, "malformed", "not a device id", false},
		{"unknown device", "lg/v1/dev/keys/get", []byte("ghost"), "lg/v1/dev/answers/3", "lg/v1/dev/answers/3", 0x83, "not_found", "no device ghost", false},
		{"response topic of another device", "lg/v1/dev/keys/get", []byte("ghost"), "lg/v1/bob/keys", "", 0x87, "forbidden", "not under lg/v1/dev/", true},
		{"response topic with a wildcard", "lg/v1/dev/keys/get", []byte("ghost"), "lg/v1/dev/#", "", 0x99, "malformed", "not a topic name", false},
		{"answer topic", "lg/v1/dev/config/verdict", nil, "", "", 0x87, "wrong_topic", "not on", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corr := []byte(tc.name)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			pub := &paho.Publish{Topic: tc.topic, QoS: 1, Payload: tc.payload}
			if tc.responseTopic != "" {
				pub.Properties = &paho.PublishProperties{ResponseTopic: tc.responseTopic, CorrelationData: corr}
			}
			r, _ := c.pc.Publish(ctx, pub)
			if r == nil || r.ReasonCode != tc.code || r.Properties.ReasonString != tc.reason {
				t.Fatalf("PUBACK %+v, want 0x%02x %s", r, tc.code, tc.reason)
			}
			rj := c.nextReject(t)
			if string(rj.Reason) != tc.reason || rj.TxID != "" || !strings.Contains(rj.Error, tc.errorContains) {
				t.Fatalf("reject %+v", rj)
			}
			if tc.answerTo != "" {
				m := c.answer(t, tc.answerTo)
				var arj Reject
				if err := json.Unmarshal(m.Payload, &arj); err != nil || arj != rj || contentType(m) != "application/json" {
					t.Fatalf("answer %q (%v), content type %q; want the reject %+v", m.Payload, err, contentType(m), rj)
				}
				if tc.responseTopic != "" && !bytes.Equal(correlation(m), corr) {
					t.Fatalf("correlation data %q, want %q", correlation(m), corr)
				}
			}
			if tc.bobsTopicChecked {
				// The first message on bob's keys topic is the answer to
				// his own request: nothing went there for dev's.
				fa.know("bob")
				if _, m := bob.request(t, "lg/v1/bob/keys/get", []byte("bob"), "", nil, "lg/v1/bob/keys"); string(m.Payload) != "keys bob bob" {
					t.Fatalf("bob got %q on his keys topic", m.Payload)
				}
			}
			select {
			case m := <-c.other:
				t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
			default:
			}
		})
	}

	t.Run("no answers served", func(t *testing.T) {
		bare := startServer(t, node, Config{}, nil)
		d := mustConnect(t, tcpAddr(bare), "dev", c.key, chainID, connectOpts{clientID: "dev/bare", subscribe: answerFilters("dev")})
		for _, topic := range []string{"lg/v1/dev/config/verify", "lg/v1/dev/config/blob/get", "lg/v1/dev/keys/get"} {
			payload := []byte("other")
			if topic != "lg/v1/dev/keys/get" {
				payload = make([]byte, 32)
			}
			r, m := d.request(t, topic, payload, "lg/v1/dev/answers/9", []byte("x"), "lg/v1/dev/answers/9")
			if r.ReasonCode != 0x83 || r.Properties.ReasonString != "not_found" || !bytes.Contains(m.Payload, []byte("this gateway does not serve")) {
				t.Fatalf("PUBACK 0x%02x %+v, answer %q", r.ReasonCode, r.Properties, m.Payload)
			}
			if rj := d.nextReject(t); rj.Reason != "not_found" {
				t.Fatalf("reject %+v", rj)
			}
		}
	})
}

// TestRequestsOverloaded: a device has at most four requests being
// answered, over all its connections; a fifth is refused as overloaded
// at once, while other devices are served. Answers run off the read
// loop: the device's records commit meanwhile.
func TestRequestsOverloaded(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	fa := newFakeAnswers()
	fa.keys["x"] = true
	fa.block = make(chan struct{})
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	key := node.Enroll(t, "dev", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{subscribe: answerFilters("dev")})
	c2 := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{clientID: "dev/2", subscribe: []string{"lg/v1/dev/second"}})
	other := mustConnect(t, tcpAddr(srv), "other", node.Enroll(t, "other", ledger.EdDSA), chainID, connectOpts{subscribe: answerFilters("other")})

	codes := make(chan byte, maxRequests)
	for i := range maxRequests {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			r, err := c.pc.Publish(ctx, &paho.Publish{Topic: "lg/v1/dev/config/blob/get", QoS: 1,
				Properties: &paho.PublishProperties{ResponseTopic: fmt.Sprintf("lg/v1/dev/answers/%d", i), CorrelationData: []byte{byte(i)}}})
			if r == nil {
				t.Errorf("no PUBACK: %v", err)
				codes <- 0xff
				return
			}
			codes <- r.ReasonCode
		}()
	}
	eventually(t, "four blob requests waiting", func() bool { return fa.waiting() == maxRequests })

	r, m := c2.request(t, "lg/v1/dev/config/blob/get", nil, "lg/v1/dev/second", []byte("5th"), "lg/v1/dev/second")
	if r.ReasonCode != 0x97 || r.Properties.ReasonString != "overloaded" || !bytes.Contains(m.Payload, []byte(`"reason":"overloaded"`)) {
		t.Fatalf("fifth request: PUBACK 0x%02x %+v, answer %q", r.ReasonCode, r.Properties, m.Payload)
	}
	if _, m := other.request(t, "lg/v1/other/keys/get", []byte("x"), "", nil, "lg/v1/other/keys"); string(m.Payload) != "keys other x" {
		t.Fatalf("other device's answer %q", m.Payload)
	}
	c.mustCommit(t, node, "s", c.record(t, "s", 1, nil))
	select {
	case code := <-codes:
		t.Fatalf("a waiting request was acknowledged: 0x%02x", code)
	default:
	}

	close(fa.block)
	var got []string
	for range maxRequests {
		if code := <-codes; code != 0 {
			t.Fatalf("PUBACK 0x%02x", code)
		}
		select {
		case m := <-c.other:
			got = append(got, fmt.Sprintf("%s %x %s", m.Topic, correlation(m), m.Payload))
		case <-time.After(wait):
			t.Fatal("missing answer")
		}
	}
	slices.Sort(got)
	for i, g := range got {
		if want := fmt.Sprintf("lg/v1/dev/answers/%d %02x blob dev ", i, i); g != want {
			t.Fatalf("answer %q, want %q", g, want)
		}
	}
	// The slots are free again.
	if r, _ := c.request(t, "lg/v1/dev/config/blob/get", nil, "", nil, "lg/v1/dev/config/blob"); r.ReasonCode != 0 {
		t.Fatalf("PUBACK 0x%02x after the others were answered", r.ReasonCode)
	}
	if n := value(t, srv.m.requests.WithLabelValues("blob", "overloaded")); n != 1 {
		t.Fatalf("overloaded blob requests metric %v, want 1", n)
	}
}

// TestCloseCancelsRequests: Close waits for a request being answered,
// then cancels its Answers call and returns.
func TestCloseCancelsRequests(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	fa := newFakeAnswers()
	fa.block = make(chan struct{}) // never closed
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	c := mustConnect(t, tcpAddr(srv), "dev", node.Enroll(t, "dev", ledger.ES256), node.Genesis.ChainID, connectOpts{subscribe: answerFilters("dev")})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.pc.PublishWithOptions(ctx, &paho.Publish{Topic: "lg/v1/dev/config/blob/get", QoS: 1},
		paho.PublishOptions{Method: paho.PublishMethod_AsyncSend}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the blob request waiting", func() bool { return fa.waiting() == 1 })
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout + wait):
		t.Fatal("Close did not return")
	}
	fa.mu.Lock()
	defer fa.mu.Unlock()
	if len(fa.blobErr) != 1 || !errors.Is(fa.blobErr[0], context.Canceled) {
		t.Fatalf("Blob returned %v, want it cancelled", fa.blobErr)
	}
}

// TestRetainedManifest: a device that subscribes to its config topic,
// directly or through a wildcard, gets its current manifest as the
// retained message, also after a gateway restart (mochi keeps retained
// messages in memory only); Changed sends subscribers the new one
// and replaces the retained one. Device publishes are never retained.
func TestRetainedManifest(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	fa := newFakeAnswers()
	fa.setConfig("dev", []byte("manifest 1"))
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	key := node.Enroll(t, "dev", ledger.ES256)
	const topic = "lg/v1/dev/config"

	manifest := func(c *client, want string, retained bool) {
		t.Helper()
		m := c.answer(t, topic)
		if string(m.Payload) != want || m.Retain != retained {
			t.Fatalf("manifest %q retained %v, want %q retained %v", m.Payload, m.Retain, want, retained)
		}
		if want != "" && contentType(m) != "application/cbor" {
			t.Fatalf("content type %q", contentType(m))
		}
	}
	c := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{subscribe: []string{topic}})
	manifest(c, "manifest 1", true)

	fa.setConfig("dev", []byte("manifest 2"))
	srv.Changed([]string{"dev"})
	manifest(c, "manifest 2", false) // a live message to the subscriber

	for i, filter := range []string{"lg/v1/dev/#", "lg/v1/dev/+", "lg/v1/dev/config/#"} {
		s := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{clientID: fmt.Sprintf("dev/%d", i), subscribe: []string{filter}})
		// mochi's retained scan misses "config" for "config/#": the
		// server sends it live instead, to every subscriber.
		parent := filter == "lg/v1/dev/config/#"
		manifest(s, "manifest 2", !parent)
		manifest(c, "manifest 2", false) // each subscribe republishes it
		if parent {
			manifest(c, "manifest 2", false)
		}
		_ = s.pc.Disconnect(&paho.Disconnect{})
	}

	// A 3.1.1 client (mosquitto_sub) gets it too.
	if _, err := exec.LookPath("mosquitto_sub"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		out, err := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", "127.0.0.1", "-p", strings.Split(tcpAddr(srv), ":")[1],
			"-i", "dev/mosquitto", "-u", "dev", "-P", token(t, key, "dev", chainID), "-t", topic, "-C", "1", "-N").Output()
		if err != nil || string(out) != "manifest 2" {
			t.Fatalf("mosquitto_sub: %q %v", out, err)
		}
		manifest(c, "manifest 2", false)
	}

	// Device publishes, retain flag or not, are neither retained nor
	// forwarded: c, subscribed to the config topic, gets nothing.
	env := c.record(t, "s", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, p := range []*paho.Publish{
		{Topic: dataTopic("dev", "s"), QoS: 1, Retain: true, Payload: env},
		{Topic: topic, QoS: 1, Retain: true, Payload: []byte("forged manifest")},
	} {
		r, _ := c.pc.Publish(ctx, p)
		if r == nil {
			t.Fatal("no PUBACK")
		}
	}
	c.receipt(t, env)
	if rj := c.nextReject(t); rj.Reason != "wrong_topic" {
		t.Fatalf("reject %+v", rj)
	}
	if _, ok := srv.broker.Topics.Retained.Get(dataTopic("dev", "s")); ok {
		t.Fatal("a device's record was retained")
	}
	if m, _ := srv.broker.Topics.Retained.Get(topic); string(m.Payload) != "manifest 2" {
		t.Fatalf("retained manifest %q", m.Payload)
	}

	// No configuration: an empty message clears the retained one.
	fa.setConfig("dev", nil)
	srv.Changed([]string{"dev", "not/a/device"})
	manifest(c, "", false)
	if _, ok := srv.broker.Topics.Retained.Get(topic); ok {
		t.Fatal("manifest still retained")
	}

	// After a restart the broker has no retained messages: the subscribe
	// brings the manifest back.
	fa.setConfig("dev", []byte("manifest 3"))
	srv.Close()
	srv = startServerDeps(t, node, Config{}, Deps{Answers: fa})
	c = mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{subscribe: []string{topic}})
	manifest(c, "manifest 3", true)
	select {
	case m := <-c.other:
		t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
	default:
	}
}

// TestRetainedFirmware: the firmware manifest is retained on its own
// topic as the configuration manifest is on its: a subscribe brings it,
// Changed republishes it and an empty message clears it. A subscribe
// publishes only the manifests its filters match. A device may not
// publish on the firmware topic.
func TestRetainedFirmware(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	fa := newFakeAnswers()
	fa.setConfig("dev", []byte("config 1"))
	fa.setFirmware("dev", []byte("firmware 1"))
	srv := startServerDeps(t, node, Config{}, Deps{Answers: fa})
	key := node.Enroll(t, "dev", ledger.ES256)
	const configTopic, firmwareTopic = "lg/v1/dev/config", "lg/v1/dev/firmware"

	manifest := func(c *client, topic, want string, retained bool) {
		t.Helper()
		m := c.answer(t, topic)
		if string(m.Payload) != want || m.Retain != retained {
			t.Fatalf("%s: %q retained %v, want %q retained %v", topic, m.Payload, m.Retain, want, retained)
		}
		if want != "" && contentType(m) != "application/cbor" {
			t.Fatalf("%s: content type %q", topic, contentType(m))
		}
	}
	retained := func(topic, want string) {
		t.Helper()
		m, ok := srv.broker.Topics.Retained.Get(topic)
		if got := string(m.Payload); ok != (want != "") || got != want {
			t.Fatalf("retained on %s: %q (%v), want %q", topic, got, ok, want)
		}
	}

	fw := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{subscribe: []string{firmwareTopic}})
	manifest(fw, firmwareTopic, "firmware 1", true)
	retained(configTopic, "") // subscribing to firmware did not publish the config manifest

	// Subscribing to config does not publish the firmware manifest, nor
	// subscribing to firmware the config manifest.
	fa.setFirmware("dev", []byte("firmware 2"))
	cfg := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{clientID: "dev/config", subscribe: []string{configTopic}})
	manifest(cfg, configTopic, "config 1", true)
	retained(firmwareTopic, "firmware 1")
	fa.setConfig("dev", []byte("config 2"))
	fw2 := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{clientID: "dev/firmware", subscribe: []string{firmwareTopic}})
	manifest(fw2, firmwareTopic, "firmware 2", true)
	manifest(fw, firmwareTopic, "firmware 2", false) // each subscribe republishes it
	retained(configTopic, "config 1")

	// Changed republishes both manifests.
	fa.setFirmware("dev", []byte("firmware 3"))
	srv.Changed([]string{"dev"})
	manifest(fw, firmwareTopic, "firmware 3", false)
	manifest(fw2, firmwareTopic, "firmware 3", false)
	manifest(cfg, configTopic, "config 2", false)
	retained(firmwareTopic, "firmware 3")

	// No firmware: an empty message clears the retained one.
	fa.setFirmware("dev", nil)
	srv.Changed([]string{"dev"})
	manifest(fw, firmwareTopic, "", false)
	manifest(cfg, configTopic, "config 2", false)
	retained(firmwareTopic, "")
	retained(configTopic, "config 2")

	// A device may not publish a firmware manifest.
	if r := fw.publish(t, firmwareTopic, []byte("forged manifest")); r.ReasonCode != 0x87 || r.Properties.ReasonString != "wrong_topic" {
		t.Fatalf("PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
	}
	if rj := fw.nextReject(t); rj.Reason != "wrong_topic" {
		t.Fatalf("reject %+v", rj)
	}
	retained(firmwareTopic, "")

	manifest(fw2, firmwareTopic, "", false)
	for _, c := range []*client{fw, fw2, cfg} {
		select {
		case m := <-c.other:
			t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
		default:
		}
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"lg/v1/d/config", "lg/v1/d/config", true},
		{"lg/v1/d/+", "lg/v1/d/config", true},
		{"lg/v1/d/#", "lg/v1/d/config", true},
		{"lg/v1/d/config/#", "lg/v1/d/config", true},
		{"lg/v1/+/config", "lg/v1/d/config", true},
		{"#", "lg/v1/d/config", true},
		{"lg/v1/d/config/+", "lg/v1/d/config", false},
		{"lg/v1/d/config/verdict", "lg/v1/d/config", false},
		{"lg/v1/d", "lg/v1/d/config", false},
		{"lg/v1/d/", "lg/v1/d/config", false},
		{"lg/v1/d/+/#", "lg/v1/d/config", true},
		{"lg/v1/d/#/x", "lg/v1/d/config", false},
		{"lg/v1/d/conf", "lg/v1/d/config", false},
		{"", "lg/v1/d/config", false},
	} {
		if got := matches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}
