package egress

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// recordLog writes a block log of blocks blocks of perBlock records of
// device d-1 (uncertified: nothing here verifies receipts) and returns it
// open.
func recordLog(tb testing.TB, blocks, perBlock int) *ledger.Log {
	tb.Helper()
	log, err := ledger.OpenLog(tb.TempDir(), ledger.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { log.Close() })
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		tb.Fatal(err)
	}
	seq := uint64(0)
	for h := uint64(1); h <= uint64(blocks); h++ {
		var txs [][]byte
		for range perBlock {
			seq++
			env, err := device.SignRecord(key, "bench", ledger.Record{DeviceID: "d-1", Stream: "s", Seq: seq, Time: 1,
				ContentType: "application/json", Payload: fmt.Appendf(nil, `{"seq":%d,"t":21.5}`, seq)})
			if err != nil {
				tb.Fatal(err)
			}
			txs = append(txs, env)
		}
		blk := &ledger.Block{Header: ledger.Header{ChainID: "bench", Height: h, Prev: make([]byte, 32), TxRoot: ledger.NewTree(txs).Root(),
			NumTxs: uint64(perBlock), Time: 1}, Txs: txs}
		enc, err := blk.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		if err := log.Append(enc); err != nil {
			tb.Fatal(err)
		}
	}
	return log
}

// heightIndex answers a connector's questions about a log of n blocks; no
// filter here asks for devices.
type heightIndex uint64

func (h heightIndex) Height() (uint64, error)            { return uint64(h), nil }
func (h heightIndex) Counts() (index.Counts, error)      { return index.Counts{Blocks: uint64(h)}, nil }
func (heightIndex) Device(string) (*index.Device, error) { return nil, index.ErrNotFound }

// BenchmarkCollect measures a live connector's own work per record: read
// and decode the block from a real block log, decode the tx, make its
// receipt and its JSON message (what a sink then sends). 20 blocks of 500
// ES256 records each, batches of 100.
//
//	go test -run '^$' -bench Collect ./gateway/egress
func BenchmarkCollect(b *testing.B) {
	const blocks, perBlock = 20, 500
	log := recordLog(b, blocks, perBlock)
	c := &connector{cfg: withDefaults(Config{Name: "b", Kind: KindWebhook, URL: "http://x"}), blocks: log, index: heightIndex(blocks),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), groups: map[string][]string{}}
	records := 0
	for b.Loop() {
		c.last = nil
		for cur := (Cursor{}); cur.Block < blocks || cur.Index < perBlock-1; {
			msgs, next, err := c.collect(cur)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(msgs); err != nil {
				b.Fatal(err)
			}
			records += len(msgs)
			cur = next
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(records), "µs/record")
	b.ReportMetric(0, "ns/op")
}
