package pbft_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
)

// TestRemovedReplicaRefused: after n4 was removed (testdata/
// reconfig_view_change.txt up to the new set's view 2), a prepare and a
// commit n4 signs for a height of the new set count nowhere, even when
// it is the vote a certificate lacks; a new member's vote does count.
func TestRemovedReplicaRefused(t *testing.T) {
	o := defaultOptions()
	o.n, o.checkpoint = 5, 2
	var out bytes.Buffer
	h, err := newCluster(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.script(
		"propose n0 reconfig:1:n0,n1,n2,n3 req-a req-b req-c req-d req-e req-f req-g", "deliver",
		"tick n0", "deliver", "crash n0",
		"propose n1 req-x req-y", "tick all 10", "deliver", "tick all 10", "deliver",
	); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		r, _ := h.replica(id)
		if st := r.core.Status(); st.Epoch != 11 || st.View != 2 || st.Changing || st.Executed != 10 {
			t.Fatalf("%s: %+v, want view 2 of the set from s11, s10 executed", id, st)
		}
	}
	// n2 (view 2's primary) proposes s11; only its pre-prepare reaches n1.
	if err := h.script("propose n2 req-z", "deliver from=n2 to=n1 type=pre-prepare"); err != nil {
		t.Fatal(err)
	}
	n1, _ := h.replica("n1")
	pp := h.wire[0].msg
	for _, e := range h.wire {
		if e.msg.Type == pbft.TypePrePrepare && e.msg.Seq == 11 {
			pp = e.msg
		}
	}
	if pp.Type != pbft.TypePrePrepare || pp.Seq != 11 {
		t.Fatalf("no pre-prepare of s11 queued: %v", h.wire)
	}
	forged := func(from string, typ pbft.Type) *pbft.Message {
		m := &pbft.Message{Type: typ, From: from, View: 2, Seq: 11, Digest: pp.Digest}
		k := &pbfttest.Keys{Self: from, Secrets: h.secrets}
		data := pbft.SignBytes("interaction", m)
		if typ == pbft.TypeCommit {
			data = k.VoteBytes(11, 2, pbft.Digest(pp.Digest))
		}
		m.Sig, _ = k.Sign(data)
		return m
	}
	// n1 holds its own prepare and n2's pre-prepare: one vote short of
	// 3. n4's prepare must not make it prepared.
	out.Reset()
	if err := h.status1(n1, func() error { return n1.core.Step(forged("n4", pbft.TypePrepare)) }); err != nil {
		t.Fatal(err)
	}
	if err := h.script("deliver from=n2 to=n1 type=prepare"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "n1 prepared s11") {
		t.Fatalf("n1 prepared s11 with the vote of removed n4:\n%s", out.String())
	}
	// n3's prepare, a member's, does.
	if err := h.status1(n1, func() error { return n1.core.Step(forged("n3", pbft.TypePrepare)) }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "n1 prepared s11") {
		t.Fatalf("n1 did not prepare s11 with n1, n2 and n3:\n%s", out.String())
	}
	// Commits: n1's own and n2's (delivered below) and n4's forged one are
	// not a commit certificate; n3's makes one, without n4.
	out.Reset()
	for _, step := range []func() error{
		func() error { return n1.core.Step(forged("n4", pbft.TypeCommit)) },
		func() error { return n1.core.Step(forged("n2", pbft.TypeCommit)) },
	} {
		if err := h.status1(n1, step); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(out.String(), "n1 executes s11") {
		t.Fatalf("n1 executed s11 with the commit of removed n4:\n%s", out.String())
	}
	if err := h.status1(n1, func() error { return n1.core.Step(forged("n3", pbft.TypeCommit)) }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "n1 executes s11 v2") || strings.Contains(out.String(), "n4") {
		t.Fatalf("n1 did not execute s11 with commits of n1, n2, n3 only:\n%s", out.String())
	}
}

// TestRestartPastBoundary: a replica that restarts with blocks past a
// boundary but a hard state whose view was installed before it (it
// crashed before its view change was persisted) changes views before it
// orders anything of the new set, and gets into the new set's view.
func TestRestartPastBoundary(t *testing.T) {
	o := defaultOptions()
	o.checkpoint, o.spare = 2, 1
	var out bytes.Buffer
	h, err := newCluster(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.script(
		"crash n3",
		"propose n0 reconfig:1:n0,n1,n2,n4 req-a req-b req-c req-d req-e req-f req-g req-h req-i",
		"deliver", "tick n0", "deliver", "tick n0", "deliver", "crash n2",
	); err != nil {
		t.Fatal(err)
	}
	n2, _ := h.replica("n2")
	if len(n2.chain) != 10 || n2.hs.Epoch != 10 {
		t.Fatalf("n2 persisted %d blocks and hard state %+v, want s10 and the new set's view", len(n2.chain), n2.hs)
	}
	// As if its last hard state were one from before the boundary.
	n2.hs = pbft.HardState{View: 0, Stable: n2.hs.Stable, StableDigest: n2.hs.StableDigest, Proof: n2.hs.Proof}
	out.Reset()
	if err := h.script("restart n2"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "n2 broadcasts view-change v1") {
		t.Fatalf("n2 restarted past the boundary without asking for a view of the new set:\n%s", out.String())
	}
	if st := n2.core.Status(); !st.Changing || st.Epoch != 11 {
		t.Fatalf("n2 after restart: %+v", st)
	}
	if err := h.script("tick all 10", "deliver", "propose n1 req-after", "deliver"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n0", "n1", "n2", "n4"} {
		r, _ := h.replica(id)
		if st := r.core.Status(); st.Changing || st.Executed != 11 || st.Epoch != 11 {
			t.Errorf("%s: %+v, want s11 executed in the new set", id, st)
		}
	}
}
