// Package pbfttest runs PBFT replicas (gateway/pbft cores) in a
// deterministic simulation: one goroutine, one seed driving message
// delivery, drops, duplicates, delays, partitions, crash-restarts and
// Byzantine replicas, with the safety invariants checked at every commit
// and liveness checked once the network heals. A failing seed replays
// exactly: `go test ./gateway/pbft/pbfttest -run TestSim -seed N -v`.
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

// keys is the simulation's signature scheme: HMAC-SHA256 under a secret
// per identity. A replica holds only its own secret, so it cannot sign
// for another; everyone can check (the simulator knows all secrets).
type keys struct {
	self    string
	secrets map[string][]byte
}

func (k *keys) Sign(data []byte) ([]byte, error) { return mac(k.secrets[k.self], data), nil }

func (k *keys) Verify(node string, data, sig []byte) bool {
	s, ok := k.secrets[node]
	return ok && hmac.Equal(mac(s, data), sig)
}

func (k *keys) VoteBytes(seq, view uint64, d pbft.Digest) []byte { return voteBytes(seq, view, d) }

func voteBytes(seq, view uint64, d pbft.Digest) []byte {
	b := binary.BigEndian.AppendUint64([]byte("sim commit v1"), seq)
	b = binary.BigEndian.AppendUint64(b, view)
	return append(b, d[:]...)
}

func mac(secret, data []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(data)
	return h.Sum(nil)
}

// block is the simulated application's proposal: like a ledgergate
// block, it names its parent, so proposals form a hash chain.
type block struct {
	_        struct{} `cbor:",toarray"`
	Seq      uint64
	Parent   []byte
	Proposer string
	Reqs     [][]byte
	Salt     uint64 // lets a Byzantine primary make a second, conflicting block
}

func (b *block) encode() []byte {
	out, err := cbor.Marshal(b)
	if err != nil {
		panic(err)
	}
	return out
}

func decodeBlock(p []byte) (*block, error) {
	var b block
	if err := cbor.Unmarshal(p, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// app is the simulated application of one replica. It rejects a request
// already executed or already in an ancestor proposal, as ledgergate
// rejects a replayed tx.
type app struct {
	id       string
	executed map[string]bool
	pending  map[pbft.Digest]*block // validated, not executed
}

func newApp(id string) *app {
	return &app{id: id, executed: map[string]bool{}, pending: map[pbft.Digest]*block{}}
}

// seen reports whether req is executed or in an ancestor of parent.
func (a *app) seen(req string, parent pbft.Digest) bool {
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

func (a *app) Build(seq, view uint64, parent pbft.Digest, reqs []pbft.Request) (pbft.Proposal, error) {
	b := &block{Seq: seq, Parent: parent[:], Proposer: a.id}
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
	p.Payload = b.encode()
	p.Digest = sha256.Sum256(p.Payload)
	a.pending[p.Digest] = b
	return p, nil
}

func (a *app) Validate(seq, view uint64, parent pbft.Digest, payload []byte) (pbft.Digest, [][32]byte, error) {
	b, err := decodeBlock(payload)
	if err != nil {
		return pbft.Digest{}, nil, err
	}
	if b.Seq != seq || !slices.Equal(b.Parent, parent[:]) || len(b.Reqs) == 0 {
		return pbft.Digest{}, nil, errors.New("sim: block does not extend its parent")
	}
	var ids [][32]byte
	in := map[string]bool{}
	for _, r := range b.Reqs {
		if !strings.HasPrefix(string(r), "req-") || a.seen(string(r), parent) || in[string(r)] {
			return pbft.Digest{}, nil, fmt.Errorf("sim: bad or replayed request %q", r)
		}
		in[string(r)] = true
		ids = append(ids, pbft.RequestID(r))
	}
	d := sha256.Sum256(payload)
	a.pending[d] = b
	return d, ids, nil
}

// exec applies a committed block.
func (a *app) exec(d pbft.Digest, b *block) {
	for _, r := range b.Reqs {
		a.executed[string(r)] = true
	}
	delete(a.pending, d)
}
