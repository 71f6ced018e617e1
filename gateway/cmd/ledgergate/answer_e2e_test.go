package main

import (
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// indexLock holds the write lock of a gateway's index file from this
// process, so that the gateway's index stage cannot apply a block (its
// writer waits for the lock, for at most its busy timeout of 10 s) while
// the block log and the answers go on.
type indexLock struct {
	db   *sql.DB
	conn *sql.Conn
	once sync.Once
}

func lockIndex(t *testing.T, data string) *indexLock {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(data, daemon.IndexFile)+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	l := &indexLock{db: db, conn: conn}
	t.Cleanup(l.release)
	return l
}

// height is the indexed height, as the locking connection reads it.
func (l *indexLock) height(t *testing.T) uint64 {
	t.Helper()
	var h int64
	if err := l.conn.QueryRowContext(context.Background(), `SELECT coalesce(max(height), 0) FROM blocks`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return uint64(h)
}

func (l *indexLock) release() {
	l.once.Do(func() {
		l.conn.ExecContext(context.Background(), `ROLLBACK`)
		l.conn.Close()
		l.db.Close()
	})
}

// publishSigned publishes n records of device id (seq first on) over MQTT
// and returns their tx ids once each is PUBACKed.
func publishSigned(t *testing.T, g *gateway, chainID, id string, key crypto.Signer, first, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := device.Dial(ctx, id, key, chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var ids []string
	for seq := first; seq < first+n; seq++ {
		env := signAs(t, key, chainID, id, uint64(seq))
		if err := cl.Publish(ctx, "s", env); err != nil {
			t.Fatalf("publish %s seq %d: %v", id, seq, err)
		}
		ids = append(ids, hexID(env))
	}
	return ids
}

// checkVisible fails unless visible finds everything.
func checkVisible(t *testing.T, api, dev string, ids []string, records, last int) {
	t.Helper()
	if err := visible(api, dev, ids, records, last); err != nil {
		t.Fatal(err)
	}
}

// visible GETs, through the API, each tx, its receipt, the device and
// its records, and returns an error unless all are there: records is the
// number of records the device has committed, last its last seq.
func visible(api, dev string, ids []string, records, last int) error {
	for _, id := range ids {
		var tx struct {
			ID     string `json:"id"`
			Height uint64 `json:"height"`
		}
		if code, err := get(api+"/api/v1/txs/"+id, &tx); err != nil || code != http.StatusOK || tx.ID != id {
			return fmt.Errorf("GET tx %s right after its PUBACK: %d %v %+v", id, code, err, tx)
		}
		var rc struct {
			TxID   string `json:"tx_id"`
			Height uint64 `json:"height"`
		}
		if code, err := get(api+"/api/v1/txs/"+id+"/receipt", &rc); err != nil || code != http.StatusOK || rc.TxID != id || rc.Height != tx.Height {
			return fmt.Errorf("GET receipt of %s right after its PUBACK: %d %v %+v (tx at %d)", id, code, err, rc, tx.Height)
		}
	}
	var d struct {
		Records uint64 `json:"records"`
		LastSeq uint64 `json:"last_seq"`
	}
	if code, err := get(api+"/api/v1/devices/"+dev, &d); err != nil || code != http.StatusOK || d.Records != uint64(records) || d.LastSeq != uint64(last) {
		return fmt.Errorf("GET device %s right after the PUBACKs: %d %v %+v, want %d records to seq %d", dev, code, err, d, records, last)
	}
	var rs struct {
		Records []struct {
			ID string `json:"id"`
		} `json:"records"`
	}
	if code, err := get(fmt.Sprintf("%s/api/v1/devices/%s/records?limit=1000", api, dev), &rs); err != nil || code != http.StatusOK || len(rs.Records) != records {
		return fmt.Errorf("GET records of %s right after the PUBACKs: %d %v, %d records, want %d", dev, code, err, len(rs.Records), records)
	}
	listed := map[string]bool{}
	for _, r := range rs.Records {
		listed[r.ID] = true
	}
	for _, id := range ids {
		if !listed[id] {
			return fmt.Errorf("record %s not listed right after its PUBACK", id)
		}
	}
	return nil
}

// get fetches url into out (if the status is 200) and returns the status.
func get(url string, out any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

// TestReadAfterPUBACK: a device's records are answered (PUBACK) once they
// are in the block log, before the index has them; whatever the API is
// asked right after a PUBACK (the tx, its receipt, the device, its
// records) includes them. First with the index free, PUBACK and GET one
// record at a time; then with the index file locked, so that the PUBACKs
// come while the index cannot have the records: the receipt is served at
// once (from memory), and the index reads wait for the records and see
// them.
func TestReadAfterPUBACK(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "th-1", ledger.ES256)

	var ids []string
	for seq := 1; seq <= 20; seq++ {
		id := publishSigned(t, g, a.chainID, "th-1", key, seq, 1)
		ids = append(ids, id...)
		checkVisible(t, g.api, "th-1", id, seq, seq)
	}

	lock := lockIndex(t, data)
	indexed := lock.height(t)
	more := publishSigned(t, g, a.chainID, "th-1", key, 21, 5)
	if h := lock.height(t); h != indexed {
		t.Fatalf("the index moved from %d to %d while locked", indexed, h)
	}
	// The receipt does not need the index.
	for _, id := range more {
		var rc struct {
			TxID   string `json:"tx_id"`
			Height uint64 `json:"height"`
		}
		if code := getJSON(t, g.api, "/api/v1/txs/"+id+"/receipt", &rc); code != http.StatusOK || rc.TxID != id || rc.Height <= indexed {
			t.Fatalf("GET receipt of %s while the index is locked at %d: %d %+v", id, indexed, code, rc)
		}
	}
	// The index reads begun now wait for the records, then see them.
	done := make(chan error, 1)
	go func() { done <- visible(g.api, "th-1", append(ids, more...), 25, 25) }()
	lock.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCrashWhileIndexLags: records are PUBACKed while the index cannot
// apply them (its file is locked); the gateway is killed with SIGKILL
// before it indexed them. Nothing acknowledged is lost: after a restart
// every acknowledged record is in the ledger once and in the index
// (tx, receipt, device, records).
func TestCrashWhileIndexLags(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "th-1", ledger.ES256)
	first := publishSigned(t, g, a.chainID, "th-1", key, 1, 5)
	checkVisible(t, g.api, "th-1", first, 5, 5) // indexed

	lock := lockIndex(t, data)
	indexed := lock.height(t)
	lagging := publishSigned(t, g, a.chainID, "th-1", key, 6, 10)
	if h := lock.height(t); h != indexed {
		t.Fatalf("the index moved from %d to %d while locked", indexed, h)
	}
	g.kill()
	lock.release()

	g = startGateway(t, data)
	all := append(first, lagging...)
	var acked ackSet
	for _, id := range all {
		acked.add(id)
	}
	acked.checkExactlyOnce(t, g.api)
	checkVisible(t, g.api, "th-1", all, 15, 15)
	var st struct {
		Height uint64 `json:"height"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	if st.Height <= indexed {
		t.Fatalf("height %d after the restart, the index was at %d before the records", st.Height, indexed)
	}
}
