package vectors

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

var update = flag.Bool("update", false, "rewrite docs/vectors from the generator")

// dir is docs/vectors, from this package's directory.
const dir = "../../../docs/vectors"

// TestVectorsUpToDate regenerates the vectors and compares them with
// the committed files, or rewrites them with -update.
func TestVectorsUpToDate(t *testing.T) {
	files := generate(t)
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range old {
			if _, ok := files[filepath.Base(p)]; !ok {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	committed, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var names []string
	for _, p := range committed {
		names = append(names, filepath.Base(p))
	}
	var want []string
	for name := range files {
		want = append(want, name)
	}
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Fatalf("docs/vectors holds %v, the generator makes %v: run make vectors", names, want)
	}
	for _, name := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("docs/vectors/%s differs from what the code generates: run make vectors and review the diff", name)
		}
	}
}

// TestVectors checks every committed case against the code: its
// verdict, and for a positive case that changing any byte fails it.
func TestVectors(t *testing.T) {
	v := load(t)
	var names []string
	for name := range v.files {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no vectors in docs/vectors")
	}
	for _, name := range names {
		f := v.files[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, c := range f.Cases {
				v.checkCase(t, f, c)
			}
		})
	}
}

// set is the committed vectors.
type set struct {
	files   map[string]*File
	genesis map[string]*ledger.Genesis
	keys    map[string]*Case
}

func load(t *testing.T) *set {
	v := &set{files: map[string]*File{}, genesis: map[string]*ledger.Genesis{}, keys: map[string]*Case{}}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var f File
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		v.files[strings.TrimSuffix(filepath.Base(p), ".json")] = &f
	}
	for _, c := range v.files["genesis"].Cases {
		if c.Verdict == "ok" {
			g, err := ledger.ParseGenesis(unhex(t, c.Hex))
			if err != nil {
				t.Fatal(err)
			}
			v.genesis[c.Name] = g
		}
	}
	for _, c := range v.files["keys"].Cases {
		v.keys[c.Name] = c
	}
	return v
}

// errorsByName are the verdicts a vector may name.
var errorsByName = map[string]error{
	"ledger.ErrMalformed": ledger.ErrMalformed, "ledger.ErrNotCanonical": ledger.ErrNotCanonical,
	"ledger.ErrUnknownKind": ledger.ErrUnknownKind, "ledger.ErrTooLarge": ledger.ErrTooLarge,
	"ledger.ErrBadSignature": ledger.ErrBadSignature, "ledger.ErrToken": ledger.ErrToken,
	"ledger.ErrGenesis": ledger.ErrGenesis, "ledger.ErrCert": ledger.ErrCert, "ledger.ErrProof": ledger.ErrProof,
	"ledger.ErrReceipt": ledger.ErrReceipt, "ledger.ErrMembers": ledger.ErrMembers, "ledger.ErrAnswer": ledger.ErrAnswer,
	"device.ErrProof": device.ErrProof, "device.ErrStaleHead": device.ErrStaleHead, "device.ErrRollback": device.ErrRollback,
	"device.ErrNotCurrent": device.ErrNotCurrent, "device.ErrNoConfig": device.ErrNoConfig,
	"device.ErrVendorSignature": device.ErrVendorSignature, "device.ErrWrongModel": device.ErrWrongModel,
	"device.ErrFirmwareRollback": device.ErrFirmwareRollback, "device.ErrExpired": device.ErrExpired,
	"device.ErrReleaseRevoked": device.ErrReleaseRevoked, "device.ErrPolicy": device.ErrPolicy, "device.ErrImage": device.ErrImage,
	"device.ErrNotRecipient": device.ErrNotRecipient, "device.ErrSealed": device.ErrSealed,
	"mismatch": errMismatch,
}

// errMismatch: the bytes decode and verify but are not the expected value.
var errMismatch = errors.New("vectors: not the expected value")

