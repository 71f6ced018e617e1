package pbft

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/fxamacker/cbor/v2"
)

// Digest identifies a proposal: for ledgergate, the block's hash.
type Digest [32]byte

// Type is a consensus message's type.
type Type uint8

// The message types (PBFT 4.2 to 4.5). Request and Reject travel between
// replicas only; clients talk to their gateway.
const (
	TypeRequest    Type = 1 // a request forwarded to the primary (PBFT 4.2)
	TypePrePrepare Type = 2
	TypePrepare    Type = 3
	TypeCommit     Type = 4
	TypeCheckpoint Type = 5
	TypeViewChange Type = 6
	TypeNewView    Type = 7
	TypeReject     Type = 8 // the primary refused a forwarded request
	TypeViewQuery  Type = 9 // "I am in View; show me how you got past it"
)

var typeNames = map[Type]string{
	TypeRequest: "request", TypePrePrepare: "pre-prepare", TypePrepare: "prepare", TypeCommit: "commit",
	TypeCheckpoint: "checkpoint", TypeViewChange: "view-change", TypeNewView: "new-view", TypeReject: "reject",
	TypeViewQuery: "view-query",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is one consensus message. Which fields are set depends on Type:
//
//	request      Payload (the request)
//	pre-prepare  View, Seq, Digest, Payload (the proposal), Sig
//	prepare      View, Seq, Digest, Sig
//	commit       View, Seq, Digest, Sig (over Crypto.VoteBytes: a ledger vote)
//	checkpoint   Seq, Digest (of the proposal executed at Seq), Sig
//	view-change  View (the new view), Seq and Digest (last stable checkpoint),
//	             Proof (its 2f+1 checkpoints), Prepared, Sig
//	new-view     View, ViewChanges (2f+1), PrePrepares, Sig
//	reject       Digest (the request id), Payload (reason), Detail, Sig
//	view-query   View (the sender's), unsigned: the answer is signed
type Message struct {
	Type        Type       `cbor:"1,keyasint"`
	From        string     `cbor:"2,keyasint"`
	View        uint64     `cbor:"3,keyasint,omitempty"`
	Seq         uint64     `cbor:"4,keyasint,omitempty"`
	Digest      []byte     `cbor:"5,keyasint,omitempty"`
	Payload     []byte     `cbor:"6,keyasint,omitempty"`
	Proof       []*Message `cbor:"7,keyasint,omitempty"`
	Prepared    []Prepared `cbor:"8,keyasint,omitempty"`
	ViewChanges []*Message `cbor:"9,keyasint,omitempty"`
	PrePrepares []*Message `cbor:"10,keyasint,omitempty"`
	Detail      string     `cbor:"11,keyasint,omitempty"`
	Sig         []byte     `cbor:"12,keyasint,omitempty"`
	Executed    *Executed  `cbor:"13,keyasint,omitempty"` // view-change: the last proposal executed, with its commit certificate
}

// Executed is a proposal with its commit certificate: 2f+1 commit
// signatures. Proposals name their parent, so it decides every proposal
// below it too.
type Executed struct {
	Seq     uint64 `cbor:"1,keyasint"`
	View    uint64 `cbor:"2,keyasint"`
	Digest  Digest `cbor:"3,keyasint"`
	Commits []Vote `cbor:"4,keyasint"`
}

// Prepared is a prepared certificate (PBFT 4.4): a pre-prepare and 2f+1
// matching prepares of one view.
type Prepared struct {
	PrePrepare *Message   `cbor:"1,keyasint"`
	Prepares   []*Message `cbor:"2,keyasint"`
}

// MaxMessageBytes bounds a decoded message.
const MaxMessageBytes = 64 << 20

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic("pbft: invariant: cbor enc mode: " + err.Error())
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			MaxNestedLevels:   12,
			MaxArrayElements:  4096,
			MaxMapPairs:       32,
			UTF8:              cbor.UTF8RejectInvalid,
		}.DecMode()
		if err != nil {
			panic("pbft: invariant: cbor dec mode: " + err.Error())
		}
		return m
	}()
)

// ErrMalformed reports bytes that are not a well-formed message.
var ErrMalformed = errors.New("pbft: malformed message")

// Encode returns the message's deterministic CBOR encoding.
func (m *Message) Encode() []byte {
	b, err := encMode.Marshal(m)
	if err != nil {
		panic("pbft: invariant: encode message: " + err.Error())
	}
	return b
}

// Decode parses a message and checks its shape. It does not check
// signatures: Step does.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(data))
	}
	var m Message
	if err := decMode.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.checkShape(0); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkShape checks the fields a message of its type needs.
