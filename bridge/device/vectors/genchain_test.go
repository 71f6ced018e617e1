package vectors

import (
	"encoding/base64"
	"strconv"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func (x *gen) tokens() {
	f := x.file("token", "token",
		"Device tokens (protocol.md section 7). hex is the envelope; outputs.token is the MQTT password, its unpadded base64url.",
		"base64url-encode hex without padding and check it as the gateway does for chain inputs.chain at inputs.now (Unix seconds): sub = kid, aud = chain, 0 < exp - iat <= 86400, now < exp, iat <= now + 300; then verify the signature with inputs.key_spki.")
	iat := t0/1000 + 400
	add := func(name, comment, keyName string, env []byte, chain string, now int64, verdict string) {
		p := split(env)
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"key": keyName, "key_spki": hexs(x.k(keyName).spki()), "chain": chain, "now": now, "claims_diag": diag(p.Payload)},
			Hex:    hexs(env), Outputs: map[string]any{"token": base64.RawURLEncoding.EncodeToString(env)}, Verdict: verdict})
	}
	mk := func(keyName, id string, ttl time.Duration) []byte {
		s, err := ledger.SignToken(x.k(keyName).signer(), id, chainID, time.Unix(iat, 0), ttl)
		if err != nil {
			x.t.Fatal(err)
		}
		env, _ := base64.RawURLEncoding.DecodeString(s)
		claims := cMap(ik(2, cText(id)), ik(3, cText(chainID)), ik(4, cInt(iat+int64(ttl/time.Second))), ik(6, cInt(iat)))
		if spec := sign1(x.k(keyName).plain(), id, claims); string(spec) != string(env) {
			x.t.Fatalf("token: ledger.SignToken and the specification disagree")
		}
		return env
	}
	es := mk("sensor-1", "sensor-1", time.Hour)
	ed := mk("sensor-2", "sensor-2", ledger.MaxTokenTTL)
	add("es256", "A one-hour token, checked a minute after it was issued.", "sensor-1", es, chainID, iat+60, "ok")
	add("eddsa-24h", "The longest lifetime, 24 hours, checked one second before it expires.", "sensor-2", ed, chainID, iat+86399, "ok")
	add("skew-edge", "Issued 300 s in the device's future: still accepted.", "sensor-1", es, chainID, iat-300, "ok")
	add("expired", "Checked at exp: a token is expired from exp on.", "sensor-1", es, chainID, iat+3600, "ledger.ErrToken")
	add("future", "Issued 301 s in the future.", "sensor-1", es, chainID, iat-301, "ledger.ErrToken")
	add("other-chain", "Checked by a gateway of chain vectors-2.", "sensor-1", es, "vectors-2", iat+60, "ledger.ErrToken")
	add("wrong-key", "Verified with another device's key.", "sensor-2", es, chainID, iat+60, "ledger.ErrBadSignature")
	claims := func(sub string, exp int64) []byte {
		return cMap(ik(2, cText(sub)), ik(3, cText(chainID)), ik(4, cInt(exp)), ik(6, cInt(iat)))
	}
	s1 := x.k("sensor-1").plain()
	add("lifetime-over-24h", "exp - iat = 86401.", "sensor-1", sign1(s1, "sensor-1", claims("sensor-1", iat+86401)), chainID, iat+60, "ledger.ErrToken")
	add("subject-not-kid", "sub sensor-2, signed as kid sensor-1.", "sensor-1", sign1(s1, "sensor-1", claims("sensor-2", iat+3600)), chainID, iat+60, "ledger.ErrToken")
	add("cwt-tag", "The claims wrapped in the CWT tag 61: not accepted.", "sensor-1",
		sign1(s1, "sensor-1", cat([]byte{0xd8, 0x3d}, claims("sensor-1", iat+3600))), chainID, iat+60, "ledger.ErrToken")
	add("extra-claim", "A cti claim (7): unknown keys are refused.", "sensor-1",
		sign1(s1, "sensor-1", cMap(ik(2, cText("sensor-1")), ik(3, cText(chainID)), ik(4, cInt(iat+3600)), ik(6, cInt(iat)), ik(7, cBytes([]byte{1})))),
		chainID, iat+60, "ledger.ErrToken")
}

func (x *gen) headers() {
	f := x.file("header", "header",
		"Block headers (protocol.md 9.1) and the vote bytes nodes sign for them (9.3).",
		"hex is the deterministic CBOR of inputs.header; outputs.hash is its SHA-256 (the block hash); outputs.vote is the vote array for (chain id, height, inputs.cert_view, hash), outputs.vote_digest its SHA-256, which each node signs (ECDSA P-256, DER).")
	for _, b := range x.blocks {
		h := b.Header
		hash := h.Hash()
		vote := ledger.VoteBytes(h.ChainID, h.Height, b.Cert.View, hash)
		f.Cases = append(f.Cases, &Case{Name: "block-" + itoa(h.Height),
			Inputs: map[string]any{"header": headerJSON(&h), "cert_view": b.Cert.View},
			Hex:    hexs(enc(&h)),
			Outputs: map[string]any{"hash": hexs(hash[:]), "vote": hexs(vote), "vote_diag": diag(vote), "vote_digest": hexs(sum(vote)),
				"diag": diag(enc(&h))},
			Verdict: "ok"})
	}
}

