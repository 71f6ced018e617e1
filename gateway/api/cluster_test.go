package api

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// proofBytes serves fixed proof bytes.
type proofBytes []byte

func (p proofBytes) MembershipProof() ([]byte, error) { return p, nil }

type proofErr struct{ err error }

func (p proofErr) MembershipProof() ([]byte, error) { return nil, p.err }

// TestClusterProof: GET /api/v1/cluster/proof is the raw MembershipProof
// with Accept: application/cbor, else JSON with the proof in base64 and
// the number of changes; it needs no token while device_paths is open;
// a failure is the reason's status.
func TestClusterProof(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "vectors", "membership.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Cases []struct{ Name, Hex string } }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var proof []byte
	for _, c := range f.Cases {
		if c.Name == "two-changes" {
			proof, _ = hex.DecodeString(c.Hex)
		}
	}
	if proof == nil {
		t.Fatal("no two-changes vector")
	}
	a := newTestAPI(t, AuthPolicy{Required: true})
	a.s.membership = proofBytes(proof) // newTestAPI registered the route
	raw := a.do("GET", "/api/v1/cluster/proof", "", nil, "Accept", "application/cbor")
	if raw.code != 200 || !bytes.Equal([]byte(raw.body), proof) {
		t.Fatalf("raw: %d, %d bytes", raw.code, len(raw.body))
	}
	js := a.do("GET", "/api/v1/cluster/proof", "", nil)
	var pb ProofBody
	if err := json.Unmarshal([]byte(js.body), &pb); err != nil || js.code != 200 || pb.Changes != 2 {
		t.Fatalf("json: %d %s (%v)", js.code, js.body, err)
	}
	if got, _ := base64.StdEncoding.DecodeString(pb.Proof); !bytes.Equal(got, proof) {
		t.Fatal("json: the base64 proof is not the proof")
	}

	s := New(NodeInfo{MaxTxBytes: 64 << 10}, &fakeLedger{}, fakeIndex{}, prometheus.NewRegistry(), quietLogger())
	s.SetMembership(proofErr{&ledger.RefusedError{Reason: ledger.ReasonUnavailable, Detail: "catching up"}})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/cluster/proof", nil))
	if rec.Code != 503 {
		t.Fatalf("a refused proof: %d %s", rec.Code, rec.Body)
	}
}
