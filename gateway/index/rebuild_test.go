package index

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// mixedChain is a chain whose blocks mix a device's records with the txs
// that change its row otherwise (enroll, config report, revoke, re-key),
// in both orders, and records of a device that is not enrolled.
func mixedChain(t *testing.T) *chain {
	c := newChain(t)
	keyA, keyA2, keyB := newP256(t), newEd25519(t), newEd25519(t)
	enrollA := sign(t, c.admin, "admin-1", ledger.Body{Kind: ledger.KindEnroll,
		Enroll: &ledger.Enroll{DeviceID: "dev-a", PublicKey: der(t, keyA), Model: "m1", Groups: []string{"g1"}}})
	// 1: enrolls, a group's config, a record right after its enroll.
	c.next(enrollA, c.enroll("dev-b", keyB), c.configSet("group:g1", 1, "cfg-1"), recordTx(t, "dev-a", keyA, 1, "temp"))
	// 2: records before and after a config report of the same device.
	c.next(recordTx(t, "dev-a", keyA, 2, "temp"), recordTx(t, "dev-a", keyA, 3, "hum"), recordTx(t, "dev-b", keyB, 1, "temp"),
		configReport(t, "dev-a", 4, 1, "cfg-1"), recordTx(t, "dev-a", keyA, 5, "temp"))
	// 3: a record, then the device's revocation.
	c.next(recordTx(t, "dev-b", keyB, 2, "hum"), c.revoke("dev-b", "lost"))
	// 4: a re-key, then records under the new key.
	c.next(rekey(t, "dev-a", keyA, keyA2, 6), recordTx(t, "dev-a", keyA2, 7, "temp"), recordTx(t, "dev-a", keyA2, 8, "hum"))
	// 5: records only, one of a device that is not enrolled.
	var recs [][]byte
	for seq := uint64(9); seq < 19; seq++ {
		recs = append(recs, recordTx(t, "dev-a", keyA2, seq, []string{"temp", "hum"}[seq%2]))
	}
	recs = append(recs, recordTx(t, "ghost", newEd25519(t), 1, "temp"))
	c.next(recs...)
	c.next()
	return c
}

// answers is every answer of the read side about mixedChain.
type answers struct {
	Snapshot      snapshot
	Search        []Device
	Queries       [][]RecordInfo
	Configs       [][]ConfigInfo
	History       [][]ConfigInfo
	Current       []*ConfigInfo
	ConfigReports [][]ConfigReport
	Members       []string
	Drifting      []Drift
	OfModel       []string
}

