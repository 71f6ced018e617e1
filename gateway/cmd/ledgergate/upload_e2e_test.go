package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// maxUploadRSS is what a gateway may grow to while uploads pour in.
const maxUploadRSS = 150 << 20

// TestUploadMemoryBounded: 20 parallel uploads of 60 MB of garbage to
// POST /api/v1/firmware (half of them plain garbage, half a CBOR head with
// a garbage tx naming 60 MB) are refused before their bytes are read:
// the gateway's peak resident memory stays under 150 MB. A valid 40 MB
// image uploaded afterwards with the CLI is streamed to the blob store and
// committed, and the peak stays under 150 MB still, also while 10
// devices download the image at once.
func TestUploadMemoryBounded(t *testing.T) {
	l := newFirmwareLab(t)
	pid := l.g.cmd.Process.Pid
	const n, size = 20, 60 << 20
	garbageTx := bytes.Repeat([]byte{0xd2}, 1000)
	// The head of an upload as the CLI sends it, written out here so that
	// this test also runs against a gateway of before the streaming.
	head := append([]byte{0xa2, 0x01, 0x59, 0x03, 0xe8}, garbageTx...)
	head = binary.BigEndian.AppendUint32(append(head, 0x02, 0x5a), size)
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var start []byte
			if i%2 == 1 {
				start = head
			}
			body := io.MultiReader(bytes.NewReader(start), io.LimitReader(rand.NewChaCha8([32]byte{byte(i)}), size))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.g.api+"/api/v1/firmware", body)
			if err != nil {
				t.Error(err)
				return
			}
			req.ContentLength = int64(len(start)) + size
			req.Header.Set("Content-Type", "application/cbor")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// The gateway answered and closed the connection while
				// the client was still sending: it did not read the rest.
				codes[i] = "closed while sending"
				return
			}
			defer resp.Body.Close()
			var eb struct{ Reason string }
			json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&eb)
			codes[i] = fmt.Sprintf("%d %s", resp.StatusCode, eb.Reason)
		})
	}
	wg.Wait()
	hwm := peakRSS(t, pid)
	t.Logf("garbage uploads answered: %v; gateway peak RSS %d MiB", codes, hwm>>20)
	for i, c := range codes {
		if c != "closed while sending" && !strings.HasPrefix(c, "400 ") && !strings.HasPrefix(c, "403 ") {
			t.Errorf("garbage upload %d: answered %q, want a refusal", i, c)
		}
	}
	if hwm > maxUploadRSS {
		t.Fatalf("gateway peak RSS %d MiB after %d garbage uploads of %d MiB, want under %d MiB", hwm>>20, n, size>>20, maxUploadRSS>>20)
	}

	// A valid image still goes through, streamed.
	img := make([]byte, 40<<20)
	rand.NewChaCha8([32]byte{'i', 'm', 'g'}).Read(img)
	p := filepath.Join(l.dir, "big.bin")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, l.dir, "firmware", "publish", "--vendor-key", "acme", "--vendor", "acme", "--model", "th-2",
		"--version", "2", "--image", p, "--api", l.g.api)
	if !strings.Contains(out, "committed in block") {
		t.Fatalf("firmware publish: %s", out)
	}
	sum := sha256.Sum256(img)
	stored, err := os.ReadFile(filepath.Join(l.g.data, "blobs", fmt.Sprintf("%x", sum[:1]), fmt.Sprintf("%x", sum)))
	if err != nil || !bytes.Equal(stored, img) {
		t.Fatalf("stored image: %d bytes, %v", len(stored), err)
	}
	if left, _ := filepath.Glob(filepath.Join(l.g.data, "blobs", "*", ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left in the blob store: %v", left)
	}
	hwm = peakRSS(t, pid)
	t.Logf("after a valid upload of %d MiB: gateway peak RSS %d MiB", len(img)>>20, hwm>>20)
	if hwm > maxUploadRSS {
		t.Fatalf("gateway peak RSS %d MiB after a valid upload, want under %d MiB", hwm>>20, maxUploadRSS>>20)
	}

	// Devices download it, 10 at once, by either path: it is served
	// from its file.
	for i := range 10 {
		wg.Go(func() {
			path := fmt.Sprintf("/api/v1/firmware/images/%x", sum)
			if i%2 == 1 {
				path = fmt.Sprintf("/api/v1/blobs/%x", sum)
			}
			resp, err := http.Get(l.g.api + path)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			if n, err := io.Copy(h, resp.Body); err != nil || n != int64(len(img)) || [32]byte(h.Sum(nil)) != sum {
				t.Errorf("download: %d bytes, %v", n, err)
			}
		})
	}
	wg.Wait()
	hwm = peakRSS(t, pid)
	t.Logf("after 10 parallel downloads of it: gateway peak RSS %d MiB", hwm>>20)
	if hwm > maxUploadRSS {
		t.Fatalf("gateway peak RSS %d MiB after 10 downloads, want under %d MiB", hwm>>20, maxUploadRSS>>20)
	}
}

