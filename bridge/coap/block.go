package coap

import (
	"net/netip"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// block is a Block1 or Block2 option value (RFC 7959 2.2).
type block struct {
	num  uint32
	more bool
	szx  uint8
}

// decodeBlock reads a block option value; false for SZX 7 (BERT, only on
// reliable transports, RFC 8323 6) and for values over 3 bytes.
func decodeBlock(v uint32) (block, bool) {
	b := block{num: v >> 4, more: v&0x8 != 0, szx: uint8(v & 0x7)}
	return b, v <= 0xffffff && b.szx < 7
}

func (b block) size() int { return 16 << b.szx }

func (b block) encode() uint32 {
	v := b.num<<4 | uint32(b.szx)
	if b.more {
		v |= 0x8
	}
	return v
}

// szxOf is the SZX of a block size.
func szxOf(size int) (uint8, bool) {
	for szx := uint8(0); szx < 7; szx++ {
		if 16<<szx == size {
			return szx, true
		}
	}
	return 0, false
}

// block2 cuts a's payload to the block the request asks for (Block2), or
// to its first block if it is longer than BlockSize and the request asks
// for none (RFC 7959 2.4). The first block carries Size2.
func (s *Server) block2(req *pool.Message, a answer) answer {
	size, off, asked, bad := s.wantBlock(req)
	if bad.code != 0 {
		return bad
	}
	if !asked && len(a.body) <= size {
		return a
	}
	if off > 0 && off >= len(a.body) {
		return refuse(ledger.ReasonBadOption, "Block2 asks for offset %d of a %d-byte representation", off, len(a.body))
	}
	end := min(off+size, len(a.body))
	out := a
	out.body = a.body[off:end]
	s.cut(&out, off, size, len(a.body))
	return out
}

// wantBlock reads the Block2 option of a request: the block size of the
// answer (BlockSize, or less if the request asks for less), the offset
// asked for, and whether the request has the option; a refusal if it is
// malformed.
func (s *Server) wantBlock(req *pool.Message) (size, off int, asked bool, bad answer) {
	size = s.cfg.BlockSize
	v, err := req.GetOptionUint32(message.Block2)
	if err != nil {
		return size, 0, false, answer{}
	}
	b, ok := decodeBlock(v) // the M bit means nothing in a request (RFC 7959 2.2)
	if !ok {
		return 0, 0, true, refuse(ledger.ReasonMalformed, "Block2 option %#x in a request", v)
	}
	if b.size() < size {
		size = b.size()
	}
	// A larger block asked for is served in BlockSize blocks: the
	// offset stays, the number scales (RFC 7959 2.4).
	return size, int(b.num) * b.size(), true, answer{}
}

// cut sets the Block2 (and, on the first block, Size2) of a, the block
// of size bytes at off of a total-byte representation.
func (s *Server) cut(a *answer, off, size, total int) {
	szx, _ := szxOf(size)
	a.block2 = opt(block{num: uint32(off / size), more: off+size < total, szx: szx}.encode())
	if off == 0 {
		a.size2 = opt(uint32(total))
	}
}

// transferKey names a Block1 transfer: the peer, the resource and the
// Request-Tag (RFC 9175 3.3). Blocks of one transfer may carry different
// tokens (RFC 7959 2.5).
type transferKey struct {
	p      *peer
	stream string
	tag    string
}

// transfer is a Block1 body being reassembled.
type transfer struct {
	key transferKey
	// udp: the transfer is a UDP endpoint's, whose blocks no one has
	// authenticated (the signature is at the end of the record); it is
	// counted by address and expires sooner. A DTLS session's is an
	// enrolled device's.
	udp     bool
	buf     []byte
	lastOff int // the last block taken, to answer it again if resent
	lastLen int
	used    time.Time
}

// blockStore reassembles Block1 transfers with bounded memory: at most
// max transfers, perPeer of one peer, perAddr of the UDP endpoints of
// one address, maxBytes of buffers (their capacity), each idle at most
// timeout, or udpTimeout over UDP.
type blockStore struct {
	max, perPeer, perAddr, maxBytes int
	timeout, udpTimeout             time.Duration
	m                               *metrics

	mu     sync.Mutex
	all    map[transferKey]*transfer
	byPeer map[*peer]map[*transfer]struct{}
	byAddr map[netip.Prefix]map[*transfer]struct{} // UDP transfers
	bytes  int
	stats  blockStats
}

// blockStats count what happened to transfers.
type blockStats struct {
	started, completed, evicted, expired, refused, incomplete uint64
}

func newBlockStore(cfg Config, m *metrics) *blockStore {
	return &blockStore{max: cfg.MaxTransfers, perPeer: cfg.MaxTransfersPerPeer, perAddr: cfg.MaxTransfersPerAddr,
		maxBytes: cfg.MaxTransferBytes, timeout: cfg.BlockTimeout, udpTimeout: cfg.UDPBlockTimeout, m: m,
		all: map[transferKey]*transfer{}, byPeer: map[*peer]map[*transfer]struct{}{},
		byAddr: map[netip.Prefix]map[*transfer]struct{}{}}
}

// put takes a block of a POST to stream (v its Block1 option, size1 its
// Size1 or -1) and answers it: 2.31 Continue for a block that is not the
// last, a refusal, or done with the whole body (at most limit bytes).
func (b *blockStore) put(p *peer, stream, tag string, v uint32, payload []byte, size1, limit int, now time.Time) ([]byte, answer, bool) {
	blk, ok := decodeBlock(v)
	if !ok {
		return nil, refuse(ledger.ReasonMalformed, "Block1 option %#x: SZX 7 (BERT) is for reliable transports", v), false
	}
	size := blk.size()
	if blk.more && len(payload) != size || !blk.more && len(payload) > size {
		return nil, refuse(ledger.ReasonMalformed, "block %d has %d bytes, block size %d", blk.num, len(payload), size), false
	}
	if size1 > limit {
		a := refuse(ledger.ReasonTooLarge, "a %d-byte record, at most %d", size1, limit)
		a.size1 = opt(uint32(limit))
		return nil, a, false
	}
	off := int(blk.num) * size
	key := transferKey{p: p, stream: stream, tag: tag}
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.gauge()
	t := b.all[key]
	if blk.num == 0 {
		if t != nil {
			b.removeLocked(t) // the client starts over
		}
		if !blk.more {
			return payload, answer{}, true // one block: nothing to keep
		}
		udp := p.dtls == nil
		if len(b.byPeer[p]) >= b.perPeer {
			b.removeLocked(lru(b.byPeer[p]))
			b.stats.evicted++
		}
		// One address, whatever its ports, has its share and no more.
		if udp && len(b.byAddr[p.addr]) >= b.perAddr {
			b.removeLocked(lru(b.byAddr[p.addr]))
			b.stats.evicted++
		}
		if len(b.all) >= b.max {
			b.sweepLocked(now)
		}
		if len(b.all) >= b.max {
			b.stats.refused++
			return nil, refuse(ledger.ReasonOverloaded, "too many block-wise transfers at this gateway"), false
		}
		t = &transfer{key: key, udp: udp, lastOff: -1, used: now}
		b.all[key] = t
		addTransfer(b.byPeer, p, t)
		if udp {
			addTransfer(b.byAddr, p.addr, t)
		}
		b.stats.started++
	} else {
		if t == nil {
			b.stats.incomplete++
			return nil, refuse(ledger.ReasonIncomplete, "block %d of no transfer: start with block 0", blk.num), false
		}
		if blk.more && off == t.lastOff && len(payload) == t.lastLen && off+len(payload) == len(t.buf) {
			t.used = now // the last block again, with a new message id
			return nil, continueAnswer(blk), false
		}
		if off != len(t.buf) {
			b.removeLocked(t)
			b.stats.incomplete++
			return nil, refuse(ledger.ReasonIncomplete, "block %d at offset %d, expected offset %d", blk.num, off, len(t.buf)), false
		}
	}
	n := len(t.buf) + len(payload)
	if n > limit {
		b.removeLocked(t)
		a := refuse(ledger.ReasonTooLarge, "a record of more than %d bytes", limit)
		a.size1 = opt(uint32(limit))
		return nil, a, false
	}
	if n > cap(t.buf) {
		c := min(max(2*cap(t.buf), n, 1024), limit)
		if b.bytes-cap(t.buf)+c > b.maxBytes {
			b.removeLocked(t)
			b.stats.refused++
			return nil, refuse(ledger.ReasonOverloaded, "too many block-wise bytes at this gateway"), false
		}
		buf := make([]byte, len(t.buf), c)
		copy(buf, t.buf)
		b.bytes += c - cap(t.buf)
		t.buf = buf
	}
	t.buf = append(t.buf, payload...)
	t.lastOff, t.lastLen, t.used = off, len(payload), now
	if blk.more {
		return nil, continueAnswer(blk), false
	}
	body := t.buf
	b.removeLocked(t)
	b.stats.completed++
	return body, answer{}, true
}

// continueAnswer is 2.31 Continue for a block (RFC 7959 2.3).
func continueAnswer(blk block) answer {
	return answer{code: codes.Continue, format: formatNone, reason: resultContinue, block1: opt(blk.encode())}
}

// lru is the least recently used transfer of set.
func lru(set map[*transfer]struct{}) *transfer {
	var old *transfer
	for t := range set {
		if old == nil || t.used.Before(old.used) {
			old = t
		}
	}
	return old
}

func addTransfer[K comparable](m map[K]map[*transfer]struct{}, k K, t *transfer) {
	if m[k] == nil {
		m[k] = map[*transfer]struct{}{}
	}
	m[k][t] = struct{}{}
}

func removeTransfer[K comparable](m map[K]map[*transfer]struct{}, k K, t *transfer) {
	set := m[k]
	delete(set, t)
	if len(set) == 0 {
		delete(m, k)
	}
}

func (b *blockStore) removeLocked(t *transfer) {
	if t == nil || b.all[t.key] != t {
		return
	}
	delete(b.all, t.key)
	removeTransfer(b.byPeer, t.key.p, t)
	if t.udp {
		removeTransfer(b.byAddr, t.key.p.addr, t)
	}
	b.bytes -= cap(t.buf)
}

// sweep drops transfers idle longer than their timeout.
func (b *blockStore) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(now)
	b.gauge()
}

func (b *blockStore) sweepLocked(now time.Time) {
	for _, t := range b.all {
		timeout := b.timeout
		if t.udp {
			timeout = b.udpTimeout
		}
		if now.Sub(t.used) > timeout {
			b.removeLocked(t)
			b.stats.expired++
		}
	}
}

// dropPeer drops p's transfers.
func (b *blockStore) dropPeer(p *peer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for t := range b.byPeer[p] {
		b.removeLocked(t)
	}
	b.gauge()
}

// peerTransfers is the number of p's transfers.
func (b *blockStore) peerTransfers(p *peer) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.byPeer[p])
}

// usage returns the transfers, their bytes and the counters.
func (b *blockStore) usage() (transfers, bytes int, st blockStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.all), b.bytes, b.stats
}

func (b *blockStore) gauge() {
	b.m.transfers.Set(float64(len(b.all)))
	b.m.transferBytes.Set(float64(b.bytes))
}
