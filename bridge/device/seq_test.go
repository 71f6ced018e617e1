package device

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// TestResync: only a replay refusal that carries a last seq at or above
// the number used moves the counter, to that last seq.
func TestResync(t *testing.T) {
	u := func(n uint64) *uint64 { return &n }
	for _, tc := range []struct {
		name     string
		err      error
		used     uint64
		resynced bool
		next     uint64 // the counter's next number afterwards
	}{
		{"replay above", &RefusedError{Reason: ReasonReplay, LastSeq: u(41)}, 3, true, 42},
		{"replay of the number used", &RefusedError{Reason: ReasonReplay, LastSeq: u(3)}, 3, true, 4},
		{"wrapped replay", fmt.Errorf("publish: %w", &RefusedError{Reason: ReasonReplay, LastSeq: u(9)}), 3, true, 10},
		{"replay below the number used", &RefusedError{Reason: ReasonReplay, LastSeq: u(2)}, 3, false, 4},
		{"replay without last seq", &RefusedError{Reason: ReasonReplay}, 3, false, 4},
		{"another reason", &RefusedError{Reason: "bad_signature", LastSeq: u(41)}, 3, false, 4},
		{"not a refusal", errors.New("device: publish: EOF"), 3, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := OpenSeq(filepath.Join(t.TempDir(), "k.seq"))
			if err := seq.Set(tc.used); err != nil {
				t.Fatal(err)
			}
			ok, err := Resync(tc.err, tc.used, seq)
			if err != nil || ok != tc.resynced {
				t.Fatalf("Resync: %v %v, want %v", ok, err, tc.resynced)
			}
			if next, err := seq.Next(); err != nil || next != tc.next {
				t.Fatalf("next %d %v, want %d", next, err, tc.next)
			}
		})
	}
}
