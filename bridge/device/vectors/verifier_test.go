package vectors

import (
	"errors"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestVerifierFollowsProofs runs device.Verifier over the membership
// vectors as a device would: the genesis only, then a proof of one
// change, then the proof grown by a second one, which it follows from
// where it is.
func TestVerifierFollowsProofs(t *testing.T) {
	v := load(t)
	cases := map[string]*Case{}
	for _, c := range v.files["membership"].Cases {
		cases[c.Name] = c
	}
	proof := func(name string) []byte { return unhex(t, cases[name].Hex) }
	receipt := func(name string) []byte { return unhex(t, cases[name].Inputs["receipt"].(string)) }
	r81, r161 := receipt("one-change"), receipt("two-changes")

	ver, err := device.NewVerifier(v.genesisOf(t, "main"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ver.VerifyReceipt(r81); !errors.Is(err, ledger.ErrCert) {
		t.Fatalf("receipt at 81 with the genesis only: %v, want ErrCert", err)
	}
	if n, err := ver.FollowProof(proof("one-change")); err != nil || n != 1 {
		t.Fatalf("FollowProof(one change) = %d, %v", n, err)
	}
	if _, err := ver.VerifyReceipt(r81); err != nil {
		t.Fatalf("receipt at 81 after one change: %v", err)
	}
	if _, err := ver.VerifyReceipt(r161); !errors.Is(err, ledger.ErrCert) {
		t.Fatalf("receipt at 161 after one change: %v, want ErrCert", err)
	}
	if _, err := ver.FollowProof(proof("bad-link-wrong-set")); !errors.Is(err, ledger.ErrMembers) {
		t.Fatalf("a proof with a bad link: %v, want ErrMembers", err)
	}
	if got := len(ver.Members().Epochs()); got != 2 {
		t.Fatalf("after a refused proof the verifier holds %d sets, want 2 (unchanged)", got)
	}
	if n, err := ver.FollowProof(proof("two-changes")); err != nil || n != 1 {
		t.Fatalf("FollowProof(two changes) from one = %d, %v; want 1 followed", n, err)
	}
	for _, r := range [][]byte{r81, r161, receipt("one-change-before-start")} {
		if _, err := ver.VerifyReceipt(r); err != nil {
			t.Fatalf("after two changes: %v", err)
		}
	}
	if _, err := ver.VerifyReceipt(receipt("old-set-after-start")); !errors.Is(err, ledger.ErrCert) {
		t.Fatalf("the old set at 81: %v, want ErrCert", err)
	}
	if n, err := ver.FollowProof(proof("one-change")); err != nil || n != 0 {
		t.Fatalf("an older, shorter proof = %d, %v; want 0 followed and no error", n, err)
	}
	if got := ver.Members().Last().Start; got != 161 {
		t.Fatalf("newest set from %d, want 161", got)
	}
}
