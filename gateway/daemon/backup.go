package daemon

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// A backup is a tar file (gzip-compressed if its name ends in .gz or
// .tgz; restore tells by its first bytes) of a data directory
// (docs/operations.md):
//
//	genesis.json, api-tokens.json, egress/NAME.cursor, ...   the data directory's files
//	index.db                    a consistent copy of the index (VACUUM INTO)
//	blobs/...                   the off-chain blobs the ledger names by hash
//	blocks/00000001.log, ...    the block log up to Height, as segment files
//	blocks/BASE, snapshots/...  only for a log that starts from a snapshot
//	                            (Base): its base, that snapshot and its proof
//	ledgergate.toml.backup      the configuration the gateway ran with, if any
//	MANIFEST.json               last: BackupManifest
//
// Left out: the consensus memory (pbft/), the state snapshots (snapshots/:
// derived from the log, and the running gateway writes and removes them
// while a backup reads; a restored gateway replays its log once and
// writes a new one), the log's LOCK, temporary files
// (names starting with "." or ending in ".tmp"), and, unless WithKeys,
// private keys: files whose names end in ".key" or ".enc" (node.key,
// admin.key, coap-dtls.key, operator.enc). A TPM key is never in one.
//
// Consistency with a running gateway: the small files are read first,
// then the index copied, then the block log opened read-only, which fixes
// Height; the blobs are read last. The gateway writes a block to the log
// before the index applies it and egress cursors move after it, so what
// the backup holds of them is at or below Height, and the index catches
// up from the log on restore; a blob is stored before the tx naming it
// is submitted, so every blob a block up to Height names is in it.

// Backup file names and the format name.
const (
	BackupManifestFile = "MANIFEST.json"
	BackupConfigFile   = "ledgergate.toml.backup"
	BackupFormat       = "ledgergate-backup/1"
)

// backupSegmentBytes bounds the block segments a backup writes (a tar
// member's size comes before its bytes, so a segment is built in memory).
const backupSegmentBytes = 16 << 20

// BackupManifest describes a backup: what it holds and the checksums that
// prove it whole.
type BackupManifest struct {
	Format      string    `json:"format"`
	Created     time.Time `json:"created"`
	Version     string    `json:"ledgergate_version"`
	ChainID     string    `json:"chain_id"`
	GenesisHash string    `json:"genesis_hash"` // hex SHA-256 of the genesis
	Height      uint64    `json:"height"`       // the height of the last block in the backup
	// Base is the height the block log starts after (a gateway that
	// joined from a snapshot; 0: block 1): the backup then holds
	// blocks/BASE, the snapshot at Base and its proof.
	Base     uint64 `json:"base_height,omitempty"`
	HeadHash string `json:"head_block_hash,omitempty"`
	// IndexHeight is the height of index.db in the backup; restore
	// brings it up to Height from the log.
	IndexHeight uint64 `json:"index_height"`
	WithKeys    bool   `json:"with_keys"`
	// Files lists every other file of the backup in the order written.
	Files []BackupFile `json:"files"`
	// ContentSHA256 is the SHA-256 of the lines "SHA256  PATH\n" of Files
	// in order: one checksum of the whole content.
	ContentSHA256 string `json:"content_sha256"`
}

