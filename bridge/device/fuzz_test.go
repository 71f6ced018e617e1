package device

import (
	"testing"
)

// FuzzOpen: a sealed message comes from anywhere (a gateway, another
// device); Open must refuse garbage without panicking.
func FuzzOpen(f *testing.F) {
	k, err := GenerateEncKey()
	if err != nil {
		f.Fatal(err)
	}
	pub, err := EncPublicKey(k)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := Seal([][]byte{pub}, []byte("config"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		pt, err := Open(k, data)
		if err == nil && string(pt) != "config" {
			// Only a message sealed to k opens; the seed is the only one
			// a fuzzer could plausibly reach, and it holds "config".
			t.Fatalf("opened a forged message: %q", pt)
		}
	})
}
