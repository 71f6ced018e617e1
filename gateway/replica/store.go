package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// store keeps what a replica must remember across a crash in a
// directory (DATA/pbft): the hard state and the prepared certificates,
// as records appended to a log, state-N.log, with one fsync for each
// Ready (a hard state changes with every vote, so a block costs a replica
// two of them, where a file each written through a temporary file, an
// fsync, a rename and a directory fsync cost four fsyncs, two renames and
// a directory listing).
//
// A record is its length (4 bytes, big-endian), the CRC-32C of its body
// (4 bytes) and its body: a kind byte, 'h' for a hard state or 'c' for a
// prepared certificate, and its CBOR (pbft.EncodeHardState,
// pbft.EncodePrepared). The last hard state in the logs is the replica's;
// a later certificate at a height replaces an earlier one (pbft.New keeps
// the highest view). A record torn by a crash can only be the last of a
// log: its fsync never returned, so nothing it holds left the replica;
// load drops it. A damaged record followed by others is an error.
//
// Each time the stable checkpoint rises, the next record goes to a new
// log, which starts with the hard state; older logs whose certificates
// are all at or below the stable checkpoint are then removed.
//
// Before this format (ledgergate up to issue 23) the hard state was
// state.cbor and each certificate cert-SEQ.cbor. Opening such a
// directory moves their contents into a new log. Every directory of this
// format holds, as state.cbor, a note that an older ledgergate fails to
// decode: it refuses to start instead of forgetting its votes.
type store struct {
	dir  string
	f    *os.File // the log appended to; nil until the first save (a new log)
	logs []logFile
	next uint64 // the number of the next log
	hs   *pbft.HardState
}

// logFile is a log on disk and the highest height of its certificates.
type logFile struct {
	name    string
	maxCert uint64
}

const (
	legacyStateFile = "state.cbor"
	recordHead      = 8
	maxRecord       = 256 << 20 // well above a certificate of the largest block
	kindHardState   = 'h'
	kindCert        = 'c'
)

// legacyNote replaces state.cbor once its contents moved to a log: it is
// not CBOR, so an older ledgergate stops at it.
const legacyNote = "ledgergate: this replica's hard state and certificates moved to state-*.log; a ledgergate that only reads state.cbor must not run on this directory\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("replica: create %s: %w", dir, err)
	}
	return &store{dir: dir}, nil
}

func logName(n uint64) string { return fmt.Sprintf("state-%020d.log", n) }

// numbered returns N of a file name prefix + N + suffix.
func numbered(name, prefix, suffix string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	if s, ok = strings.CutSuffix(s, suffix); !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// load reads the hard state and the certificates above its stable
// checkpoint; a new replica has none. It moves a directory of the
// format before into a log.
func (s *store) load() (pbft.HardState, []*pbft.Prepared, error) {
	var hs pbft.HardState
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return hs, nil, fmt.Errorf("replica: read %s: %w", s.dir, err)
	}
	var certs []*pbft.Prepared
	var legacy []string
	var legacyHS *pbft.HardState
	haveHS, noted := false, false
	for _, n := range names { // in name order: the logs by number
		name := n.Name()
		path := filepath.Join(s.dir, name)
		if _, ok := numbered(name, "cert-", ".cbor"); ok {
			b, err := os.ReadFile(path)
			if err != nil {
				return hs, nil, fmt.Errorf("replica: read certificate: %w", err)
			}
			p, err := pbft.DecodePrepared(b)
			if err != nil {
				return hs, nil, fmt.Errorf("replica: %s: %w", path, err)
			}
			certs = append(certs, p)
			legacy = append(legacy, name)
			continue
		}
		if name == legacyStateFile {
			b, err := os.ReadFile(path)
			if err != nil {
				return hs, nil, fmt.Errorf("replica: read hard state: %w", err)
			}
			noted = string(b) == legacyNote
			if !noted {
				h, err := pbft.DecodeHardState(b)
				if err != nil {
					return hs, nil, fmt.Errorf("replica: %s: %w", path, err)
				}
				legacyHS = h
				legacy = append(legacy, name)
			}
			continue
		}
		num, ok := numbered(name, "state-", ".log")
		if !ok {
			continue
		}
		lf := logFile{name: name}
		err := readLog(path, func(kind byte, body []byte) error {
			switch kind {
			case kindHardState:
				h, err := pbft.DecodeHardState(body)
				if err != nil {
					return err
				}
				hs, haveHS = *h, true
			case kindCert:
				p, err := pbft.DecodePrepared(body)
				if err != nil {
					return err
				}
				if p.PrePrepare == nil {
					return errors.New("certificate without a pre-prepare")
				}
				certs = append(certs, p)
				lf.maxCert = max(lf.maxCert, p.PrePrepare.Seq)
			default:
				return fmt.Errorf("record of unknown kind %d", kind)
			}
			return nil
		})
		if err != nil {
			return hs, nil, fmt.Errorf("replica: %s: %w", path, err)
		}
		s.logs = append(s.logs, lf)
		s.next = max(s.next, num+1)
	}
	if !haveHS && legacyHS != nil {
		// A log's hard state is newer: state.cbor is left only by a
		// migration a crash cut short.
		hs, haveHS = *legacyHS, true
	}
	certs = slices.DeleteFunc(certs, func(p *pbft.Prepared) bool { return p.PrePrepare == nil || p.PrePrepare.Seq <= hs.Stable })
	if haveHS {
		s.hs = &hs
	}
	if len(legacy) > 0 {
		if err := s.migrate(certs, legacy); err != nil {
			return hs, nil, err
		}
	} else if !noted {
		// A new directory: the note keeps an older ledgergate from
		// starting on it with no votes.
		if err := writeAtomic(s.dir, legacyStateFile, []byte(legacyNote)); err != nil {
			return hs, nil, err
		}
	}
	return hs, certs, nil
}