// BackupFile is one file of a backup.
type BackupFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// contentSum is the checksum of a list of files, as ContentSHA256.
func contentSum(files []BackupFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s  %s\n", f.SHA256, f.Path)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BackupOptions say what to back up.
type BackupOptions struct {
	DataDir    string
	ConfigFile string // the gateway's configuration file, "" if none
	WithKeys   bool
	// TempDir holds the index copy while it is written (not /tmp, which
	// may be in memory); "" is os.TempDir().
	TempDir string
	Version string
	// Progress, if set, is called as blocks are written.
	Progress func(done, total uint64)
}

// isKeyFile reports whether a data directory file is a private key.
func isKeyFile(name string) bool {
	return strings.HasSuffix(name, ".key") || strings.HasSuffix(name, ".enc")
}

// Backup writes a backup of o.DataDir to w, from a running gateway or a
// stopped one, and returns its manifest.
func Backup(ctx context.Context, w io.Writer, o BackupOptions) (*BackupManifest, error) {
	dir := o.DataDir
	g, err := LoadGenesis(dir)
	if err != nil {
		return nil, err
	}
	gh := g.Hash()
	m := &BackupManifest{Format: BackupFormat, Created: time.Now().UTC(), Version: o.Version, ChainID: g.ChainID,
		GenesisHash: hex.EncodeToString(gh[:]), WithKeys: o.WithKeys}
	tw := tar.NewWriter(w)
	bw := &backupWriter{tw: tw, m: m}

	// 1. The small files of the data directory.
	var blobs []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name := d.Name()
		switch {
		case rel == ".":
			return nil
		case d.IsDir() && (rel == BlocksDir || rel == PBFTDir || rel == SnapshotsDir || strings.HasPrefix(name, ".")):
			return fs.SkipDir
		case d.IsDir():
			return nil
		case !d.Type().IsRegular(), strings.HasPrefix(name, "."), strings.HasSuffix(name, ".tmp"), rel == BackupConfigFile,
			rel == IndexFile, rel == IndexFile+"-wal", rel == IndexFile+"-shm", rel == IndexFile+"-journal",
			isKeyFile(name) && !o.WithKeys:
			return nil
		case strings.HasPrefix(rel, BlobsDir+"/"):
			blobs = append(blobs, rel) // after the height is fixed
			return nil
		}
		return bw.addFile(filepath.Join(dir, rel), rel)
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: backup %s: %w", dir, err)
	}
	if o.ConfigFile != "" {
		if err := bw.addFile(o.ConfigFile, BackupConfigFile); err != nil {
			return nil, fmt.Errorf("daemon: backup: %w", err)
		}
	}

	// 2. The index, copied before the log's height is fixed: its height
	// is at or below the log's.
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); err == nil {
		tmp, err := os.MkdirTemp(o.TempDir, ".ledgergate-backup-")
		if err != nil {
			return nil, fmt.Errorf("daemon: backup: %w", err)
		}
		defer os.RemoveAll(tmp)
		cp := filepath.Join(tmp, IndexFile)
		if m.IndexHeight, err = index.CopyInto(ctx, filepath.Join(dir, IndexFile), cp); err != nil {
			return nil, err
		}
		if err := bw.addFile(cp, IndexFile); err != nil {
			return nil, fmt.Errorf("daemon: backup: %w", err)
		}
		os.Remove(cp)
	}

	// 3. The block log: a read-only snapshot fixes the height.
	// A directory that never ran has no log: height 0.
	var blog *ledger.Log
	if _, err := os.Stat(filepath.Join(dir, BlocksDir)); err == nil {
		blog, err = ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{ReadOnly: true})
		if err != nil {
			return nil, ExplainLogError(err, dir, len(g.Nodes) > 1)
		}
		defer blog.Close()
		m.Base, _ = blog.Base()
		m.Height = blog.Height()
	}
	if m.IndexHeight > m.Height {
		return nil, fmt.Errorf("daemon: backup: the index (height %d) is ahead of the block log (%d)", m.IndexHeight, m.Height)
	}

	// 4. The blobs.
	for _, rel := range blobs {
		if err := bw.addFile(filepath.Join(dir, rel), rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("daemon: backup: %w", err)
		}
	}

	// 5. The blocks, as segment files.
	var (
		seg  []byte
		seq  uint32 = 1
		last []byte
	)
	flush := func() error {
		if len(seg) == 0 {
			return nil
		}
		if err := bw.addBytes(seg, BlocksDir+"/"+ledger.LogSegmentName(seq)); err != nil {
			return fmt.Errorf("daemon: backup: %w", err)
		}
		seq++
		seg = seg[:0]
		return nil
	}
	var records uint64
	if blog != nil {
		records = blog.Len()
	}
	for i := range records {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, err := blog.Read(i)
		if err != nil {
			return nil, ExplainLogError(err, dir, len(g.Nodes) > 1)
		}
		if len(seg) > 0 && len(seg)+8+len(rec) > backupSegmentBytes {
			if err := flush(); err != nil {
				return nil, err
			}
			if o.Progress != nil {
				o.Progress(m.Base+i, m.Height)
			}
		}
		seg = ledger.AppendLogRecord(seg, rec)
		last = rec
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if last != nil {
		b, err := ledger.DecodeBlock(last)
		if err != nil {
			return nil, fmt.Errorf("daemon: backup: block %d: %w", m.Height, err)
		}
		hh := b.Header.Hash()
		m.HeadHash = hex.EncodeToString(hh[:])
	}
	if o.Progress != nil {
		o.Progress(m.Height, m.Height)
	}
	// A log that starts from a snapshot (the gateway joined from one):
	// its base, the snapshot there and its proof, and the membership
	// proof of the member changes at or below the base, without which it
	// can be neither replayed nor verified. The gateway never removes
	// them. A gateway that joined before member changes has no
	// membership proof: its chain had none.
	if m.Base > 0 {
		files := []string{BlocksDir + "/" + ledger.LogBaseFile, SnapshotsDir + "/" + snapshot.FileName(m.Base), SnapshotsDir + "/" + snapshot.BaseProofFile}
		members := BlocksDir + "/" + ledger.LogMembersFile
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(members))); err == nil {
			files = append(files, members)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("daemon: backup: %w", err)
		}
		for _, rel := range files {
			if err := bw.addFile(filepath.Join(dir, filepath.FromSlash(rel)), rel); err != nil {
				return nil, fmt.Errorf("daemon: backup of a gateway that joined from a snapshot: %w", err)
			}
		}
	}

	// 6. The manifest, last.
	m.ContentSHA256 = contentSum(m.Files)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: BackupManifestFile, Mode: 0o644, Size: int64(len(mb)), ModTime: m.Created,
		Typeflag: tar.TypeReg}); err != nil {
		return nil, fmt.Errorf("daemon: backup: %w", err)
	}
	if _, err := tw.Write(mb); err != nil {
		return nil, fmt.Errorf("daemon: backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("daemon: backup: %w", err)
	}
	return m, nil
}

