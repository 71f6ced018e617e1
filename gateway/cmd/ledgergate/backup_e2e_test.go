package main

import (
	"archive/tar"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// snapshot copies the acknowledged ids.
func (a *ackSet) snapshot() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.ids)
}

// TestBackupUnderLoad is the must-show of backup and restore: devices
// publish over MQTT (QoS 1) to a real gateway; the records acknowledged
// (PUBACK) before `ledgergate backup` starts are noted; the backup runs
// while the devices go on publishing; it is restored into a fresh data
// directory, `ledger verify` passes there, and a gateway started on it
// holds every one of those records exactly once.
func TestBackupUnderLoad(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	const devices, maxPerDevice, before = 8, 3000, 300
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = a.enroll(t, g.api, "dev-"+strconv.Itoa(i), ledger.ES256)
	}

	var acked ackSet
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		loadErr []error
	)
	fail := func(err error) {
		errMu.Lock()
		loadErr = append(loadErr, err)
		errMu.Unlock()
	}
	for i := range devices {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := "dev-" + strconv.Itoa(i)
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			cl, err := device.Dial(dctx, id, keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
			dcancel()
			if err != nil {
				fail(fmt.Errorf("%s: dial: %w", id, err))
				return
			}
			defer cl.Close()
			for seq := uint64(1); seq <= maxPerDevice && ctx.Err() == nil; seq++ {
				env, err := device.SignRecord(keys[i], a.chainID, ledger.Record{DeviceID: id, Stream: "s", Seq: seq, Payload: []byte("x")})
				if err != nil {
					fail(err)
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
				err = cl.Publish(pctx, "s", env)
				pcancel()
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("%s seq %d: %w", id, seq, err))
					}
					return
				}
				acked.add(hexID(env)) // after the PUBACK
			}
		}(i)
	}
	acked.waitFor(t, before)

	// The records acknowledged before the backup starts.
	noted := acked.snapshot()
	out := filepath.Join(t.TempDir(), "gw.tar.gz")
	stdout, stderr, code := cli(t, t.TempDir(), "backup", "--data", data, "--out", out, "--with-keys")
	during := acked.len() - len(noted)
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, err := range loadErr {
		t.Errorf("load: %v", err)
	}
	if !strings.Contains(stderr, "blocks") {
		t.Errorf("backup printed no progress on stderr:\n%s", stderr)
	}
	t.Logf("%d records acknowledged before the backup, %d while it ran, %d in all\n%s", len(noted), during, acked.len(), stdout)
	g.stop()

	restored := filepath.Join(t.TempDir(), "restored")
	rout := mustCLI(t, t.TempDir(), "restore", out, "--data", restored)
	if !strings.Contains(rout, "ledger verify: ok:") {
		t.Fatalf("restore printed no verification:\n%s", rout)
	}
	if vout := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", restored); !strings.HasPrefix(vout, "ok:") {
		t.Fatalf("ledger verify of the restored directory: %s", vout)
	}

	g2 := startGateway(t, restored)
	seen := txCounts(t, g2.api)
	missing := 0
	for id := range noted {
		if seen[id] != 1 {
			missing++
			if missing <= 5 {
				t.Errorf("record %s acknowledged before the backup is in the restored ledger %d times", id, seen[id])
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("tx %s is in the restored ledger %d times", id, n)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d records acknowledged before the backup are not in the restored ledger once", missing, len(noted))
	}
	// The restored gateway goes on: each device's next seq commits.
	for i, key := range keys {
		id := "dev-" + strconv.Itoa(i)
		var d struct {
			LastSeq uint64 `json:"last_seq"`
		}
		getJSON(t, g2.api, "/api/v1/devices/"+id, &d)
		if code, reason, _, err := post(context.Background(), g2.api, signAs(t, key, a.chainID, id, d.LastSeq+1)); code != http.StatusOK {
			t.Fatalf("%s on the restored gateway: %d %s %v", id, code, reason, err)
		}
	}
}

// backupNames lists the files of a (plain tar) backup and decodes its manifest.
func backupNames(t *testing.T, path string) ([]string, daemon.BackupManifest) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var m daemon.BackupManifest
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == daemon.BackupManifestFile {
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return names, m
}

// TestBackupKeysAndDamage: a backup leaves the private keys out unless
// --with-keys; a truncated or damaged backup is refused with a clear error
// and writes nothing; restore refuses a directory that is not empty
// unless --force, which moves it aside.
func TestBackupKeysAndDamage(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "d", ledger.ES256)
	for seq := uint64(1); seq <= 20; seq++ {
		if code, reason, _, err := post(context.Background(), g.api, signAs(t, key, a.chainID, "d", seq)); code != http.StatusOK {
			t.Fatalf("seq %d: %d %s %v", seq, code, reason, err)
		}
	}
	work := t.TempDir()
	plain := filepath.Join(work, "plain.tar")
	mustCLI(t, work, "backup", "--data", data, "--out", plain)
	withKeys := filepath.Join(work, "keys.tar")
	mustCLI(t, work, "backup", "--data", data, "--out", withKeys, "--with-keys")
	// Not even --force moves a running gateway's directory aside.
	if _, errs, code := cli(t, work, "restore", plain, "--data", data, "--force"); code != 1 || !strings.Contains(errs, "in use") {
		t.Errorf("restore --force over a running gateway: exit %d\n%s", code, errs)
	}
	g.stop()

	names, m := backupNames(t, plain)
	if m.WithKeys || m.Height == 0 || m.ChainID != a.chainID || m.HeadHash == "" || m.ContentSHA256 == "" {
		t.Errorf("manifest: %+v", m)
	}
	for _, n := range names {
		if n == daemon.NodeKeyFile || n == daemon.AdminKeyFile || strings.HasSuffix(n, ".key") {
			t.Errorf("backup without --with-keys holds %s", n)
		}
	}
	for _, want := range []string{daemon.GenesisFile, daemon.IndexFile, "blocks/00000001.log", daemon.BackupManifestFile} {
		if !strings.Contains(strings.Join(names, "\n")+"\n", want+"\n") {
			t.Errorf("backup lacks %s: %v", want, names)
		}
	}
	knames, km := backupNames(t, withKeys)
	if !km.WithKeys || !strings.Contains(strings.Join(knames, " "), daemon.NodeKeyFile) {
		t.Errorf("backup with --with-keys: with_keys %v, files %v", km.WithKeys, knames)
	}

	// Restored without keys: the directory has no node key, and says so.
	r1 := filepath.Join(t.TempDir(), "r1")
	out := mustCLI(t, work, "restore", plain, "--data", r1)
	if !strings.Contains(out, "no private keys") {
		t.Errorf("restore of a backup without keys says nothing of them:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(r1, daemon.NodeKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restored %s: %v", daemon.NodeKeyFile, err)
	}
	// A target that is not empty: refused; --force moves it aside.
	if _, errs, code := cli(t, work, "restore", plain, "--data", r1); code != 1 || !strings.Contains(errs, "not empty") {
		t.Errorf("restore over a full directory: exit %d\n%s", code, errs)
	}
	out, errs, code := cli(t, work, "restore", withKeys, "--data", r1, "--force")
	if code != 0 || !strings.Contains(errs, r1+".replaced-") {
		t.Errorf("restore --force: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(r1, daemon.NodeKeyFile)); err != nil {
		t.Errorf("restored with keys: %v", err)
	}

	full, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	// The first block segment's offset in the tar, to damage a block.
	segAt := strings.Index(string(full), "blocks/00000001.log")
	if segAt < 0 {
		t.Fatal("no block segment in the backup")
	}
	flipped := append([]byte(nil), full...)
	flipped[segAt+512+100] ^= 0x40 // in the segment's data, after its 512-byte header
	for _, tc := range []struct {
		name    string
		data    []byte
		sidecar bool // keep FILE.sha256 beside it
		want    string
	}{
		{"truncated", full[:len(full)/2], false, "damaged"},
		{"truncated before the manifest", full[:segAt+512], false, "damaged"},
		{"flipped byte", flipped, false, "blocks/00000001.log: SHA-256"},
		{"flipped byte, .sha256 beside", flipped, true, "is not the one in"},
		{"not a backup", []byte("hello, world"), false, "damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := writeFile(t, filepath.Join(dir, "b.tar"), string(tc.data))
			if tc.sidecar {
				sum, err := os.ReadFile(plain + ".sha256")
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, f+".sha256", string(sum))
			}
			target := filepath.Join(dir, "target")
			_, errs, code := cli(t, dir, "restore", f, "--data", target)
			if code != 1 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "nothing was written") {
				t.Errorf("exit %d, want 1 and %q\n%s", code, tc.want, errs)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if n := e.Name(); n != "b.tar" && n != "b.tar.sha256" {
					t.Errorf("a refused restore left %s behind", n)
				}
			}
		})
	}
}