func takeAnswers(t *testing.T, x *Index, c *chain) answers {
	t.Helper()
	a := answers{Snapshot: takeSnapshot(t, x, c)}
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	var err error
	a.Search, err = x.SearchDevices("dev", "", 0)
	keep(err)
	t0 := c.blocks[0].Header.Time
	for _, q := range []RecordQuery{{}, {Desc: true}, {Device: "dev-a"}, {Device: "dev-a", Stream: "hum"}, {Stream: "temp", Limit: 3},
		{Device: "dev-b", Desc: true}, {From: t0 + 1000, To: t0 + 4000}, {After: Position{2, 1}}, {Device: "ghost"}} {
		rs, err := x.QueryRecords(q)
		keep(err)
		a.Queries = append(a.Queries, rs)
	}
	for _, id := range []string{"dev-a", "dev-b", "ghost"} {
		h, err := x.ConfigHistory(id)
		keep(err)
		a.History = append(a.History, h)
		cur, err := x.CurrentConfig(id)
		keep(err)
		a.Current = append(a.Current, cur)
		rs, err := x.ConfigReports(id)
		keep(err)
		a.ConfigReports = append(a.ConfigReports, rs)
	}
	for _, target := range []string{"group:g1", "dev-a"} {
		cs, err := x.TargetConfigs(target)
		keep(err)
		a.Configs = append(a.Configs, cs)
	}
	a.Members, err = x.GroupMembers("g1")
	keep(err)
	a.Drifting, err = x.Drifting()
	keep(err)
	a.OfModel, err = x.DevicesOfModel("m1")
	keep(err)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRebuildAnswersEqual builds an index as the chain does while it
// commits (block by block, from txs it decoded) and another from the block
// log from scratch, and checks that every answer of the read side is the
// same, and that the device rows hold what the txs say. With tx-id
// generations of 4 txs most lookups by id go through tx_ids, the rest
// through the open generation in memory, sealed at other batches in each.
func TestRebuildAnswersEqual(t *testing.T) {
	for _, gen := range []int64{generationTxs, 4} {
		t.Run(fmt.Sprintf("generation=%d", gen), func(t *testing.T) { testRebuildAnswersEqual(t, gen) })
	}
}

func testRebuildAnswersEqual(t *testing.T, gen int64) {
	c := mixedChain(t)
	dir := t.TempDir()
	x := openGen(t, filepath.Join(dir, "incremental.db"), gen)
	for _, b := range c.blocks {
		txs := make([]*ledger.Tx, len(b.Txs))
		for i, env := range b.Txs {
			tx, err := ledger.DecodeTx(env, 0)
			if err != nil {
				t.Fatal(err)
			}
			txs[i] = tx
		}
		if err := x.ApplyDecoded(b, txs); err != nil {
			t.Fatal(err)
		}
	}
	want := takeAnswers(t, x, c)
	if n := len(want.Snapshot.NotFound); n > 0 || len(want.Snapshot.Tx) == 0 {
		t.Fatalf("Tx found %d of the chain's txs and not %d", len(want.Snapshot.Tx), n)
	}

	y := openGen(t, filepath.Join(dir, "rebuilt.db"), gen)
	if err := Rebuild(context.Background(), y, uint64(len(c.blocks)), c.read, nil); err != nil {
		t.Fatal(err)
	}
	if got := takeAnswers(t, y, c); !reflect.DeepEqual(got, want) {
		t.Errorf("rebuilt from the log:\n got %+v\nwant %+v", got, want)
	}
	if err := x.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(context.Background(), x, uint64(len(c.blocks)), c.read, nil); err != nil {
		t.Fatal(err)
	}
	if got := takeAnswers(t, x, c); !reflect.DeepEqual(got, want) {
		t.Errorf("reset and rebuilt:\n got %+v\nwant %+v", got, want)
	}
	checkIDTable(t, x)
	checkIDTable(t, y)

	// The device rows, as the txs make them.
	time := func(h int) int64 { return c.blocks[h-1].Header.Time }
	for _, w := range []struct {
		id               string
		status           string
		lastSeq, records uint64
		lastSeen         int64
		cfgVersion       uint64
		keysHeight       int
		revokedHeight    uint64
	}{
		{id: "dev-a", status: StatusActive, lastSeq: 18, records: 16, lastSeen: time(5), cfgVersion: 1, keysHeight: 4},
		{id: "dev-b", status: StatusRevoked, lastSeq: 2, records: 2, lastSeen: time(3), keysHeight: 1, revokedHeight: 3},
	} {
		d, err := x.Device(w.id)
		if err != nil {
			t.Fatal(err)
		}
		keysTx := c.blocks[w.keysHeight-1].Txs[0]
		if w.id == "dev-b" {
			keysTx = c.blocks[0].Txs[1]
		}
		id := txID(t, keysTx)
		if d.Status != w.status || d.LastSeq != w.lastSeq || d.Records != w.records || d.LastSeen != w.lastSeen ||
			d.CfgVersion != w.cfgVersion || d.RevokedHeight != w.revokedHeight || !reflect.DeepEqual(d.KeysTx, id[:]) {
			t.Errorf("device %s = %+v, want %+v", w.id, d, w)
		}
	}
	if _, err := x.Device("ghost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device(ghost) err = %v, want ErrNotFound", err)
	}
}

// TestWALBounded applies many blocks, small and large, and checks after
// each that the WAL stays within its bound: a checkpoint every
// walCheckpointPages pages, and the file cut back to walSizeLimit after.
func TestWALBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	s := newSynthChain(t, x, 100)
	// The WAL is cut back to walSizeLimit after a checkpoint, and one
	// block may add its pages past the checkpoint's threshold before the
	// next checkpoint runs.
	const bound = walCheckpointPages*4096 + walSizeLimit
	var largest int64
	for i := range 300 {
		n := 3
		if i%10 == 0 {
			n = 1000
		}
		s.apply(t, x, n)
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
		if fi.Size() > bound {
			t.Fatalf("after block %d the WAL holds %d bytes, more than %d", i+2, fi.Size(), bound)
		}
	}
	t.Logf("largest WAL: %d bytes", largest)
}
