package replica

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// TestMembersFromIsTheCoresBoundary: the height from which devices and
// the ledger count a new member set (ledger.MembersFrom, part of the
// protocol) is the one the consensus core switches sets at.
func TestMembersFromIsTheCoresBoundary(t *testing.T) {
	for h := uint64(1); h < 2000; h++ {
		if got, want := ledger.MembersFrom(h), pbft.Boundary(h, ledger.CheckpointInterval, ledger.Window)+1; got != want {
			t.Fatalf("change at %d: ledger counts the new set from %d, the core from %d", h, got, want)
		}
	}
}
