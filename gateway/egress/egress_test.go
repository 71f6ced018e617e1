package egress

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPayload(t *testing.T) {
	for _, c := range []struct {
		ct, in   string
		json     string // want Payload
		b64      bool   // want PayloadBase64 = in
		comments string
	}{
		{ct: "application/json", in: `{"t": 21.5}`, json: `{"t": 21.5}`},
		{ct: "application/senml+json", in: `[{"v":1}]`, json: `[{"v":1}]`},
		{ct: "application/json; charset=utf-8", in: `3`, json: `3`},
		{ct: "application/json", in: `{"t":`, b64: true, comments: "invalid JSON stays bytes"},
		{ct: "text/plain", in: "21.5 °C\n", json: `"21.5 °C\n"`},
		{ct: "text/csv", in: "a,\xff", b64: true, comments: "not UTF-8"},
		{ct: "application/cbor", in: "\xa1\x01\x02", b64: true},
		{ct: "", in: "raw", b64: true},
		{ct: "not a type", in: "raw", b64: true},
	} {
		p, b := payload(c.ct, []byte(c.in))
		if string(p) != c.json || c.b64 != (string(b) == c.in && b != nil) || p != nil && b != nil {
			t.Errorf("%q %q (%s): payload %q, base64 %q", c.ct, c.in, c.comments, p, b)
		}
	}
}

func TestMessageJSON(t *testing.T) {
	m := Message{ChainID: "c", TxID: "ab", Block: 3, Index: 1, Device: "d", Stream: "s", Payload: json.RawMessage(`{"v":1}`),
		Envelope: []byte{1, 2}, Receipt: []byte{3}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"chain_id":"c","tx_id":"ab","block":3,"index":1,"block_time":0,"device":"d","stream":"s","seq":0,"time":0,"content_type":"",` +
		`"payload":{"v":1},"envelope_base64":"AQI=","receipt_base64":"Aw=="}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestTemplates(t *testing.T) {
	m := &Message{ChainID: "plant.a", Device: "dev.1", Stream: "temp"}
	if got := expand(DefaultMQTTTopic, m, same); got != "ledgergate/plant.a/dev.1/temp" {
		t.Errorf("mqtt topic %q", got)
	}
	if got := expand(DefaultNATSSubject, m, natsToken); got != "ledgergate.plant_a.dev_1.temp" {
		t.Errorf("nats subject %q", got)
	}
	if got := natsWildcard("lg.{chain}.x.{device}.{stream}"); got != "lg.*.x.*.*" {
		t.Errorf("wildcard %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	plain := errors.New("connection refused")
	for n := 1; n < 100; n++ {
		d := backoff(n, plain)
		ceil := min(minBackoff<<min(n-1, 20), maxBackoff)
		if d < ceil/2 || d > ceil {
			t.Errorf("attempt %d: %s outside [%s, %s]", n, d, ceil/2, ceil)
		}
		if r := backoff(n, &deliveryError{err: plain, rejected: true}); r < rejectedBackoff/2 || r > max(ceil, rejectedBackoff) {
			t.Errorf("attempt %d rejected: %s", n, r)
		}
	}
	if d := backoff(1, &deliveryError{err: plain, retryAfter: 42 * time.Second}); d != 42*time.Second {
		t.Errorf("Retry-After 42s: waited %s", d)
	}
	if d := backoff(1, &deliveryError{err: plain, retryAfter: 48 * time.Hour}); d != maxRetryAfter {
		t.Errorf("Retry-After 48h: waited %s", d)
	}
}

func TestCursorFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.cursor")
	if _, ok, err := loadCursor(path); ok || err != nil {
		t.Fatalf("missing cursor: %v %v", ok, err)
	}
	want := Cursor{Block: 12, Index: 3, Handled: 40}
	if err := saveCursor(path, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := loadCursor(path)
	if err != nil || !ok || got != want {
		t.Fatalf("loaded %+v %v %v", got, ok, err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	os.WriteFile(path, []byte("{"), 0o640)
	if _, _, err := loadCursor(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("torn cursor: %v", err)
	}
}

// TestSign checks the webhook signature against openssl:
// printf hello | openssl dgst -sha256 -hmac key
func TestSign(t *testing.T) {
	if got := Sign([]byte("key"), []byte("hello")); got != "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b" {
		t.Errorf("signature %s", got)
	}
}

func TestNewChecks(t *testing.T) {
	for _, c := range []Config{
		{Name: "../x", Kind: KindWebhook, URL: "http://x"},
		{Name: "", Kind: KindWebhook, URL: "http://x"},
		{Name: "a", Kind: "kafka", URL: "k://x"},
		{Name: "a", Kind: KindNATS},
		{Name: "a", Kind: KindMQTT, URL: "tcp://x", Start: "later"},
		{Name: "a", Kind: KindWebhook, URL: "http://x", Batch: -1},
		{Name: "a", Kind: KindNATS, URL: "nats://x", Window: MaxWindow + 1},
		{Name: "a", Kind: KindNATS, URL: "nats://x", Window: -1},
		{Name: "a", Kind: KindMQTT, URL: "tcp://x", Protocol: "3.1"},
	} {
		if _, err := New([]Config{c}, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	ok := Config{Name: "a", Kind: KindWebhook, URL: "http://x"}
	if _, err := New([]Config{ok, ok}, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
		t.Error("two connectors named a: accepted")
	}
}
