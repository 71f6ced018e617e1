// Package pbfttest runs PBFT replicas (gateway/pbft cores) in a
// deterministic simulation: one goroutine, one seed driving message
// delivery, drops, duplicates, delays, partitions, crash-restarts,
// Byzantine replicas and membership changes (a replica added from
// nothing, one removed, a killed one replaced by a new one), with the
// safety invariants checked at every step and liveness checked once the
// network heals. The invariants: no two replicas commit different
// blocks at a height; every commit certificate and prepared certificate
// counts 2f+1 members of its height's set and no one else (a removed
// Byzantine replica keeps voting, to try); every replica's core knows the
// member sets the decided chain gives, so all switch at one height. A
// failing seed replays exactly:
// `go test ./gateway/pbft/pbfttest -run TestSim -seed N -v`.
package pbfttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// Keys is the test signature scheme: HMAC-SHA256 under a secret per
// identity. A replica holds only its own secret (Self), so it cannot sign
// for another; everyone can check (the test knows all secrets).
type Keys struct {
	Self    string
	Secrets map[string][]byte
}

// Sign signs data as Self.
func (k *Keys) Sign(data []byte) ([]byte, error) { return mac(k.Secrets[k.Self], data), nil }

// Verify checks node's signature over data.
func (k *Keys) Verify(node string, data, sig []byte) bool {
	s, ok := k.Secrets[node]
	return ok && hmac.Equal(mac(s, data), sig)
}

// VoteBytes is what a commit signs.
func (k *Keys) VoteBytes(seq, view uint64, d pbft.Digest) []byte { return VoteBytes(seq, view, d) }

// VoteBytes is what a commit for d at seq in view signs.
func VoteBytes(seq, view uint64, d pbft.Digest) []byte {
	b := binary.BigEndian.AppendUint64([]byte("sim commit v1"), seq)
	b = binary.BigEndian.AppendUint64(b, view)
	return append(b, d[:]...)
}

func mac(secret, data []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(data)
	return h.Sum(nil)
}

// Block is the test application's proposal: like a ledgergate block, it
// names its parent, so proposals form a hash chain.
type Block struct {
	_        struct{} `cbor:",toarray"`
	Seq      uint64
	Parent   []byte
	Proposer string
	Reqs     [][]byte
}

// Encode returns the block's CBOR encoding.
func (b *Block) Encode() []byte {
	out, err := cbor.Marshal(b)
	if err != nil {
		panic("pbfttest: invariant: encode block: " + err.Error())
	}
	return out
}

