package egress

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWebhookAnswers: how the sink reads each answer of a real HTTP
// server, and what it sends.
func TestWebhookAnswers(t *testing.T) {
	var status int
	var header http.Header
	var body []byte
	var retry string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header, body = r.Header.Clone(), nil
		body, _ = io.ReadAll(r.Body)
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	s, err := newWebhookSink(withDefaults(Config{Name: "h", Kind: KindWebhook, URL: srv.URL, SecretFile: secret}))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*Message{{TxID: "aa", Block: 1}, {TxID: "bb", Block: 2}}
	for _, c := range []struct {
		status    int
		retry     string
		ok        bool
		rejected  bool
		wantRetry time.Duration
	}{
		{status: 200, ok: true},
		{status: 204, ok: true},
		{status: 500},
		{status: 503, retry: "3", wantRetry: 3 * time.Second},
		{status: 429, retry: "1", wantRetry: time.Second},
		{status: 408},
		{status: 400, rejected: true},
		{status: 401, rejected: true},
		{status: 404, rejected: true},
	} {
		status, retry = c.status, c.retry
		_, err := s.send(context.Background(), msgs)
		var de *deliveryError
		switch {
		case c.ok && err != nil, !c.ok && err == nil:
			t.Errorf("%d: %v", c.status, err)
		case !c.ok && (!errors.As(err, &de) || de.rejected != c.rejected || de.retryAfter != c.wantRetry):
			t.Errorf("%d: %#v", c.status, err)
		}
		if got := header.Get(SignatureHeader); got != Sign([]byte("s3cret"), body) {
			t.Errorf("%d: signature %q", c.status, got)
		}
		var batch []Message
		if err := json.Unmarshal(body, &batch); err != nil || len(batch) != 2 || header.Get(DeliveryHeader) != "aa" ||
			header.Get("Content-Type") != "application/json" {
			t.Errorf("%d: body %s, headers %v", c.status, body, header)
		}
	}
	srv.Close()
	if _, err := s.send(context.Background(), msgs); err == nil {
		t.Error("no error from a closed server")
	}
}
