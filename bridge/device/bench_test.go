package device

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkVerifyConfig is what a device spends checking one answer of a
// four-gateway chain: two certificates of three signatures, one receipt.
func BenchmarkVerifyConfig(b *testing.B) {
	c := newTestChain(b, "site-a")
	conf := []byte("interval = 10\n")
	rs, head := c.commit(c.now, quorum, c.configSet("dev-1", 1, conf))
	a := &ledger.ConfigAnswer{Device: "dev-1", Receipt: rs[0], Head: *head}
	p := ConfigPolicy{Device: "dev-1", Freshness: Freshness{Now: func() time.Time { return c.now }}}
	sum := sha256.Sum256(conf)
	for b.Loop() {
		if _, err := VerifyConfig(c.g, a, sum, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal seals a 4 KiB configuration to a group of n members and
// the operators, as config publish does.
func BenchmarkSeal(b *testing.B) {
	conf := make([]byte, 4<<10)
	for _, n := range []int{1, 100, 1000} {
		_, pubs := encKeys(b, n+1)
		b.Run(fmt.Sprintf("recipients=%d", n+1), func(b *testing.B) {
			for b.Loop() {
				if _, err := Seal(pubs, conf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen is a device opening its configuration in a blob sealed
// to a group of 1000.
func BenchmarkOpen(b *testing.B) {
	privs, pubs := encKeys(b, 1001)
	sealed, err := Seal(pubs, make([]byte, 4<<10))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Open(privs[500], sealed); err != nil {
			b.Fatal(err)
		}
	}
}
