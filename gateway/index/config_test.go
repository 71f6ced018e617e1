package index

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func (c *chain) configSet(target string, version uint64, config string) []byte {
	sum := sha256.Sum256([]byte(config))
	return sign(c.tb, c.admin, "admin-1", ledger.Body{Kind: ledger.KindConfigSet, ConfigSet: &ledger.ConfigSet{
		Target: target, Version: version, SHA256: sum[:], Size: uint64(len(config)), Blob: sum[:]}})
}

func (c *chain) enrollIn(id string, groups ...string) []byte {
	return sign(c.tb, c.admin, "admin-1", ledger.Body{Kind: ledger.KindEnroll,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: der(c.tb, newEd25519(c.tb)), Groups: groups}})
}

func configReport(tb testing.TB, id string, seq, version uint64, config string) []byte {
	sum := sha256.Sum256([]byte(config))
	return sign(tb, newEd25519(tb), id, ledger.Body{Kind: ledger.KindConfigReport, ConfigReport: &ledger.ConfigReport{
		DeviceID: id, Seq: seq, Version: version, SHA256: sum[:]}})
}

func versions(cs []ConfigInfo) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Target+"@"+string(rune('0'+c.Version)))
	}
	return out
}

func TestConfigQueries(t *testing.T) {
	c := newChain(t)
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x,
		c.next(c.enrollIn("a", "meters"), c.enrollIn("b", "meters", "pumps"), c.enrollIn("c")),
		c.next(c.configSet("group:meters", 1, "m1"), c.configSet("group:pumps", 1, "p1")),
		c.next(c.configSet("a", 1, "a1")),
		c.next(c.configSet("group:meters", 2, "m2")),
		// Index checks no signature: the report's key need not be a's.
		c.next(configReport(t, "b", 1, 1, "p1")),
	)
	cur := func(id string) string {
		ci, err := x.CurrentConfig(id)
		if err != nil {
			return err.Error()
		}
		return ci.Target + "@" + string(rune('0'+ci.Version))
	}
	// Device beats group, whatever is newer; else the newest of its groups.
	if got := cur("a"); got != "a@1" {
		t.Errorf("current of a = %s, want a@1", got)
	}
	if got := cur("b"); got != "group:meters@2" {
		t.Errorf("current of b = %s, want group:meters@2", got)
	}
	if _, err := x.CurrentConfig("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("current of c: err = %v, want ErrNotFound", err)
	}
	hist, err := x.ConfigHistory("b")
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(hist); len(got) != 3 || got[0] != "group:meters@1" || got[1] != "group:pumps@1" || got[2] != "group:meters@2" {
		t.Errorf("history of b = %v", got)
	}
	members, err := x.GroupMembers("meters")
	if err != nil || len(members) != 2 || members[0] != "a" || members[1] != "b" {
		t.Errorf("members of meters = %v, %v", members, err)
	}
	sum := sha256.Sum256([]byte("m2"))
	if cs, err := x.ConfigsByBlob(sum); err != nil || len(cs) != 1 || cs[0].Target != "group:meters" {
		t.Errorf("ConfigsByBlob(m2) = %v, %v", cs, err)
	}
	drift, err := x.Drifting()
	if err != nil {
		t.Fatal(err)
	}
	// a never reported; b reported pumps@1, not its current meters@2; c has no config.
	p1 := sha256.Sum256([]byte("p1"))
	if len(drift) != 2 || drift[0].Device != "a" || drift[0].Since != 0 || drift[1].Device != "b" || drift[1].Reported != 1 ||
		drift[1].SHA256 != hex.EncodeToString(p1[:]) || drift[1].Current.Target != "group:meters" || drift[1].Current.Version != 2 {
		t.Errorf("drift = %+v", drift)
	}
	apply(t, x, c.next(configReport(t, "b", 2, 2, "m2"), configReport(t, "a", 1, 1, "a1")))
	if drift, err := x.Drifting(); err != nil || len(drift) != 0 {
		t.Errorf("drift after both reported = %+v, %v", drift, err)
	}
	if rs, err := x.ConfigReports("b"); err != nil || len(rs) != 2 || rs[0].Version != 1 || rs[1].Version != 2 {
		t.Errorf("reports of b = %+v, %v", rs, err)
	}
}
