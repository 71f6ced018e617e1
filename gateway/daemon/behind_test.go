package daemon

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/cluster"
)

func TestIsBehind(t *testing.T) {
	up := func(h uint64) cluster.PeerStatus { return cluster.PeerStatus{Connected: true, Height: h} }
	down := cluster.PeerStatus{Height: 99}
	for _, tc := range []struct {
		name  string
		tip   uint64
		peers []cluster.PeerStatus
		want  bool
	}{
		{"peers behind", 7, []cluster.PeerStatus{up(5), up(6), up(7)}, false},
		{"a peer ahead", 7, []cluster.PeerStatus{up(7), up(8), down}, true},
		{"too few peers to know", 7, []cluster.PeerStatus{up(7), down, down}, true},
		{"no peer yet", 0, []cluster.PeerStatus{down, down, down}, true},
		{"a disconnected peer's old height does not count", 7, []cluster.PeerStatus{up(7), up(7), down}, false},
	} {
		if got := isBehind(tc.tip, tc.peers, 3); got != tc.want {
			t.Errorf("%s: isBehind = %v, want %v", tc.name, got, tc.want)
		}
	}
}