func (m *Message) checkShape(depth int) error {
	bad := func(what string) error { return fmt.Errorf("%w: %s: %s", ErrMalformed, m.Type, what) }
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrMalformed)
	}
	if m.From == "" || len(m.From) > 64 {
		return bad("bad sender")
	}
	unsigned := m.Type == TypeRequest || m.Type == TypeViewQuery
	needDigest := !unsigned && m.Type != TypeNewView
	if needDigest && len(m.Digest) != 32 {
		return bad("digest is not 32 bytes")
	}
	if !unsigned && len(m.Sig) == 0 {
		return bad("unsigned")
	}
	switch m.Type {
	case TypeRequest:
		if len(m.Payload) == 0 {
			return bad("empty")
		}
	case TypePrePrepare, TypePrepare, TypeCommit, TypeCheckpoint:
		if m.Seq == 0 {
			return bad("sequence 0")
		}
	case TypeViewChange:
		if depth > 1 {
			return bad("nested too deep")
		}
		for _, c := range m.Proof {
			if c == nil || c.Type != TypeCheckpoint {
				return bad("proof holds a non-checkpoint")
			}
			if err := c.checkShape(depth + 1); err != nil {
				return err
			}
		}
		for _, p := range m.Prepared {
			if p.PrePrepare == nil || p.PrePrepare.Type != TypePrePrepare {
				return bad("prepared certificate without a pre-prepare")
			}
			if err := p.PrePrepare.checkShape(depth + 1); err != nil {
				return err
			}
			for _, q := range p.Prepares {
				if q == nil || q.Type != TypePrepare {
					return bad("prepared certificate holds a non-prepare")
				}
				if err := q.checkShape(depth + 1); err != nil {
					return err
				}
			}
		}
	case TypeNewView:
		if depth > 0 {
			return bad("nested")
		}
		for _, v := range m.ViewChanges {
			if v == nil || v.Type != TypeViewChange {
				return bad("holds a non-view-change")
			}
			if err := v.checkShape(depth + 1); err != nil {
				return err
			}
		}
		for _, p := range m.PrePrepares {
			if p == nil || p.Type != TypePrePrepare {
				return bad("holds a non-pre-prepare")
			}
			if err := p.checkShape(depth + 1); err != nil {
				return err
			}
		}
	case TypeReject, TypeViewQuery:
	default:
		return fmt.Errorf("%w: unknown type %d", ErrMalformed, m.Type)
	}
	return nil
}

// signed is what a replica signs for every message but a commit: the
// message without its signature and without proposal payloads (a
// pre-prepare's payload is bound by its digest).
type signed struct {
	_       struct{} `cbor:",toarray"`
	Context string
	Domain  string
	Msg     *Message
}

func stripped(m *Message) *Message {
	c := *m
	c.Sig = nil
	if c.Type == TypePrePrepare {
		c.Payload = nil
	}
	if len(c.Prepared) > 0 {
		c.Prepared = make([]Prepared, len(m.Prepared))
		for i, p := range m.Prepared {
			c.Prepared[i] = Prepared{PrePrepare: withoutPayload(p.PrePrepare), Prepares: p.Prepares}
		}
	}
	if len(c.ViewChanges) > 0 {
		c.ViewChanges = make([]*Message, len(m.ViewChanges))
		for i, v := range m.ViewChanges {
			c.ViewChanges[i] = withoutPayloads(v)
		}
	}
	if len(c.PrePrepares) > 0 {
		c.PrePrepares = make([]*Message, len(m.PrePrepares))
		for i, p := range m.PrePrepares {
			c.PrePrepares[i] = withoutPayload(p)
		}
	}
	return &c
}

func withoutPayload(m *Message) *Message {
	c := *m
	c.Payload = nil
	return &c
}

// withoutPayloads is a view-change as a new-view carries it: its prepared
// certificates without proposals, which the new-view's pre-prepares hold.
func withoutPayloads(vc *Message) *Message {
	c := *vc
	if len(vc.Prepared) > 0 {
		c.Prepared = make([]Prepared, len(vc.Prepared))
		for i, p := range vc.Prepared {
			c.Prepared[i] = Prepared{PrePrepare: withoutPayload(p.PrePrepare), Prepares: p.Prepares}
		}
	}
	return &c
}

// signBytes is what m's signature covers.
func signBytes(domain string, m *Message) []byte {
	b, err := encMode.Marshal(signed{Context: "ledgergate pbft v1", Domain: domain, Msg: stripped(m)})
	if err != nil {
		panic("pbft: invariant: encode signed message: " + err.Error())
	}
	return b
}

// RequestID is the id of a request: the SHA-256 of its bytes (for
// ledgergate, the tx id).
func RequestID(data []byte) [32]byte { return sha256.Sum256(data) }

func digestOf(b []byte) Digest {
	var d Digest
	copy(d[:], b)
	return d
}

// SignBytes is what the signature of m, other than a commit, covers in
// domain. Simulators use it to model faulty replicas.
func SignBytes(domain string, m *Message) []byte { return signBytes(domain, m) }

// bytes returns a copy of d as a slice: messages must not alias a
// replica's fields, which change after the message was signed.
func (d Digest) bytes() []byte { return slices.Clone(d[:]) }

// EncodeHardState and DecodeHardState are the on-disk form of a hard
// state; EncodePrepared and DecodePrepared of a prepared certificate.
func EncodeHardState(hs *HardState) []byte {
	b, err := encMode.Marshal(hs)
	if err != nil {
		panic("pbft: invariant: encode hard state: " + err.Error())
	}
	return b
}

// DecodeHardState parses what EncodeHardState wrote.
func DecodeHardState(data []byte) (*HardState, error) {
	var hs HardState
	if err := decMode.Unmarshal(data, &hs); err != nil {
		return nil, fmt.Errorf("pbft: decode hard state: %w", err)
	}
	return &hs, nil
}

// EncodePrepared encodes a prepared certificate.
func EncodePrepared(p *Prepared) []byte {
	b, err := encMode.Marshal(p)
	if err != nil {
		panic("pbft: invariant: encode certificate: " + err.Error())
	}
	return b
}

// DecodePrepared parses what EncodePrepared wrote.
func DecodePrepared(data []byte) (*Prepared, error) {
	var p Prepared
	if err := decMode.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("pbft: decode certificate: %w", err)
	}
	if p.PrePrepare == nil || p.PrePrepare.Type != TypePrePrepare {
		return nil, errors.New("pbft: decode certificate: no pre-prepare")
	}
	return &p, nil
}
