package pbft_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
)

// maxFuzzInput caps fuzz inputs. Real messages may be larger
// (pbft.MaxMessageBytes), but a megabyte exercises every decoder path.
const maxFuzzInput = 1 << 20

// FuzzStep feeds bytes from a peer to replicas that have state: Decode,
// then Step at each of four replicas, then the driver's work and the
// delivery of everything that follows. Each message also comes signed by
// n3, a Byzantine replica (f = 1), so that it gets past the signature
// checks. Nothing may panic, and the safety
// checks of the harness (one digest per seq, valid commit certificates,
// chains that extend) must hold whatever a peer sends. Whatever decodes
// must re-encode to a message that decodes to the same.
func FuzzStep(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m.Encode())
	}
	f.Add([]byte{0xa1, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		m, err := pbft.Decode(data)
		if err != nil {
			return
		}
		enc := m.Encode()
		again, err := pbft.Decode(enc)
		if err != nil {
			t.Fatalf("a decoded %s does not decode after Encode: %v", m.Type, err)
		}
		if !bytes.Equal(again.Encode(), enc) {
			t.Fatalf("a decoded %s decodes to another message after Encode", m.Type)
		}
		h, err := fuzzCluster()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.reps {
			// Each replica gets its own copy: a core may keep the message.
			m, err := pbft.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.status1(r, func() error { return r.core.Step(m) }); err != nil {
				t.Fatalf("step %s at %s: %v", m.Type, r.id, err)
			}
			// The same message sent by a Byzantine n3, which signs
			// whatever it likes: past the signature checks.
			if r.id != "n3" {
				b := byzantine(h, m)
				if err := h.status1(r, func() error { return r.core.Step(b) }); err != nil {
					t.Fatalf("step %s at %s: %v", m.Type, r.id, err)
				}
			}
		}
		if err := h.run([]string{"deliver"}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzStepReconfig is FuzzStep at a membership change: four replicas
// and a spare n4 have a reconfiguration (n3 replaced by n4) committed and
// s10, the old set's last, prepared with its commits on the wire, so a
// message may land on either side of the boundary. The Byzantine n3 is
// the replica being removed. Its seeds are the messages of a whole
// change: the old set's votes, the epoch's view change, the new set's.
func FuzzStepReconfig(f *testing.F) {
	for _, m := range seedReconfigMessages(f) {
		f.Add(m.Encode())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		if _, err := pbft.Decode(data); err != nil {
			return
		}
		h, err := reconfigCluster()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.reps {
			m, err := pbft.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.status1(r, func() error { return r.core.Step(m) }); err != nil {
				t.Fatalf("step %s at %s: %v", m.Type, r.id, err)
			}
			if r.id != "n3" {
				b := byzantine(h, m)
				if err := h.status1(r, func() error { return r.core.Step(b) }); err != nil {
					t.Fatalf("step %s at %s: %v", m.Type, r.id, err)
				}
			}
		}
		if err := h.script("deliver", "propose n1 req-z", "deliver"); err != nil {
			t.Fatal(err)
		}
	})
}

// reconfigCluster returns n0..n3 and the spare n4 with n3's replacement
// by n4 committed at s1 and s10 (the boundary, checkpoint=2) prepared.
func reconfigCluster() (*cluster, error) {
	o := defaultOptions()
	o.checkpoint, o.spare = 2, 1
	h, err := newCluster(o, io.Discard)
	if err != nil {
		return nil, err
	}
	return h, h.script(
		"propose n0 reconfig:1:n0,n1,n2,n4 req-a req-b req-c req-d req-e req-f req-g req-h req-i",
		"deliver", "tick n0",
		"deliver type=request,pre-prepare,prepare",
	)
}

// seedReconfigMessages returns the messages of a run through a change.
func seedReconfigMessages(tb testing.TB) []*pbft.Message {
	h, err := reconfigCluster()
	if err != nil {
		tb.Fatal(err)
	}
	h.record = true
	if err := h.script("deliver", "propose n1 req-after", "deliver"); err != nil {
		tb.Fatal(err)
	}
	n4, _ := h.replica("n4")
	if st := n4.core.Status(); !st.Member || st.Executed != 11 {
		tb.Fatalf("the seed run did not get n4 into the new set: %+v", st)
	}
	return h.sent
}

// byzantine returns a copy of m from n3, signed with n3's key.
func byzantine(h *cluster, m *pbft.Message) *pbft.Message {
	b := *m
	b.From = "n3"
	k := &pbfttest.Keys{Self: "n3", Secrets: h.secrets}
	data := pbft.SignBytes("interaction", &b)
	if b.Type == pbft.TypeCommit {
		data = k.VoteBytes(b.Seq, b.View, pbft.Digest(b.Digest))
	}
	b.Sig, _ = k.Sign(data)
	return &b
}

// fuzzCluster returns four replicas that executed s1 and s2 (a stable
// checkpoint) and prepared s3, whose commits are still on the wire.
func fuzzCluster() (*cluster, error) {
	o := defaultOptions()
	o.checkpoint = 2
	h, err := newCluster(o, io.Discard)
	if err != nil {
		return nil, err
	}
	return h, h.script(
		"propose n0 req-a req-b",
		"deliver",
		"propose n1 req-c",
		"deliver type=request,pre-prepare,prepare",
	)
}

// script runs commands, ignoring their output.
func (h *cluster) script(cmds ...string) error {
	for _, c := range cmds {
		if err := h.run(strings.Fields(c)); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return nil
}

// seedMessages returns messages of every type from a run: the normal
// case, checkpoints, a rejected replay, a view change, and a view query
// from a replica that missed it.
func seedMessages(tb testing.TB) []*pbft.Message {
	o := defaultOptions()
	o.checkpoint = 2
	h, err := newCluster(o, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	h.record = true
	err = h.script(
		"propose n1 req-a req-b",
		"deliver",
		"propose n2 req-a", // executed: n0 rejects it
		"deliver",
		// n1's request is lost; n1 and n2 time out and n0 joins them.
		// n3 hears nothing of the view change.
		"propose n1 req-c",
		"deliver type=request drop",
		"tick all 10",
		"deliver type=request to=n2",
		"deliver type=request,checkpoint drop",
		"tick all 10",
		"deliver to=n3 drop",
		"deliver type=view-change,new-view to=n0,n1,n2",
		"deliver to=n3 drop",
		// A message of view 1 makes n3 ask for the new-view it missed.
		"propose n1 req-d",
		"deliver",
	)
	if err != nil {
		tb.Fatal(err)
	}
	seen := map[pbft.Type]bool{}
	for _, m := range h.sent {
		seen[m.Type] = true
	}
	for t := pbft.TypeRequest; t <= pbft.TypeViewQuery; t++ {
		if !seen[t] {
			tb.Fatalf("the seed run sent no %s", t)
		}
	}
	return h.sent
}
