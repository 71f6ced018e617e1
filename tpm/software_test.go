package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSoftwareKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	if _, err := LoadSoftwareKey(path); !errors.Is(err, ErrNoKey) {
		t.Fatalf("missing key: %v", err)
	}
	s, err := CreateSoftwareKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateSoftwareKey(path); err == nil {
		t.Fatal("overwrote a node key")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	loaded, err := LoadSoftwareKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Hardware() || loaded.Describe() == "" {
		t.Fatal("a software key must say it is not hardware-backed")
	}
	d := sha256.Sum256([]byte("vote"))
	sig, err := loaded.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature by the reloaded key does not verify with the created one")
	}
}

func TestSoftwareKeyRejectsOtherKeys(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ed)
	path := filepath.Join(t.TempDir(), "ed.key")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadSoftwareKey(path); err == nil {
		t.Fatal("an Ed25519 node key was accepted")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadSoftwareKey(path); err == nil {
		t.Fatal("garbage accepted")
	}
}
