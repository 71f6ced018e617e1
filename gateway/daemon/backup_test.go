package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/config"
)

// newBackup makes a single-node data directory and backs it up.
func newBackup(t testing.TB, withKeys bool) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Init(dir, InitOptions{Signer: config.Dev().Signer}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Backup(context.Background(), &buf, BackupOptions{DataDir: dir, WithKeys: withKeys, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return dir, buf.Bytes()
}

// TestBackupRestoreStopped: a stopped gateway's directory round-trips;
// the keys stay out unless asked for; a tar that is not a backup of this
// format, or that holds entries that would land outside the target, is
// refused and leaves nothing.
func TestBackupRestoreStopped(t *testing.T) {
	for _, withKeys := range []bool{false, true} {
		src, b := newBackup(t, withKeys)
		dst := filepath.Join(t.TempDir(), "restored")
		res, err := Restore(context.Background(), bytes.NewReader(b), RestoreOptions{DataDir: dst})
		if err != nil {
			t.Fatalf("restore (keys %v): %v", withKeys, err)
		}
		if res.Manifest.WithKeys != withKeys {
			t.Errorf("manifest with_keys %v, want %v", res.Manifest.WithKeys, withKeys)
		}
		for _, f := range []string{GenesisFile, NodeKeyFile, AdminKeyFile, IndexFile} {
			_, err := os.Stat(filepath.Join(dst, f))
			isKey := f == NodeKeyFile || f == AdminKeyFile
			if want := !isKey || withKeys; (err == nil) != want {
				t.Errorf("keys %v: %s restored: %v", withKeys, f, err)
			}
		}
		g1, err := LoadGenesis(src)
		if err != nil {
			t.Fatal(err)
		}
		g2, err := LoadGenesis(dst)
		if err != nil {
			t.Fatal(err)
		}
		if g1.Hash() != g2.Hash() {
			t.Error("restored genesis differs")
		}
	}

	tarOf := func(name string, body []byte) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write(body)
		tw.Close()
		return buf.Bytes()
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"escaping path":   tarOf("../evil", []byte("x")),
		"absolute path":   tarOf("/etc/evil", []byte("x")),
		"no manifest":     tarOf(GenesisFile, []byte("{}")),
		"other format":    tarOf(BackupManifestFile, []byte(`{"format":"something/9"}`)),
		"listed, missing": tarOf(BackupManifestFile, []byte(`{"format":"`+BackupFormat+`","files":[{"path":"x","size":1,"sha256":"00"}],"content_sha256":"`+contentSum([]BackupFile{{Path: "x", Size: 1, SHA256: "00"}})+`"}`)),
	} {
		parent := t.TempDir()
		_, err := Restore(context.Background(), bytes.NewReader(b), RestoreOptions{DataDir: filepath.Join(parent, "x")})
		if !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: %v, want ErrBadBackup", name, err)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Errorf("%s: a refused restore left %s", name, ents[0].Name())
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(t.TempDir()), "evil")); err == nil {
		t.Error("a restore wrote outside its target")
	}
}

// FuzzRestore: whatever the bytes, Restore returns (an error, mostly)
// without panicking, and writes only inside its target's parent.
func FuzzRestore(f *testing.F) {
	_, b := newBackup(f, false)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		parent := t.TempDir()
		res, err := Restore(context.Background(), bytes.NewReader(data), RestoreOptions{DataDir: filepath.Join(parent, "x")})
		if err == nil && res.Manifest == nil {
			t.Fatal("restore without a manifest")
		}
	})
}