// migrate writes what the files of the format before held into a new
// log, then replaces state.cbor with legacyNote and removes the
// certificate files.
func (s *store) migrate(certs []*pbft.Prepared, legacy []string) error {
	if err := s.save(nil, certs); err != nil { // a new log, which starts with s.hs
		return err
	}
	if err := writeAtomic(s.dir, legacyStateFile, []byte(legacyNote)); err != nil {
		return err
	}
	for _, name := range legacy {
		if name == legacyStateFile {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
			return fmt.Errorf("replica: remove old certificate: %w", err)
		}
	}
	return nil
}

// readLog calls f with each record of the log at path. A damaged or
// truncated last record ends the log; one followed by more is an error.
func readLog(path string, f func(kind byte, body []byte) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); {
		rest := data[off:]
		if len(rest) < recordHead {
			return nil // torn head
		}
		n := int(binary.BigEndian.Uint32(rest))
		if n < 1 || n > maxRecord {
			if allZero(rest) {
				return nil // a tail the file system extended with zeros
			}
			return fmt.Errorf("record at %d: length %d", off, n)
		}
		if len(rest) < recordHead+n {
			return nil // torn body
		}
		body := rest[recordHead : recordHead+n]
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(rest[4:]) {
			if len(rest) == recordHead+n {
				return nil // torn last record
			}
			return fmt.Errorf("record at %d: checksum mismatch", off)
		}
		if err := f(body[0], body[1:]); err != nil {
			return fmt.Errorf("record at %d: %w", off, err)
		}
		off += recordHead + n
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func appendRecord(buf []byte, kind byte, cbor []byte) []byte {
	var head [recordHead]byte
	binary.BigEndian.PutUint32(head[:], uint32(1+len(cbor)))
	crc := crc32.Update(crc32.Checksum([]byte{kind}, crcTable), crcTable, cbor)
	binary.BigEndian.PutUint32(head[4:], crc)
	buf = append(buf, head[:]...)
	buf = append(buf, kind)
	return append(buf, cbor...)
}

// save persists a Ready's hard state and certificates with one fsync;
// when the stable checkpoint rose, in a new log, after which the logs
// it made obsolete are removed.
func (s *store) save(hs *pbft.HardState, certs []*pbft.Prepared) error {
	rotate := s.f == nil || (hs != nil && s.hs != nil && hs.Stable > s.hs.Stable)
	if hs != nil {
		s.hs = hs
	}
	var buf []byte
	if s.hs != nil && (rotate || hs != nil) { // a new log starts with the hard state
		buf = appendRecord(buf, kindHardState, pbft.EncodeHardState(s.hs))
	}
	var maxCert uint64
	for _, p := range certs {
		buf = appendRecord(buf, kindCert, pbft.EncodePrepared(p))
		maxCert = max(maxCert, p.PrePrepare.Seq)
	}
	if rotate {
		if err := s.startLog(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(buf); err != nil {
		return fmt.Errorf("replica: write %s: %w", s.f.Name(), err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("replica: sync %s: %w", s.f.Name(), err)
	}
	cur := &s.logs[len(s.logs)-1]
	cur.maxCert = max(cur.maxCert, maxCert)
	if rotate && s.hs != nil {
		return s.prune(s.hs.Stable)
	}
	return nil
}

// startLog closes the log appended to and creates the next, durably
// named in the directory before anything is written to it.
func (s *store) startLog() error {
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			return fmt.Errorf("replica: close %s: %w", s.f.Name(), err)
		}
		s.f = nil
	}
	name := logName(s.next)
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("replica: create %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.f, s.next = f, s.next+1
	s.logs = append(s.logs, logFile{name: name})
	return nil
}

// prune removes the logs before the current one whose certificates are
// all at or below stable: the current log starts with the hard state.
func (s *store) prune(stable uint64) error {
	keep := s.logs[:0]
	for i, lf := range s.logs {
		if i < len(s.logs)-1 && lf.maxCert <= stable {
			if err := os.Remove(filepath.Join(s.dir, lf.name)); err != nil {
				return fmt.Errorf("replica: remove %s: %w", lf.name, err)
			}
			continue
		}
		keep = append(keep, lf)
	}
	s.logs = keep
	return nil
}

// close closes the log appended to.
func (s *store) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// writeAtomic writes a file through a temporary file, fsync, rename and
// a directory fsync.
func writeAtomic(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
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
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("replica: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("replica: sync %s: %w", dir, err)
	}
	return nil
}
