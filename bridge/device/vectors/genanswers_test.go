package vectors

import (
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func (x *gen) encReceipt(r *ledger.Receipt) []byte {
	b, err := r.Encode()
	if err != nil {
		x.t.Fatal(err)
	}
	return b
}

func (x *gen) receipts() {
	f := x.file("receipt", "receipt",
		"Receipts (protocol.md section 10), cut from the vectors' chain (header.json). inputs.genesis names a case of genesis.json.",
		"Decode hex as a Receipt (deterministic CBOR) and verify it with the genesis alone: chain ids, the tx envelope, index < num_txs, the inclusion proof, the certificate.")
	add := func(name, comment, genesis string, b []byte, verdict string) {
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: map[string]any{"genesis": genesis}, Hex: hexs(b), Verdict: verdict})
	}
	rec := x.receipt(2, 0)
	f.Cases = append(f.Cases, &Case{Name: "record", Comment: "The first of 3 txs of block 2: a proof of 2 hashes.",
		Inputs: map[string]any{"genesis": "main"}, Hex: hexs(x.encReceipt(rec)), Verdict: "ok",
		Outputs: map[string]any{"tx_id": hexs(sum(rec.Tx)), "height": rec.Header.Height, "index": rec.Index, "diag": diag(x.encReceipt(rec))}})
	add("last-of-odd-tree", "The third of 3 txs: a proof of 1 hash.", "main", x.encReceipt(x.receipt(2, 2)), "ok")
	add("one-tx-block", "The only tx of block 4: the proof is the empty array.", "main", x.encReceipt(x.receipt(4, 0)), "ok")
	add("view-change-block", "Block 3: header view 1, certificate view 2.", "main", x.encReceipt(x.receipt(3, 5)), "ok")
	one := x.encReceipt(x.receipt(4, 0))
	nullProof := append(append([]byte{}, one[:len(one)-1]...), 0xf6)
	add("one-tx-block-null-proof", "As one-tx-block with the proof written null (0xf6) instead of []: accepted (protocol.md 2.1).", "main", nullProof, "ok")
	add("other-genesis", "A receipt of chain vectors-1 checked with the genesis of vectors-2.", "other-chain", x.encReceipt(x.receipt(2, 0)), "ledger.ErrReceipt")
	tampered := *x.receipt(2, 0)
	tampered.Tx = x.txs["record-minimal"]
	add("tampered-tx", "The tx replaced by another tx of the same block: the proof does not lead to the root.", "main", x.encReceipt(&tampered), "ledger.ErrProof")
	idx := *x.receipt(2, 0)
	idx.Index = 1
	add("wrong-index", "index 1 with the proof of index 0.", "main", x.encReceipt(&idx), "ledger.ErrProof")
	past := *x.receipt(2, 0)
	past.Index = 3
	add("index-past-num-txs", "index 3 of 3 txs.", "main", x.encReceipt(&past), "ledger.ErrReceipt")
	short := *x.receipt(2, 0)
	short.Cert.Sigs = short.Cert.Sigs[:2]
	add("short-cert", "A certificate of 2 nodes, quorum 3.", "main", x.encReceipt(&short), "ledger.ErrCert")
	dup := *x.receipt(2, 0)
	dup.Cert.Sigs = append(append([]ledger.Sig{}, dup.Cert.Sigs...), dup.Cert.Sigs[1])
	add("duplicate-signer", "A signature repeated: the certificate is invalid.", "main", x.encReceipt(&dup), "ledger.ErrCert")
	unk := *x.receipt(2, 0)
	unk.Cert = x.cert(&unk.Header, 0, "n2", "n3", "n4", "n5")
	add("unknown-signer", "n5 is no genesis node: the certificate is invalid.", "main", x.encReceipt(&unk), "ledger.ErrCert")
	hdr := *x.receipt(2, 0)
	hdr.Header.Time++
	add("tampered-header", "The header's time changed by 1 ms: the votes are for another hash.", "main", x.encReceipt(&hdr), "ledger.ErrCert")
	good := x.encReceipt(x.receipt(2, 0))
	unsorted := append([]byte{}, good...)
	// The receipt map starts a5 01 <tx>: write key 1 as 0x18 0x01 instead.
	unsorted = append([]byte{0xa5, 0x18, 0x01}, unsorted[2:]...)
	add("non-canonical", "Key 1 written as 0x18 0x01.", "main", unsorted, "ledger.ErrNotCanonical")
	add("unknown-key", "A key 6 appended.", "main", append([]byte{0xa6}, append(good[1:], 0x06, 0x00)...), "ledger.ErrReceipt")
}