// peakRSS is the peak resident set size of process pid (VmHWM).
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// TestUploadsOverloaded: while max_uploads (2) uploads are being
// received, a third, valid one is answered 503 "overloaded" with
// Retry-After before its image is read; the two commit once their bytes
// are in, and the third goes through when sent again.
func TestUploadsOverloaded(t *testing.T) {
	l := newFirmwareLab(t)
	key, err := device.LoadKey(filepath.Join(l.dir, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	type upload struct {
		img  []byte
		pw   *io.PipeWriter
		done chan string
	}
	start := func(version uint64) *upload {
		u := &upload{img: bytes.Repeat([]byte{byte(version)}, 2<<20), done: make(chan string, 1)}
		head := api.PublishHead(l.manifest(t, key, version, u.img), int64(len(u.img)))
		var pr *io.PipeReader
		pr, u.pw = io.Pipe()
		go func() {
			u.done <- postUpload(l.g.api, io.MultiReader(bytes.NewReader(head), pr), int64(len(head)+len(u.img)))
		}()
		return u
	}
	var slow []*upload
	for v := uint64(2); v <= 3; v++ {
		u := start(v)
		if _, err := u.pw.Write(u.img[:1<<20]); err != nil { // half the image; the rest waits
			t.Fatal(err)
		}
		slow = append(slow, u)
	}
	// Both are being received once both have a temporary file.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(l.g.data, "blobs", "*", ".tmp-*"))
		if len(left) == 2 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d uploads being received, want 2", len(left))
		}
	}
	third := bytes.Repeat([]byte{4}, 1<<20)
	body := append(api.PublishHead(l.manifest(t, key, 4, third), int64(len(third))), third...)
	if got := postUpload(l.g.api, bytes.NewReader(body), int64(len(body))); got != "503 overloaded retry-after 5" {
		t.Fatalf("third upload: %s, want 503 overloaded retry-after 5", got)
	}
	for _, u := range slow {
		go func() {
			u.pw.Write(u.img[1<<20:])
			u.pw.Close()
		}()
		select {
		case got := <-u.done:
			if got != "200 " {
				t.Fatalf("slow upload: %s", got)
			}
		case <-time.After(time.Minute):
			t.Fatal("slow upload not answered")
		}
	}
	if got := postUpload(l.g.api, bytes.NewReader(body), int64(len(body))); got != "200 " {
		t.Fatalf("third upload sent again: %s", got)
	}
}

// manifest signs a firmware.publish of img as version of th-2.
func (l *firmwareLab) manifest(t testing.TB, key crypto.Signer, version uint64, img []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(img)
	env, err := ledger.SignTx(key, "acme", &ledger.Body{Kind: ledger.KindFirmwarePublish, ChainID: l.gen.ChainID,
		FirmwarePublish: &ledger.FirmwarePublish{Model: "th-2", Version: version, SHA256: sum[:], Size: uint64(len(img)),
			Expires: time.Now().Add(time.Hour).UnixMilli()}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// postUpload posts an upload body and returns "status reason", with
// " retry-after N" if the answer has one.
func postUpload(apiURL string, body io.Reader, size int64) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/api/v1/firmware", body)
	if err != nil {
		return err.Error()
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/cbor")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var eb struct{ Reason string }
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb)
	s := fmt.Sprintf("%d %s", resp.StatusCode, eb.Reason)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		s += " retry-after " + ra
	}
	return s
}
