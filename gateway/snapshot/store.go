package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Keep is how many snapshot files a Store keeps: the newest, and the one
// before in case the newest is damaged.
const Keep = 2

const (
	suffix    = ".snap"
	tmpSuffix = ".tmp"
	nameLen   = 20 // digits of a height in a file name
)

// ErrDamaged reports a snapshot file whose bytes do not match the hash
// they end with.
var ErrDamaged = errors.New("snapshot: file damaged")

// Store is a directory of snapshot files.
type Store struct {
	dir string
	// keep, if set, names a height whose file pruning spares besides the
	// newest Keep: the newest certified snapshot, which peers may fetch.
	keep func() uint64
	// base is the height of the snapshot a block log that starts from one
	// starts from (0: none): never pruned, as the log cannot be replayed
	// or verified without it.
	base uint64
}

// SpareBase makes pruning spare the file of height h, the base of a block
// log that starts from a snapshot. Call it before the store is written to.
func (s *Store) SpareBase(h uint64) { s.base = h }

// Spare makes pruning spare the file of the height f returns (0: none)
// besides the newest Keep. Call it before the store is written to.
func (s *Store) Spare(f func() uint64) { s.keep = f }

// Open opens (creating it) the snapshot directory dir and removes the
// temporary files of writes a crash interrupted.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("snapshot: remove interrupted write: %w", err)
			}
		}
	}
	return &Store{dir: dir}, nil
}

// OpenReadOnly opens the snapshot directory dir to read it alone: it
// creates and removes nothing (a running gateway may be writing to it).
func OpenReadOnly(dir string) (*Store, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("snapshot: %s: not a directory (%v)", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func fileName(height uint64) string { return fmt.Sprintf("%0*d%s", nameLen, height, suffix) }

// Heights lists the heights of the snapshot files, newest first. Files
// that are not snapshots are ignored.
func (s *Store) Heights() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var hs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || len(name) != nameLen || !e.Type().IsRegular() {
			continue
		}
		h, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		hs = append(hs, h)
	}
	slices.Sort(hs)
	slices.Reverse(hs)
	return hs, nil
}

// Write stores enc, the encoding of the snapshot at height, atomically:
// a temporary file is written and fsynced, renamed into place, and the
// directory fsynced. Then only the newest Keep files are kept.
func (s *Store) Write(height uint64, enc []byte) error {
	sum := sha256.Sum256(enc)
	f, err := os.CreateTemp(s.dir, fileName(height)+".*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("snapshot: write %s: %w", tmp, err)
	}
	if _, err := f.Write(enc); err != nil {
		return fail(err)
	}
	if _, err := f.Write(sum[:]); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, fileName(height))); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	return s.prune()
}

// baseProofFile holds the proof that the snapshot a block log starts
// from (a gateway that joined from one) was certified: the encoded
// ledger.SnapshotProof it was accepted with.
const baseProofFile = BaseProofFile

// BaseProofFile is the name of the base proof in the snapshot directory.
const BaseProofFile = "base.proof"

// FileName is the name of the snapshot file of height h in its directory.
func FileName(h uint64) string { return fileName(h) }

// WriteBaseProof stores proof, the encoded ledger.SnapshotProof of the
// snapshot the block log starts from, atomically (a temporary file
// written, fsynced and renamed; the directory fsynced).
func (s *Store) WriteBaseProof(proof []byte) error {
	tmp := filepath.Join(s.dir, baseProofFile+"."+strconv.Itoa(os.Getpid())+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	_, err = f.Write(proof)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, baseProofFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot: write base proof: %w", err)
	}
	return syncDir(s.dir)
}

// ReadBaseProof reads what WriteBaseProof stored (an error wrapping
// fs.ErrNotExist if nothing).
func (s *Store) ReadBaseProof() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, baseProofFile))
	if err != nil {
		return nil, fmt.Errorf("snapshot: read base proof: %w", err)
	}
	return b, nil
}

// prune removes all but the newest Keep snapshot files.
func (s *Store) prune() error {
	hs, err := s.Heights()
	if err != nil {
		return err
	}
	var spare uint64
	if s.keep != nil {
		spare = s.keep()
	}
	var errs []error
	for _, h := range hs[min(Keep, len(hs)):] {
		if h == spare || h == s.base {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, fileName(h))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("snapshot: prune: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync %s: %w", dir, err)
	}
	return nil
}

// Read returns the encoding of the snapshot at height, after checking it
// against the hash the file ends with (ErrDamaged if not).
func (s *Store) Read(height uint64) ([]byte, error) {
	name := filepath.Join(s.dir, fileName(height))
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if fi.Size() > state.MaxSnapshotBytes+sha256.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrDamaged, name, fi.Size(), state.MaxSnapshotBytes)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if len(data) < sha256.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrDamaged, name, len(data))
	}
	enc, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(enc); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: %s: its SHA-256 is %x, the file says %x", ErrDamaged, name, got, sum)
	}
	return enc, nil
}

// Loaded says where a start took its state from.
type Loaded struct {
	// Height is the snapshot's height; 0: no snapshot was usable and the
	// state is new (the whole log is to be replayed).
	Height uint64
	Hash   [32]byte // the snapshot's hash (SHA-256 of its encoding)
	// Skipped are the snapshots tried and refused, newest first, each
	// with why.
	Skipped []error
}