// policy inputs of the answer vectors.
func devInputs(dev string, groups []string) map[string]any {
	return map[string]any{"genesis": "main", "device": dev, "groups": groups, "now_ms": nowMs, "max_age_ms": maxAge}
}

func (x *gen) configAnswers() {
	f := x.file("answer-config", "answer-config",
		"Configuration answers (protocol.md 11.2). The device sensor-1 is in groups fleet and meters; the device clock is inputs.now_ms; the configuration is sealed.json's.",
		"Decode hex as a ConfigAnswer and apply the checks of protocol.md 11.2 with inputs.device, inputs.groups, inputs.last (the last accepted configuration, if any), inputs.hash (the SHA-256 the device holds), inputs.now_ms and inputs.max_age_ms. On ok, outputs.accepted is what the device stores.")
	cs := x.receipt(2, 2)
	ok := &ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: x.head(6), Match: true}
	add := func(name, comment string, a *ledger.ConfigAnswer, in map[string]any, verdict string) *Case {
		b, err := a.Encode()
		if err != nil {
			x.t.Fatal(err)
		}
		if in["hash"] == nil {
			in["hash"] = hexs(sum(x.config))
		}
		c := &Case{Name: name, Comment: comment, Inputs: in, Hex: hexs(b), Verdict: verdict}
		f.Cases = append(f.Cases, c)
		return c
	}
	groups := []string{"fleet", "meters"}
	c := add("current", "The group configuration, first acceptance.", ok, devInputs("sensor-1", groups), "ok")
	c.Outputs = map[string]any{"accepted": map[string]any{"target": "group:fleet", "version": 1, "height": 2, "sha256": hexs(sum(x.config))}}
	in := devInputs("sensor-1", groups)
	in["last"] = map[string]any{"target": "group:fleet", "version": 1, "height": 2, "sha256": hexs(sum(x.config))}
	add("same-again", "The same configuration as the last accepted one: accepted again.", ok, in, "ok")
	in = devInputs("sensor-1", groups)
	in["last"] = map[string]any{"target": "sensor-1", "version": 5, "height": 3, "sha256": hexs(sum(nil))}
	add("rolled-back-height", "The device accepted a configuration of block 3 before; this one is in block 2.", ok, in, "device.ErrRollback")
	in = devInputs("sensor-1", groups)
	in["last"] = map[string]any{"target": "group:fleet", "version": 2, "height": 2, "sha256": hexs(sum(nil))}
	add("rolled-back-version", "The device accepted version 2 of the same target before.", ok, in, "device.ErrRollback")
	in = devInputs("sensor-1", groups)
	in["now_ms"] = nowMs + 10*minute
	add("stale-head", "Checked 10 min 30 s after the head's time: older than the 10-minute bound.", ok, in, "device.ErrStaleHead")
	in = devInputs("sensor-1", groups)
	in["hash"] = hexs(sum([]byte("interval = 5\n")))
	add("not-current", "The device holds another configuration: download the one the receipt names.", ok, in, "device.ErrNotCurrent")
	add("wrong-device", "An answer about sensor-1 checked by sensor-2.", ok, devInputs("sensor-2", groups), "device.ErrProof")
	add("not-my-group", "The config.set is for group fleet; the device is only in meters.", ok, devInputs("sensor-1", []string{"meters"}), "device.ErrProof")
	add("none", "No receipt: nothing published for the device.", &ledger.ConfigAnswer{Device: "sensor-1", Head: x.head(6)}, devInputs("sensor-1", groups), "device.ErrNoConfig")
	notCS := &ledger.ConfigAnswer{Device: "sensor-1", Receipt: x.receipt(2, 0), Head: x.head(6)}
	add("not-a-config-set", "The receipt is of a data.record.", notCS, devInputs("sensor-1", groups), "device.ErrProof")
	in = devInputs("sensor-1", groups)
	in["now_ms"] = t0 + minute + 30_000
	add("head-below-receipt", "The head is block 1, the receipt's block is 2.", &ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: x.head(1)}, in, "device.ErrProof")
	withEnr := &ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: x.head(6), Match: true, Enrollment: x.receipt(1, 0)}
	in = devInputs("sensor-1", nil)
	delete(in, "groups")
	c = add("groups-from-enrollment", "The device does not keep its groups: the answer's enrollment receipt (key 5) proves them.", withEnr, in, "ok")
	c.Outputs = map[string]any{"accepted": map[string]any{"target": "group:fleet", "version": 1, "height": 2, "sha256": hexs(sum(x.config))}}
	in = devInputs("sensor-1", nil)
	delete(in, "groups")
	add("enrollment-of-another", "The enrollment receipt is sensor-2's.",
		&ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: x.head(6), Enrollment: x.receipt(1, 1)}, in, "device.ErrProof")
	in = devInputs("sensor-1", nil)
	delete(in, "groups")
	add("no-enrollment", "The device does not keep its groups and the answer has no enrollment receipt.", ok, in, "device.ErrProof")
	// A claimed device (protocol.md 6.18): its device.claim is its
	// enrollment.
	claimed := &ledger.ConfigAnswer{Device: "th-0005", Receipt: cs, Head: x.head(6), Match: true, Enrollment: x.receipt(6, 1)}
	in = devInputs("th-0005", nil)
	delete(in, "groups")
	c = add("groups-from-claim", "th-0005, enrolled by a device.claim in block 6, does not keep its groups: the claim receipt (key 5) proves group fleet.", claimed, in, "ok")
	c.Outputs = map[string]any{"accepted": map[string]any{"target": "group:fleet", "version": 1, "height": 2, "sha256": hexs(sum(x.config))}}
	in = devInputs("sensor-1", nil)
	delete(in, "groups")
	add("claim-of-another", "The enrollment receipt is th-0005's device.claim in an answer about sensor-1.",
		&ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: x.head(6), Enrollment: x.receipt(6, 1)}, in, "device.ErrProof")
	shortHead := x.head(6)
	shortHead.Cert.Sigs = shortHead.Cert.Sigs[:2]
	add("head-short-cert", "The head's certificate has 2 signatures, quorum 3.", &ledger.ConfigAnswer{Device: "sensor-1", Receipt: cs, Head: shortHead}, devInputs("sensor-1", groups), "device.ErrProof")
	forged := *cs
	forged.Cert = x.cert(&forged.Header, 0, "n2", "n3")
	add("receipt-short-cert", "The receipt's certificate has 2 signatures.", &ledger.ConfigAnswer{Device: "sensor-1", Receipt: &forged, Head: x.head(6)}, devInputs("sensor-1", groups), "device.ErrProof")
}

