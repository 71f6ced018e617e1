package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestJoinedDataDir: on a data directory whose block log starts from a
// snapshot (a joined gateway), a block below the base is refused with a
// clear error, the index is rebuilt to start after the base, the base
// state cannot be read without its snapshot (and says why), and a backup
// without that snapshot is refused, saying why, rather than made
// unrestorable.
func TestJoinedDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	g, err := Init(dir, InitOptions{Signer: config.Dev().Signer})
	if err != nil {
		t.Fatal(err)
	}
	blog, err := ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := blog.SetBase(7, [32]byte{7}); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlock(blog, 3); err == nil {
		t.Fatal("readBlock(3) below the base passed")
	}
	if _, err := blog.ReadHeight(3); !errors.Is(err, ledger.ErrBelowBase) {
		t.Fatalf("ReadHeight(3) = %v", err)
	}
	idx, err := index.Open(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := CatchUpIndex(context.Background(), idx, blog, quiet); err != nil {
		t.Fatal(err)
	}
	if h, err := idx.Height(); err != nil || h != 7 {
		t.Fatalf("index height %d, %v; want the base 7", h, err)
	}
	idx.Close()
	if _, err := BaseState(dir, g, blog); err == nil || !strings.Contains(err.Error(), "joined from a snapshot") {
		t.Fatalf("BaseState without the snapshot: %v", err)
	}
	blog.Close()

	// Without its base snapshot the directory cannot be backed up (it
	// could not be restored); TestClusterJoinFromSnapshot backs up and
	// restores a real joined gateway.
	var buf bytes.Buffer
	_, err = Backup(context.Background(), &buf, BackupOptions{DataDir: dir, TempDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "joined from a snapshot") {
		t.Fatalf("Backup of a joined gateway without its snapshot: %v", err)
	}
}
