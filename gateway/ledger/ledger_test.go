package ledger

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const testChain = "test-chain"

// fixedEd25519 is a deterministic key: Ed25519 signatures are deterministic,
// so txs it signs have fixed bytes.
func fixedEd25519() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubDER(t testing.TB, s crypto.Signer) []byte {
	t.Helper()
	der, err := MarshalPublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func record(dev string, seq uint64) *Body {
	return &Body{Kind: KindRecord, ChainID: testChain, Record: &Record{
		DeviceID: dev, Stream: "temp", Seq: seq, Time: 1_700_000_000_000, ContentType: "text/plain", Payload: []byte("21.5C"),
	}}
}

// golden compares got with testdata/name (hex), or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if strings.TrimSpace(string(want)) != hex.EncodeToString(got) {
		t.Errorf("%s: encoding changed\ngot  %x\nwant %s", name, got, want)
	}
}

func TestTxGoldenAndRoundTrip(t *testing.T) {
	key := fixedEd25519()
	enroll := &Body{Kind: KindEnroll, ChainID: testChain, Enroll: &Enroll{DeviceID: "dev-1", PublicKey: pubDER(t, key)}}
	cases := []struct {
		name, kid string
		body      *Body
	}{
		{"tx_record.golden", "dev-1", record("dev-1", 1)},
		{"tx_enroll.golden", "admin", enroll},
		{"tx_revoke.golden", "admin", &Body{Kind: KindRevoke, ChainID: testChain, Revoke: &Revoke{DeviceID: "dev-1", Reason: "lost"}}},
		{"tx_rekey.golden", "dev-1", &Body{Kind: KindRekey, ChainID: testChain, Rekey: &Rekey{DeviceID: "dev-1", Seq: 9, PublicKey: pubDER(t, key)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := SignTx(key, c.kid, c.body)
			if err != nil {
				t.Fatal(err)
			}
			again, err := SignTx(key, c.kid, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(env, again) {
				t.Fatal("signing the same body twice gave different bytes")
			}
			golden(t, c.name, env)
			tx, err := DecodeTx(env, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tx.Author != c.kid || tx.Alg != EdDSA || tx.Body.Kind != c.body.Kind || tx.ID != TxID(env) {
				t.Fatalf("decoded %+v", tx)
			}
			pk, _ := ParsePublicKey(pubDER(t, key))
			if err := tx.Verify(pk); err != nil {
				t.Fatal(err)
			}
			reenc, err := marshal(&tx.Body)
			if err != nil || !bytes.Equal(reenc, tx.env.payload) {
				t.Fatal("body does not re-encode to the signed payload")
			}
		})
	}
}

func TestTxES256Verifies(t *testing.T) {
	k := newP256(t)
	env, err := SignTx(k, "dev-2", record("dev-2", 3))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := DecodeTx(env, 0)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ParsePublicKey(pubDER(t, k))
	if err := tx.Verify(pk); err != nil {
		t.Fatal(err)
	}
	other, _ := ParsePublicKey(pubDER(t, newP256(t)))
	if err := tx.Verify(other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: got %v, want ErrBadSignature", err)
	}
	ed, _ := ParsePublicKey(pubDER(t, fixedEd25519()))
	if err := tx.Verify(ed); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("key of another alg: got %v, want ErrBadSignature", err)
	}
}

// rawSign1 builds a COSE_Sign1 by hand so tests can make what SignTx never would.
func rawSign1(t *testing.T, key crypto.Signer, alg cose.Algorithm, prot, unprot map[any]any, payload []byte) []byte {
	t.Helper()
	m := cose.NewSign1Message()
	for k, v := range prot {
		m.Headers.Protected[k] = v
	}
	for k, v := range unprot {
		m.Headers.Unprotected[k] = v
	}
	m.Payload = payload
	s, err := cose.NewSigner(alg, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Sign(rand.Reader, nil, s); err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeTxRejects(t *testing.T) {
	key := fixedEd25519()
	good, err := SignTx(key, "dev-1", record("dev-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := marshal(record("dev-1", 1))
	unknownKind := *record("dev-1", 1)
	unknownKind.Kind = "device.frobnicate"
	unknownPayload, _ := marshal(&unknownKind)
	extraField, _ := cbor.Marshal(map[int]any{1: string(KindRecord), 2: testChain, 6: unknownKind.Record, 99: 1})
	kid := []byte("dev-1")
	cases := []struct {
		name string
		env  []byte
		want error
	}{
		{"trailing bytes", append(append([]byte{}, good...), 0x00), ErrMalformed},
		{"truncated", good[:len(good)-3], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"not cose", []byte("hello"), ErrMalformed},
		{"unknown kind", rawSign1(t, key, cose.AlgorithmEdDSA, map[any]any{cose.HeaderLabelKeyID: kid}, nil, unknownPayload), ErrUnknownKind},
		{"unknown body field", rawSign1(t, key, cose.AlgorithmEdDSA, map[any]any{cose.HeaderLabelKeyID: kid}, nil, extraField), ErrMalformed},
		{"alg only in unprotected header", rawSign1(t, key, cose.AlgorithmEdDSA, map[any]any{cose.HeaderLabelKeyID: kid},
			map[any]any{cose.HeaderLabelAlgorithm: cose.AlgorithmEdDSA}, payload), ErrMalformed},
		{"kid in unprotected header", rawSign1(t, key, cose.AlgorithmEdDSA, nil, map[any]any{cose.HeaderLabelKeyID: kid}, payload), ErrMalformed},
		{"unknown alg ES384", rawSign1(t, newP384(t), cose.AlgorithmES384, map[any]any{cose.HeaderLabelKeyID: kid}, nil, payload), ErrMalformed},
		{"extra protected header", rawSign1(t, key, cose.AlgorithmEdDSA, map[any]any{cose.HeaderLabelKeyID: kid, cose.HeaderLabelContentType: "text/plain"}, nil, payload), ErrMalformed},
		{"too large", good, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := 0
			if c.want == ErrTooLarge {
				limit = len(good) - 1
			}
			_, err := DecodeTx(c.env, limit)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func newP384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyRejectsWrongAlgAndBadSignature(t *testing.T) {
	key := fixedEd25519()
	pk, _ := ParsePublicKey(pubDER(t, key))
	good, _ := SignTx(key, "dev-1", record("dev-1", 1))

	// The header claims ES256 but the signature is Ed25519's.
	payload, _ := marshal(record("dev-1", 1))
	p256 := newP256(t)
	claimsES256 := rawSign1(t, p256, cose.AlgorithmES256, map[any]any{cose.HeaderLabelKeyID: []byte("dev-1")}, nil, payload)
	tx, err := DecodeTx(claimsES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Verify(pk); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong alg: got %v", err)
	}

	bad := append([]byte{}, good...)
	bad[len(bad)-1] ^= 0x01 // last byte of the signature
	tx, err = DecodeTx(bad, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Verify(pk); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("flipped signature bit: got %v", err)
	}
}

func TestBodyValidate(t *testing.T) {
	bad := []*Body{
		{Kind: KindRecord, ChainID: testChain},
		{Kind: KindRecord, Record: &Record{DeviceID: "d", Stream: "s", Seq: 1}},
		{Kind: KindRecord, ChainID: testChain, Record: &Record{DeviceID: "d/x", Stream: "s", Seq: 1}},
		{Kind: KindRecord, ChainID: testChain, Record: &Record{DeviceID: "d", Stream: "#", Seq: 1}},
		{Kind: KindRecord, ChainID: testChain, Record: &Record{DeviceID: "d", Stream: "s", Seq: 0}},
		{Kind: KindRecord, ChainID: testChain, Record: &Record{DeviceID: "d", Stream: "s", Seq: 1 << 63}},
		{Kind: KindEnroll, ChainID: testChain, Enroll: &Enroll{DeviceID: "d", PublicKey: []byte{1, 2}}},
		{Kind: KindEnroll, ChainID: testChain, Record: &Record{DeviceID: "d", Stream: "s", Seq: 1}},
		{Kind: KindRevoke, ChainID: testChain, Revoke: &Revoke{DeviceID: "d"}, Record: &Record{DeviceID: "d", Stream: "s", Seq: 1}},
	}
	for i, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, b)
		}
	}
}

func testBlock(t testing.TB, n int) *Block {
	t.Helper()
	key := fixedEd25519()
	var txs [][]byte
	for i := 0; i < n; i++ {
		env, err := SignTx(key, "dev-1", record("dev-1", uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, env)
	}
	tree := NewTree(txs)
	return &Block{
		Header: Header{ChainID: testChain, Height: 7, Prev: bytes.Repeat([]byte{0xaa}, 32), TxRoot: tree.Root(),
			NumTxs: uint64(n), Time: 1_700_000_000_123, View: 2, Proposer: "node-1"},
		Txs:  txs,
		Cert: Cert{View: 2, Sigs: []Sig{{Node: "node-1", Sig: bytes.Repeat([]byte{0x30}, 70)}}},
	}
}

func TestBlockGoldenAndRoundTrip(t *testing.T) {
	b := testBlock(t, 3)
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "block.golden", enc)
	got, err := DecodeBlock(enc)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.Encode()
	if !bytes.Equal(enc, again) {
		t.Fatal("block does not round-trip")
	}
	if got.Header.Hash() != b.Header.Hash() {
		t.Fatal("hash changed")
	}
	h := b.Header.Hash()
	golden(t, "block_hash.golden", h[:])

	if _, err := DecodeBlock(append(enc, 0)); !errors.Is(err, ErrBadBlock) {
		t.Fatalf("trailing byte: %v", err)
	}
	b.Header.NumTxs = 2
	enc2, _ := b.Encode()
	if _, err := DecodeBlock(enc2); !errors.Is(err, ErrBadBlock) {
		t.Fatalf("wrong NumTxs: %v", err)
	}
	b.Header.NumTxs = 3
	b.Txs[1] = b.Txs[2]
	enc3, _ := b.Encode()
	if _, err := DecodeBlock(enc3); !errors.Is(err, ErrBadBlock) {
		t.Fatalf("tx swapped under root: %v", err)
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	type pair struct {
		A uint64 `cbor:"1,keyasint"`
		B uint64 `cbor:"2,keyasint"`
	}
	cases := map[string][]byte{
		"canonical":          {0xa2, 0x01, 0x07, 0x02, 0x01},
		"non-minimal int":    {0xa2, 0x01, 0x18, 0x07, 0x02, 0x01},
		"unsorted keys":      {0xa2, 0x02, 0x01, 0x01, 0x07},
		"indefinite map":     {0xbf, 0x01, 0x07, 0x02, 0x01, 0xff},
		"duplicate key":      {0xa2, 0x01, 0x07, 0x01, 0x07},
		"unknown field":      {0xa3, 0x01, 0x07, 0x02, 0x01, 0x03, 0x00},
		"trailing byte":      {0xa2, 0x01, 0x07, 0x02, 0x01, 0x00},
		"non-minimal length": {0xb8, 0x02, 0x01, 0x07, 0x02, 0x01},
	}
	for name, data := range cases {
		var p pair
		err := unmarshal(data, &p)
		if (name == "canonical") != (err == nil) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// hashStrict is a crypto.Signer that, like a TPM, an HSM or a KMS key,
// signs only a digest whose hash the caller names: opts must say SHA-256.
type hashStrict struct {
	*ecdsa.PrivateKey
	opts []crypto.SignerOpts
}

func (s *hashStrict) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.opts = append(s.opts, opts)
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("hashStrict: not told the digest is SHA-256")
	}
	return s.PrivateKey.Sign(r, digest, opts)
}

// TestSignTxNamesTheHash: SignTx with an ES256 key behind a crypto.Signer
// tells it the digest is SHA-256 (go-cose passes nil opts, which a TPM
// refuses: issue 20, defect 3), and the tx verifies.
func TestSignTxNamesTheHash(t *testing.T) {
	s := &hashStrict{PrivateKey: newP256(t)}
	env, err := SignTx(s, "node-1", &Body{Kind: KindHeartbeat, ChainID: testChain,
		Heartbeat: &Heartbeat{Node: "node-1", Time: 1_700_000_000_000}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.opts) != 1 || s.opts[0] == nil || s.opts[0].HashFunc() != crypto.SHA256 {
		t.Errorf("the signer was given opts %v, want one crypto.SHA256", s.opts)
	}
	tx, err := DecodeTx(env, 0)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ParsePublicKey(pubDER(t, s))
	if err := tx.Verify(pk); err != nil {
		t.Fatal(err)
	}
}