func (x *gen) keysAnswers() {
	f := x.file("answer-keys", "answer-keys",
		"Key directory answers (protocol.md 11.3).",
		"Decode hex as a KeysAnswer and apply the checks of protocol.md 11.3 for device inputs.device at inputs.now_ms; on ok, outputs are the current keys and status.")
	add := func(name, comment, dev string, a *ledger.KeysAnswer, out map[string]any, verdict string) {
		b, err := a.Encode()
		if err != nil {
			x.t.Fatal(err)
		}
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: devInputs(dev, nil), Hex: hexs(b), Outputs: out, Verdict: verdict})
	}
	add("enrolled", "sensor-1: enrolled, never re-keyed.", "sensor-1",
		&ledger.KeysAnswer{Device: "sensor-1", Enroll: x.receipt(1, 0), Head: x.head(6)},
		map[string]any{"signing_key": hexs(x.k("sensor-1").spki()), "enc_key": hexs(x.k("sensor-1.enc").spki()), "model": "th-2",
			"groups": []string{"fleet", "meters"}, "height": 1, "revoked": false}, "ok")
	add("rekeyed-revoked", "sensor-2: re-keyed in block 4 (the keys are the re-key's), revoked in block 5.", "sensor-2",
		&ledger.KeysAnswer{Device: "sensor-2", Enroll: x.receipt(1, 1), Rekey: x.receipt(4, 0), Revoke: x.receipt(5, 0), Head: x.head(6)},
		map[string]any{"signing_key": hexs(x.k("sensor-2-new").spki()), "enc_key": hexs(x.k("sensor-2-new.enc").spki()), "model": "",
			"groups": []string{}, "height": 4, "revoked": true, "reason": "stolen"}, "ok")
	add("wrong-device", "An answer about sensor-1 checked as one about sensor-2.", "sensor-2",
		&ledger.KeysAnswer{Device: "sensor-1", Enroll: x.receipt(1, 0), Head: x.head(6)}, nil, "device.ErrProof")
	add("enroll-of-another", "The enrollment receipt is sensor-1's in an answer about sensor-2.", "sensor-2",
		&ledger.KeysAnswer{Device: "sensor-2", Enroll: x.receipt(1, 0), Head: x.head(6)}, nil, "device.ErrProof")
	add("claimed", "th-0005: enrolled by a device.claim (block 6): the claim's key, model and groups; no encryption key.", "th-0005",
		&ledger.KeysAnswer{Device: "th-0005", Enroll: x.receipt(6, 1), Head: x.head(6)},
		map[string]any{"signing_key": hexs(x.k("sensor-2").spki()), "enc_key": "", "model": "th-2",
			"groups": []string{"fleet"}, "height": 6, "revoked": false}, "ok")
	add("claim-of-another", "The enrollment receipt is th-0005's device.claim in an answer about sensor-1.", "sensor-1",
		&ledger.KeysAnswer{Device: "sensor-1", Enroll: x.receipt(6, 1), Head: x.head(6)}, nil, "device.ErrProof")
	add("rekey-is-a-record", "The re-key receipt is of a data.record.", "sensor-1",
		&ledger.KeysAnswer{Device: "sensor-1", Enroll: x.receipt(1, 0), Rekey: x.receipt(2, 0), Head: x.head(6)}, nil, "device.ErrProof")
	hd := x.head(6)
	hd.Header.Time++
	add("head-tampered", "The head's time changed: its certificate does not verify.", "sensor-1",
		&ledger.KeysAnswer{Device: "sensor-1", Enroll: x.receipt(1, 0), Head: hd}, nil, "device.ErrProof")
}

