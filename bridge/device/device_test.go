package device

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func TestKeyFiles(t *testing.T) {
	for _, name := range []string{"es256", "ed25519"} {
		t.Run(name, func(t *testing.T) {
			alg, err := ParseAlg(name)
			if err != nil {
				t.Fatal(err)
			}
			key, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "k")
			if err := WriteKeyPair(path, key); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Fatalf("private key mode %v", fi.Mode())
			}
			if err := WriteKeyPair(path, key); err == nil {
				t.Fatal("overwrote an existing key")
			}
			loaded, err := LoadKey(path)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := LoadPublicKey(path + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ledger.MarshalPublicKey(key)
			got, _ := ledger.MarshalPublicKey(loaded)
			if string(pub) != string(want) || string(got) != string(want) {
				t.Fatal("key files do not round-trip")
			}
			if _, err := LoadKey(path + ".pub"); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("public key loaded as private: %v", err)
			}
			if _, err := LoadPublicKey(path); err == nil {
				t.Fatal("private key loaded as public")
			}
		})
	}
	if _, err := ParseAlg("rsa"); err == nil {
		t.Fatal("rsa accepted")
	}
}

func TestSignRecordAndVerifyReceipt(t *testing.T) {
	key, _ := GenerateKey(ledger.EdDSA)
	env, err := SignRecord(key, "chain", ledger.Record{DeviceID: "d", Stream: "s", Seq: 1, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil || tx.Author != "d" || tx.Body.Record.Seq != 1 {
		t.Fatalf("%+v %v", tx, err)
	}
	if _, err := VerifyReceipt(&ledger.Genesis{ChainID: "chain"}, []byte("not a receipt")); err == nil {
		t.Fatal("garbage receipt verified")
	}
}
