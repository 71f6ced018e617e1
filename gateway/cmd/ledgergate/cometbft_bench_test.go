package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/sim"
)

// cometNet is a CometBFT testnet of real `cometbft start` processes on
// 127.0.0.1, each a validator running the built-in kvstore application
// (proxy_app = "kvstore", in memory, in the node's process). It is driven
// only through the cometbft CLI and its JSON-RPC over HTTP, so our module
// does not depend on CometBFT's.
type cometNet struct {
	t     testing.TB
	nodes []*cometNode
}

// cometNode is one running node.
type cometNode struct {
	cmd  *exec.Cmd
	rpc  string // http://127.0.0.1:port
	log  string // its stdout and stderr
	done chan error
}

var cometHTTP = &http.Client{Timeout: 30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}

// startComet makes an n-validator testnet with `cometbft testnet` in a
// temporary directory and starts its nodes on loopback: each node's P2P
// and RPC listen on ports picked free on 127.0.0.1, every node names the
// others as persistent peers at those ports (testnet already sets
// addr_book_strict = false and allow_duplicate_ip = true), and every other
// setting is CometBFT's default (timeout_commit 1s, mempool size 5,000,
// the kv tx indexer). It waits until every node has committed block 2.
// The nodes are killed when the benchmark ends, whether it fails or not.
func startComet(t testing.TB, bin string, n int) *cometNet {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("cometbft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("testnet", "--v", strconv.Itoa(n), "--o", dir, "--populate-persistent-peers=false")
	homes, ids, p2p := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		homes[i] = filepath.Join(dir, fmt.Sprintf("node%d", i))
		ids[i] = strings.TrimSpace(run("show-node-id", "--home", homes[i]))
		p2p[i] = freeAddr(t) // the others dial it: known before the node starts
	}
	c := &cometNet{t: t}
	for i := range n {
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, ids[j]+"@"+p2p[j])
			}
		}
		rpc := freeAddr(t)
		log := filepath.Join(homes[i], "node.log")
		f, err := os.Create(log)
		if err != nil {
			t.Fatal(err)
		}
		nd := &cometNode{rpc: "http://" + rpc, log: log, done: make(chan error, 1),
			cmd: exec.Command(bin, "start", "--home", homes[i], "--proxy_app", "kvstore",
				"--p2p.laddr", "tcp://"+p2p[i], "--rpc.laddr", "tcp://"+rpc,
				"--p2p.persistent_peers", strings.Join(peers, ","))}
		nd.cmd.Stdout, nd.cmd.Stderr = f, f // a file: the node's logging costs this process nothing
		err = nd.cmd.Start()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() { nd.done <- nd.cmd.Wait() }()
		t.Cleanup(nd.kill)
		c.nodes = append(c.nodes, nd)
	}
	deadline := time.Now().Add(time.Minute)
	for i, nd := range c.nodes {
		for {
			h, err := nd.height()
			if err == nil && h >= 2 {
				break
			}
			if nd.exited() || time.Now().After(deadline) {
				t.Fatalf("cometbft node%d: no block 2 within a minute (height %d, %v)\n%s", i, h, err, nd.logTail())
			}
			time.Sleep(100 * time.Millisecond) // polling its RPC, not waiting for an event
		}
	}
	return c
}

// kill kills the node with SIGKILL and waits for it to be gone.
func (nd *cometNode) kill() {
	if nd.exited() {
		return
	}
	nd.cmd.Process.Kill()
	err := <-nd.done
	nd.done <- err
}

// exited reports whether the process has ended.
func (nd *cometNode) exited() bool {
	select {
	case err := <-nd.done:
		nd.done <- err
		return true
	default:
		return false
	}
}

