package index

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

const chainID = "test-chain"

// chain builds real, correctly linked blocks of real signed txs.
type chain struct {
	tb     testing.TB
	admin  crypto.Signer
	blocks []*ledger.Block
}

func newChain(tb testing.TB) *chain {
	return &chain{tb: tb, admin: newEd25519(tb)}
}

func newP256(tb testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newEd25519(tb testing.TB) crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func der(tb testing.TB, s crypto.Signer) []byte {
	b, err := ledger.MarshalPublicKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func sign(tb testing.TB, s crypto.Signer, kid string, body ledger.Body) []byte {
	body.ChainID = chainID
	env, err := ledger.SignTx(s, kid, &body)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func (c *chain) enroll(id string, key crypto.Signer) []byte {
	return sign(c.tb, c.admin, "admin-1", ledger.Body{Kind: ledger.KindEnroll,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: der(c.tb, key)}})
}

func (c *chain) revoke(id, reason string) []byte {
	return sign(c.tb, c.admin, "admin-1", ledger.Body{Kind: ledger.KindRevoke,
		Revoke: &ledger.Revoke{DeviceID: id, Reason: reason}})
}

func rekey(tb testing.TB, id string, old, next crypto.Signer, seq uint64) []byte {
	return sign(tb, old, id, ledger.Body{Kind: ledger.KindRekey,
		Rekey: &ledger.Rekey{DeviceID: id, Seq: seq, PublicKey: der(tb, next)}})
}

func record(tb testing.TB, id string, key crypto.Signer, seq uint64) []byte {
	env, err := signRecord(id, key, seq)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func signRecord(id string, key crypto.Signer, seq uint64) ([]byte, error) {
	return ledger.SignTx(key, id, &ledger.Body{Kind: ledger.KindRecord, ChainID: chainID, Record: &ledger.Record{
		DeviceID: id, Stream: "temp", Seq: seq, Time: 1_700_000_000_000 + int64(seq),
		ContentType: "application/json", Payload: fmt.Appendf(nil, `{"c":%d}`, seq)}})
}

// next appends and returns the next block holding txs.
func (c *chain) next(txs ...[]byte) *ledger.Block {
	h := uint64(len(c.blocks)) + 1
	prev := sha256.Sum256([]byte("genesis"))
	if h > 1 {
		prev = c.blocks[h-2].Header.Hash()
	}
	b := &ledger.Block{
		Header: ledger.Header{
			ChainID:  chainID,
			Height:   h,
			Prev:     prev[:],
			TxRoot:   ledger.NewTree(txs).Root(),
			NumTxs:   uint64(len(txs)),
			Time:     1_700_000_000_000 + int64(h)*1000,
			View:     h % 3,
			Proposer: "node-1",
		},
		Txs: txs,
	}
	c.blocks = append(c.blocks, b)
	return b
}

func (c *chain) read(h uint64) (*ledger.Block, error) {
	if h == 0 || h > uint64(len(c.blocks)) {
		return nil, fmt.Errorf("no block %d", h)
	}
	return c.blocks[h-1], nil
}

func open(tb testing.TB, path string) *Index {
	x, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { x.Close() })
	return x
}

// rewrite runs stmts on the closed index file at path, outside Index: to
// make it what an older (or unknown) schema version made.
func rewrite(tb testing.TB, path string, stmts ...string) {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
}

func apply(tb testing.TB, x *Index, bs ...*ledger.Block) {
	for _, b := range bs {
		if err := x.ApplyBlock(b); err != nil {
			tb.Fatalf("apply block %d: %v", b.Header.Height, err)
		}
	}
}

func txID(tb testing.TB, env []byte) [32]byte {
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return tx.ID
}

func fp(tb testing.TB, s crypto.Signer) string {
	sum := sha256.Sum256(der(tb, s))
	return hex.EncodeToString(sum[:])
}

// scenario is a small chain: two devices enrolled, records, a re-key, an
// empty block and a revocation.
type scenario struct {
	c            *chain
	keyA, keyA2  crypto.Signer // dev-a: P-256, re-keyed to Ed25519 at seq 4
	keyB         crypto.Signer // dev-b: Ed25519, revoked in block 5
	recA5, recB1 []byte
}

func newScenario(t *testing.T) *scenario {
	c := newChain(t)
	s := &scenario{c: c, keyA: newP256(t), keyA2: newEd25519(t), keyB: newEd25519(t)}
	c.next(c.enroll("dev-a", s.keyA), c.enroll("dev-b", s.keyB))
	s.recB1 = record(t, "dev-b", s.keyB, 1)
	c.next(record(t, "dev-a", s.keyA, 1), record(t, "dev-a", s.keyA, 2), record(t, "dev-a", s.keyA, 3), s.recB1)
	s.recA5 = record(t, "dev-a", s.keyA2, 5)
	c.next(rekey(t, "dev-a", s.keyA, s.keyA2, 4), s.recA5, record(t, "dev-b", s.keyB, 2))
	c.next()
	c.next(c.revoke("dev-b", "lost"))
	return s
}

// snapshot is every answer the read side gives about the scenario.
type snapshot struct {
	Height   uint64
	Counts   Counts
	Blocks   []BlockInfo
	Block    []*BlockInfo
	InBlock  [][]TxInfo
	Tx       []*TxInfo
	Devices  []Device
	Device   []*Device
	Records  [][]TxInfo
	Paged    [][]TxInfo
	NotFound []bool
}

func takeSnapshot(t *testing.T, x *Index, c *chain) snapshot {
	t.Helper()
	var s snapshot
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	s.Height, err = x.Height()
	must(err)
	s.Counts, err = x.Counts()
	must(err)
	s.Blocks, err = x.Blocks(0, 0)
	must(err)
	for h := uint64(1); h <= s.Height; h++ {
		b, err := x.Block(h)
		must(err)
		s.Block = append(s.Block, b)
		txs, err := x.TxsInBlock(h)
		must(err)
		s.InBlock = append(s.InBlock, txs)
	}
	for _, b := range c.blocks {
		for _, env := range b.Txs {
			tx, err := x.Tx(txID(t, env))
			if errors.Is(err, ErrNotFound) {
				s.NotFound = append(s.NotFound, true)
				continue
			}
			must(err)
			s.Tx = append(s.Tx, tx)
		}
	}
	s.Devices, err = x.Devices("", 0)
	must(err)
	for _, id := range []string{"dev-a", "dev-b"} {
		d, err := x.Device(id)
		must(err)
		s.Device = append(s.Device, d)
		rs, err := x.Records(id, 0, 0)
		must(err)
		s.Records = append(s.Records, rs)
		rs, err = x.Records(id, 3, 1)
		must(err)
		s.Paged = append(s.Paged, rs)
	}
	return s
}

func TestQueries(t *testing.T) {
	s := newScenario(t)
	c := s.c
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, c.blocks...)

	if h, err := x.Height(); err != nil || h != 5 {
		t.Fatalf("Height() = %d, %v; want 5", h, err)
	}
	if got, err := x.Counts(); err != nil || got != (Counts{Blocks: 5, Txs: 10, Devices: 2, Revoked: 1}) {
		t.Errorf("Counts() = %+v, %v", got, err)
	}

	b2 := c.blocks[1].Header
	hash2, hash1 := b2.Hash(), c.blocks[0].Header.Hash()
	want := &BlockInfo{Height: 2, Hash: hex.EncodeToString(hash2[:]), Prev: hex.EncodeToString(hash1[:]),
		TxRoot: hex.EncodeToString(b2.TxRoot), NumTxs: 4, Time: b2.Time, View: 2, Proposer: "node-1"}
	if got, err := x.Block(2); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Block(2) = %+v, %v; want %+v", got, err, want)
	}
	for _, h := range []uint64{0, 6, 1 << 63, ^uint64(0)} {
		if _, err := x.Block(h); !errors.Is(err, ErrNotFound) {
			t.Errorf("Block(%d): err = %v, want ErrNotFound", h, err)
		}
	}

	blockTests := []struct {
		before uint64
		limit  int
		want   []uint64
	}{
		{0, 10, []uint64{5, 4, 3, 2, 1}},
		{0, 0, []uint64{5, 4, 3, 2, 1}},
		{0, 2, []uint64{5, 4}},
		{4, 2, []uint64{3, 2}},
		{2, 10, []uint64{1}},
		{1, 10, []uint64{}},
		{^uint64(0), 1, []uint64{5}},
	}
	for _, tt := range blockTests {
		bs, err := x.Blocks(tt.before, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		got := []uint64{}
		for _, b := range bs {
			got = append(got, b.Height)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Blocks(%d, %d) heights = %v, want %v", tt.before, tt.limit, got, tt.want)
		}
	}

	id := txID(t, s.recA5)
	wantTx := &TxInfo{ID: hex.EncodeToString(id[:]), Height: 3, Index: 1, Kind: "data.record", Author: "dev-a",
		Device: "dev-a", Stream: "temp", Seq: 5, DeviceTime: 1_700_000_000_005, ContentType: "application/json", Size: len(s.recA5)}
	if got, err := x.Tx(id); err != nil || !reflect.DeepEqual(got, wantTx) {
		t.Errorf("Tx(recA5) = %+v, %v; want %+v", got, err, wantTx)
	}
	rk := c.blocks[2].Txs[0]
	rkID := txID(t, rk)
	wantRekey := &TxInfo{ID: hex.EncodeToString(rkID[:]), Height: 3, Index: 0, Kind: "device.rekey", Author: "dev-a",
		Device: "dev-a", Seq: 4, Size: len(rk)}
	if got, err := x.Tx(rkID); err != nil || !reflect.DeepEqual(got, wantRekey) {
		t.Errorf("Tx(rekey) = %+v, %v; want %+v", got, err, wantRekey)
	}
	enID := txID(t, c.blocks[0].Txs[1])
	if got, err := x.Tx(enID); err != nil || got.Kind != "device.enroll" || got.Author != "admin-1" || got.Device != "dev-b" || got.Index != 1 {
		t.Errorf("Tx(enroll dev-b) = %+v, %v", got, err)
	}
	// Same prefix, different id: the full id must match.
	twin := id
	twin[31] ^= 1
	if _, err := x.Tx(twin); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tx(id with a matching prefix): err = %v, want ErrNotFound", err)
	}

	txs, err := x.TxsInBlock(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 4 {
		t.Fatalf("TxsInBlock(2): %d txs, want 4", len(txs))
	}
	for i, tx := range txs {
		want := txID(t, c.blocks[1].Txs[i])
		if tx.ID != hex.EncodeToString(want[:]) || tx.Index != uint64(i) || tx.Height != 2 {
			t.Errorf("TxsInBlock(2)[%d] = %+v", i, tx)
		}
	}
	if txs, err := x.TxsInBlock(4); err != nil || txs == nil || len(txs) != 0 {
		t.Errorf("TxsInBlock(4) = %#v, %v; want an empty list", txs, err)
	}
	if _, err := x.TxsInBlock(6); !errors.Is(err, ErrNotFound) {
		t.Errorf("TxsInBlock(6): err = %v, want ErrNotFound", err)
	}

	t3 := c.blocks[2].Header.Time
	idOf := func(env []byte) []byte { id := txID(t, env); return id[:] }
	enA, enB, rv := idOf(c.blocks[0].Txs[0]), idOf(c.blocks[0].Txs[1]), idOf(c.blocks[4].Txs[0])
	wantA := &Device{ID: "dev-a", Status: StatusActive, Alg: "EdDSA", PublicKey: der(t, s.keyA2), Fingerprint: fp(t, s.keyA2),
		EnrolledHeight: 1, LastSeq: 5, LastSeen: t3, Records: 4, Groups: []string{}, EncKey: []byte{},
		EnrollTx: enA, KeysTx: rkID[:], RevokeTx: []byte{}, CfgSHA256: []byte{}}
	wantB := &Device{ID: "dev-b", Status: StatusRevoked, Alg: "EdDSA", PublicKey: der(t, s.keyB), Fingerprint: fp(t, s.keyB),
		EnrolledHeight: 1, RevokedHeight: 5, RevokeReason: "lost", LastSeq: 2, LastSeen: t3, Records: 2, Groups: []string{}, EncKey: []byte{},
		EnrollTx: enB, KeysTx: enB, RevokeTx: rv, CfgSHA256: []byte{}}
	for _, want := range []*Device{wantA, wantB} {
		if got, err := x.Device(want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Device(%s) = %+v, %v;\nwant %+v", want.ID, got, err, want)
		}
	}
	if _, err := x.Device("dev-c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device(dev-c): err = %v, want ErrNotFound", err)
	}
	deviceTests := []struct {
		after string
		limit int
		want  []Device
	}{
		{"", 10, []Device{*wantA, *wantB}},
		{"", 1, []Device{*wantA}},
		{"dev-a", 0, []Device{*wantB}},
		{"dev-b", 10, []Device{}},
	}
	for _, tt := range deviceTests {
		if got, err := x.Devices(tt.after, tt.limit); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Devices(%q, %d) = %+v, %v; want %+v", tt.after, tt.limit, got, err, tt.want)
		}
	}
	searchTests := []struct {
		q, after string
		want     []Device
	}{
		{"", "", []Device{*wantA, *wantB}},
		{"DEV-B", "", []Device{*wantB}}, // case-insensitive
		{"dev", "dev-a", []Device{*wantB}},
		{"v-", "", []Device{*wantA, *wantB}},
		{"_", "", []Device{}}, // a wildcard of LIKE is taken literally
		{"%", "", []Device{}},
		{"nope", "", []Device{}},
	}
	for _, tt := range searchTests {
		if got, err := x.SearchDevices(tt.q, tt.after, 10); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SearchDevices(%q, %q) = %+v, %v; want %+v", tt.q, tt.after, got, err, tt.want)
		}
	}

	recordTests := []struct {
		device string
		before uint64
		limit  int
		want   []uint64
	}{
		{"dev-a", 0, 0, []uint64{5, 3, 2, 1}},
		{"dev-a", 0, 2, []uint64{5, 3}},
		{"dev-a", 3, 10, []uint64{2, 1}},
		{"dev-a", 5, 10, []uint64{3, 2, 1}}, // the rekey took seq 4
		{"dev-a", 1, 10, []uint64{}},
		{"dev-b", 0, 10, []uint64{2, 1}},
		{"dev-c", 0, 10, []uint64{}},
	}
	for _, tt := range recordTests {
		rs, err := x.Records(tt.device, tt.before, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		got := []uint64{}
		for _, r := range rs {
			if r.Kind != "data.record" || r.Device != tt.device {
				t.Errorf("Records(%s): got %+v", tt.device, r)
			}
			got = append(got, r.Seq)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Records(%q, %d, %d) seqs = %v, want %v", tt.device, tt.before, tt.limit, got, tt.want)
		}
	}
	if rs, err := x.Records("dev-b", 2, 1); err != nil || len(rs) != 1 || !reflect.DeepEqual(rs[0].ID, hexID(t, s.recB1)) {
		t.Errorf("Records(dev-b, 2, 1) = %+v, %v", rs, err)
	}
}

