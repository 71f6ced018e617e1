package index

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func (c *chain) enrollModel(id, model string, groups ...string) []byte {
	return sign(c.tb, c.admin, "admin-1", ledger.Body{Kind: ledger.KindEnroll,
		Enroll: &ledger.Enroll{DeviceID: id, Model: model, PublicKey: der(c.tb, newEd25519(c.tb)), Groups: groups}})
}

// TestConfigStates checks ConfigStates against CurrentConfig and Drifting,
// the per-device queries, on a fleet drawn from a seed: every active
// device once, in id order, with the configuration CurrentConfig names,
// and drifting exactly when Drifting lists it.
func TestConfigStates(t *testing.T) {
	c := newChain(t)
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	rng := rand.New(rand.NewPCG(25, 3))
	groups := []string{"g0", "g1", "g2", "g3"}
	var enroll [][]byte
	const n = 60
	for i := range n {
		var gs []string
		for _, g := range groups {
			if rng.IntN(3) == 0 {
				gs = append(gs, g)
			}
		}
		enroll = append(enroll, c.enrollModel(fmt.Sprintf("d%02d", i), "th-2", gs...))
	}
	apply(t, x, c.next(enroll...))
	version := map[string]uint64{}
	configs := map[string]string{} // what each device was set
	for range 40 {
		target := fmt.Sprintf("d%02d", rng.IntN(n))
		if rng.IntN(2) == 0 {
			target = "group:" + groups[rng.IntN(len(groups))]
		}
		version[target]++
		cfg := fmt.Sprintf("%s v%d", target, version[target])
		configs[target] = cfg
		apply(t, x, c.next(c.configSet(target, version[target], cfg)))
	}
	// Some devices report their current configuration, some an old one.
	var reports [][]byte
	for i := range n {
		id := fmt.Sprintf("d%02d", i)
		cur, err := x.CurrentConfig(id)
		if err != nil || rng.IntN(3) == 0 {
			continue
		}
		cfg := configs[cur.Target]
		if rng.IntN(2) == 0 {
			cfg = "old"
		}
		reports = append(reports, configReport(t, id, 1, cur.Version, cfg))
	}
	apply(t, x, c.next(reports...), c.next(sign(t, c.admin, "admin-1", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "d07"}})))

	states, err := x.ConfigStates()
	if err != nil {
		t.Fatal(err)
	}
	drifting, err := x.Drifting()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, d := range drifting {
		want = append(want, d.Device)
	}
	var got []string
	seen := map[string]int{}
	for i, s := range states {
		if i > 0 && states[i-1].Device >= s.Device {
			t.Fatalf("states out of order at %s", s.Device)
		}
		seen[s.State()]++
		if s.Device == "d07" {
			t.Errorf("revoked d07 is listed")
		}
		cur, err := x.CurrentConfig(s.Device)
		switch {
		case err != nil && s.Target != "":
			t.Errorf("%s: ConfigStates names %s@%d, CurrentConfig: %v", s.Device, s.Target, s.Version, err)
		case err == nil && (cur.Target != s.Target || cur.Version != s.Version || cur.SHA256 != s.SHA256):
			t.Errorf("%s: ConfigStates names %s@%d, CurrentConfig %s@%d", s.Device, s.Target, s.Version, cur.Target, cur.Version)
		}
		if st := s.State(); st == ConfigBehind || st == ConfigNever {
			got = append(got, s.Device)
		}
	}
	if len(states) != n-1 {
		t.Errorf("%d states, want %d active devices", len(states), n-1)
	}
	if !slices.Equal(got, want) {
		t.Errorf("behind or never: %v\nDrifting: %v", got, want)
	}
	for _, st := range []string{ConfigCurrent, ConfigBehind, ConfigNever} {
		if seen[st] == 0 {
			t.Errorf("the seed drew no device %s (%v): the test checks nothing there", st, seen)
		}
	}

	gs, err := x.GroupsOfModel("th-2")
	if err != nil || !slices.Equal(gs, groups) {
		t.Errorf("GroupsOfModel(th-2) = %v, %v", gs, err)
	}
	if gs, err := x.GroupsOfModel("x-9"); err != nil || len(gs) != 0 {
		t.Errorf("GroupsOfModel(x-9) = %v, %v", gs, err)
	}
}

// BenchmarkConfigStates: the fleet's drift with 10,000 devices in 10
// groups, a group configuration each and a device's own for one in ten.
func BenchmarkConfigStates(b *testing.B) {
	c := newChain(b)
	x := open(b, filepath.Join(b.TempDir(), "index.db"))
	const n = 10_000
	for i := 0; i < n; i += 1000 {
		var txs [][]byte
		for j := i; j < i+1000; j++ {
			txs = append(txs, c.enrollModel(fmt.Sprintf("dev-%05d", j), "th-2", fmt.Sprintf("g%d", j%10)))
		}
		apply(b, x, c.next(txs...))
	}
	var txs [][]byte
	for g := range 10 {
		txs = append(txs, c.configSet(fmt.Sprintf("group:g%d", g), 1, "cfg"))
	}
	for j := 0; j < n; j += 10 {
		txs = append(txs, c.configSet(fmt.Sprintf("dev-%05d", j), 1, "own"))
	}
	apply(b, x, c.next(txs...))
	b.ResetTimer()
	for b.Loop() {
		s, err := x.ConfigStates()
		if err != nil || len(s) != n {
			b.Fatal(len(s), err)
		}
	}
}