// DecodeBlock parses a block.
func DecodeBlock(p []byte) (*Block, error) {
	var b Block
	if err := cbor.Unmarshal(p, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// App is one replica's test application. A request is valid if it starts
// with "req-" and is neither executed nor in an ancestor proposal, as
// ledgergate rejects a replayed tx.
type App struct {
	id       string
	executed map[string]bool
	pending  map[pbft.Digest]*Block // validated, not executed
	tip      pbft.Digest            // the last block executed (the genesis first)
}

// ErrUnknownParent is what Build and Validate return for a proposal on a
// parent this application does not hold, neither executed nor built or
// validated: as ledgergate's application (gateway/replica) refuses it.
var ErrUnknownParent = errors.New("pbfttest: proposal extends a block this replica does not hold")

// NewApp returns the application of replica id.
func NewApp(id string, genesis pbft.Digest) *App {
	return &App{id: id, executed: map[string]bool{}, pending: map[pbft.Digest]*Block{}, tip: genesis}
}

// holds reports whether d is the executed tip or a pending block.
func (a *App) holds(d pbft.Digest) bool { return d == a.tip || a.pending[d] != nil }

// Executed reports whether req was executed.
func (a *App) Executed(req string) bool { return a.executed[req] }

// ReconfigPrefix starts a reconfiguration request:
// "reconfig:<tag>:<id>,<id>,..." names the whole new member set, in
// primary order (the tag makes each request unique).
const ReconfigPrefix = "reconfig:"

// ParseReconfig returns the member set a reconfiguration request names,
// and whether req is a valid one: n >= 4 or n = 1 distinct ids, as
// ledgergate's cluster.reconfig tx.
func ParseReconfig(req []byte) ([]string, bool) {
	rest, ok := strings.CutPrefix(string(req), ReconfigPrefix)
	if !ok {
		return nil, false
	}
	_, list, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, false
	}
	nodes := strings.Split(list, ",")
	seen := map[string]bool{}
	for _, n := range nodes {
		if n == "" || seen[n] {
			return nil, false
		}
		seen[n] = true
	}
	if len(nodes) != 1 && len(nodes) < 4 {
		return nil, false
	}
	return nodes, true
}

// Reconfig implements pbft.Reconfigurer: a committed block's last valid
// reconfiguration request.
func (a *App) Reconfig(seq uint64, payload []byte) ([]string, bool) {
	b, err := DecodeBlock(payload)
	if err != nil {
		return nil, false
	}
	var nodes []string
	found := false
	for _, r := range b.Reqs {
		if n, ok := ParseReconfig(r); ok {
			nodes, found = n, true
		}
	}
	return nodes, found
}

// Check is a driver's check of a forwarded request: a reason to reject
// it, or "".
func (a *App) Check(req []byte) string {
	_, reconfig := ParseReconfig(req)
	switch {
	case !strings.HasPrefix(string(req), "req-") && !reconfig:
		return "invalid"
	case a.executed[string(req)]:
		return "replay"
	}
	return ""
}

// seen reports whether req is executed or in an ancestor of parent.
func (a *App) seen(req string, parent pbft.Digest) bool {
	if a.executed[req] {
		return true
	}
	for d := parent; ; {
		b := a.pending[d]
		if b == nil {
			return false
		}
		for _, r := range b.Reqs {
			if string(r) == req {
				return true
			}
		}
		d = pbft.Digest(b.Parent)
	}
}

// Build makes the block at seq from the requests not yet seen.
func (a *App) Build(seq, view uint64, parent pbft.Digest, reqs []pbft.Request) (pbft.Proposal, error) {
	if !a.holds(parent) {
		return pbft.Proposal{}, ErrUnknownParent
	}
	b := &Block{Seq: seq, Parent: parent[:], Proposer: a.id}
	var p pbft.Proposal
	in := map[string]bool{}
	for i, r := range reqs {
		if a.seen(string(r.Data), parent) || in[string(r.Data)] {
			p.Rejected = append(p.Rejected, pbft.Rejected{ID: r.ID, Index: i, Reason: "replay"})
			continue
		}
		in[string(r.Data)] = true
		b.Reqs = append(b.Reqs, r.Data)
		p.Included = append(p.Included, i)
	}
	p.Payload = b.Encode()
	p.Digest = sha256.Sum256(p.Payload)
	a.pending[p.Digest] = b
	return p, nil
}

// Validate checks a primary's block on top of parent.
func (a *App) Validate(seq, view uint64, parent pbft.Digest, payload []byte) (pbft.Digest, [][32]byte, error) {
	if !a.holds(parent) {
		return pbft.Digest{}, nil, ErrUnknownParent
	}
	b, err := DecodeBlock(payload)
	if err != nil {
		return pbft.Digest{}, nil, err
	}
	if b.Seq != seq || !slices.Equal(b.Parent, parent[:]) || len(b.Reqs) == 0 {
		return pbft.Digest{}, nil, errors.New("pbfttest: block does not extend its parent")
	}
	var ids [][32]byte
	in := map[string]bool{}
	for _, r := range b.Reqs {
		if a.Check(r) == "invalid" || a.seen(string(r), parent) || in[string(r)] {
			return pbft.Digest{}, nil, fmt.Errorf("pbfttest: bad or replayed request %q", r)
		}
		in[string(r)] = true
		ids = append(ids, pbft.RequestID(r))
	}
	d := sha256.Sum256(payload)
	a.pending[d] = b
	return d, ids, nil
}

// Exec applies a committed block.
func (a *App) Exec(e pbft.Entry) {
	b, err := DecodeBlock(e.Payload)
	if err != nil {
		return
	}
	for _, r := range b.Reqs {
		a.executed[string(r)] = true
	}
	for d, p := range a.pending {
		if p.Seq <= e.Seq {
			delete(a.pending, d) // decided: a proposal there is stale
		}
	}
	a.tip = e.Digest
}