// checkCase checks one case: its verdict, and for a positive case that
// every single-byte change of its bytes fails.
func (v *set) checkCase(t *testing.T, f *File, c *Case) {
	t.Helper()
	check := v.checker(t, f.Structure, c)
	if check == nil {
		return
	}
	b := unhex(t, c.Hex)
	err := check(b)
	switch {
	case c.Verdict == "ok" && err != nil:
		t.Errorf("%s: want ok, got %v", c.Name, err)
		return
	case c.Verdict != "ok":
		want, known := errorsByName[c.Verdict]
		if !known {
			t.Errorf("%s: unknown verdict %q", c.Name, c.Verdict)
		} else if !errors.Is(err, want) {
			t.Errorf("%s: want %s, got %v", c.Name, c.Verdict, err)
		} else if c.Detail != "" && !strings.Contains(err.Error(), c.Detail) {
			t.Errorf("%s: want an error saying %q, got %v", c.Name, c.Detail, err)
		}
		if c.Reason != "" {
			if got := reasonOf(err); got != c.Reason {
				t.Errorf("%s: reason %s, the vector says %s", c.Name, got, c.Reason)
			}
		}
		return
	}
	if len(b) == 0 {
		return
	}
	// Every byte with its bits inverted; of the answers, which take many
	// signatures to check, a deterministic sample of at most maxFlips
	// bytes spread over the whole (the receipts' bytes are all flipped in
	// receipt.json).
	for _, i := range flips(len(b)) {
		bad := bytes.Clone(b)
		bad[i] ^= 0xff
		if check(bad) == nil {
			t.Errorf("%s: byte %d inverted still passes the check", c.Name, i)
		}
	}
}

// maxFlips bounds the bytes flipped per case, to keep the test near 10 s
// on two shared cores.
const maxFlips = 800

// flips are the byte positions to flip in a case of n bytes: all of them,
// or every k-th one from a start that moves so that neighbouring fields
// are sampled too.
func flips(n int) []int {
	var out []int
	if n <= maxFlips {
		for i := range n {
			out = append(out, i)
		}
		return out
	}
	k := (n + maxFlips - 1) / maxFlips
	for i := 0; i < n; i += k {
		if j := i + (i/k)%k; j < n {
			out = append(out, j)
		}
	}
	return out
}

// reasonOf is the refusal reason of a tx decode or verify error, as the
// gateway answers it.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ledger.ErrTooLarge):
		return "too_large"
	case errors.Is(err, ledger.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ledger.ErrMalformed), errors.Is(err, ledger.ErrUnknownKind):
		return "malformed"
	}
	return "internal"
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex: %v", err)
	}
	return b
}

// in reads a case's inputs.
type in struct {
	t *testing.T
	m map[string]any
}

func (i in) str(k string) string {
	s, ok := i.m[k].(string)
	if !ok {
		i.t.Fatalf("input %s: %v is not a string", k, i.m[k])
	}
	return s
}

func (i in) bytes(k string) []byte { return unhex(i.t, i.str(k)) }

func (i in) num(k string) int64 {
	n, ok := i.m[k].(json.Number)
	if !ok {
		i.t.Fatalf("input %s: %v is not a number", k, i.m[k])
	}
	v, err := n.Int64()
	if err != nil {
		i.t.Fatal(err)
	}
	return v
}

func (i in) strs(k string) []string {
	var out []string
	l, _ := i.m[k].([]any)
	for _, s := range l {
		out = append(out, s.(string))
	}
	return out
}

func (i in) sub(k string) in {
	m, _ := i.m[k].(map[string]any)
	return in{i.t, m}
}

func (v *set) genesisOf(t *testing.T, name string) *ledger.Genesis {
	g, ok := v.genesis[name]
	if !ok {
		t.Fatalf("no genesis %q", name)
	}
	return g
}

func pubKey(t *testing.T, der []byte) *ledger.PublicKey {
	k, err := ledger.ParsePublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (v *set) encKey(t *testing.T, name string) *ecdh.PrivateKey {
	c, ok := v.keys[name]
	if !ok {
		t.Fatalf("no key %s", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(unhex(t, in{t, c.Inputs}.str("pkcs8")))
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdh.PrivateKey)
}

// strict decodes as the ledger does: the same options, then the same
// re-encoding check.
var strict = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey: cbor.DupMapKeyEnforcedAPF, IndefLength: cbor.IndefLengthForbidden, TagsMd: cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField, MaxNestedLevels: 16, MaxArrayElements: 1 << 20,
		MaxMapPairs: 1 << 10, UTF8: cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

func decodeStrict(b []byte, v any) error {
	if err := strict.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ledger.ErrMalformed, err)
	}
	if !bytes.Equal(enc(v), b) {
		return ledger.ErrNotCanonical
	}
	return nil
}

