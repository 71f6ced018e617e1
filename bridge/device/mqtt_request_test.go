package device_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// answers is a bridge.Answers whose answers name what was asked.
type answers struct {
	mu       sync.Mutex
	manifest map[string][]byte
}

func (a *answers) Config(dev string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.manifest[dev], nil
}

func (a *answers) set(dev string, m []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.manifest[dev] = m
}

func (a *answers) Firmware(string) ([]byte, error) { return nil, nil }

func (a *answers) VerifyConfig(dev string, hash []byte) ([]byte, error) {
	return fmt.Appendf(nil, "verdict %s %x", dev, hash), nil
}

func (a *answers) Blob(_ context.Context, dev string, ref []byte) ([]byte, error) {
	return fmt.Appendf(nil, "blob %s %x", dev, ref), nil
}

func (a *answers) Keys(dev, other string) ([]byte, error) {
	return nil, &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: "no device " + other}
}

// TestClientRequests: the SDK's Report, Request and Manifest against a
// real gateway front end.
func TestClientRequests(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	fa := &answers{manifest: map[string][]byte{}}
	srv, err := mqtt.New(mqtt.Config{Listen: "127.0.0.1:0"}, mqtt.Deps{Committer: node.Committer(), Directory: node.Directory(),
		Answers: fa, Membership: vectorProof(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr, _ := srv.Addrs()
	key := node.Enroll(t, "dev", ledger.ES256)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := device.Dial(ctx, "dev", key, chainID, device.DialOptions{Broker: "tcp://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	t.Run("report", func(t *testing.T) {
		rec, err := device.SignRecord(key, chainID, ledger.Record{DeviceID: "dev", Stream: "s", Seq: 1, Time: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Publish(ctx, "s", rec); err != nil {
			t.Fatal(err)
		}
		rep, err := device.SignConfigReport(key, chainID, ledger.ConfigReport{DeviceID: "dev", Seq: 2, Version: 1, SHA256: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Report(ctx, rep); err != nil {
			t.Fatal(err)
		}
		if _, err := node.Chain.Receipt(ledger.TxID(rep)); err != nil {
			t.Fatalf("acknowledged report not in the ledger: %v", err)
		}
		if _, err := cl.Receipt(ctx, rep); err != nil {
			t.Fatal(err)
		}
		// The counter is shared: a record may not reuse the report's seq.
		rec, _ = device.SignRecord(key, chainID, ledger.Record{DeviceID: "dev", Stream: "s", Seq: 2, Time: 2})
		var re *device.RefusedError
		if err := cl.Publish(ctx, "s", rec); !errors.As(err, &re) || re.Reason != "replay" || !errors.Is(err, device.ErrRefused) {
			t.Fatalf("record with the report's seq: %v", err)
		}
		if err := cl.Report(ctx, rec); !errors.As(err, &re) || re.Reason != "not_report" {
			t.Fatalf("record as a report: %v", err)
		}
	})

	t.Run("requests", func(t *testing.T) {
		hash := sha256.Sum256([]byte("configuration"))
		for range 2 { // response topics are numbered per request
			got, err := cl.Request(ctx, device.RequestVerify, hash[:])
			if want := fmt.Sprintf("verdict dev %x", hash); err != nil || string(got) != want {
				t.Fatalf("verify: %q %v, want %q", got, err, want)
			}
		}
		if got, err := cl.Request(ctx, device.RequestBlob, nil); err != nil || string(got) != "blob dev " {
			t.Fatalf("blob: %q %v", got, err)
		}
		var re *device.RefusedError
		if _, err := cl.Request(ctx, device.RequestKeys, []byte("ghost")); !errors.As(err, &re) || re.Reason != "not_found" || !errors.Is(err, device.ErrRefused) {
			t.Fatalf("keys of an unknown device: %v", err)
		}
		if _, err := cl.Request(ctx, device.RequestVerify, []byte("short")); !errors.As(err, &re) || re.Reason != "malformed" {
			t.Fatalf("malformed verify: %v", err)
		}
	})

	t.Run("membership proof", func(t *testing.T) {
		proof, err := cl.Request(ctx, device.RequestMembershipProof, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := device.NewVerifier(vectorGenesis(t))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := v.FollowProof(proof); err != nil || n != 2 {
			t.Fatalf("followed %d changes of the served proof: %v", n, err)
		}
		var re *device.RefusedError
		if _, err := cl.Request(ctx, device.RequestMembershipProof, []byte("x")); !errors.As(err, &re) || re.Reason != "malformed" {
			t.Fatalf("a payload: %v", err)
		}
	})

	t.Run("manifest", func(t *testing.T) {
		// None yet: Manifest waits until its context ends.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if m, err := cl.Manifest(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("manifest %q, %v; want to wait for one", m, err)
		}
		fa.set("dev", []byte("manifest 1"))
		srv.Changed([]string{"dev"})
		if m, err := cl.Manifest(ctx); err != nil || string(m) != "manifest 1" {
			t.Fatalf("manifest %q %v", m, err)
		}

		// A new connection (as after a gateway restart) gets the retained
		// manifest when it subscribes.
		fa.set("dev", []byte("manifest 2"))
		cl2, err := device.Dial(ctx, "dev", key, chainID, device.DialOptions{Broker: "tcp://" + addr})
		if err != nil {
			t.Fatal(err)
		}
		defer cl2.Close()
		if m, err := cl2.Manifest(ctx); err != nil || string(m) != "manifest 2" {
			t.Fatalf("manifest %q %v", m, err)
		}
	})
}

// vectorCase reads one case of docs/vectors.
func vectorCase(t *testing.T, file, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "vectors", file))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Cases []map[string]any }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Cases {
		if c["name"] == name {
			return c
		}
	}
	t.Fatalf("no case %s in %s", name, file)
	return nil
}

func vectorHex(t *testing.T, c map[string]any) []byte {
	b, err := hex.DecodeString(c["hex"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vectorGenesis is the vectors' genesis "main".
func vectorGenesis(t *testing.T) *ledger.Genesis {
	g, err := ledger.ParseGenesis(vectorHex(t, vectorCase(t, "genesis.json", "main")))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// proofSource serves the vectors' proof of two member changes.
type proofSource []byte

func (p proofSource) MembershipProof() ([]byte, error) { return p, nil }

func vectorProof(t *testing.T) proofSource {
	return proofSource(vectorHex(t, vectorCase(t, "membership.json", "two-changes")))
}
