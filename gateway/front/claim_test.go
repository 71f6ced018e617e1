package front

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// TestClaimerRefusesBeforeConsensus: a CONNECT of an id no approved batch
// names, or of a batch's id with another key, or of a device of a batch
// not approved, costs no consensus work. The claimer has no chain here: a
// submit would panic.
func TestClaimerRefusesBeforeConsensus(t *testing.T) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	der := func(k crypto.Signer) []byte {
		b, err := ledger.MarshalPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	admin, node, vendor, dev, other := key(), key(), key(), key(), key()
	g := &ledger.Genesis{ChainID: "c", Params: ledger.Params{MaxTxBytes: 4096},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: der(node)}}, Admins: []ledger.Admin{{ID: "admin", PublicKey: der(admin)}}}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := state.New(g)
	if err != nil {
		t.Fatal(err)
	}
	height := uint64(0)
	commit := func(k crypto.Signer, kid string, b ledger.Body) {
		t.Helper()
		b.ChainID = "c"
		env, err := ledger.SignTx(k, kid, &b)
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.Check(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.NewBatch().Add(c); err != nil {
			t.Fatal(err)
		}
		height++
		if err := st.Apply(height, [32]byte{byte(height)}, []*ledger.Tx{c.Tx}); err != nil {
			t.Fatal(err)
		}
	}
	commit(admin, "admin", ledger.Body{Kind: ledger.KindVendorEnroll, VendorEnroll: &ledger.VendorEnroll{Vendor: "acme", PublicKey: der(vendor), Models: []string{"m"}}})
	commit(vendor, "acme", ledger.Body{Kind: ledger.KindFleetBatch, FleetBatch: &ledger.FleetBatch{Batch: "b", Model: "m",
		Devices: []ledger.BatchDevice{{DeviceID: "d-1", PublicKey: der(dev)}}}})
	tok := func(k crypto.Signer, id string) []byte {
		s, err := ledger.SignToken(k, id, "c", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := base64.RawURLEncoding.DecodeString(s)
		return b
	}
	c := NewClaimer(st, nil, node, "node-1", slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for _, tc := range []struct {
		name, id string
		token    []byte
	}{
		{"not approved", "d-1", tok(dev, "d-1")},
		{"in no batch", "x-9", tok(other, "x-9")},
	} {
		if err := c.Claim(ctx, tc.id, tc.token); !errors.Is(err, bridge.ErrNotClaimable) {
			t.Errorf("%s: %v, want ErrNotClaimable", tc.name, err)
		}
	}
	commit(admin, "admin", ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: "b"}})
	for _, tc := range []struct {
		name, id string
		token    []byte
	}{
		{"another key", "d-1", tok(other, "d-1")},
		{"another device's token", "d-1", tok(dev, "d-2")},
		{"not a token", "d-1", []byte{0xd2, 0x84}},
	} {
		if err := c.Claim(ctx, tc.id, tc.token); !errors.Is(err, bridge.ErrNotClaimable) {
			t.Errorf("%s: %v, want ErrNotClaimable", tc.name, err)
		}
	}
	if p := c.Pending(); len(p) != 0 {
		t.Errorf("claims in flight: %v", p)
	}
}
