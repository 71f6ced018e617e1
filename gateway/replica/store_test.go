package replica

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

func testCert(seq, view uint64) *pbft.Prepared {
	return &pbft.Prepared{PrePrepare: &pbft.Message{Type: pbft.TypePrePrepare, From: "node-a", View: view, Seq: seq, Digest: make([]byte, 32), Sig: []byte{1}}}
}

func certSeqs(certs []*pbft.Prepared) []uint64 {
	var out []uint64
	for _, p := range certs {
		out = append(out, p.PrePrepare.Seq)
	}
	slices.Sort(out)
	return out
}

func reload(t *testing.T, dir string) (pbft.HardState, []*pbft.Prepared) {
	t.Helper()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs, certs, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	return hs, certs
}

func logs(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "state-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestStoreRotates: when the stable checkpoint rises the next records go
// to a new log, and the logs whose certificates are all at or below it
// are removed; what is above it survives the rotation.
func TestStoreRotates(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(dir)
	if _, _, err := s.load(); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for seq := uint64(1); seq <= 20; seq++ {
		hs := &pbft.HardState{Votes: []pbft.SeqVote{{Seq: seq}}}
		if seq > 8 {
			hs.Stable = 8
		}
		if seq > 16 {
			hs.Stable = 16
		}
		if err := s.save(hs, []*pbft.Prepared{testCert(seq, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	// Logs: the first (certs 1-8) went when 8 became stable; the second
	// (9-16) when 16 did; the third (17-20) is written to.
	if b, err := os.ReadFile(filepath.Join(dir, legacyStateFile)); err != nil || string(b) != legacyNote {
		t.Errorf("state.cbor %q, %v: want the note that stops an older ledgergate", b, err)
	}
	if got := len(logs(t, dir)); got != 1 {
		t.Errorf("%d logs on disk, want 1", got)
	}
	hs, certs := reload(t, dir)
	if hs.Stable != 16 || len(hs.Votes) != 1 || hs.Votes[0].Seq != 20 {
		t.Errorf("hard state %+v, want the last saved", hs)
	}
	if got := certSeqs(certs); !slices.Equal(got, []uint64{17, 18, 19, 20}) {
		t.Errorf("certificates %v, want 17-20", got)
	}
}

// TestStoreTornTail: a record a crash cut short can only be the last,
// unacknowledged one: load drops it and keeps what came before. A
// damaged record with more after it is an error.
func TestStoreTornTail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func([]byte, int) []byte // the log, and where its last record starts
		wantErr bool
	}{
		{"cut in the body", func(b []byte, last int) []byte { return b[:len(b)-3] }, false},
		{"cut in the head", func(b []byte, last int) []byte { return b[:last+5] }, false},
		{"last record damaged", func(b []byte, last int) []byte { b[len(b)-1] ^= 1; return b }, false},
		{"zeros after it", func(b []byte, last int) []byte { return append(b[:last], make([]byte, 100)...) }, false},
		{"a damaged record before the last", func(b []byte, last int) []byte { b[last-1] ^= 1; return b }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openStore(dir)
			if _, _, err := s.load(); err != nil {
				t.Fatal(err)
			}
			if err := s.save(&pbft.HardState{View: 1}, []*pbft.Prepared{testCert(1, 0)}); err != nil {
				t.Fatal(err)
			}
			st, _ := s.f.Stat()
			last := int(st.Size())
			if err := s.save(&pbft.HardState{View: 2}, []*pbft.Prepared{testCert(2, 0)}); err != nil {
				t.Fatal(err)
			}
			s.close()
			path := logs(t, dir)[0]
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The second save wrote two records; "last" is where the
			// second (the certificate) starts.
			last += recordHead + 1 + len(pbft.EncodeHardState(&pbft.HardState{View: 2}))
			if err := os.WriteFile(path, tc.damage(b, last), 0o640); err != nil {
				t.Fatal(err)
			}
			s2, _ := openStore(dir)
			hs, certs, err := s2.load()
			s2.close()
			if tc.wantErr {
				if err == nil {
					t.Fatal("load took a log damaged before its end")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if hs.View != 2 || !slices.Equal(certSeqs(certs), []uint64{1}) {
				t.Errorf("view %d, certificates %v; want view 2 and certificate 1 (the torn one dropped)", hs.View, certSeqs(certs))
			}
		})
	}
}

// TestStoreMigrates: a directory of the format before (state.cbor and a
// cert-SEQ.cbor per certificate) is read, moved into a log, and left so
// that a ledgergate that only reads state.cbor refuses it.
func TestStoreMigrates(t *testing.T) {
	dir := t.TempDir()
	hs := &pbft.HardState{View: 3, Stable: 4, Votes: []pbft.SeqVote{{Seq: 6, View: 3}}}
	if err := writeAtomic(dir, legacyStateFile, pbft.EncodeHardState(hs)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{4, 5, 6} {
		if err := writeAtomic(dir, fmt.Sprintf("cert-%020d.cbor", seq), pbft.EncodePrepared(testCert(seq, 3))); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // migrated, then read from the log
		got, certs := reload(t, dir)
		if got.View != 3 || got.Stable != 4 || len(got.Votes) != 1 {
			t.Fatalf("hard state %+v", got)
		}
		if s := certSeqs(certs); !slices.Equal(s, []uint64{5, 6}) {
			t.Fatalf("certificates %v, want 5 and 6", s)
		}
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "cert-*")); len(old) != 0 {
		t.Errorf("certificate files left: %v", old)
	}
	b, err := os.ReadFile(filepath.Join(dir, legacyStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pbft.DecodeHardState(b); err == nil {
		t.Error("state.cbor still decodes: an older ledgergate would start with no votes")
	}
}
