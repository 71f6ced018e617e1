package daemon

import (
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/cluster"
)

func TestIsBehind(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	heard := func(h uint64) cluster.PeerStatus {
		return cluster.PeerStatus{Connected: true, Height: h, LastSeen: now.Add(-time.Second)}
	}
	silent := cluster.PeerStatus{Connected: true, Height: 99, LastSeen: now.Add(-time.Minute)}
	never := cluster.PeerStatus{Connected: true} // our connection is up; its to us is not yet
	for _, tc := range []struct {
		name  string
		tip   uint64
		peers []cluster.PeerStatus
		want  bool
	}{
		{"peers level or behind", 7, []cluster.PeerStatus{heard(5), heard(7), heard(7)}, false},
		{"a peer ahead", 7, []cluster.PeerStatus{heard(7), heard(8), silent}, true},
		{"too few peers heard to know", 7, []cluster.PeerStatus{heard(7), silent, silent}, true},
		{"a silent peer's old height does not count", 7, []cluster.PeerStatus{heard(7), heard(7), silent}, false},
		{"connected to peers not yet heard from (a restart)", 0, []cluster.PeerStatus{never, never, heard(0)}, true},
		{"no peer yet", 0, []cluster.PeerStatus{{}, {}, {}}, true},
	} {
		if got := isBehind(tc.tip, tc.peers, 3, now); got != tc.want {
			t.Errorf("%s: isBehind = %v, want %v", tc.name, got, tc.want)
		}
	}
}
