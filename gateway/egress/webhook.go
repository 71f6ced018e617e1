package egress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Webhook headers (docs/egress.md).
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body,
	// keyed with the secret_file's bytes.
	SignatureHeader = "X-Ledgergate-Signature"
	// DeliveryHeader is the tx id of the batch's first record: the same
	// for every attempt of one batch.
	DeliveryHeader = "X-Ledgergate-Delivery"
)

// webhookSink POSTs each batch as a JSON array.
type webhookSink struct {
	cfg    Config
	secret []byte
	client *http.Client
}

func newWebhookSink(c Config) (*webhookSink, error) {
	s := &webhookSink{cfg: c, client: &http.Client{Timeout: c.Timeout}}
	if c.SecretFile != "" {
		var err error
		if s.secret, err = readSecret(c.SecretFile); err != nil {
			return nil, err
		}
	}
	if c.CAFile != "" || c.CertFile != "" {
		t, err := clientTLS("", c.CAFile, c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = t
		s.client.Transport = tr
	}
	return s, nil
}

// Sign is the X-Ledgergate-Signature value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *webhookSink) send(ctx context.Context, msgs []*Message) (int, error) {
	if err := s.post(ctx, msgs); err != nil {
		return 0, err
	}
	return len(msgs), nil
}

// post POSTs msgs as one batch: all are acknowledged, or none.
func (s *webhookSink) post(ctx context.Context, msgs []*Message) error {
	body, err := json.Marshal(msgs)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DeliveryHeader, msgs[0].TxID)
	if s.secret != nil {
		req.Header.Set(SignatureHeader, Sign(s.secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("egress: webhook: %w", err)
	}
	defer resp.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return &deliveryError{err: fmt.Errorf("egress: webhook: %s: %q", resp.Status, detail),
			retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	default:
		return &deliveryError{err: fmt.Errorf("egress: webhook: %s: %q", resp.Status, detail), rejected: true}
	}
}

// retryAfter parses a Retry-After value: seconds or an HTTP date
// (RFC 9110 10.2.3); 0 if absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (s *webhookSink) close() { s.client.CloseIdleConnections() }