// logTail is the end of the node's log.
func (nd *cometNode) logTail() string {
	b, _ := os.ReadFile(nd.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// call makes one JSON-RPC call over HTTP GET, /method?args, and decodes
// its result into out.
func (nd *cometNode) call(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nd.rpc+path, nil)
	if err != nil {
		return err
	}
	resp, err := cometHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *cometRPCError  `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("cometbft %s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if r.Error != nil {
		return fmt.Errorf("cometbft %s: %s", path, r.Error)
	}
	return json.Unmarshal(r.Result, out)
}

type cometRPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data"`
}

func (e *cometRPCError) String() string { return fmt.Sprintf("%d %s: %s", e.Code, e.Message, e.Data) }

// height is the node's last committed block.
func (nd *cometNode) height() (int64, error) {
	var st struct {
		SyncInfo struct {
			Height int64 `json:"latest_block_height,string"`
		} `json:"sync_info"`
	}
	err := nd.call(context.Background(), "/status", &st)
	return st.SyncInfo.Height, err
}

// blockTxs are the txs of block h.
func (nd *cometNode) blockTxs(ctx context.Context, h int64) ([][]byte, error) {
	var blk struct {
		Block struct {
			Data struct {
				Txs [][]byte `json:"txs"` // base64 in JSON, as encoding/json decodes []byte
			} `json:"data"`
		} `json:"block"`
	}
	err := nd.call(ctx, "/block?height="+strconv.FormatInt(h, 10), &blk)
	return blk.Block.Data.Txs, err
}

// unconfirmed is the number of txs in the node's mempool.
func (nd *cometNode) unconfirmed() (int, error) {
	var r struct {
		N int `json:"n_txs,string"`
	}
	err := nd.call(context.Background(), "/num_unconfirmed_txs", &r)
	return r.N, err
}

// broadcast sends txs in one JSON-RPC batch of broadcast_tx_sync calls
// (each returns once the node's CheckTx accepted its tx into the
// mempool) and returns, for each tx, "" when accepted or why not.
func (nd *cometNode) broadcast(ctx context.Context, txs [][]byte) ([]string, error) {
	type call struct {
		JSONRPC string            `json:"jsonrpc"`
		ID      int               `json:"id"`
		Method  string            `json:"method"`
		Params  map[string][]byte `json:"params"`
	}
	calls := make([]call, len(txs))
	for i, tx := range txs {
		calls[i] = call{JSONRPC: "2.0", ID: i, Method: "broadcast_tx_sync", Params: map[string][]byte{"tx": tx}}
	}
	body, err := json.Marshal(calls)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.rpc, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cometHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	type answer struct {
		ID     int `json:"id"`
		Result *struct {
			Code uint32 `json:"code"`
			Log  string `json:"log"`
		} `json:"result"`
		Error *cometRPCError `json:"error"`
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var answers []answer
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '{' { // the answer to a batch of one is not an array
		answers = make([]answer, 1)
		err = json.Unmarshal(b, &answers[0])
	} else {
		err = json.Unmarshal(b, &answers)
	}
	if err != nil {
		return nil, fmt.Errorf("cometbft broadcast_tx_sync: HTTP %d: %w: %.200s", resp.StatusCode, err, b)
	}
	why := make([]string, len(txs))
	for i := range why {
		why[i] = "no answer"
	}
	for _, a := range answers {
		if a.ID < 0 || a.ID >= len(txs) {
			continue
		}
		switch {
		case a.Error != nil:
			why[a.ID] = a.Error.Data
			if why[a.ID] == "" {
				why[a.ID] = a.Error.Message
			}
		case a.Result != nil && a.Result.Code != 0:
			why[a.ID] = fmt.Sprintf("code %d %s", a.Result.Code, a.Result.Log)
		case a.Result != nil:
			why[a.ID] = ""
		}
	}
	return why, nil
}

// pids are the nodes' processes.
func (c *cometNet) pids() []int {
	var p []int
	for _, nd := range c.nodes {
		p = append(p, nd.cmd.Process.Pid)
	}
	return p
}

// drain waits until every node's mempool is empty, so one phase's
// backlog does not run into the next.
func (c *cometNet) drain(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := 0
		for i, nd := range c.nodes {
			n, err := nd.unconfirmed()
			if err != nil {
				c.t.Fatalf("cometbft node%d: %v\n%s", i, err, nd.logTail())
			}
			left += n
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cometbft: %d txs still in the mempools after %s", left, within)
		}
		time.Sleep(100 * time.Millisecond) // polling the RPC, not waiting for an event
	}
}

// cometLoad is one bounded load on a cometNet: Count txs, all built
// before the timed phase, sent over every node's RPC by Workers
// goroutines in batches of Batch, with at most Inflight sent and not yet
// committed (or refused) at any time, paced at Rate txs/s if positive, and
// cut off after Timeout.
type cometLoad struct {
	Phase    string // makes the keys of this load's txs unique
	Count    int
	Payload  int // bytes of each tx's value
	Inflight int
	Batch    int
	Workers  int // per node
	Rate     float64
	Timeout  time.Duration
}

// cometResult is a finished cometLoad. Committed txs are those seen in
// a block of node 0, which a watcher polls every 10 ms: a tx's latency is
// from just before its batch was sent to when the watcher saw the block
// that holds it (the poll adds up to 10 ms).
type cometResult struct {
	sim.Result // Acked: committed; Rate: committed per second, from the start to the last commit seen
	// Unacked are txs sent and neither committed nor refused by the end.
	// CometBFT v0.38 answers code 0 to a tx it drops because its mempool
	// filled up while the app checked the tx (mempool/clist_mempool.go,
	// resCbFirstTime); such a tx is never committed.
	Unacked  uint64
	Blocks   int // blocks committed in the phase
	BlockTxs int // txs in them (num_txs), this load's and any other
	// CPU is the nodes' user and system CPU time over the phase, and
	// CPUPerMsg that per committed tx; ClientCPU is this process's.
	CPU, CPUPerMsg, ClientCPU time.Duration
	Reasons                   map[string]uint64
	// Retried counts txs answered "mempool is full" and sent again
	// cometRetry later (a tx can count more than once).
	Retried uint64
	// Lost says, for the first tx sent and not committed, if any, whether
	// node 0 has it (its tx index) and how many txs each mempool holds.
	Lost string
}

// cometRetry is how long a tx answered "mempool is full" waits before it
// is sent again.
const cometRetry = 50 * time.Millisecond

// States of a tx in a cometLoad.
const (
	cometUnsent int32 = iota
	cometSent
	cometCommitted
	cometRefused
)

// cometPhase is a cometLoad under way.
type cometPhase struct {
	cometLoad
	prefix  []byte
	txs     [][]byte
	state   []atomic.Int32
	sentAt  []atomic.Int64 // since start
	slots   chan struct{}  // one per tx sent and not yet committed or refused
	start   time.Time
	next    atomic.Int64 // the first tx no sender has taken yet
	refused atomic.Uint64
	retried atomic.Uint64
	mu      sync.Mutex
	reasons map[string]uint64
}

// load runs l and reports.
func (c *cometNet) load(l cometLoad) (cometResult, error) {
	p := &cometPhase{cometLoad: l, prefix: []byte(l.Phase + "-"), txs: make([][]byte, l.Count),
		state: make([]atomic.Int32, l.Count), sentAt: make([]atomic.Int64, l.Count),
		slots: make(chan struct{}, l.Inflight), reasons: map[string]uint64{}}
	value := bytes.Repeat([]byte("v"), l.Payload)
	for i := range p.txs {
		p.txs[i] = slices.Concat(p.prefix, []byte(fmt.Sprintf("%09d=", i)), value)
	}
	h0, err := c.nodes[0].height()
	if err != nil {
		return cometResult{}, err
	}
	cpu0, err := procsCPU(c.pids())
	if err != nil {
		return cometResult{}, err
	}
	self0, err := sim.ProcessCPU(os.Getpid())
	if err != nil {
		return cometResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.Timeout)
	defer cancel()
	p.start = time.Now()
	var senders sync.WaitGroup
	for w := range l.Workers * len(c.nodes) {
		senders.Add(1)
		go func() {
			defer senders.Done()
			p.send(ctx, c.nodes[w%len(c.nodes)])
		}()
	}
	var res cometResult
	lat, lastCommit, watchErr := p.watch(ctx, c.nodes[0], h0, &res)
	cancel()
	senders.Wait()
	if watchErr != nil && !errors.Is(watchErr, context.Canceled) && !errors.Is(watchErr, context.DeadlineExceeded) {
		return cometResult{}, watchErr
	}
	cpu1, err := procsCPU(c.pids())
	if err != nil {
		return cometResult{}, err
	}
	self1, err := sim.ProcessCPU(os.Getpid())
	if err != nil {
		return cometResult{}, err
	}
	for i := range p.state {
		if p.state[i].Load() == cometSent {
			res.Lost = c.whereIs(p.txs[i])
			break
		}
	}
	res.Elapsed = time.Since(p.start)
	res.Refused = p.refused.Load()
	res.Retried = p.retried.Load()
	res.Unacked = uint64(l.Count) - res.Acked - res.Refused
	res.Devices = l.Workers * len(c.nodes)
	res.Reasons = p.reasons
	res.CPU = cpu1 - cpu0
	if res.Acked > 0 {
		res.CPUPerMsg = res.CPU / time.Duration(res.Acked)
		res.ClientCPU = (self1 - self0) / time.Duration(res.Acked)
		res.Rate = float64(res.Acked) / lastCommit.Seconds()
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		at := func(q float64) time.Duration { return lat[int(q*float64(n-1))] }
		res.P50, res.P90, res.P99, res.Max = at(0.50), at(0.90), at(0.99), lat[n-1]
	}
	return res, nil
}

// send is one sender: it takes the next Batch txs, waits for as many
// slots (and, when paced, until the last of them is due) and sends them
// to nd, until every tx is taken or ctx is done.
func (p *cometPhase) send(ctx context.Context, nd *cometNode) {
	for ctx.Err() == nil {
		i := int(p.next.Add(int64(p.Batch))) - p.Batch
		if i >= p.Count {
			return
		}
		j := min(i+p.Batch, p.Count)
		for range j - i {
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		if p.Rate > 0 { // the batch leaves when its last tx is due
			due := p.start.Add(time.Duration(float64(j-1) / p.Rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return
			}
		}
		at := int64(time.Since(p.start))
		var pending []int
		for k := i; k < j; k++ {
			p.sentAt[k].Store(at)
			p.state[k].Store(cometSent)
			pending = append(pending, k)
		}
		for len(pending) > 0 && ctx.Err() == nil {
			pending = p.broadcast(ctx, nd, pending)
			if len(pending) > 0 {
				select {
				case <-time.After(cometRetry):
				case <-ctx.Done():
				}
			}
		}
	}
}

// broadcast sends the txs pending to nd in one batch, releases the slots
// of those refused, and returns those to send again: the ones answered
// "mempool is full" (the nodes' mempools still hold txs of blocks node 0
// has committed; a client sends again a little later).
func (p *cometPhase) broadcast(ctx context.Context, nd *cometNode, pending []int) []int {
	batch := make([][]byte, len(pending))
	for k, x := range pending {
		batch[k] = p.txs[x]
	}
	why, err := nd.broadcast(ctx, batch)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		why = slices.Repeat([]string{err.Error()}, len(pending))
	}
	var again []int
	for k, w := range why {
		x := pending[k]
		switch {
		case w == "":
		case strings.HasPrefix(w, "mempool is full"):
			again = append(again, x)
			p.retried.Add(1)
		case p.state[x].CompareAndSwap(cometSent, cometRefused):
			<-p.slots
			p.refused.Add(1)
			p.mu.Lock()
			p.reasons[w]++
			p.mu.Unlock()
		}
	}
	return again
}

// watch reads nd's blocks after height from as they come, polling its
// height every 10 ms, until every tx is committed or refused or ctx is
// done. It counts the blocks and this load's committed txs into res, and
// returns the committed txs' latencies and when the last was seen.
func (p *cometPhase) watch(ctx context.Context, nd *cometNode, from int64, res *cometResult) ([]time.Duration, time.Duration, error) {
	var lat []time.Duration
	var last time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seen := from; int(res.Acked+p.refused.Load()) < p.Count; {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return lat, last, nil
		}
		h, err := nd.height()
		if err != nil {
			return lat, last, err
		}
		for ; seen < h; seen++ {
			blk, err := nd.blockTxs(ctx, seen+1)
			if err != nil {
				return lat, last, err
			}
			at := time.Since(p.start)
			res.Blocks++
			res.BlockTxs += len(blk)
			for _, tx := range blk {
				rest, ok := bytes.CutPrefix(tx, p.prefix)
				if !ok || len(rest) < 9 {
					continue
				}
				i, err := strconv.Atoi(string(rest[:9]))
				if err != nil || i >= p.Count {
					continue
				}
				if p.state[i].CompareAndSwap(cometSent, cometCommitted) {
					<-p.slots
					res.Acked++
					lat = append(lat, at-time.Duration(p.sentAt[i].Load()))
					last = at
				}
			}
		}
	}
	return lat, last, nil
}

// whereIs says whether node 0 has tx in its tx index and how many txs
// each node's mempool holds.
func (c *cometNet) whereIs(tx []byte) string {
	h := sha256.Sum256(tx)
	var r struct {
		Height int64 `json:"height,string"`
	}
	where := "not in node 0's tx index"
	if err := c.nodes[0].call(context.Background(), "/tx?hash=0x"+hex.EncodeToString(h[:]), &r); err == nil {
		where = fmt.Sprintf("in block %d", r.Height)
	}
	var n []string
	for _, nd := range c.nodes {
		u, err := nd.unconfirmed()
		if err != nil {
			n = append(n, err.Error())
			continue
		}
		n = append(n, strconv.Itoa(u))
	}
	return fmt.Sprintf("%.16s...: %s; mempools hold %s txs", tx, where, strings.Join(n, ", "))
}

// procsCPU is the user and system CPU time the processes have used, all
// together.
func procsCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := sim.ProcessCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}