func (x *gen) firmwareAnswers() {
	f := x.file("answer-firmware", "answer-firmware",
		"Firmware answers (protocol.md 11.4, 11.5). The device sensor-1 is a th-2 in groups fleet and meters; vendor acme's key is built in; images are in inputs.image.",
		"Decode hex as a FirmwareAnswer and apply the checks of protocol.md 11.5 with inputs.device, inputs.model, inputs.groups, inputs.installed, the vendor key inputs.vendor_spki, inputs.now_ms and inputs.max_age_ms; then check inputs.image against the manifest.")
	add := func(name, comment string, a *ledger.FirmwareAnswer, mut func(map[string]any), verdict string) {
		b, err := a.Encode()
		if err != nil {
			x.t.Fatal(err)
		}
		in := devInputs("sensor-1", []string{"fleet", "meters"})
		in["model"], in["installed"], in["vendor_spki"], in["image"] = "th-2", 1, hexs(x.k("acme").spki()), hexs(x.image2)
		if mut != nil {
			mut(in)
		}
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: in, Hex: hexs(b), Verdict: verdict})
	}
	v2, v3, v4 := x.receipt(3, 0), x.receipt(3, 4), x.receipt(3, 5)
	approved := &ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6)}
	voted := &ledger.FirmwareAnswer{Device: "sensor-1", Group: "fleet", Release: v2, Policy: x.receipt(3, 2), Votes: []*ledger.Receipt{x.receipt(3, 1)}, Head: x.head(6)}
	add("approved", "v2, approved for group meters (no policy: approval required).", approved, nil, "ok")
	add("voted", "v2 for group fleet, whose policy wants 1 good vote and has it.", voted, nil, "ok")
	add("wrong-image", "The image of v3 offered as v2's: its hash is not the manifest's.", approved, func(in map[string]any) { in["image"] = hexs(x.image3) }, "device.ErrImage")
	add("image-too-long", "v2's image with one byte more.", approved, func(in map[string]any) { in["image"] = hexs(append(append([]byte{}, x.image2...), 0)) }, "device.ErrImage")
	add("vendor-impostor", "The device has another vendor key built in.", approved, func(in map[string]any) { in["vendor_spki"] = hexs(x.k("acme-impostor").spki()) }, "device.ErrVendorSignature")
	add("wrong-model", "A th-3 device.", approved, func(in map[string]any) { in["model"] = "th-3" }, "device.ErrWrongModel")
	add("not-newer", "The device runs v2 already.", approved, func(in map[string]any) { in["installed"] = 2 }, "device.ErrFirmwareRollback")
	add("below-min-version", "v3 upgrades from v2 or later; the device runs v1.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v3, Head: x.head(6)},
		func(in map[string]any) { in["image"] = hexs(x.image3) }, "device.ErrFirmwareRollback")
	add("expired", "v4's manifest expires at exactly the device's clock.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v4, Head: x.head(6)},
		func(in map[string]any) { in["image"] = hexs(x.image3) }, "device.ErrExpired")
	add("revoked", "v3 revoked for group fleet; the device runs v2.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "fleet", Release: v3, Policy: x.receipt(3, 2), Revoke: x.receipt(5, 1), Head: x.head(6)},
		func(in map[string]any) { in["installed"] = 2; in["image"] = hexs(x.image3) }, "device.ErrReleaseRevoked")
	add("approval-required", "Group meters has no policy, so approval is required, and the answer has none.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v2, Votes: []*ledger.Receipt{x.receipt(3, 1)}, Head: x.head(6)}, nil, "device.ErrPolicy")
	add("not-my-group", "The answer names group lab, which is not the device's.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "lab", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6)}, nil, "device.ErrPolicy")
	add("too-few-votes", "Group fleet wants 1 good vote; the answer shows none.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "fleet", Release: v2, Policy: x.receipt(3, 2), Head: x.head(6)}, nil, "device.ErrPolicy")
	add("approval-for-other-group", "The approval is for meters, the answer names fleet.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "fleet", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6)}, nil, "device.ErrProof")
	add("model-groups-from-enrollment", "The device keeps neither its model nor its groups: the enrollment receipt (key 9) proves them.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6), Enrollment: x.receipt(1, 0)},
		func(in map[string]any) { delete(in, "model"); delete(in, "groups") }, "ok")
	add("enrollment-of-another", "The device keeps neither model nor groups; the enrollment receipt is sensor-2's.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6), Enrollment: x.receipt(1, 1)},
		func(in map[string]any) { delete(in, "model"); delete(in, "groups") }, "device.ErrProof")
	add("model-groups-from-claim", "th-0005, enrolled by a device.claim in block 6 (a th-2 in group fleet), keeps neither model nor groups: the claim receipt (key 9) proves them; v2 for group fleet by its votes.",
		&ledger.FirmwareAnswer{Device: "th-0005", Group: "fleet", Release: v2, Policy: x.receipt(3, 2), Votes: []*ledger.Receipt{x.receipt(3, 1)}, Head: x.head(6), Enrollment: x.receipt(6, 1)},
		func(in map[string]any) { in["device"] = "th-0005"; delete(in, "model"); delete(in, "groups") }, "ok")
	add("claim-of-another", "The device keeps neither model nor groups; the enrollment receipt is th-0005's device.claim.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v2, Approval: x.receipt(3, 3), Head: x.head(6), Enrollment: x.receipt(6, 1)},
		func(in map[string]any) { delete(in, "model"); delete(in, "groups") }, "device.ErrProof")
	add("blocked-below-min-version", "The gateway offers v3 with blocked = below_min_version (key 10): the device runs v1, below v3's minimum 2, and refuses it.",
		&ledger.FirmwareAnswer{Device: "sensor-1", Group: "meters", Release: v3, Head: x.head(6), Blocked: ledger.FirmwareBelowMinVersion},
		func(in map[string]any) { in["image"] = hexs(x.image3) }, "device.ErrFirmwareRollback")
	add("stale", "Checked 11 minutes after the head.", approved, func(in map[string]any) { in["now_ms"] = nowMs + 11*minute - 30_000 + 1 }, "device.ErrStaleHead")
}

func (x *gen) sealedFile() {
	f := x.file("sealed", "sealed",
		"Sealed configuration blobs (protocol.md section 12), suite 1. The configuration (inputs.plaintext) is sealed to sensor-1.enc and operator.enc; its config.set is block 2's.",
		"The blob's SHA-256 is inputs.config_set.blob; open it with the private X25519 key inputs.key (keys.json): find the recipient whose key is SHA-256 of the key's SPKI, HPKE-open the content key (info \"ledgergate sealed v1\", empty aad), AES-256-GCM-open the ciphertext (the nonce, aad \"ledgergate sealed v1\"); the plaintext has inputs.config_set.size bytes and SHA-256 inputs.config_set.sha256.")
	cs := map[string]any{"sha256": hexs(sum(x.config)), "size": len(x.config), "blob": hexs(sum(x.sealed))}
	add := func(name, comment, keyName string, blob []byte, cs map[string]any, verdict string) {
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"key": keyName, "key_spki": hexs(x.k(keyName).spki()), "recipient_id": hexs(sum(x.k(keyName).spki())),
				"config_set": cs, "plaintext": string(x.config)},
			Hex: hexs(blob), Outputs: map[string]any{"diag": diag(blob)}, Verdict: verdict})
	}
	add("device", "Opened by the device.", "sensor-1.enc", x.sealed, cs, "ok")
	add("operator", "Opened by the operators' key.", "operator.enc", x.sealed, cs, "ok")
	add("not-a-recipient", "sensor-2's key is not among the recipients.", "sensor-2.enc", x.sealed, cs, "device.ErrNotRecipient")
	otherCS := map[string]any{"sha256": hexs(sum(x.config)), "size": len(x.config), "blob": hexs(sum(x.sealedOther))}
	add("sealed-to-another-key", "A blob of the same configuration sealed to meter-3 only; the config.set names it.", "sensor-1.enc", x.sealedOther, otherCS, "device.ErrNotRecipient")
	add("not-the-named-blob", "The blob sealed to meter-3 where the config.set names the other blob: its address does not match.", "sensor-1.enc", x.sealedOther, cs, "device.ErrNotCurrent")
	wrongHash := map[string]any{"sha256": hexs(sum([]byte("other"))), "size": len(x.config), "blob": hexs(sum(x.sealed))}
	add("wrong-config-hash", "The config.set names another plaintext hash.", "sensor-1.enc", x.sealed, wrongHash, "device.ErrNotCurrent")
	tampered := append([]byte{}, x.sealed...)
	tampered[len(tampered)-1] ^= 0x01
	tcs := map[string]any{"sha256": hexs(sum(x.config)), "size": len(x.config), "blob": hexs(sum(tampered))}
	add("tampered-ciphertext", "The last byte of the GCM tag changed (and the config.set names the changed blob).", "sensor-1.enc", tampered, tcs, "device.ErrSealed")
}