// checker returns the check of a case: nil error iff its bytes pass.
func (v *set) checker(t *testing.T, structure string, c *Case) func([]byte) error {
	i := in{t, c.Inputs}
	switch structure {
	case "keys":
		k := v.keys[c.Name]
		priv, err := x509.ParsePKCS8PrivateKey(unhex(t, in{t, k.Inputs}.str("pkcs8")))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.MarshalPKIXPublicKey(priv.(interface{ Public() crypto.PublicKey }).Public())
		if err != nil {
			t.Fatal(err)
		}
		nk := newKey(c.Name, i.str("alg"))
		if !bytes.Equal(pub, nk.spki()) || !bytes.Equal(nk.pkcs8(), i.bytes("pkcs8")) {
			t.Errorf("key %s: the pkcs8 and the scalar or seed are not the same key", c.Name)
		}
		return func(b []byte) error {
			if !bytes.Equal(b, pub) {
				return errMismatch
			}
			return nil
		}
	case "tx":
		pub := pubKey(t, i.bytes("author_spki"))
		maxBytes := int(i.num("max_tx_bytes"))
		var wantID string
		if c.Outputs != nil {
			wantID, _ = c.Outputs["tx_id"].(string)
		}
		return func(b []byte) error {
			tx, err := ledger.DecodeTx(b, maxBytes)
			if err != nil {
				return err
			}
			if err := tx.Verify(pub); err != nil {
				return err
			}
			if wantID != "" && hexs(tx.ID[:]) != wantID {
				return errMismatch
			}
			return nil
		}
	case "token":
		pub := pubKey(t, i.bytes("key_spki"))
		chain, now := i.str("chain"), time.Unix(i.num("now"), 0)
		if tok := c.Outputs["token"]; tok != base64.RawURLEncoding.EncodeToString(unhex(t, c.Hex)) {
			t.Errorf("%s: outputs.token is not the base64url of hex", c.Name)
		}
		return func(b []byte) error {
			tok, err := ledger.ParseToken(base64.RawURLEncoding.EncodeToString(b), chain, now)
			if err != nil {
				return err
			}
			return tok.Verify(pub)
		}
	case "genesis":
		o := in{t, c.Outputs}
		return func(b []byte) error {
			g, err := ledger.ParseGenesis(b)
			if err != nil {
				return err
			}
			h := g.Hash()
			if hexs(h[:]) != o.str("hash") || hexs(enc(g)) != o.str("cbor") || int64(g.Quorum()) != o.num("quorum") {
				return errMismatch
			}
			return nil
		}
	case "header":
		o := in{t, c.Outputs}
		hi := i.sub("header")
		h := ledger.Header{ChainID: hi.str("chain_id"), Height: uint64(hi.num("height")), Prev: hi.bytes("prev"), TxRoot: hi.bytes("tx_root"),
			NumTxs: uint64(hi.num("num_txs")), Time: hi.num("time"), View: uint64(hi.num("view")), Proposer: hi.str("proposer")}
		hash := h.Hash()
		if hexs(hash[:]) != o.str("hash") || hexs(ledger.VoteBytes(h.ChainID, h.Height, uint64(i.num("cert_view")), hash)) != o.str("vote") ||
			hexs(sum(o.bytes("vote"))) != o.str("vote_digest") {
			t.Errorf("%s: hash or vote differ from the code's", c.Name)
		}
		return func(b []byte) error {
			var d ledger.Header
			if err := decodeStrict(b, &d); err != nil {
				return err
			}
			if !bytes.Equal(b, enc(&h)) || hexs(sum(b)) != o.str("hash") {
				return errMismatch
			}
			return nil
		}
	case "cert":
		g := v.genesisOf(t, i.str("genesis"))
		return func(b []byte) error {
			var hd ledger.Head
			if err := decodeStrict(b, &hd); err != nil {
				return err
			}
			return ledger.VerifyHead(g, &hd)
		}
	case "merkle":
		var leaves [][]byte
		for _, l := range i.strs("leaves") {
			leaves = append(leaves, unhex(t, l))
		}
		root := i.bytes("root")
		if got := ledger.NewTree(leaves).Root(); !bytes.Equal(got, root) {
			t.Errorf("%s: tree head %x, the vector says %x", c.Name, got, root)
		}
		if _, ok := c.Inputs["proof"]; !ok {
			return nil
		}
		var proof [][]byte
		for _, p := range i.strs("proof") {
			proof = append(proof, unhex(t, p))
		}
		index, size := uint64(i.num("index")), uint64(i.num("size"))
		check := func(leaf []byte) error { return ledger.VerifyInclusion(leaf, index, size, proof, root) }
		if c.Verdict == "ok" {
			// The proof and the root must be bound too.
			for pi := range proof {
				for bi := range proof[pi] {
					proof[pi][bi] ^= 1
					if check(unhex(t, c.Hex)) == nil {
						t.Errorf("%s: proof hash %d byte %d changed still verifies", c.Name, pi, bi)
					}
					proof[pi][bi] ^= 1
				}
			}
		}
		return check
	case "receipt":
		g := v.genesisOf(t, i.str("genesis"))
		return func(b []byte) error {
			r, err := ledger.DecodeReceipt(b)
			if err != nil {
				return err
			}
			return ledger.VerifyReceipt(g, r)
		}
	case "membership":
		g := v.genesisOf(t, i.str("genesis"))
		var r []byte
		if _, ok := i.m["receipt"]; ok {
			r = i.bytes("receipt")
		}
		var want []any
		if c.Outputs != nil {
			want, _ = c.Outputs["sets"].([]any)
		}
		return func(b []byte) error {
			p, err := ledger.DecodeMembershipProof(b)
			if err != nil {
				return err
			}
			m, err := ledger.VerifyMembership(g, p)
			if err != nil {
				return err
			}
			if want != nil && !sameSets(m, want) {
				return errMismatch
			}
			if r == nil {
				return nil
			}
			rc, err := ledger.DecodeReceipt(r)
			if err != nil {
				return err
			}
			return m.VerifyReceipt(rc)
		}
	case "answer-config":
		g := v.genesisOf(t, i.str("genesis"))
		hash := [32]byte(i.bytes("hash"))
		p := device.ConfigPolicy{Device: i.str("device"), Groups: i.strs("groups"), Freshness: v.freshness(i)}
		if _, ok := c.Inputs["last"]; ok {
			l := i.sub("last")
			p.Last = &device.Accepted{Target: l.str("target"), Version: uint64(l.num("version")), Height: uint64(l.num("height")), SHA256: l.str("sha256")}
		}
		return func(b []byte) error {
			a, err := ledger.DecodeConfigAnswer(b)
			if err != nil {
				return err
			}
			acc, err := device.VerifyConfig(g, a, hash, p)
			if err != nil {
				return err
			}
			if c.Outputs != nil {
				o := in{t, c.Outputs}.sub("accepted")
				if acc.Target != o.str("target") || int64(acc.Version) != o.num("version") || int64(acc.Height) != o.num("height") || acc.SHA256 != o.str("sha256") {
					return errMismatch
				}
			}
			return nil
		}
	case "answer-keys":
		g := v.genesisOf(t, i.str("genesis"))
		f := v.freshness(i)
		return func(b []byte) error {
			a, err := ledger.DecodeKeysAnswer(b)
			if err != nil {
				return err
			}
			k, err := device.VerifyKeys(g, a, i.str("device"), f)
			if err != nil {
				return err
			}
			o := in{t, c.Outputs}
			groups := o.strs("groups")
			if !bytes.Equal(k.SigningKey.DER, o.bytes("signing_key")) || !bytes.Equal(k.EncKey, o.bytes("enc_key")) || k.Model != o.str("model") ||
				!slices.Equal(k.Groups, groups) || int64(k.Height) != o.num("height") || k.Revoked != o.m["revoked"].(bool) ||
				k.Revoked && k.Reason != o.str("reason") {
				return errMismatch
			}
			return nil
		}
	case "answer-firmware":
		g := v.genesisOf(t, i.str("genesis"))
		vk := pubKey(t, i.bytes("vendor_spki"))
		model, _ := c.Inputs["model"].(string) // absent: the device takes it from the answer
		p := device.FirmwarePolicy{Device: i.str("device"), Model: model, Groups: i.strs("groups"), Installed: uint64(i.num("installed")), Freshness: v.freshness(i)}
		image := i.bytes("image")
		return func(b []byte) error {
			a, err := ledger.DecodeFirmwareAnswer(b)
			if err != nil {
				return err
			}
			_, err = device.VerifyFirmware(g, vk, a, image, p)
			return err
		}
	case "sealed":
		key := v.encKey(t, i.str("key"))
		csIn := i.sub("config_set")
		cs := &ledger.ConfigSet{SHA256: csIn.bytes("sha256"), Size: uint64(csIn.num("size")), Blob: csIn.bytes("blob")}
		if !bytes.Equal(sum(unhex(t, in{t, v.keys[i.str("key")].Inputs}.str("spki"))), i.bytes("recipient_id")) {
			t.Errorf("%s: recipient_id is not SHA-256 of the key's SPKI", c.Name)
		}
		plain := []byte(i.str("plaintext"))
		return func(b []byte) error {
			pt, err := device.OpenConfig(cs, b, key)
			if err != nil {
				return err
			}
			if !bytes.Equal(pt, plain) {
				return errMismatch
			}
			return nil
		}
	case "hpke":
		kem, kdf, aead := hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES256GCM()
		skE, err := ecdh.X25519().NewPrivateKey(i.bytes("skEm"))
		if err != nil {
			t.Fatal(err)
		}
		skR, err := kem.NewPrivateKey(i.bytes("skRm"))
		if err != nil {
			t.Fatal(err)
		}
		pkR, err := ecdh.X25519().NewPrivateKey(i.bytes("skRm"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(skE.PublicKey().Bytes(), i.bytes("enc")) || !bytes.Equal(pkR.PublicKey().Bytes(), i.bytes("pkRm")) {
			t.Errorf("%s: the vector's keys do not match", c.Name)
		}
		return func(b []byte) error {
			r, err := hpke.NewRecipient(i.bytes("enc"), skR, kdf, aead, i.bytes("info"))
			if err != nil {
				return err
			}
			pt, err := r.Open(i.bytes("aad"), b)
			if err != nil {
				return err
			}
			if !bytes.Equal(pt, i.bytes("pt")) {
				return errMismatch
			}
			return nil
		}
	case "schema":
		idx := slices.IndexFunc(schemaTypes, func(s struct {
			name string
			v    any
		}) bool {
			return s.name == c.Name
		})
		if idx < 0 {
			t.Errorf("schema %s: no such structure", c.Name)
			return nil
		}
		want, _ := json.Marshal(fields(reflect.TypeOf(schemaTypes[idx].v)))
		got, _ := json.Marshal(c.Inputs["fields"])
		if string(want) != string(got) {
			t.Errorf("schema %s: the Go type's fields differ: run make vectors and update protocol.md", c.Name)
		}
		return nil
	case "reasons":
		idx := slices.IndexFunc(ledger.Reasons, func(r ledger.ReasonInfo) bool { return string(r.Reason) == c.Name })
		if idx < 0 || string(ledger.Reasons[idx].Action) != i.str("action") {
			t.Errorf("reason %s: not in ledger.Reasons with action %s", c.Name, i.str("action"))
		}
		return nil
	}
	t.Fatalf("unknown structure %q", structure)
	return nil
}

func (v *set) freshness(i in) device.Freshness {
	now := time.UnixMilli(i.num("now_ms"))
	return device.Freshness{MaxAge: time.Duration(i.num("max_age_ms")) * time.Millisecond, Now: func() time.Time { return now }}
}

// sameSets reports whether m's epochs are the sets a membership vector
// lists: start, node ids in order, quorum.
func sameSets(m *ledger.Members, want []any) bool {
	es := m.Epochs()
	if len(es) != len(want) {
		return false
	}
	for k, e := range es {
		w, _ := want[k].(map[string]any)
		ids, _ := w["nodes"].([]any)
		if fmt.Sprint(w["start"]) != fmt.Sprint(e.Start) || fmt.Sprint(w["quorum"]) != fmt.Sprint(e.Quorum()) || len(ids) != e.N() {
			return false
		}
		for j, id := range ids {
			if id != e.Nodes[j].ID {
				return false
			}
		}
	}
	return true
}