func hexID(t *testing.T, env []byte) string {
	id := txID(t, env)
	return hex.EncodeToString(id[:])
}

func TestJSONNames(t *testing.T) {
	for _, v := range []any{BlockInfo{}, TxInfo{}, Device{}, Counts{}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			if k != strings.ToLower(k) || strings.ContainsAny(k, " -") {
				t.Errorf("%T: JSON key %q is not snake_case", v, k)
			}
		}
	}
	b, _ := json.Marshal(Device{EnrolledHeight: 3})
	if !strings.Contains(string(b), `"enrolled_height":3`) {
		t.Errorf("Device JSON = %s", b)
	}
}

func TestApplyBlockRefusesAndChangesNothing(t *testing.T) {
	s := newScenario(t)
	c := s.c
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, c.blocks[:3]...)
	before := takeSnapshot(t, x, c)

	// A block of the right height is refused for a tx that does not decode:
	// the block insert and device updates of the same SQL tx are undone.
	bad := *c.blocks[3]
	bad.Txs = [][]byte{record(t, "dev-a", s.keyA2, 9), []byte("not a tx")}
	bad.Header.NumTxs = 2
	cases := map[string]*ledger.Block{
		"skip":      c.blocks[4],
		"repeat":    c.blocks[2],
		"first":     c.blocks[0],
		"bad tx":    &bad,
		"num txs":   {Header: ledger.Header{Height: 4, NumTxs: 3}},
		"height 0":  {Header: ledger.Header{Height: 0}},
		"max":       {Header: ledger.Header{Height: ^uint64(0)}},
		"bad first": {Header: ledger.Header{Height: 4, NumTxs: 1}, Txs: [][]byte{{0xa0}}},
	}
	for name, b := range cases {
		err := x.ApplyBlock(b)
		if err == nil {
			t.Errorf("%s: ApplyBlock succeeded", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "index: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
	if err := x.ApplyBlock(c.blocks[4]); !errors.Is(err, ErrHeight) {
		t.Errorf("ApplyBlock(block 5 on 3): err = %v, want ErrHeight", err)
	}

	// A failure after the block's txs were inserted rolls all of it back.
	if _, err := x.db.Exec(`CREATE TRIGGER fail BEFORE INSERT ON devices WHEN NEW.id = 'dev-x'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	late := &ledger.Block{Header: ledger.Header{Height: 4, NumTxs: 2},
		Txs: [][]byte{record(t, "dev-a", s.keyA2, 6), c.enroll("dev-x", newP256(t))}}
	if err := x.ApplyBlock(late); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("ApplyBlock with a failing device write: err = %v", err)
	}
	if _, err := x.db.Exec(`DROP TRIGGER fail`); err != nil {
		t.Fatal(err)
	}
	if after := takeSnapshot(t, x, c); !reflect.DeepEqual(before, after) {
		t.Errorf("refused blocks changed the index:\nbefore %+v\nafter  %+v", before, after)
	}
	apply(t, x, c.blocks[3:]...)
	if h, _ := x.Height(); h != 5 {
		t.Errorf("Height() = %d after the refusals and blocks 4-5, want 5", h)
	}
}

func TestReopenKeepsData(t *testing.T) {
	s := newScenario(t)
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	apply(t, x, s.c.blocks...)
	want := takeSnapshot(t, x, s.c)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := x.Height(); err == nil {
		t.Error("Height after Close succeeded")
	}
	y := open(t, path)
	if got := takeSnapshot(t, y, s.c); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", got, want)
	}
}

func TestOpenOtherSchemaVersionStartsEmpty(t *testing.T) {
	s := newScenario(t)
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	apply(t, x, s.c.blocks...)
	x.Close()

	rewrite(t, path, `CREATE TABLE future_things (id TEXT); PRAGMA user_version = 99`)

	y := open(t, path)
	if c, err := y.Counts(); err != nil || c != (Counts{}) {
		t.Fatalf("Counts() after a schema change = %+v, %v; want zero", c, err)
	}
	if err := Rebuild(context.Background(), y, 5, s.c.read, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := y.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'future_things'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("old table kept: %d, %v", n, err)
	}
}

func TestResetAndRebuild(t *testing.T) {
	s := newScenario(t)
	c := s.c
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, c.blocks...)
	want := takeSnapshot(t, x, c)

	if err := x.Reset(); err != nil {
		t.Fatal(err)
	}
	if n, err := x.Counts(); err != nil || n != (Counts{}) {
		t.Fatalf("Counts() after Reset = %+v, %v", n, err)
	}

	// Rebuild in two steps, as after a restart part-way.
	var calls [][2]uint64
	progress := func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) }
	if err := Rebuild(context.Background(), x, 2, c.read, progress); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(context.Background(), x, 5, c.read, progress); err != nil {
		t.Fatal(err)
	}
	if want := [][2]uint64{{2, 2}, {3, 3}}; !reflect.DeepEqual(calls, want) {
		t.Errorf("progress calls = %v, want %v", calls, want)
	}
	if got := takeSnapshot(t, x, c); !reflect.DeepEqual(got, want) {
		t.Errorf("after Reset and Rebuild:\n got %+v\nwant %+v", got, want)
	}
	// Nothing to do is fine.
	if err := Rebuild(context.Background(), x, 5, c.read, nil); err != nil {
		t.Errorf("Rebuild at height: %v", err)
	}

	err := Rebuild(context.Background(), x, 3, c.read, nil)
	if !errors.Is(err, ErrAhead) {
		t.Fatalf("Rebuild(3) with the index at 5: err = %v, want ErrAhead", err)
	}
	if h, _ := x.Height(); h != 5 {
		t.Errorf("Height() = %d after ErrAhead, want 5 unchanged", h)
	}
	if err := x.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(context.Background(), x, 3, c.read, nil); err != nil {
		t.Fatal(err)
	}
	if h, _ := x.Height(); h != 3 {
		t.Errorf("Height() = %d after Reset and Rebuild(3), want 3", h)
	}
}

func TestRebuildProgressAndErrors(t *testing.T) {
	c := newChain(t)
	for range 2500 {
		c.next()
	}
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	var calls [][2]uint64
	if err := Rebuild(context.Background(), x, 2500, c.read, func(done, total uint64) {
		calls = append(calls, [2]uint64{done, total})
	}); err != nil {
		t.Fatal(err)
	}
	// One call a transaction: done grows by at most rebuildBlocks, to 2500.
	var done uint64
	for _, c := range calls {
		if c[1] != 2500 || c[0] <= done || c[0]-done > rebuildBlocks {
			t.Fatalf("progress calls = %v: want done rising by 1 to %d blocks a call, of 2500", calls, rebuildBlocks)
		}
		done = c[0]
	}
	if done != 2500 {
		t.Errorf("progress calls = %v: the last is not 2500 of 2500", calls)
	}

	if err := Rebuild(context.Background(), x, 2501, c.read, nil); err == nil || !strings.Contains(err.Error(), "read block 2501") {
		t.Errorf("Rebuild past the log: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.next()
	if err := Rebuild(ctx, x, 2501, c.read, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Rebuild with a done context: err = %v, want context.Canceled", err)
	}
	wrong := func(h uint64) (*ledger.Block, error) { return c.read(h - 1) }
	if err := Rebuild(context.Background(), x, 2501, wrong, nil); err == nil {
		t.Error("Rebuild accepted block 2500 as block 2501")
	}
}

// TestQueryPlans checks that the lookups use the indexes they were built for.
func TestQueryPlans(t *testing.T) {
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	plans := map[string]string{
		strings.Replace(strings.Replace(sqlTxSealed, "?", "1", 1), "?", "x'00'", 1):  "SEARCH tx_ids USING PRIMARY KEY (gen=? AND id_prefix=?)",
		strings.Replace(strings.Replace(sqlTxAt, "?", "1", 1), "?", "x'00'", 1):      "SEARCH txs USING INTEGER PRIMARY KEY (rowid=?)",
		strings.NewReplacer("?1", "10", "?2", "1", "?3", "100").Replace(sqlPruneIDs): "SEARCH tx_ids USING PRIMARY KEY (gen=? AND id_prefix=? AND seq=?)",
		strings.NewReplacer("?1", "'a'", "?2", "5", "?3", "10").Replace(sqlRecords):  "txs_device_records (device=? AND seq<?)",
		`SELECT ` + txCols + ` FROM txs WHERE seq >= 1 AND seq < 5 ORDER BY seq`:     "INTEGER PRIMARY KEY",
	}
	for q, want := range plans {
		rows, err := x.db.Query(`EXPLAIN QUERY PLAN ` + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "; ")
		if !strings.Contains(got, want) || strings.Contains(got, "TEMP B-TREE") || strings.Contains(got, "SCAN txs") {
			t.Errorf("plan of %s:\n%s\nwant it to use %s without a sort or a scan of txs", q, got, want)
		}
	}
}

// BenchmarkApplyBlock applies blocks of 1000 data.record txs from 100
// devices. The blocks are signed before the timer starts.
func BenchmarkApplyBlock(b *testing.B) {
	const devices, perBlock = 100, 1000
	c := newChain(b)
	keys := make([]crypto.Signer, devices)
	var enrolls [][]byte
	for i := range keys {
		keys[i] = newEd25519(b)
		enrolls = append(enrolls, c.enroll(fmt.Sprintf("dev-%03d", i), keys[i]))
	}
	c.next(enrolls...)

	// Sign on every CPU: block n holds seqs n*10+1 .. n*10+10 of each device.
	blocks := make([][][]byte, b.N)
	errs := make([]error, b.N)
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for n := range work {
				blocks[n] = make([][]byte, perBlock)
				for j := range perBlock {
					d, seq := j%devices, uint64(n*perBlock/devices+j/devices+1)
					blocks[n][j], errs[n] = signRecord(fmt.Sprintf("dev-%03d", d), keys[d], seq)
					if errs[n] != nil {
						break
					}
				}
			}
		})
	}
	for n := range b.N {
		work <- n
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	for _, txs := range blocks {
		c.next(txs...)
	}

	x := open(b, filepath.Join(b.TempDir(), "index.db"))
	apply(b, x, c.blocks[0])
	b.ResetTimer()
	for _, blk := range c.blocks[1:] {
		if err := x.ApplyBlock(blk); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*perBlock)/b.Elapsed().Seconds(), "txs/s")
}
