package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Cursor is a connector's position in the chain: every tx up to and
// including tx Index of block Block was delivered or filtered out. Block 0
// is the position before the first block. Handled counts the txs up to
// the position (all kinds), so that the lag in txs is a subtraction.
type Cursor struct {
	Block   uint64 `json:"block"`
	Index   uint64 `json:"index"`
	Handled uint64 `json:"handled"`
}

// The cursor is a file of its own, not a row of the SQLite index: the
// index is rebuilt from the block log whenever it is lost or ahead of the
// log, and a cursor kept in it would be lost with it. A connector that
// lost its cursor would send everything again, or, started "now", skip
// records.

// loadCursor reads a cursor file; ok is false if there is none.
func loadCursor(path string) (c Cursor, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, fmt.Errorf("egress: read cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Cursor{}, false, fmt.Errorf("egress: cursor %s: %w (delete it to start the connector again from its start setting)", path, err)
	}
	return c, true, nil
}

// saveCursor replaces the cursor file atomically: a crash leaves the old
// cursor or the new one, never a torn one, and the new one is on disk
// when saveCursor returns.
func saveCursor(path string, c Cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("egress: write cursor: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("egress: write cursor: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
