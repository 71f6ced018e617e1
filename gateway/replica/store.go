package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// store keeps what a replica must remember across a crash in a
// directory: the hard state (state.cbor) and one file per prepared
// certificate (cert-SEQ.cbor). Every write goes through a temporary file,
// fsync, rename and an fsync of the directory.
type store struct {
	dir string
}

const stateFile = "state.cbor"

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("replica: create %s: %w", dir, err)
	}
	return &store{dir: dir}, nil
}

// load reads the hard state and the certificates; a new replica has none.
func (s *store) load() (pbft.HardState, []*pbft.Prepared, error) {
	var hs pbft.HardState
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return hs, nil, fmt.Errorf("replica: read hard state: %w", err)
	default:
		h, err := pbft.DecodeHardState(b)
		if err != nil {
			return hs, nil, fmt.Errorf("replica: %s: %w", filepath.Join(s.dir, stateFile), err)
		}
		hs = *h
	}
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return hs, nil, fmt.Errorf("replica: read %s: %w", s.dir, err)
	}
	var certs []*pbft.Prepared
	for _, n := range names {
		if _, ok := certSeq(n.Name()); !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, n.Name()))
		if err != nil {
			return hs, nil, fmt.Errorf("replica: read certificate: %w", err)
		}
		p, err := pbft.DecodePrepared(b)
		if err != nil {
			return hs, nil, fmt.Errorf("replica: %s: %w", n.Name(), err)
		}
		certs = append(certs, p)
	}
	return hs, certs, nil
}

func certName(seq uint64) string { return fmt.Sprintf("cert-%020d.cbor", seq) }

func certSeq(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, "cert-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".cbor")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// save persists a Ready's hard state and certificates, then removes the
// certificates at or below the stable checkpoint.
func (s *store) save(hs *pbft.HardState, certs []*pbft.Prepared) error {
	for _, p := range certs {
		if err := s.write(certName(p.PrePrepare.Seq), pbft.EncodePrepared(p)); err != nil {
			return err
		}
	}
	if hs == nil {
		return nil
	}
	if err := s.write(stateFile, pbft.EncodeHardState(hs)); err != nil {
		return err
	}
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("replica: read %s: %w", s.dir, err)
	}
	for _, n := range names {
		if seq, ok := certSeq(n.Name()); ok && seq <= hs.Stable {
			if err := os.Remove(filepath.Join(s.dir, n.Name())); err != nil {
				return fmt.Errorf("replica: remove old certificate: %w", err)
			}
		}
	}
	return nil
}

func (s *store) write(name string, data []byte) error {
	path := filepath.Join(s.dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("replica: create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("replica: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("replica: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("replica: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replica: rename %s: %w", tmp, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("replica: open %s: %w", s.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("replica: sync %s: %w", s.dir, err)
	}
	return nil
}
