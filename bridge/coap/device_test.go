package coap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fakeAnswers answers with fixed bytes that name the question: the CBOR
// answers are the directory's (gateway/directory tests them, and the
// end-to-end tests check them with bridge/device); these tests check
// what the CoAP front end does with them.
type fakeAnswers struct {
	mu       sync.Mutex
	configs  map[string][]byte // device -> its manifest; none: no configuration
	gone     map[string]bool   // devices whose Config is not_found
	firmware map[string][]byte
	blob     []byte // every device's one blob
}

func newFakeAnswers() *fakeAnswers {
	return &fakeAnswers{configs: map[string][]byte{}, firmware: map[string][]byte{}, gone: map[string]bool{},
		blob: bytes.Repeat([]byte("sealed blob "), 300)}
}

func notFound(format string, a ...any) error {
	return &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: fmt.Sprintf(format, a...)}
}

func (f *fakeAnswers) set(m map[string][]byte, device string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m[device] = b
}

func (f *fakeAnswers) Config(device string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[device] {
		return nil, notFound("no device %s", device)
	}
	return f.configs[device], nil
}

func (f *fakeAnswers) VerifyConfig(device string, hash []byte) ([]byte, error) {
	return []byte("verdict " + device + " " + hex.EncodeToString(hash)), nil
}

func (f *fakeAnswers) Blob(_ context.Context, _ string, ref []byte) ([]byte, error) {
	if sum := sha256.Sum256(f.blob); ref != nil && !bytes.Equal(ref, sum[:]) {
		return nil, notFound("no blob %x", ref)
	}
	return f.blob, nil
}

func (f *fakeAnswers) Keys(_, other string) ([]byte, error) {
	if other == "nobody" {
		return nil, notFound("no device %s", other)
	}
	return []byte("keys of " + other), nil
}

func (f *fakeAnswers) Firmware(device string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firmware[device], nil
}

// fakeImages serves images from memory.
type fakeImages map[[32]byte][]byte

func (f fakeImages) ReadImage(_ context.Context, sum [32]byte, p []byte, off int64) (int, int64, error) {
	img, ok := f[sum]
	if !ok {
		return 0, 0, notFound("no release has image %x", sum)
	}
	if off >= int64(len(img)) {
		return 0, int64(len(img)), nil
	}
	return copy(p, img[off:]), int64(len(img)), nil
}

// deviceLab is a server with answers and an image, and two devices.
type deviceLab struct {
	*server
	answers  *fakeAnswers
	image    []byte
	imageSum [32]byte
	d, other *dev
}

func newDeviceLab(t *testing.T) *deviceLab {
	t.Helper()
	node := startNode(t)
	l := &deviceLab{answers: newFakeAnswers(), image: bytes.Repeat([]byte("firmware image\n"), 400)}
	l.imageSum = sha256.Sum256(l.image)
	l.server = startServerDeps(t, node, Config{}, node.Committer(), l.answers, fakeImages{l.imageSum: l.image})
	l.d = enroll(t, node, "sensor-1", ledger.ES256)
	l.other = enroll(t, node, "sensor-2", ledger.EdDSA)
	l.answers.set(l.answers.configs, "sensor-1", []byte("config answer 1"))
	l.answers.set(l.answers.firmware, "sensor-1", []byte("firmware answer 1"))
	return l
}

