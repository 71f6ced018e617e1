package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

const defaultAPI = "http://127.0.0.1:8080"

// tokenEnv names the environment variable that holds the API token the
// CLI sends (docs/api.md, Authentication): a gateway whose API listens
// beyond loopback asks for one.
const tokenEnv = "LEDGERGATE_TOKEN"

// client talks to a gateway's HTTP API.
type client struct {
	base  string
	from  string // where base came from, for errors: "--api", "FILE api.listen"
	token string // sent as a bearer token if not ""
	http  *http.Client
}

func newClient(base string) *client {
	return &client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 2 * time.Minute},
		token: strings.TrimSpace(os.Getenv(tokenEnv))}
}

// apiError is an error answer of the API.
type apiError struct {
	Status int
	Reason string
	Msg    string
	// LastSeq is, for a replay, the device's last seq the gateway
	// committed or queued; nil if the answer had none.
	LastSeq *uint64
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (%s, HTTP %d)", e.Msg, e.Reason, e.Status)
	if e.Reason == api.ReasonUnauthorized {
		s += "; put an API token with the scope it names in " + tokenEnv + " (ledgergate token create)"
	}
	if e.LastSeq != nil {
		s += fmt.Sprintf("; the device's last seq is %d: sign again with --seq %d or above", *e.LastSeq, *e.LastSeq+1)
	}
	return s
}

func (c *client) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	return c.doStream(ctx, method, path, ctype, bytes.NewReader(body), int64(len(body)), out)
}

// doStream is do with a body of size bytes read from body.
func (c *client) doStream(ctx context.Context, method, path, ctype string, body io.Reader, size int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// send sends req with the token, if any, and returns the response if it
// is 200 OK, else the API's error.
func (c *client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		from := ""
		if c.from != "" {
			from = " (from " + c.from + ")"
		}
		return nil, fmt.Errorf("gateway API %s%s: %w (is the gateway running? see --api and --config)", c.base, from, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var eb struct {
		Error, Reason string
		LastSeq       *uint64 `json:"last_seq"`
	}
	if json.Unmarshal(data, &eb) != nil || eb.Reason == "" {
		return nil, &apiError{Status: resp.StatusCode, Reason: "http", Msg: strings.TrimSpace(string(data))}
	}
	return nil, &apiError{Status: resp.StatusCode, Reason: eb.Reason, Msg: eb.Error, LastSeq: eb.LastSeq}
}

func (c *client) status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.do(ctx, http.MethodGet, "/api/v1/status", "", nil, &s)
}

// submit posts a tx and returns the decoded answer and the receipt bytes.
func (c *client) submit(ctx context.Context, env []byte) (*api.ReceiptBody, []byte, error) {
	var rb api.ReceiptBody
	if err := c.do(ctx, http.MethodPost, "/api/v1/txs", "application/cose", env, &rb); err != nil {
		return nil, nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(rb.Receipt)
	if err != nil {
		return nil, nil, fmt.Errorf("decode receipt: %w", err)
	}
	if _, err := ledger.DecodeReceipt(raw); err != nil {
		return nil, nil, err
	}
	return &rb, raw, nil
}