func (x *gen) reasons() {
	f := x.file("reasons", "reasons",
		"The refusal reasons and the action a device takes on each (protocol.md section 14). hex is empty.",
		"The list is ledger.Reasons, in order.")
	for _, r := range ledger.Reasons {
		f.Cases = append(f.Cases, &Case{Name: string(r.Reason), Inputs: map[string]any{"action": string(r.Action)}, Verdict: "ok"})
	}
}

// hpkeKAT is the CFRG HPKE test vector (test-vectors.json of
// draft-irtf-cfrg-hpke, the data behind RFC 9180 Appendix A) for mode_base,
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: suite 1's HPKE,
// first encryption. Go's src/crypto/hpke/testdata/rfc9180.json holds the
// same entry (same ikmE, skRm, pkRm, enc) in accumulated form.
var hpkeKAT = map[string]any{
	"mode": 0, "kem_id": 0x20, "kdf_id": 1, "aead_id": 2,
	"info": "4f6465206f6e2061204772656369616e2055726e",
	"skEm": "179d4b53b6365c45b600c4163b61d95cbc2f4d9e36f1695558dce265ab8bab11",
	"enc":  "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256",
	"skRm": "497b4502664cfea5d5af0b39934dac72242a74f8480451e1aee7d6a53320333d",
	"pkRm": "430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c",
	"aad":  "436f756e742d30",
	"pt":   "4265617574792069732074727574682c20747275746820626561757479",
}

const hpkeKATct = "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a"

func (x *gen) hpke() {
	f := x.file("hpke", "hpke",
		"A known-answer test of sealed suite 1's HPKE (protocol.md section 12): the CFRG/RFC 9180 test vector for mode_base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, first encryption. hex is its ciphertext. (The sealed blobs use info \"ledgergate sealed v1\" and an empty aad; this vector uses the RFC's.)",
		"X25519(skEm) is enc and X25519(skRm) is pkRm; the HPKE base-mode receiver context from enc, skRm and info opens hex with aad to pt.")
	f.Cases = append(f.Cases, &Case{Name: "rfc9180-x25519-sha256-aes256gcm", Inputs: hpkeKAT, Hex: hpkeKATct, Verdict: "ok"})
}
