package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/daemon"
)

func cmdBackup(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "backup")
	out := fs.String("out", "", "the backup file to write: a tar file, gzip-compressed if the name ends in .gz or .tgz; FILE.sha256 gets its checksum")
	withKeys := fs.Bool("with-keys", false, "include the private keys of the data directory (the software node key, admin.key, operator.enc, coap-dtls.key): keep such a backup secret. A TPM key never leaves the TPM")
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	data := dataFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument "+pos[0])
	}
	if err := need(fs, "out"); err != nil {
		return err
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return fmt.Errorf("%s exists (use --force to overwrite it)", *out)
	}
	cfgFile := *fs.gw.config
	if cfgFile == "" {
		cfgFile = e.existingDefaultConfig()
	}
	// Into a temporary file beside FILE, renamed at the end: an
	// interrupted backup leaves no file that looks whole.
	dir := filepath.Dir(*out)
	f, err := os.CreateTemp(dir, "."+filepath.Base(*out)+".partial-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	var w io.Writer = bw
	var zw *gzip.Writer
	if strings.HasSuffix(*out, ".gz") || strings.HasSuffix(*out, ".tgz") {
		zw = gzip.NewWriter(bw)
		w = zw
	}
	fmt.Fprintf(e.stderr, "backup: %s: the files, the index, then the block log\n", *data)
	progress := func(done, total uint64) { fmt.Fprintf(e.stderr, "backup: %d of %d blocks\n", done, total) }
	m, err := daemon.Backup(ctx, w, daemon.BackupOptions{DataDir: *data, ConfigFile: cfgFile, WithKeys: *withKeys,
		Version: version, TempDir: dir, Progress: progress})
	if err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	f = nil
	if err := os.Rename(tmp, *out); err != nil {
		os.Remove(tmp)
		return err
	}
	hexSum := hex.EncodeToString(sum.Sum(nil))
	if err := os.WriteFile(*out+".sha256", []byte(hexSum+"  "+filepath.Base(*out)+"\n"), 0o644); err != nil {
		return err
	}
	keys := "no private keys"
	if *withKeys {
		keys = "WITH the private keys of the data directory: keep it secret"
	}
	fmt.Fprintf(e.stdout, "backup %s: chain %s, %d blocks (head %s), index at %d, %d files, %d bytes, %s\nsha256 %s (in %s.sha256)\n",
		*out, m.ChainID, m.Height, m.HeadHash, m.IndexHeight, len(m.Files)+1, size, keys, hexSum, *out)
	return nil
}

func cmdRestore(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "restore")
	force := fs.Bool("force", false, "restore over a data directory that is not empty: it is moved aside to DIR.replaced-TIME, not deleted")
	noVerify := fs.Bool("no-verify", false, "skip the check of the whole chain (signatures, certificates; hours for a long chain on a Pi): checksums, CRCs and the head block are still checked; run 'ledger verify' before starting the gateway")
	data := dataFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want exactly one backup FILE")
	}
	file := pos[0]
	// The whole file's checksum first, if the backup's .sha256 is beside it.
	if want, err := os.ReadFile(file + ".sha256"); err == nil {
		got, err := fileSHA256(file)
		if err != nil {
			return err
		}
		if f := strings.Fields(string(want)); len(f) == 0 || f[0] != got {
			return fmt.Errorf("%s: SHA-256 %s is not the one in %s.sha256: the backup is damaged; nothing was written", file, got, file)
		}
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	res, err := daemon.Restore(ctx, in, daemon.RestoreOptions{DataDir: *data, Force: *force, SkipVerify: *noVerify,
		Progress: func(done, total uint64) { fmt.Fprintf(e.stderr, "verified %d of %d blocks\n", done, total) }})
	if errors.Is(err, daemon.ErrBadBackup) {
		return fmt.Errorf("%s: %w; nothing was written to %s", file, err, *data)
	}
	if err != nil {
		return err
	}
	m := res.Manifest
	for _, w := range res.Verified.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	if res.Replaced != "" {
		fmt.Fprintf(e.stderr, "moved the old contents of %s to %s\n", *data, res.Replaced)
	}
	fmt.Fprintf(e.stdout, "restored %s into %s: chain %s, %d blocks (head %s), backed up %s\n",
		file, *data, m.ChainID, m.Height, m.HeadHash, m.Created.Format("2006-01-02T15:04:05Z"))
	if *noVerify {
		fmt.Fprintf(e.stdout, "the chain was not verified (--no-verify): run 'ledgergate ledger verify --data %s' before starting the gateway\n", *data)
	} else {
		fmt.Fprintf(e.stdout, "ledger verify: ok: %d blocks, %d txs, tip %x\n", res.Verified.Blocks, res.Verified.Txs, res.Verified.Tip)
		if vm := res.Verified.Members; vm != nil && len(vm.Changes()) > 0 {
			fmt.Fprintf(e.stdout, "ledger verify: members changed at heights %s\n", describeChanges(vm.Changes()))
		}
	}
	if m.Base > 0 {
		fmt.Fprintf(e.stdout, "the block log starts after block %d: the gateway backed up had joined from a snapshot, which the backup holds with its proof and the membership proof (docs/snapshots.md)\n", m.Base)
	}
	if _, err := os.Stat(filepath.Join(*data, daemon.BackupConfigFile)); err == nil {
		fmt.Fprintf(e.stdout, "the configuration it ran with is %s: compare it with the one this gateway is to run with\n",
			filepath.Join(*data, daemon.BackupConfigFile))
	}
	if !m.WithKeys {
		fmt.Fprintf(e.stdout, "the backup holds no private keys: before starting, put back the node key "+
			"(a software key: %s; a TPM key is in its TPM) and, if used, admin.key and operator.enc (docs/operations.md)\n",
			filepath.Join(*data, daemon.NodeKeyFile))
	}
	fmt.Fprintf(e.stdout, "files belong to the user who ran restore: chown -R the directory to the gateway's user (ledgergate) before starting it\n")
	return nil
}

// fileSHA256 is the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
