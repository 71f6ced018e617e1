package ledger

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"
)

// maxFuzzInput caps fuzz inputs: real txs are at most max_tx_bytes.
const maxFuzzInput = 64 << 10

func FuzzDecodeTx(f *testing.F) {
	key := fixedEd25519()
	sum := make([]byte, 32)
	for _, b := range []*Body{record("dev-1", 1), {Kind: KindRevoke, ChainID: testChain, Revoke: &Revoke{DeviceID: "d"}},
		{Kind: KindConfigSet, ChainID: testChain, ConfigSet: &ConfigSet{Target: "group:g", Version: 1, SHA256: sum, Blob: sum, URI: "https://x"}},
		{Kind: KindConfigReport, ChainID: testChain, ConfigReport: &ConfigReport{DeviceID: "dev-1", Seq: 2, Version: 1, SHA256: sum}},
		{Kind: KindHeartbeat, ChainID: testChain, Heartbeat: &Heartbeat{Node: "n", Time: 1}},
		{Kind: KindFleetBatch, ChainID: testChain, FleetBatch: &FleetBatch{Batch: "b", Model: "m", Groups: []string{"g"},
			Devices: []BatchDevice{{DeviceID: "d-1", PublicKey: pubDER(f, key)}, {DeviceID: "d-2", PublicKey: pubDER(f, key)}}}},
		{Kind: KindFleetApprove, ChainID: testChain, FleetApprove: &FleetApprove{Batch: "b"}},
		{Kind: KindFleetRevoke, ChainID: testChain, FleetRevoke: &FleetRevoke{Batch: "b", Reason: "r"}},
		{Kind: KindDeviceClaim, ChainID: testChain, DeviceClaim: &DeviceClaim{DeviceID: "d-1", Batch: "b", Evidence: []byte{0xd2, 0x84}, PublicKey: pubDER(f, key), Model: "m", Groups: []string{"g"}}},
		{Kind: KindDeviceClaim, ChainID: testChain, DeviceClaim: &DeviceClaim{DeviceID: "d-1", Secret: sum, PublicKey: pubDER(f, key)}},
		{Kind: KindEnrollToken, ChainID: testChain, EnrollToken: &EnrollToken{Hash: sum, Expires: 5, DeviceID: "d-9", Model: "m", Groups: []string{"g"}}}} {
		env, err := SignTx(key, "dev-1", b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env)
	}
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		tx, err := DecodeTx(data, 0)
		if err != nil {
			return
		}
		// Whatever decodes is canonical: it is exactly its own encoding.
		if !bytes.Equal(tx.Envelope, data) || tx.ID != TxID(data) {
			t.Fatal("decoded tx does not own its bytes")
		}
		if err := tx.Body.Validate(); err != nil {
			t.Fatalf("decoded tx fails validation: %v", err)
		}
		if pk, err := ParsePublicKey(pubDER(t, key)); err == nil {
			_ = tx.Verify(pk) // must not panic
		}
	})
}

func FuzzDecodeBlock(f *testing.F) {
	for _, n := range []int{0, 1, 3} {
		b := testBlock(f, n)
		enc, err := b.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		b, err := DecodeBlock(data)
		if err != nil {
			return
		}
		enc, err := b.Encode()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatal("decoded block does not re-encode to its bytes")
		}
	})
}

func FuzzDecodeReceipt(f *testing.F) {
	b := testBlock(f, 3)
	r, err := NewReceipt(b, NewTree(b.Txs), 1)
	if err != nil {
		f.Fatal(err)
	}
	enc, _ := r.Encode()
	f.Add(enc)
	g := &Genesis{ChainID: testChain, Params: Params{MaxTxBytes: DefaultMaxTxBytes}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		r, err := DecodeReceipt(data)
		if err != nil {
			return
		}
		_ = VerifyReceipt(g, r) // must not panic on any input
	})
}

func FuzzDecodeAnswer(f *testing.F) {
	b := testBlock(f, 3)
	r, err := NewReceipt(b, NewTree(b.Txs), 1)
	if err != nil {
		f.Fatal(err)
	}
	head := Head{Header: b.Header, Cert: b.Cert}
	for _, a := range []interface{ Encode() ([]byte, error) }{
		&ConfigAnswer{Device: "d", Receipt: r, Head: head, Match: true},
		&ConfigAnswer{Device: "d", Head: head},
		&KeysAnswer{Device: "d", Enroll: r, Rekey: r, Head: head},
		&FirmwareAnswer{Device: "d", Group: "g", Release: r, Votes: []*Receipt{r, r}, Head: head},
	} {
		enc, err := a.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		// A device decodes what a gateway answers: whatever decodes is
		// canonical.
		if a, err := DecodeConfigAnswer(data); err == nil {
			if enc, err := a.Encode(); err != nil || !bytes.Equal(enc, data) {
				t.Fatal("config answer does not re-encode to its bytes")
			}
		}
		if a, err := DecodeKeysAnswer(data); err == nil {
			if enc, err := a.Encode(); err != nil || !bytes.Equal(enc, data) {
				t.Fatal("keys answer does not re-encode to its bytes")
			}
		}
		if a, err := DecodeFirmwareAnswer(data); err == nil {
			if enc, err := a.Encode(); err != nil || !bytes.Equal(enc, data) {
				t.Fatal("firmware answer does not re-encode to its bytes")
			}
		}
	})
}

// FuzzClaimToken: the evidence of a gateway's device.claim is a device
// token's envelope, outside bytes decoded when the claim is checked.
// ClaimToken never panics, and what it accepts has its subject as kid
// and the chain as audience.
func FuzzClaimToken(f *testing.F) {
	key := fixedEd25519()
	tok, err := SignToken(key, "dev-1", testChain, time.Unix(1_700_000_000, 0), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	f.Add(raw)
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	pk, err := ParsePublicKey(pubDER(f, key))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := ClaimToken(data, testChain)
		if err != nil {
			return
		}
		if tk.Claims.Audience != testChain || tk.Claims.Subject != tk.env.kid {
			t.Fatalf("accepted claims %+v of kid %q", tk.Claims, tk.env.kid)
		}
		_ = tk.Verify(pk) // must not panic
	})
}
