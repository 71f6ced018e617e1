package index

import (
	"context"
	"database/sql"
	"fmt"
	"os"
)

// CopyInto writes a consistent copy of the index file at path to dst, a
// file that must not exist, and returns the height the copy holds. A
// gateway may be writing to path meanwhile: the copy is SQLite's VACUUM
// INTO, made on a read transaction of a connection of its own, so it
// holds the index as one committed transaction left it (the WAL
// included), compacted. CopyInto never writes to path and does not run
// Open's schema migration on it.
func CopyInto(ctx context.Context, path, dst string) (uint64, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("index: copy %s: %w", path, err)
	}
	if _, err := os.Stat(dst); err == nil {
		return 0, fmt.Errorf("index: copy to %s: file exists", dst)
	}
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		return 0, fmt.Errorf("index: copy %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return 0, fmt.Errorf("index: copy %s to %s: %w", path, dst, err)
	}
	cp, err := sql.Open("sqlite", dst+"?_busy_timeout=10000")
	if err != nil {
		return 0, fmt.Errorf("index: open copy %s: %w", dst, err)
	}
	defer cp.Close()
	h, err := height(cp)
	if err != nil {
		return 0, fmt.Errorf("index: height of copy %s: %w", dst, err)
	}
	return h, nil
}