// get GETs path and returns the response.
func get(t testing.TB, cc *udpClient.Conn, path string, opts ...message.Option) *pool.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cc.Get(ctx, path, opts...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// wantBody checks a 2.05 with content format cf and body want.
func wantBody(t testing.TB, m *pool.Message, cf message.MediaType, want []byte) {
	t.Helper()
	wantCode(t, m, codes.Content)
	if got, err := m.ContentFormat(); err != nil || got != cf {
		t.Fatalf("content format %v %v, want %v", got, err, cf)
	}
	if b := body(t, m); !bytes.Equal(b, want) {
		t.Fatalf("body %d bytes %.40q, want %d bytes %.40q", len(b), b, len(want), want)
	}
}

// wantRefusal checks a refusal's code and reason.
func wantRefusal(t testing.TB, m *pool.Message, code codes.Code, reason ledger.Reason) {
	t.Helper()
	wantCode(t, m, code)
	if b := body(t, m); !bytes.HasPrefix(b, []byte(string(reason)+": ")) {
		t.Fatalf("diagnostic %q, want reason %s", b, reason)
	}
}

func query(q string) message.Option { return message.Option{ID: message.URIQuery, Value: []byte(q)} }

// TestDeviceResources: over UDP a device gets its configuration
// manifest, a verdict, its sealed blob (block-wise, current and by
// address), another device's keys, its firmware answer and image
// (block-wise); unknown devices, resources and arguments are 4.04, a
// wrong method 4.05.
func TestDeviceResources(t *testing.T) {
	l := newDeviceLab(t)
	cc := dialUDP(t, l.udpAddr, blockwise.SZX64)
	sum := sha256.Sum256(l.answers.blob)
	h := hex.EncodeToString(sum[:])

	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config"), message.AppCBOR, []byte("config answer 1"))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config/verify", query("h="+h)), message.AppCBOR, []byte("verdict sensor-1 "+h))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config/blob"), message.AppOctets, l.answers.blob)
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config/blob/"+h), message.AppOctets, l.answers.blob)
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/keys/sensor-2"), message.AppCBOR, []byte("keys of sensor-2"))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/firmware"), message.AppCBOR, []byte("firmware answer 1"))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/firmware/"+hex.EncodeToString(l.imageSum[:])), message.AppOctets, l.image)

	for _, c := range []struct {
		path   string
		opts   []message.Option
		code   codes.Code
		reason ledger.Reason
	}{
		{"/lg/v1/sensor-2/config", nil, codes.NotFound, "not_found"}, // no configuration
		{"/lg/v1/sensor-2/firmware", nil, codes.NotFound, "not_found"},
		{"/lg/v1/sensor-9/config", nil, codes.NotFound, "not_found"}, // no such device
		{"/lg/v1/sensor-1/nothing", nil, codes.NotFound, "not_found"},
		{"/lg/v1/sensor-1/config/verify", nil, codes.BadRequest, "malformed"},
		{"/lg/v1/sensor-1/config/verify", []message.Option{query("h=12")}, codes.BadRequest, "malformed"},
		{"/lg/v1/sensor-1/config/blob/" + h[:62] + "00", nil, codes.NotFound, "not_found"},
		{"/lg/v1/sensor-1/config/blob/x", nil, codes.NotFound, "not_found"},
		{"/lg/v1/sensor-1/keys/nobody", nil, codes.NotFound, "not_found"},
		{"/lg/v1/sensor-1/firmware/" + h, nil, codes.NotFound, "not_found"}, // no release has it
		{"/lg/v1/sensor-1/config", []message.Option{uintOpt(message.Accept, uint32(message.AppJSON))}, codes.NotAcceptable, "not_acceptable"},
	} {
		t.Run(c.path, func(t *testing.T) {
			wantRefusal(t, get(t, cc, c.path, c.opts...), c.code, c.reason)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cc.Post(ctx, "/lg/v1/sensor-1/config", message.AppCBOR, bytes.NewReader([]byte{0xa0}))
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, codes.MethodNotAllowed, "method_not_allowed")
}

// TestDeviceImageBlocks: a GET of the image with Block2 gets the block it
// names, numbered in the server's block size, Size2 on the first, and a
// Block2 past the end is 4.02.
func TestDeviceImageBlocks(t *testing.T) {
	l := newDeviceLab(t)
	r := dialRaw(t, l.udpAddr)
	path := "/lg/v1/sensor-1/firmware/" + hex.EncodeToString(l.imageSum[:])
	for _, c := range []struct {
		block2 uint32 // requested
		off    int
		size   int
		size2  bool
	}{
		{0x02, 0, 64, true},   // block 0 of 64
		{0x12, 64, 64, false}, // block 1 of 64
		{0x06, 0, 1024, true}, // block 0 of 1024
		{0x26, 2 * 1024, 1024, false},
	} {
		resp := r.do(msg{code: codes.GET, path: path, format: -1, token: []byte{1}, opts: []message.Option{uintOpt(message.Block2, c.block2)}})
		wantCode(t, resp, codes.Content)
		want := l.image[c.off:min(c.off+c.size, len(l.image))]
		if b := body(t, resp); !bytes.Equal(b, want) {
			t.Fatalf("Block2 %#x: %d bytes, want %d from %d", c.block2, len(b), len(want), c.off)
		}
		v, err := resp.GetOptionUint32(message.Block2)
		if err != nil {
			t.Fatal(err)
		}
		more := c.off+c.size < len(l.image)
		if got, _ := decodeBlock(v); int(got.num)*got.size() != c.off || got.size() != c.size || got.more != more {
			t.Fatalf("Block2 %#x answered %+v", c.block2, got)
		}
		if n, err := resp.GetOptionUint32(message.Size2); c.size2 != (err == nil) || c.size2 && int(n) != len(l.image) {
			t.Fatalf("Block2 %#x: Size2 %d %v", c.block2, n, err)
		}
		if etag, err := resp.GetOptionBytes(message.ETag); err != nil || !bytes.Equal(etag, l.imageSum[:8]) {
			t.Fatalf("ETag %x %v", etag, err)
		}
	}
	past := uint32(len(l.image)/64+1)<<4 | 2
	resp := r.do(msg{code: codes.GET, path: path, format: -1, token: []byte{2}, opts: []message.Option{uintOpt(message.Block2, past)}})
	wantRefusal(t, resp, codes.BadOption, "bad_option")
}

// TestDeviceReports: config.report and firmware.report txs POSTed to the
// device's report resources are committed and answered 2.04 with their
// receipts, as records are; a tx of another kind, or by another device,
// is refused.
func TestDeviceReports(t *testing.T) {
	l := newDeviceLab(t)
	cc := dialUDP(t, l.udpAddr, blockwise.SZX1024)
	postTo := func(path string, env []byte) *pool.Message { return postPath(t, cc, path, env) }
	sum := sha256.Sum256([]byte("interval = 10"))
	report, err := device.SignConfigReport(l.d.key, l.d.chainID, ledger.ConfigReport{DeviceID: l.d.id, Seq: 1, Version: 1, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, l.node, postTo("/lg/v1/sensor-1/config/report", report), report)
	fw, err := device.SignFirmwareReport(l.d.key, l.d.chainID, ledger.FirmwareReport{DeviceID: l.d.id, Seq: 2, Model: "th-2", Version: 2, OK: true})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, l.node, postTo("/lg/v1/sensor-1/firmware/report", fw), fw)

	rec := l.d.record(t, "temp", 3, []byte("21"))
	wantRefusal(t, postTo("/lg/v1/sensor-1/config/report", rec), codes.BadRequest, ledger.ReasonNotReport)
	wantRefusal(t, postTo("/lg/v1/sensor-1/firmware/report", report), codes.BadRequest, ledger.ReasonNotReport)
	wantRefusal(t, postTo("/lg/v1/sensor-2/config/report", report), codes.Forbidden, ledger.ReasonTopic)
	notStored(t, l.node, rec)
	// A resend is answered with the receipt; another report with a used
	// seq is a replay.
	mustCommit(t, l.node, postTo("/lg/v1/sensor-1/config/report", report), report)
	again, err := device.SignConfigReport(l.d.key, l.d.chainID, ledger.ConfigReport{DeviceID: l.d.id, Seq: 2, Version: 2, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, postTo("/lg/v1/sensor-1/config/report", again), codes.Forbidden, "replay")
}

// TestDeviceRekey: a device.rekey posted to the device's rekey resource
// commits; records signed with the new key then commit, and one signed
// with the old key is refused bad_signature.
func TestDeviceRekey(t *testing.T) {
	l := newDeviceLab(t)
	cc := dialUDP(t, l.udpAddr, blockwise.SZX1024)
	post := func(path string, env []byte) *pool.Message { return postPath(t, cc, path, env) }
	newKey := newP256(t)
	pub, err := ledger.MarshalPublicKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := device.SignRekey(l.d.key, l.d.chainID, ledger.Rekey{DeviceID: l.d.id, Seq: 1, PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, post("/lg/v1/sensor-1/config/report", rk), codes.BadRequest, ledger.ReasonNotReport)
	wantRefusal(t, post("/lg/v1/sensor-2/rekey", rk), codes.Forbidden, ledger.ReasonTopic)
	mustCommit(t, l.node, post("/lg/v1/sensor-1/rekey", rk), rk)

	old := l.d.record(t, "temp", 2, []byte("old key"))
	wantRefusal(t, post("/lg/v1/data/temp", old), codes.Unauthorized, ledger.ReasonBadSignature)
	l.d.key = newKey
	rec := l.d.record(t, "temp", 3, []byte("new key"))
	mustCommit(t, l.node, post("/lg/v1/data/temp", rec), rec)
}

// TestDeviceResourcesDTLS: over DTLS the session's certificate is the
// device: it gets its own resources and any device's keys under its own
// path; another device's resources are 4.03 wrong_cert, and so is a
// session whose key is no device's.
func TestDeviceResourcesDTLS(t *testing.T) {
	l := newDeviceLab(t)
	cc := mustDialDTLS(t, l.dtlsAddr, l.d.key)
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config"), message.AppCBOR, []byte("config answer 1"))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/keys/sensor-2"), message.AppCBOR, []byte("keys of sensor-2"))
	wantBody(t, get(t, cc, "/lg/v1/sensor-1/config/blob"), message.AppOctets, l.answers.blob)
	for _, p := range []string{"/lg/v1/sensor-2/config", "/lg/v1/sensor-2/config/blob", "/lg/v1/sensor-2/keys/sensor-1", "/lg/v1/sensor-2/firmware"} {
		wantRefusal(t, get(t, cc, p), codes.Forbidden, ledger.ReasonWrongCert)
	}
	wantRefusal(t, get(t, cc, "/lg/v1/sensor-9/config"), codes.NotFound, ledger.ReasonNotFound)

	wantNoSession(t, l.dtlsAddr, newP256(t))

	// A report by the session's device is taken; posted under another
	// device's path by its session, refused.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	report, err := device.SignConfigReport(l.other.key, l.other.chainID, ledger.ConfigReport{DeviceID: l.other.id, Seq: 1, Version: 1, SHA256: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cc.Post(ctx, "/lg/v1/sensor-2/config/report", message.AppCoseSign1, bytes.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, codes.Forbidden, ledger.ReasonWrongCert)
	own := mustDialDTLS(t, l.dtlsAddr, l.other.key)
	resp, err = own.Post(ctx, "/lg/v1/sensor-2/config/report", message.AppCoseSign1, bytes.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, l.node, resp, report)
}

// TestObserveManifest: an observer of a device's configuration gets the
// current manifest, then a notification with the new one each time
// Changed names the device; an observer of a device without firmware
// registers with an empty 2.05 and is notified when it gets some. The
// Observe numbers increase.
func TestObserveManifest(t *testing.T) {
	l := newDeviceLab(t)
	cc := dialUDP(t, l.udpAddr, blockwise.SZX1024)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	seqs := make(chan uint32, 16)
	ch := make(chan notification, 16)
	obs, err := cc.Observe(ctx, "/lg/v1/sensor-1/config", func(m *pool.Message) {
		if n, err := m.Observe(); err == nil {
			seqs <- n
		}
		collect(ch)(m)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctx)
	n := next(t, ch)
	if n.code != codes.Content || !n.observe || string(n.body) != "config answer 1" {
		t.Fatalf("registration: %v observe=%v %q", n.code, n.observe, n.body)
	}
	fwCh := make(chan notification, 16)
	fwObs, err := cc.Observe(ctx, "/lg/v1/sensor-2/firmware", collect(fwCh))
	if err != nil {
		t.Fatal(err)
	}
	defer fwObs.Cancel(ctx)
	if n := next(t, fwCh); n.code != codes.Content || !n.observe || len(n.body) != 0 {
		t.Fatalf("registration without firmware: %v observe=%v %q", n.code, n.observe, n.body)
	}
	eventually(t, "registered", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.nobs == 2 })

	for i := 2; i <= 3; i++ {
		want := fmt.Sprintf("config answer %d", i)
		l.answers.set(l.answers.configs, "sensor-1", []byte(want))
		l.Changed([]string{"sensor-1"})
		if n := next(t, ch); n.code != codes.Content || !n.observe || string(n.body) != want {
			t.Fatalf("notification %d: %v observe=%v %q", i, n.code, n.observe, n.body)
		}
	}
	first, second, third := <-seqs, <-seqs, <-seqs
	if !(first < second && second < third) {
		t.Fatalf("Observe numbers %d, %d, %d: want increasing", first, second, third)
	}
	l.answers.set(l.answers.firmware, "sensor-2", []byte("firmware answer 2"))
	l.Changed([]string{"sensor-2", "sensor-3"})
	if n := next(t, fwCh); n.code != codes.Content || !n.observe || string(n.body) != "firmware answer 2" {
		t.Fatalf("firmware notification: %v observe=%v %q", n.code, n.observe, n.body)
	}
	if err := obs.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deregistered", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.nobs == 1 })
}

// TestObserveManifestEnds: a manifest registration ends with Observe 1,
// after ObserveTimeout without a notification, and with a 4.04 when the
// device's answers say it is gone; a revoked device's session is 4.03.
func TestObserveManifestEnds(t *testing.T) {
	node := startNode(t)
	answers := newFakeAnswers()
	s := startServerDeps(t, node, Config{ObserveTimeout: time.Second}, node.Committer(), answers, nil)
	d := enroll(t, node, "sensor-1", ledger.ES256)
	answers.set(answers.configs, "sensor-1", []byte("config answer 1"))
	observers := func() int { s.mu.Lock(); defer s.mu.Unlock(); return s.nobs }
	r := dialRaw(t, s.udpAddr)
	register := func(token byte, typ message.Type) {
		t.Helper()
		resp := r.do(msg{typ: typ, code: codes.GET, path: "/lg/v1/sensor-1/config", format: -1, token: []byte{token}, opts: []message.Option{uintOpt(message.Observe, 0)}})
		if _, err := resp.Observe(); err != nil || resp.Code() != codes.Content {
			t.Fatalf("registration: %v, Observe %v", resp.Code(), err)
		}
		if age, err := resp.GetOptionUint32(message.MaxAge); err != nil || age != 1 {
			t.Fatalf("Max-Age %d %v, want the observe timeout", age, err)
		}
	}

	register(1, message.Confirmable)
	resp := r.do(msg{code: codes.GET, path: "/lg/v1/sensor-1/config", format: -1, token: []byte{1}, opts: []message.Option{uintOpt(message.Observe, 1)}})
	if _, err := resp.Observe(); err == nil || resp.Code() != codes.Content {
		t.Fatalf("deregistration answered %v with Observe", resp.Code())
	}
	eventually(t, "deregistered", func() bool { return observers() == 0 })

	register(2, message.Confirmable)
	eventually(t, "expired", func() bool { return observers() == 0 })

	register(3, message.NonConfirmable) // NON notifications: this peer sends no ACKs
	answers.mu.Lock()
	answers.gone["sensor-1"] = true
	answers.mu.Unlock()
	s.Changed([]string{"sensor-1"})
	for {
		m := r.recv()
		if !bytes.Equal(m.Token(), []byte{3}) {
			continue
		}
		if _, err := m.Observe(); err == nil || m.Code() != codes.NotFound {
			t.Fatalf("notification of a gone device: %v, Observe %v", m.Code(), err)
		}
		break
	}
	eventually(t, "ended", func() bool { return observers() == 0 })

	// A session of a device revoked since: 4.03 revoked; a new one: none.
	cc := mustDialDTLS(t, s.dtlsAddr, d.key)
	wantCode(t, get(t, cc, "/.well-known/core"), codes.Content)
	node.Revoke(t, d.id)
	wantRefusal(t, get(t, cc, "/lg/v1/sensor-1/config"), codes.Forbidden, ledger.ReasonRevoked)
	wantNoSession(t, s.dtlsAddr, d.key)
}

// TestObserveLargeManifest: a manifest larger than a block reaches
// go-coap's block-wise client both as the registration's answer and as a
// notification (its first block, NON, then the client's GETs), whatever
// block size the client uses.
func TestObserveLargeManifest(t *testing.T) {
	node := startNode(t)
	answers := newFakeAnswers()
	s := startServerDeps(t, node, Config{}, node.Committer(), answers, nil)
	enroll(t, node, "sensor-1", ledger.ES256)
	for i, szx := range []blockwise.SZX{blockwise.SZX1024, blockwise.SZX64} {
		v1, v2 := bytes.Repeat([]byte{byte('a' + 2*i)}, 1500), bytes.Repeat([]byte{byte('b' + 2*i)}, 2500)
		answers.set(answers.configs, "sensor-1", v1)
		cc := dialUDP(t, s.udpAddr, szx)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := make(chan notification, 16)
		obs, err := cc.Observe(ctx, "/lg/v1/sensor-1/config", collect(ch))
		if err != nil {
			t.Fatal(err)
		}
		if n := next(t, ch); n.code != codes.Content || !n.observe || !bytes.Equal(n.body, v1) {
			t.Fatalf("SZX %v registration: %v observe=%v %d bytes", szx, n.code, n.observe, len(n.body))
		}
		answers.set(answers.configs, "sensor-1", v2)
		s.Changed([]string{"sensor-1"})
		if n := next(t, ch); n.code != codes.Content || !n.observe || !bytes.Equal(n.body, v2) {
			t.Fatalf("SZX %v notification: %v observe=%v %d bytes", szx, n.code, n.observe, len(n.body))
		}
		if err := obs.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