// Load returns the state of the newest snapshot in s that is of g's
// chain, whose height is within log and whose tip is the hash of log's
// block at that height (or the log's base hash, for a snapshot at the
// base of a log that starts from one); without one, a new state. Every
// snapshot refused is logged (warn) with why; only a failure to build a
// new state is an error, and so is finding none usable for a log that
// starts from a snapshot (it cannot be replayed from block 1).
func Load(s *Store, g *ledger.Genesis, log *ledger.Log, logger *slog.Logger) (*state.State, Loaded, error) {
	var ld Loaded
	hs, err := s.Heights()
	if err != nil {
		ld.Skipped = append(ld.Skipped, err)
		logger.Warn("cannot list snapshots; replaying the whole block log", "dir", s.dir, "err", err)
	}
	for _, h := range hs {
		st, sum, err := loadOne(s, g, log, h)
		if err != nil {
			ld.Skipped = append(ld.Skipped, err)
			logger.Warn("snapshot not usable, skipped", "height", h, "err", err)
			continue
		}
		ld.Height, ld.Hash = h, sum
		return st, ld, nil
	}
	if base, _ := log.Base(); base > 0 {
		return nil, ld, fmt.Errorf("snapshot: the block log starts after block %d (the gateway joined from a snapshot) and no snapshot at or above it is usable: remove the data directory's blocks and snapshots to join again, or restore a backup", base)
	}
	st, err := state.New(g)
	return st, ld, err
}

// loadOne reads and checks the snapshot at height h.
func loadOne(s *Store, g *ledger.Genesis, log *ledger.Log, h uint64) (*state.State, [32]byte, error) {
	base, baseHash := log.Base()
	if n := log.Height(); h == 0 || h < base || h > n {
		return nil, [32]byte{}, fmt.Errorf("snapshot: height %d is not within the block log (blocks %d to %d)", h, base+1, n)
	}
	// The snapshot at the base of a log that starts from one is checked
	// against the base's hash: the block is not in the log.
	want := baseHash
	if h > base {
		data, err := log.ReadHeight(h)
		if err != nil {
			return nil, [32]byte{}, err
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("snapshot: block %d: %w", h, err)
		}
		want = b.Header.Hash()
	}
	enc, err := s.Read(h)
	if err != nil {
		return nil, [32]byte{}, err
	}
	st, err := state.Restore(g, enc)
	if err != nil {
		return nil, [32]byte{}, err
	}
	height, tip := st.Tip()
	if height != h || tip != want {
		return nil, [32]byte{}, fmt.Errorf("snapshot: the file of height %d holds the state at block %d with tip %x; the log's block %d is %x", h, height, tip, h, want)
	}
	return st, state.SnapshotHash(enc), nil
}

// ErrNotCertified wraps every refusal of Accept: the snapshot a peer
// offered is not one a quorum certified.
var ErrNotCertified = errors.New("snapshot: not certified")

// Accepted is a snapshot Accept took: its state, the proof that it is
// certified, and the membership proof it was checked with (verified: it
// proves at least the member changes committed at or below the
// snapshot's height, and those after it the peer knew of, whose sets may
// certify the attestations), which a block log that starts from it
// stores beside its base (ledger.Log.SetBaseMembers): the gateway never
// has the blocks of the changes at or below it.
type Accepted struct {
	State   *state.State
	Proof   *ledger.SnapshotProof
	Members ledger.MembershipProof
}

// Accept checks a snapshot a peer offered, data with the encoded proof
// that it is certified and the encoded membership proof of the chain's
// member changes, with nothing but the genesis: the membership proof
// must verify (ledger.VerifyMembership), the snapshot proof with the
// member sets it proves (ledger.Members.VerifySnapshotProof), data must
// hash to the proof's hash and decode as the state at the proof's
// height, and that state's member history must be the one the membership
// proof proves up to that height. An empty members (nil) is the proof of
// a chain whose members never changed. All three inputs are outside
// bytes: anything else is an error wrapping ErrNotCertified.
func Accept(g *ledger.Genesis, data, proof, members []byte) (*Accepted, error) {
	var mp ledger.MembershipProof
	if len(members) > 0 {
		var err error
		if mp, err = ledger.DecodeMembershipProof(members); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
		}
	}
	m, err := ledger.VerifyMembership(g, mp)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
	}
	p, err := ledger.DecodeSnapshotProof(proof)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
	}
	if err := m.VerifySnapshotProof(p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
	}
	if sum := state.SnapshotHash(data); !bytes.Equal(sum[:], p.Hash) {
		return nil, fmt.Errorf("%w: the snapshot's %d bytes hash to %x, the certified hash at %d is %x", ErrNotCertified, len(data), sum, p.Height, p.Hash)
	}
	st, err := state.Restore(g, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
	}
	if h, _ := st.Tip(); h != p.Height {
		return nil, fmt.Errorf("%w: the snapshot is of height %d, certified at %d", ErrNotCertified, h, p.Height)
	}
	// The changes at or below the snapshot's height: the state must hold
	// exactly them.
	i := 0
	for i < len(mp) && mp[i].Header.Height <= p.Height {
		i++
	}
	bm, err := ledger.VerifyMembership(g, mp[:i])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCertified, err)
	}
	if !bm.Equal(st.Members()) {
		return nil, fmt.Errorf("%w: the membership proof proves %d member change(s) at or below height %d, the snapshot's state holds %d",
			ErrNotCertified, len(bm.Changes()), p.Height, len(st.Members().Changes()))
	}
	return &Accepted{State: st, Proof: p, Members: mp}, nil
}