// backupWriter adds files to a backup and lists them in its manifest.
type backupWriter struct {
	tw *tar.Writer
	m  *BackupManifest
}

// addFile adds the file at src as name.
func (b *backupWriter) addFile(src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	mode := int64(0o640)
	if isKeyFile(path.Base(name)) {
		mode = 0o600
	}
	if err := b.tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	// A file that changes size while read (a cursor rewritten in place
	// would not: they are replaced by rename) fails the tar writer.
	n, err := io.Copy(io.MultiWriter(b.tw, h), io.LimitReader(f, fi.Size()))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("%s: shrank while read", src)
	}
	b.m.Files = append(b.m.Files, BackupFile{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// addBytes adds data as name.
func (b *backupWriter) addBytes(data []byte, name string) error {
	if err := b.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(data)), ModTime: b.m.Created, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := b.tw.Write(data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	b.m.Files = append(b.m.Files, BackupFile{Path: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}

// RestoreOptions say where and how to restore.
type RestoreOptions struct {
	DataDir string
	// Force restores over a directory that is not empty: it is moved
	// aside to DataDir.replaced-TIME, never deleted.
	Force bool
	// SkipVerify leaves out the check of the whole chain (signatures,
	// certificates, Merkle roots): the checksums, the block log's CRCs,
	// the height and the head block's hash are still checked. The caller
	// tells the operator to run `ledger verify`.
	SkipVerify bool
	Logger     *slog.Logger // may be nil
	// Progress, if set, is called as the restored chain is verified.
	Progress func(done, total uint64)
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	Manifest *BackupManifest
	Verified chain.Summary // the check of `ledger verify`, run on the restored log (zero with SkipVerify)
	Replaced string        // where a non-empty DataDir was moved, with Force
}

// ErrBadBackup marks a backup that is damaged, truncated or not a backup.
var ErrBadBackup = errors.New("daemon: backup damaged")

// ErrNotEmpty reports a restore target that already holds files.
var ErrNotEmpty = errors.New("daemon: restore target is not empty")

// Restore writes the backup read from r into o.DataDir: every checksum is
// checked, the block log rebuilt from its segments and checked, the index
// brought up to the log's height (or rebuilt), and the whole chain
// verified as `ledger verify` does. It works in a temporary directory
// beside DataDir and renames it into place only at the end: a damaged
// backup leaves nothing behind.
func Restore(ctx context.Context, r io.Reader, o RestoreOptions) (res *RestoreResult, err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Clean(o.DataDir)
	ents, err := os.ReadDir(dir)
	exists := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("daemon: restore to %s: %w", dir, err)
	case len(ents) > 0 && !o.Force:
		return nil, fmt.Errorf("%w: %s holds %d entries (restore into an empty or new directory, or use --force to move it aside)", ErrNotEmpty, dir, len(ents))
	}
	if len(ents) > 0 {
		// Never move a running gateway's directory aside.
		if fi, err := os.Stat(filepath.Join(dir, BlocksDir)); err == nil && fi.IsDir() {
			lock, err := ledger.LockLog(filepath.Join(dir, BlocksDir))
			if err != nil {
				return nil, fmt.Errorf("daemon: restore over %s: %w (stop the gateway first)", dir, err)
			}
			defer lock.Close()
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".restore-")
	if err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o750); err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	m, err := extract(r, tmp)
	if err != nil {
		return nil, err
	}
	res = &RestoreResult{Manifest: m}

	// The genesis the manifest names.
	g, err := LoadGenesis(tmp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if gh := g.Hash(); hex.EncodeToString(gh[:]) != m.GenesisHash || g.ChainID != m.ChainID {
		return nil, fmt.Errorf("%w: the genesis is not the one of the manifest (chain %s)", ErrBadBackup, m.ChainID)
	}
	// The block log: every record's CRC on open, the height and head hash
	// of the manifest.
	blog, err := ledger.OpenLog(filepath.Join(tmp, BlocksDir), ledger.LogOptions{MinRecords: m.Height})
	if err != nil {
		return nil, fmt.Errorf("%w: block log: %v", ErrBadBackup, err)
	}
	defer func() {
		if blog != nil {
			blog.Close()
		}
	}()
	if base, _ := blog.Base(); base != m.Base {
		return nil, fmt.Errorf("%w: the block log starts after block %d, the manifest says %d", ErrBadBackup, base, m.Base)
	}
	if blog.Height() != m.Height {
		return nil, fmt.Errorf("%w: the block log ends at block %d, the manifest says %d", ErrBadBackup, blog.Height(), m.Height)
	}
	if m.Height > m.Base {
		rec, err := blog.ReadHeight(m.Height)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
		}
		b, err := ledger.DecodeBlock(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrBadBackup, m.Height, err)
		}
		if hh := b.Header.Hash(); hex.EncodeToString(hh[:]) != m.HeadHash {
			return nil, fmt.Errorf("%w: head block %d is not the one of the manifest", ErrBadBackup, m.Height)
		}
	}
	// The whole chain, as `ledger verify` checks it.
	if !o.SkipVerify {
		var from *state.State
		if m.Base > 0 {
			// From the snapshot the log starts from, proven certified.
			if from, err = BaseState(tmp, g, blog); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
			}
			if _, err := BaseProof(tmp, g, blog); err != nil {
				return nil, fmt.Errorf("%w: the base snapshot's proof: %v", ErrBadBackup, err)
			}
		}
		if res.Verified, err = chain.VerifyFrom(g, blog, from, o.Progress); err != nil {
			return nil, fmt.Errorf("%w: verify: %v", ErrBadBackup, err)
		}
	}
	// The index: the copy caught up to the log's height, or rebuilt.
	idx, err := index.Open(filepath.Join(tmp, IndexFile))
	if err != nil {
		return nil, err
	}
	err = CatchUpIndex(ctx, idx, blog, logger)
	if cerr := idx.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := blog.Close(); err != nil {
		return nil, err
	}
	blog = nil
	if err := syncTree(tmp); err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	// Into place.
	switch {
	case len(ents) > 0:
		res.Replaced = fmt.Sprintf("%s.replaced-%s", dir, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(dir, res.Replaced); err != nil {
			return nil, fmt.Errorf("daemon: restore: move %s aside: %w", dir, err)
		}
	case exists:
		if err := os.Remove(dir); err != nil { // empty
			return nil, fmt.Errorf("daemon: restore: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	if err := syncDirPath(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("daemon: restore: %w", err)
	}
	return res, nil
}

// maxManifestBytes bounds the manifest a restore reads.
const maxManifestBytes = 64 << 20

// extract reads the tar (or gzip-compressed tar) r into dir and checks it
// against its manifest.
func extract(r io.Reader, dir string) (*BackupManifest, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrBadBackup, err)
		}
		src = zr
	}
	tr := tar.NewReader(src)
	got := map[string]BackupFile{}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: truncated or not a backup: %v", ErrBadBackup, err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("%w: %s after the manifest", ErrBadBackup, hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg || !filepath.IsLocal(hdr.Name) || path.Clean(hdr.Name) != hdr.Name || hdr.Size < 0 {
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrBadBackup, hdr.Name)
		}
		if _, dup := got[hdr.Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrBadBackup, hdr.Name)
		}
		if hdr.Name == BackupManifestFile {
			if hdr.Size > maxManifestBytes {
				return nil, fmt.Errorf("%w: manifest of %d bytes", ErrBadBackup, hdr.Size)
			}
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("%w: manifest: %v", ErrBadBackup, err)
			}
			continue
		}
		f, err := writeRestored(dir, hdr, tr)
		if err != nil {
			return nil, err
		}
		got[hdr.Name] = f
	}
	if manifest == nil {
		return nil, fmt.Errorf("%w: no %s (truncated?)", ErrBadBackup, BackupManifestFile)
	}
	var m BackupManifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadBackup, err)
	}
	if m.Format != BackupFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadBackup, m.Format, BackupFormat)
	}
	if contentSum(m.Files) != m.ContentSHA256 {
		return nil, fmt.Errorf("%w: the manifest's content checksum does not match its file list", ErrBadBackup)
	}
	for _, want := range m.Files {
		f, ok := got[want.Path]
		if !ok {
			return nil, fmt.Errorf("%w: %s is missing", ErrBadBackup, want.Path)
		}
		if f != want {
			return nil, fmt.Errorf("%w: %s: SHA-256 %s, %d bytes; the manifest says %s, %d bytes", ErrBadBackup, want.Path, f.SHA256, f.Size, want.SHA256, want.Size)
		}
		delete(got, want.Path)
	}
	if len(got) > 0 {
		extra := slices.Sorted(maps.Keys(got))
		return nil, fmt.Errorf("%w: %s is not in the manifest", ErrBadBackup, strings.Join(extra, ", "))
	}
	return &m, nil
}

// writeRestored writes one file of a backup under dir and returns what it
// wrote.
func writeRestored(dir string, hdr *tar.Header, r io.Reader) (BackupFile, error) {
	p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return BackupFile{}, fmt.Errorf("daemon: restore: %w", err)
	}
	mode := fs.FileMode(0o640)
	if isKeyFile(path.Base(hdr.Name)) {
		mode = 0o600
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return BackupFile{}, fmt.Errorf("daemon: restore: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		f.Close()
		return BackupFile{}, fmt.Errorf("%w: %s: truncated or damaged: %v", ErrBadBackup, hdr.Name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return BackupFile{}, fmt.Errorf("daemon: restore: %w", err)
	}
	if err := f.Close(); err != nil {
		return BackupFile{}, fmt.Errorf("daemon: restore: %w", err)
	}
	return BackupFile{Path: hdr.Name, Size: n, SHA256: hexSum(h)}, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// syncTree fsyncs every directory under root (the files were synced as
// written).
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := syncDirPath(d); err != nil {
			return err
		}
	}
	return nil
}

// syncDirPath fsyncs the directory at p.
func syncDirPath(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