func headerJSON(h *ledger.Header) map[string]any {
	return map[string]any{"chain_id": h.ChainID, "height": h.Height, "prev": hexs(h.Prev), "tx_root": hexs(h.TxRoot),
		"num_txs": h.NumTxs, "time": h.Time, "view": h.View, "proposer": h.Proposer}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func (x *gen) certs() {
	f := x.file("cert", "cert",
		"Commit certificates (protocol.md 9.4). hex is a Head, {1: header, 2: cert}, of chain vectors-1; the genesis is genesis.json \"main\" (4 nodes, quorum 3).",
		"Decode hex as deterministic CBOR and check the certificate against the header with the genesis: every signer distinct and a genesis node, every signature valid over the vote for the cert's view, at least quorum signers.")
	add := func(name, comment string, h ledger.Header, c ledger.Cert, verdict string) {
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: map[string]any{"genesis": "main", "signers": signersOf(c)},
			Hex: hexs(enc(&ledger.Head{Header: h, Cert: c})), Verdict: verdict})
	}
	b1, b3 := x.blocks[0], x.blocks[2]
	add("quorum", "3 of 4 nodes.", b1.Header, b1.Cert, "ok")
	add("all-four-any-order", "4 of 4, not sorted by id: order does not matter.", b3.Header, b3.Cert, "ok")
	add("header-view-differs", "The header says view 1 (proposed), the certificate view 2 (committed after a view change): valid; the votes are over the cert's view.", b3.Header, b3.Cert, "ok")
	short := b1.Cert
	short.Sigs = short.Sigs[:2]
	add("short", "2 signatures, quorum 3.", b1.Header, short, "ledger.ErrCert")
	dup := ledger.Cert{View: 0, Sigs: append(append([]ledger.Sig{}, b1.Cert.Sigs...), b1.Cert.Sigs[0])}
	add("duplicate-signer", "n1, n2, n3 and n1 again: invalid although 3 distinct nodes signed.", b1.Header, dup, "ledger.ErrCert")
	unknown := x.cert(&b1.Header, 0, "n1", "n2", "n3", "n5")
	add("unknown-signer", "n1, n2, n3 and n5, which is no genesis node: invalid although a quorum of genesis nodes signed.", b1.Header, unknown, "ledger.ErrCert")
	bad := x.cert(&b1.Header, 0, "n1", "n2", "n3", "n4")
	bad.Sigs[3].Sig = x.cert(&x.blocks[1].Header, 0, "n4").Sigs[0].Sig
	add("one-bad-signature", "n4's signature is for another block: invalid although n1..n3 are a quorum.", b1.Header, bad, "ledger.ErrCert")
	wrongView := b3.Cert
	wrongView.View = 1
	add("view-not-signed", "The certificate claims view 1 (the header's) but the nodes signed view 2.", b3.Header, wrongView, "ledger.ErrCert")
	other := b1.Header
	other.ChainID = "vectors-2"
	add("wrong-chain", "A header of another chain.", other, x.cert(&other, 0, "n1", "n2", "n3"), "ledger.ErrCert")
	der := x.cert(&b1.Header, 0, "n1", "n2", "n3")
	der.Sigs[2].Sig = append(append([]byte{}, der.Sigs[2].Sig...), 0x00)
	add("der-trailing-byte", "n3's DER signature with a byte appended.", b1.Header, der, "ledger.ErrCert")
}

func signersOf(c ledger.Cert) []string {
	var s []string
	for _, g := range c.Sigs {
		s = append(s, g.Node)
	}
	return s
}

func (x *gen) merkle() {
	f := x.file("merkle", "merkle",
		"RFC 9162 Merkle trees and inclusion proofs (protocol.md 9.2). The leaves are the bytes \"leaf-0\", \"leaf-1\", ...; hex is the leaf proven.",
		"The tree head of inputs.leaves is inputs.root; the inclusion proof inputs.proof of leaf hex at inputs.index in a tree of inputs.size leaves leads to inputs.root (RFC 9162 2.1.3.2).")
	for size := 0; size <= 7; size++ {
		var leaves [][]byte
		var lh []string
		for i := 0; i < size; i++ {
			leaves = append(leaves, []byte("leaf-"+itoa(uint64(i))))
			lh = append(lh, hexs(leaves[i]))
		}
		tree := ledger.NewTree(leaves)
		if size == 0 {
			f.Cases = append(f.Cases, &Case{Name: "empty", Comment: "The empty tree's head is SHA-256 of nothing.",
				Inputs: map[string]any{"leaves": []string{}, "root": hexs(tree.Root()), "size": 0}, Verdict: "ok"})
			continue
		}
		for i := 0; i < size; i++ {
			p, err := tree.Proof(uint64(i))
			if err != nil {
				x.t.Fatal(err)
			}
			var ph []string
			for _, h := range p {
				ph = append(ph, hexs(h))
			}
			if ph == nil {
				ph = []string{}
			}
			f.Cases = append(f.Cases, &Case{Name: "size-" + itoa(uint64(size)) + "-index-" + itoa(uint64(i)),
				Inputs: map[string]any{"leaves": lh, "index": i, "size": size, "proof": ph, "root": hexs(tree.Root()),
					"leaf_hash": hexs(ledger.LeafHash(leaves[i]))},
				Hex: hexs(leaves[i]), Verdict: "ok"})
		}
	}
	base := f.Cases[len(f.Cases)-3] // size 7, index 4
	neg := func(name, comment string, mut func(in map[string]any)) {
		in := map[string]any{}
		for k, v := range base.Inputs {
			in[k] = v
		}
		mut(in)
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: in, Hex: base.Hex, Verdict: "ledger.ErrProof"})
	}
	neg("wrong-index", "The proof of leaf 4 presented for index 5.", func(in map[string]any) { in["index"] = 5 })
	neg("wrong-size", "The proof presented for a tree of 6.", func(in map[string]any) { in["size"] = 6 })
	neg("index-past-size", "index 7 in a tree of 7.", func(in map[string]any) { in["index"] = 7 })
	neg("proof-too-short", "The last hash of the proof dropped.", func(in map[string]any) {
		p := in["proof"].([]string)
		in["proof"] = p[:len(p)-1]
	})
}
