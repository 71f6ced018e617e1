package vectors

import (
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The member changes of the membership vectors (protocol.md 6.15 and
// 10.2), on the vectors' chain after its block 6:
//
//	height 7:  change 1, certified by the genesis set, names n2 n3 n4 n5
//	           (n1 replaced by n5); in force from MembersFrom(7) = 81
//	height 80: a record certified by the genesis set (still in force)
//	height 81: a record certified by n2 n3 n5 (set 1, quorum 3)
//	height 90: change 2, certified by set 1, names n3 n4 n5 n6 n7 (n2
//	           removed, n6 and n7 added); in force from MembersFrom(90) = 161
//	height 161: a record certified by n5 n6 n7 n3 (set 2, quorum 4)
//
// The blocks between are not made: a receipt does not check prev.
const (
	changeAt1, changeAt2 = 7, 90
)

func (x *gen) reconfig(nodes ...string) *ledger.Body {
	b := body(ledger.KindReconfig)
	b.ClusterReconfig = &ledger.ClusterReconfig{}
	for _, n := range nodes {
		b.ClusterReconfig.Nodes = append(b.ClusterReconfig.Nodes, x.node(n))
	}
	return b
}

// node is a member as the genesis would name it (the address is that of
// its position in n1..n7).
func (x *gen) node(n string) ledger.Node {
	return ledger.Node{ID: n, PublicKey: x.k(n).spki(), Addrs: []string{fmt.Sprintf("10.0.0.%s:7000", n[1:])}}
}

// lone makes a block at height, linked to prev, certified by signers in
// view 0, and returns the receipt of its tx at index.
func (x *gen) lone(height uint64, prev []byte, signers []string, index uint64, txs ...[]byte) *ledger.Receipt {
	b := &ledger.Block{Header: ledger.Header{ChainID: chainID, Height: height, Prev: prev, TxRoot: ledger.NewTree(txs).Root(),
		NumTxs: uint64(len(txs)), Time: t0 + int64(height)*minute, View: 0, Proposer: signers[0]}, Txs: txs}
	b.Cert = x.cert(&b.Header, 0, signers...)
	r, err := ledger.NewReceipt(b, ledger.NewTree(b.Txs), index)
	if err != nil {
		x.t.Fatal(err)
	}
	return r
}

func (x *gen) record(seq uint64, at int64) []byte {
	b := body(ledger.KindRecord)
	b.Record = &ledger.Record{DeviceID: "sensor-1", Stream: "temp", Seq: seq, Time: at}
	return x.sign("sensor-1", "sensor-1", b)
}

func (x *gen) membership() {
	if ledger.MembersFrom(changeAt1) != 81 || ledger.MembersFrom(changeAt2) != 161 {
		x.t.Fatalf("MembersFrom(7), MembersFrom(90) = %d, %d: the vectors assume 81, 161", ledger.MembersFrom(changeAt1), ledger.MembersFrom(changeAt2))
	}
	genesisSet := []string{"n1", "n2", "n3", "n4"}
	set1 := []string{"n2", "n3", "n4", "n5"}
	set2 := []string{"n3", "n4", "n5", "n6", "n7"}
	c1env := x.sign("admin", "admin", x.reconfig(set1...))
	c2env := x.sign("admin", "admin", x.reconfig(set2...))
	x.txs["reconfig-1"], x.txs["reconfig-2"] = c1env, c2env
	tip := x.blocks[len(x.blocks)-1].Header.Hash()
	// The change shares its block with a record: a proof of one hash.
	c1 := x.lone(changeAt1, tip[:], []string{"n1", "n2", "n3"}, 1, x.record(7, t0+7*minute), c1env)
	h1 := c1.Header.Hash()
	before := x.lone(80, h1[:], []string{"n2", "n3", "n1"}, 0, x.record(8, t0+80*minute))
	hb := before.Header.Hash()
	r81 := x.lone(81, hb[:], []string{"n2", "n3", "n5"}, 0, x.record(9, t0+81*minute))
	h81 := r81.Header.Hash()
	c2 := x.lone(changeAt2, h81[:], []string{"n5", "n3", "n2"}, 0, c2env)
	h2 := c2.Header.Hash()
	r161 := x.lone(161, h2[:], []string{"n5", "n6", "n7", "n3"}, 0, x.record(10, t0+161*minute))

	f := x.file("membership", "membership",
		"Membership proofs (protocol.md 10.2): hex is a MembershipProof, the receipts of cluster.reconfig txs oldest first, on the vectors' chain (genesis.json \"main\"). "+
			"Change 1 at height 7 (genesis set n1..n4) names n2 n3 n4 n5, in force from 81; change 2 at height 90 (certified by that set) names n3 n4 n5 n6 n7, in force from 161. "+
			"inputs.receipt, when present, is a receipt to verify with the member sets the proof leaves; outputs.sets are those sets.",
		"Decode hex as a MembershipProof (deterministic CBOR, at most 1 MiB). Start with the genesis nodes from height 1 and follow each receipt in order (protocol.md 10.2): it verifies with the set in force at its height, "+
			"no change is pending there, its tx is a cluster.reconfig signed by a genesis admin, and its set is valid; the set starts at MembersFrom(height). Then verify inputs.receipt with the set in force at its height. "+
			"A failing link is ledger.ErrMembers; a failing final receipt ledger.ErrReceipt.")
	enc := func(p ...*ledger.Receipt) []byte {
		mp := ledger.MembershipProof{}
		for _, r := range p {
			mp = append(mp, *r)
		}
		b, err := mp.Encode()
		if err != nil {
			x.t.Fatal(err)
		}
		return b
	}
	type set struct {
		start uint64
		nodes []string
	}
	sets := func(ss ...set) []any {
		var out []any
		for _, s := range ss {
			out = append(out, map[string]any{"start": s.start, "nodes": s.nodes, "quorum": (len(s.nodes)+(len(s.nodes)-1)/3)/2 + 1})
		}
		return out
	}
	s0, s1, s2 := set{1, genesisSet}, set{81, set1}, set{161, set2}
	// details: what each refusal says, so that it fails for its reason.
	details := map[string]string{
		"receipt-without-proof":        `"n5" is not a member at height 81`,
		"receipt-after-unknown-change": `"n6" is not a member at height 161`,
		"old-set-after-start":          `"n1" is not a member at height 81`,
		"bad-link-wrong-set":           `receipt 1: ledger: invalid receipt: ledger: invalid commit certificate: "n1" is not a member at height 90`,
		"out-of-order":                 `receipt 0: ledger: invalid receipt: ledger: invalid commit certificate: "n5" is not a member at height 90`,
		"missing-link":                 `"n5" is not a member at height 90`,
		"change-while-pending":         `pending at 40`,
		"not-a-reconfig":               `not of a cluster.reconfig`,
		"not-by-an-admin":              `not a genesis admin`,
		"tx-not-in-block":              `inclusion proof does not verify`,
	}
	add := func(name, comment string, proof []byte, r *ledger.Receipt, out []any, verdict string) {
		c := &Case{Name: name, Comment: comment, Inputs: map[string]any{"genesis": "main"}, Hex: hexs(proof), Verdict: verdict}
		if r != nil {
			c.Inputs["receipt"] = hexs(x.encReceipt(r))
			c.Inputs["receipt_height"] = r.Header.Height
		}
		if out != nil {
			c.Outputs = map[string]any{"sets": out}
		}
		if d, ok := details[name]; ok {
			c.Detail = d
		}
		f.Cases = append(f.Cases, c)
	}
	add("empty", "No change: the genesis nodes only.", enc(), nil, sets(s0), "ok")
	add("one-change", "Change 1; the receipt at 81 is certified by n2 n3 n5 and verifies only with the proof (n5 is no genesis node).", enc(c1), r81, sets(s0, s1), "ok")
	add("one-change-before-start", "Change 1; a receipt at 80, before set 1 takes effect, is certified by the genesis set.", enc(c1), before, sets(s0, s1), "ok")
	add("two-changes", "Changes 1 and 2; the receipt at 161 is certified by 4 of set 2's 5 members.", enc(c1, c2), r161, sets(s0, s1, s2), "ok")
	add("two-changes-receipt-in-set-1", "Changes 1 and 2; a receipt at 81 still verifies with set 1.", enc(c1, c2), r81, sets(s0, s1, s2), "ok")
	add("receipt-without-proof", "The receipt at 81 with no proof: n5 is no genesis node.", enc(), r81, nil, "ledger.ErrReceipt")
	add("receipt-after-unknown-change", "The receipt at 161 with change 1 only: n6 and n7 are no members of set 1.", enc(c1), r161, nil, "ledger.ErrReceipt")
	old := x.lone(81, hb[:], []string{"n1", "n2", "n3"}, 0, x.record(9, t0+81*minute))
	add("old-set-after-start", "Change 1; a receipt at 81 certified by the genesis set n1 n2 n3: n1 is no member from 81 on.", enc(c1), old, nil, "ledger.ErrReceipt")
	wrongSet := x.lone(changeAt2, h81[:], []string{"n1", "n2", "n3"}, 0, c2env)
	add("bad-link-wrong-set", "Change 2 certified by the genesis set (n1 n2 n3) instead of set 1: n1 is no member at 90.", enc(c1, wrongSet), nil, nil, "ledger.ErrMembers")
	add("out-of-order", "Change 2 before change 1: change 2's certificate names n5, no genesis node.", enc(c2, c1), nil, nil, "ledger.ErrMembers")
	add("missing-link", "Change 2 without change 1.", enc(c2), nil, nil, "ledger.ErrMembers")
	pending := x.lone(40, h1[:], []string{"n1", "n2", "n3"}, 0, c2env)
	add("change-while-pending", "Change 2 committed at height 40, while change 1 (in force from 81) is pending: refused.", enc(c1, pending), nil, nil, "ledger.ErrMembers")
	add("not-a-reconfig", "A receipt of a data.record in the proof.", enc(before), nil, nil, "ledger.ErrMembers")
	nb := body(ledger.KindReconfig)
	nb.ClusterReconfig = x.reconfig(set1...).ClusterReconfig
	notAdmin := x.lone(changeAt1, tip[:], []string{"n1", "n2", "n3"}, 0, x.sign("n1", "n1", nb))
	add("not-by-an-admin", "A cluster.reconfig signed by node n1 (kid n1), committed and certified: not a genesis admin's.", enc(notAdmin), nil, nil, "ledger.ErrMembers")
	twice := x.lone(changeAt1, tip[:], []string{"n1", "n2", "n3"}, 1, x.record(7, t0+7*minute), c1env)
	twice.Tx = x.txs["reconfig-2"]
	add("tx-not-in-block", "Change 1's receipt with change 2's tx in place of change 1's: the inclusion proof fails.", enc(twice), nil, nil, "ledger.ErrMembers")
}

// reconfigTxs adds the cluster.reconfig txs and their invalid forms.
func (x *gen) reconfigTxs() {
	f := x.files["tx-cluster-reconfig"]
	if f == nil {
		f = x.file("tx-cluster-reconfig", "tx", "Signed cluster.reconfig txs (protocol.md sections 5 and 6.15).", txCheck)
	}
	f.Cases = append(f.Cases,
		x.txCase("replace", "n1 replaced by n5: the whole new set, in primary order, each node with one address.", "admin", x.txs["reconfig-1"]),
		x.txCase("grow-to-five", "n2 removed, n6 and n7 added: 5 members, quorum 4.", "admin", x.txs["reconfig-2"]))
	b := x.reconfig("n1", "n2", "n3", "n4")
	b.ClusterReconfig.Nodes[0].Addrs = nil
	f.Cases = append(f.Cases, x.txCase("no-addresses", "n1 with no address hints: key 3 is omitted.", "admin", x.sign("admin", "admin", b)))

	inv := x.files["tx-invalid"]
	admin := x.k("admin")
	add := func(name, comment string, b *ledger.Body, detail string) {
		env := sign1(admin.plain(), "admin", enc(b))
		c := &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"author_key": "admin", "author_spki": hexs(admin.spki()), "max_tx_bytes": ledger.DefaultMaxTxBytes, "body_diag": diag(enc(b))},
			Hex:    hexs(env), Verdict: "ledger.ErrMalformed", Reason: "malformed", Detail: detail}
		inv.Cases = append(inv.Cases, c)
	}
	add("reconfig-3-nodes", "A set of 3 nodes: at least 4.", x.reconfig("n1", "n2", "n3"), "3 nodes, want 4 to 64")
	add("reconfig-repeated-id", "n2 twice.", x.reconfig("n1", "n2", "n3", "n2"), "id n2 twice")
	b = x.reconfig("n1", "n2", "n3", "n4")
	b.ClusterReconfig.Nodes[3].PublicKey = x.k("acme").spki()
	add("reconfig-ed25519-key", "n4 with an Ed25519 key: node keys are P-256.", b, "node keys must be ECDSA P-256")
	b = x.reconfig("n1", "n2", "n3", "n4")
	b.ClusterReconfig.Nodes[1].Addrs = []string{""}
	add("reconfig-empty-address", "An address hint of 0 bytes.", b, "want 1 to 256 bytes")

	// addrs present as the empty array: it must be omitted (section 2,
	// rule 7). Built by hand: the encoder omits it.
	var ns [][]byte
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		e := []kv{ik(1, cText(n)), ik(2, cBytes(x.k(n).spki()))}
		if n == "n2" {
			e = append(e, ik(3, cArr()))
		}
		ns = append(ns, cMap(e...))
	}
	raw := cMap(ik(1, cText("cluster.reconfig")), ik(2, cText(chainID)), ik(19, cMap(ik(1, cArr(ns...)))))
	env := sign1(admin.plain(), "admin", raw)
	inv.Cases = append(inv.Cases, &Case{Name: "reconfig-empty-addrs", Comment: "n2's addrs present as the empty array: omit it.",
		Inputs: map[string]any{"author_key": "admin", "author_spki": hexs(admin.spki()), "max_tx_bytes": ledger.DefaultMaxTxBytes, "body_diag": diag(raw)},
		Hex:    hexs(env), Verdict: "ledger.ErrMalformed", Reason: "malformed", Detail: "field 3 (addrs): present but empty; omit it"})
}
