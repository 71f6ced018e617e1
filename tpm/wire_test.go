package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// sniffer records every command sent to the TPM, as a probe on the bus
// between the CPU and a discrete TPM would.
type sniffer struct {
	transport.TPMCloser
	mu   sync.Mutex
	cmds [][]byte
}

func (s *sniffer) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	s.cmds = append(s.cmds, bytes.Clone(cmd))
	s.mu.Unlock()
	return s.TPMCloser.Send(cmd)
}

// codes lists the command codes seen, with the salt key handle of each
// TPM2_StartAuthSession (TPM 2.0 Part 3, 11.1: tpmKey is the first handle).
func (s *sniffer) codes() (ccs []tpm2.TPMCC, salted int) {
	for _, c := range s.cmds {
		if len(c) < 10 {
			continue
		}
		cc := tpm2.TPMCC(binary.BigEndian.Uint32(c[6:10]))
		ccs = append(ccs, cc)
		if cc == tpm2.TPMCCStartAuthSession && len(c) >= 14 && binary.BigEndian.Uint32(c[10:14]) != uint32(tpm2.TPMRHNull) {
			salted++
		}
	}
	return ccs, salted
}

func (s *sniffer) saw(secret []byte) bool {
	for _, c := range s.cmds {
		if bytes.Contains(c, secret) {
			return true
		}
	}
	return false
}

// TestSwtpmSecretsNeverCrossTheBus checks the salted, encrypting sessions
// from the outside: the auth value goes into TPM2_Create and authorises
// TPM2_Sign, yet never appears on the wire, and neither does the digest
// being signed; each of those commands follows a salted
// TPM2_StartAuthSession.
func TestSwtpmSecretsNeverCrossTheBus(t *testing.T) {
	auth := []byte("auth-value-that-must-not-leak")
	tp := newSwtpm(t).open(auth)
	spy := &sniffer{TPMCloser: tp.raw}
	tp.raw = spy

	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("a vote nobody on the bus should read"))
	if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if spy.saw(auth) {
		t.Fatal("the auth value crossed the bus in clear")
	}
	if spy.saw(d[:]) {
		t.Fatal("the digest crossed the bus in clear")
	}
	ccs, salted := spy.codes()
	for _, want := range []tpm2.TPMCC{tpm2.TPMCCCreate, tpm2.TPMCCSign} {
		i := slices.Index(ccs, want)
		if i < 1 || ccs[i-1] != tpm2.TPMCCStartAuthSession {
			t.Fatalf("command 0x%x does not follow TPM2_StartAuthSession: %x", want, ccs)
		}
	}
	if salted != 2 {
		t.Fatalf("%d salted sessions, want 2 (Create, Sign)", salted)
	}

	// Without an auth value there is nothing to hide: the digest goes in
	// clear under a password session, and no session is started.
	tp2 := newSwtpm(t).open(nil)
	spy2 := &sniffer{TPMCloser: tp2.raw}
	tp2.raw = spy2
	if _, err := tp2.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s2, err := tp2.Signer()
	if err != nil {
		t.Fatal(err)
	}
	spy2.cmds = nil
	if _, err := s2.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if ccs, _ := spy2.codes(); len(ccs) != 1 || ccs[0] != tpm2.TPMCCSign || !spy2.saw(d[:]) {
		t.Fatalf("a password-session signature sent %x", ccs)
	}
}
