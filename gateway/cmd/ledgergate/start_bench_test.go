package main

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/tpm"
)

// BenchmarkStart measures how long a dev gateway with many stored txs
// takes from process start to "ledgergate ready", and the CPU it spends
// until then, with 100 k and 1 M stored txs (records of 64 bytes from
// 1,000 devices, 500 txs a block, every one signed; blocks certified by
// the node key). The data directory is built once per size (blocks
// appended to the log directly and indexed in-process, then one start,
// not measured, in which a gateway with snapshots writes one), and each
// iteration is three
// starts and stops (run it -benchtime 1x: each run builds the data
// again). With LEDGERGATE_BIN the same benchmark times another build of
// the gateway (main's, for a before and after: docs/benchmarks.md).
//
//	go test -run '^$' -bench Start -benchtime 1x -timeout 30m ./gateway/cmd/ledgergate
func BenchmarkStart(b *testing.B) {
	for _, txs := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("txs=%d", txs), func(b *testing.B) {
			data := filepath.Join(b.TempDir(), "data")
			buildStoredTxs(b, data, txs)
			// The first start replays the whole log and, with
			// snapshots, writes one: not measured.
			g := startGateway(b, data)
			if strings.Contains(g.log(), `msg="state ready"`) {
				waitLog(b, g, `msg="snapshot written"`)
			}
			g.stop()
			const starts = 3
			var ready, cpu time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for range starts {
					t0 := time.Now()
					g := startGateway(b, data)
					ready += time.Since(t0)
					cpu += procCPU(b, g.cmd.Process.Pid)
					if line := stateReadyLine.FindString(g.log()); line != "" {
						b.Logf("%s", line)
					}
					b.StopTimer()
					g.stop()
					b.StartTimer()
				}
			}
			n := float64(b.N * starts)
			b.ReportMetric(float64(ready.Milliseconds())/n, "ms_to_ready")
			b.ReportMetric(float64(cpu.Milliseconds())/n, "cpu_ms_to_ready")
			b.ReportMetric(0, "ns/op")
		})
	}
}

var stateReadyLine = regexp.MustCompile(`msg="state ready".*`)

// waitLog polls g's log for re, for at most two minutes.
func waitLog(tb testing.TB, g *gateway, re string) {
	tb.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(2 * time.Minute)
	for !rx.MatchString(g.log()) {
		if time.Now().After(deadline) {
			tb.Fatalf("no %s in the log within 2 minutes:\n%s", re, g.log())
		}
		time.Sleep(20 * time.Millisecond) // polling another process's log
	}
}

// buildStoredTxs makes a dev data directory whose block log holds n
// records (after the enrollment of their devices), appended directly.
func buildStoredTxs(tb testing.TB, data string, n int) {
	tb.Helper()
	g := startGateway(tb, data) // makes the genesis and the keys
	g.stop()
	gen, err := daemon.LoadGenesis(data)
	if err != nil {
		tb.Fatal(err)
	}
	nodeKey, err := tpm.LoadSoftwareKey(filepath.Join(data, daemon.NodeKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	adminKey, err := device.LoadKey(filepath.Join(data, daemon.AdminKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	log, err := ledger.OpenLog(filepath.Join(data, daemon.BlocksDir), ledger.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	const devices, perBlock = 1000, 500
	keys := make([]crypto.Signer, devices)
	var enrolls [][]byte
	for i := range keys {
		if keys[i], err = device.GenerateKey(ledger.EdDSA); err != nil {
			tb.Fatal(err)
		}
		pub, _ := ledger.MarshalPublicKey(keys[i])
		env, err := ledger.SignTx(adminKey, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: gen.ChainID,
			Enroll: &ledger.Enroll{DeviceID: "dev-" + strconv.Itoa(i), PublicKey: pub}})
		if err != nil {
			tb.Fatal(err)
		}
		enrolls = append(enrolls, env)
	}
	height, prev := uint64(0), gen.Hash()
	appendBlock := func(txs [][]byte) {
		height++
		h := ledger.Header{ChainID: gen.ChainID, Height: height, Prev: prev[:], TxRoot: ledger.NewTree(txs).Root(),
			NumTxs: uint64(len(txs)), Time: time.Now().UnixMilli(), Proposer: "node-1"}
		sig, err := ledger.SignVote(nodeKey, "node-1", &h, 0)
		if err != nil {
			tb.Fatal(err)
		}
		blk := &ledger.Block{Header: h, Txs: txs, Cert: ledger.Cert{Sigs: []ledger.Sig{sig}}}
		enc, err := blk.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		if err := log.Append(enc); err != nil {
			tb.Fatal(err)
		}
		prev = h.Hash()
	}
	defer func() {
		idx, err := index.Open(filepath.Join(data, daemon.IndexFile))
		if err != nil {
			tb.Fatal(err)
		}
		defer idx.Close()
		if err := daemon.CatchUpIndex(context.Background(), idx, log, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			tb.Fatal(err)
		}
	}()
	appendBlock(enrolls)
	payload := make([]byte, 64)
	for done := 0; done < n; done += perBlock {
		txs := make([][]byte, min(perBlock, n-done))
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for j := w; j < len(txs); j += workers {
					k := done + j
					dev := k % devices
					env, err := device.SignRecord(keys[dev], gen.ChainID, ledger.Record{DeviceID: "dev-" + strconv.Itoa(dev),
						Stream: "s", Seq: uint64(k/devices + 1), Time: 1, Payload: payload})
					if err != nil {
						tb.Error(err)
						return
					}
					txs[j] = env
				}
			}(w)
		}
		wg.Wait()
		if tb.Failed() {
			tb.FailNow()
		}
		appendBlock(txs)
	}
}
