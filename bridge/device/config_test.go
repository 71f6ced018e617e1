package device

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// testChain builds certified blocks for a genesis of four nodes, as the
// gateways would: what a lying gateway can and cannot fake.
type testChain struct {
	t      testing.TB
	g      *ledger.Genesis
	nodes  []*ecdsa.PrivateKey
	admin  crypto.Signer
	height uint64
	prev   [32]byte
	now    time.Time
}

func newTestChain(t testing.TB, chainID string) *testChain {
	t.Helper()
	c := &testChain{t: t, admin: mustKey(t), now: time.UnixMilli(1_800_000_000_000)}
	c.g = &ledger.Genesis{ChainID: chainID, Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes}}
	for i := range 4 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		c.nodes = append(c.nodes, k)
		c.g.Nodes = append(c.g.Nodes, ledger.Node{ID: fmt.Sprintf("gw%d", i), PublicKey: der})
	}
	der, _ := ledger.MarshalPublicKey(c.admin)
	c.g.Admins = []ledger.Admin{{ID: "admin", PublicKey: der}}
	if err := c.g.Validate(); err != nil {
		t.Fatal(err)
	}
	c.prev = c.g.Hash()
	return c
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// commit makes the next block of txs at time at, certified by signers
// (indexes into the node keys), and returns the receipts of its txs.
func (c *testChain) commit(at time.Time, signers []int, envs ...[]byte) ([]*ledger.Receipt, *ledger.Head) {
	c.t.Helper()
	c.height++
	tree := ledger.NewTree(envs)
	b := &ledger.Block{Header: ledger.Header{ChainID: c.g.ChainID, Height: c.height, Prev: append([]byte(nil), c.prev[:]...), TxRoot: tree.Root(),
		NumTxs: uint64(len(envs)), Time: at.UnixMilli(), Proposer: "gw0"}, Txs: envs}
	for _, i := range signers {
		s, err := ledger.SignVote(c.nodes[i], c.g.Nodes[i].ID, &b.Header, 0)
		if err != nil {
			c.t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	c.prev = b.Header.Hash()
	var rs []*ledger.Receipt
	for i := range envs {
		r, err := ledger.NewReceipt(b, tree, uint64(i))
		if err != nil {
			c.t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs, &ledger.Head{Header: b.Header, Cert: b.Cert}
}

var quorum = []int{0, 1, 2}

func (c *testChain) sign(author crypto.Signer, kid string, body ledger.Body) []byte {
	c.t.Helper()
	body.ChainID = c.g.ChainID
	env, err := ledger.SignTx(author, kid, &body)
	if err != nil {
		c.t.Fatal(err)
	}
	return env
}

func (c *testChain) configSet(target string, version uint64, config []byte) []byte {
	sum := sha256.Sum256(config)
	return c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindConfigSet, ConfigSet: &ledger.ConfigSet{
		Target: target, Version: version, SHA256: sum[:], Size: uint64(len(config)), Blob: sum[:],
	}})
}

func TestVerifyConfigRefusesALyingGateway(t *testing.T) {
	c := newTestChain(t, "site-a")
	v1, v2 := []byte("interval = 10\n"), []byte("interval = 20\n")
	r1, _ := c.commit(c.now, quorum, c.configSet("dev-1", 1, v1))
	r2, head := c.commit(c.now.Add(time.Second), quorum, c.configSet("dev-1", 2, v2))
	rGroup, _ := c.commit(c.now.Add(2*time.Second), quorum, c.configSet("group:other", 1, v2))
	now := func() time.Time { return c.now.Add(time.Minute) }
	policy := ConfigPolicy{Device: "dev-1", Groups: []string{"meters"}, Freshness: Freshness{MaxAge: 10 * time.Minute, Now: now}}
	answer := func(r *ledger.Receipt, h *ledger.Head) *ledger.ConfigAnswer {
		return &ledger.ConfigAnswer{Device: "dev-1", Receipt: r, Head: *h}
	}

	// The honest answer is accepted, and is what the device remembers.
	acc, err := VerifyConfig(c.g, answer(r2[0], head), sha256.Sum256(v2), policy)
	if err != nil || acc.Version != 2 || acc.Target != "dev-1" || acc.Height != 2 {
		t.Fatalf("honest answer: %+v, %v", acc, err)
	}
	accepted := policy
	accepted.Last = acc

	// A certificate of other keys than the genesis nodes'.
	forged := newTestChain(t, "site-a")
	forged.height, forged.prev = 2, c.prev
	rForged, hForged := forged.commit(c.now.Add(time.Second), quorum, c.configSet("dev-1", 3, v1))
	// A certificate of another chain.
	foreign := newTestChain(t, "site-b")
	rForeign, hForeign := foreign.commit(c.now, quorum, foreign.configSet("dev-1", 3, v1))
	// Too few signers.
	_, hWeak := c.commit(c.now.Add(3*time.Second), []int{0, 1}, c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "x"}}))
	// A freshly certified head whose time is beyond the bound.
	_, hOld := c.commit(c.now.Add(-time.Hour), quorum, c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "y"}}))
	// A tampered receipt: the hash in the tx changed.
	tampered := *r2[0]
	tampered.Tx = c.configSet("dev-1", 2, []byte("interval = 1\n"))

	tests := []struct {
		name   string
		answer *ledger.ConfigAnswer
		hash   []byte
		policy ConfigPolicy
		want   error
	}{
		{"wrong hash", answer(r2[0], head), v1, policy, ErrNotCurrent},
		{"older version than accepted", answer(r1[0], head), v1, accepted, ErrRollback},
		{"forged certificate", answer(rForged[0], hForged), v1, policy, ErrProof},
		{"forged certificate on the head only", answer(r2[0], hForged), v2, policy, ErrProof},
		{"foreign chain", answer(rForeign[0], hForeign), v1, policy, ErrProof},
		{"too few signers", answer(r2[0], hWeak), v2, policy, ErrProof},
		{"stale head", answer(r2[0], head), v2, ConfigPolicy{Device: "dev-1", Freshness: Freshness{MaxAge: time.Minute, Now: func() time.Time { return c.now.Add(time.Hour) }}}, ErrStaleHead},
		{"head older than the block it is the head of", answer(r2[0], hOld), v2, policy, ErrStaleHead},
		{"another device's answer", &ledger.ConfigAnswer{Device: "dev-2", Receipt: r2[0], Head: *head}, v2, policy, ErrProof},
		{"a group the device is not in", answer(rGroup[0], head), v2, policy, ErrProof},
		{"tampered receipt", answer(&tampered, head), []byte("interval = 1\n"), policy, ErrProof},
		{"no configuration", answer(nil, head), v2, policy, ErrNoConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, err := VerifyConfig(c.g, tt.answer, sha256.Sum256(tt.hash), tt.policy)
			if !errors.Is(err, tt.want) {
				t.Errorf("VerifyConfig = %+v, %v; want %v", acc, err, tt.want)
			}
		})
	}
}

func TestConfigStateKeepsRollbackProtectionAcrossRestarts(t *testing.T) {
	c := newTestChain(t, "site-a")
	v1, v2 := []byte("a"), []byte("b")
	r1, _ := c.commit(c.now, quorum, c.configSet("group:meters", 7, v1))
	r2, head := c.commit(c.now, quorum, c.configSet("dev-1", 1, v2))
	p := ConfigPolicy{Device: "dev-1", Groups: []string{"meters"}, Freshness: Freshness{Now: func() time.Time { return c.now }}}
	path := t.TempDir() + "/config.state"

	// A device-specific version 1 after group version 7 is newer: it is
	// in a later block.
	if _, err := OpenConfigState(path).Verify(c.g, &ledger.ConfigAnswer{Device: "dev-1", Receipt: r1[0], Head: *head}, sha256.Sum256(v1), p); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenConfigState(path).Verify(c.g, &ledger.ConfigAnswer{Device: "dev-1", Receipt: r2[0], Head: *head}, sha256.Sum256(v2), p); err != nil {
		t.Fatal(err)
	}
	// After a restart (a new ConfigState on the same file) the group's
	// version 7 is a rollback.
	_, err := OpenConfigState(path).Verify(c.g, &ledger.ConfigAnswer{Device: "dev-1", Receipt: r1[0], Head: *head}, sha256.Sum256(v1), p)
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("rolled back to the group's config: err = %v, want ErrRollback", err)
	}
}

func encKeys(t testing.TB, n int) ([]*ecdh.PrivateKey, [][]byte) {
	t.Helper()
	var privs []*ecdh.PrivateKey
	var pubs [][]byte
	for range n {
		k, err := GenerateEncKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := EncPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		privs, pubs = append(privs, k), append(pubs, der)
	}
	return privs, pubs
}

func TestSealGroupReadableByEachMemberOnly(t *testing.T) {
	members, pubs := encKeys(t, 3)
	outsiders, _ := encKeys(t, 1)
	plain := []byte("group config: secret = 42\n")
	sealed, err := Seal(pubs, plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) < len(plain) || containsBytes(sealed, []byte("secret = 42")) {
		t.Fatal("the sealed message contains the plaintext")
	}
	for i, k := range members {
		if got, err := Open(k, sealed); err != nil || string(got) != string(plain) {
			t.Errorf("member %d: Open = %q, %v", i, got, err)
		}
	}
	if _, err := Open(outsiders[0], sealed); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("outsider: Open err = %v, want ErrNotRecipient", err)
	}
	bad := append([]byte(nil), sealed...)
	bad[len(bad)-1] ^= 1
	if _, err := Open(members[0], bad); !errors.Is(err, ErrSealed) {
		t.Errorf("tampered: Open err = %v, want ErrSealed", err)
	}
}

func containsBytes(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}

func TestVerifyKeysAndSealTo(t *testing.T) {
	c := newTestChain(t, "site-a")
	sign1, sign2 := mustKey(t), mustKey(t)
	encs, encPubs := encKeys(t, 2)
	der1, _ := ledger.MarshalPublicKey(sign1)
	der2, _ := ledger.MarshalPublicKey(sign2)
	en := c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindEnroll, Enroll: &ledger.Enroll{DeviceID: "b", PublicKey: der1,
		Model: "th-2", Groups: []string{"meters"}, EncKey: encPubs[0]}})
	rEn, head1 := c.commit(c.now, quorum, en)
	fresh := Freshness{Now: func() time.Time { return c.now }}

	k, err := VerifyKeys(c.g, &ledger.KeysAnswer{Device: "b", Enroll: rEn[0], Head: *head1}, "b", fresh)
	if err != nil || k.Model != "th-2" || string(k.EncKey) != string(encPubs[0]) || k.Revoked {
		t.Fatalf("VerifyKeys = %+v, %v", k, err)
	}
	msg, err := SealTo(k, []byte("hello b"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(encs[0], msg); err != nil || string(got) != "hello b" {
		t.Fatalf("b opens: %q, %v", got, err)
	}

	rk := c.sign(sign1, "b", ledger.Body{Kind: ledger.KindRekey, Rekey: &ledger.Rekey{DeviceID: "b", Seq: 1, PublicKey: der2, EncKey: encPubs[1]}})
	rRk, head2 := c.commit(c.now, quorum, rk)
	k, err = VerifyKeys(c.g, &ledger.KeysAnswer{Device: "b", Enroll: rEn[0], Rekey: rRk[0], Head: *head2}, "b", fresh)
	if err != nil || string(k.EncKey) != string(encPubs[1]) || string(k.SigningKey.DER) != string(der2) {
		t.Fatalf("after re-key: %+v, %v", k, err)
	}
	// The re-key's receipt given as the enrollment is refused.
	if _, err := VerifyKeys(c.g, &ledger.KeysAnswer{Device: "b", Enroll: rRk[0], Head: *head2}, "b", fresh); !errors.Is(err, ErrProof) {
		t.Errorf("re-key as enrollment: err = %v, want ErrProof", err)
	}

	rv := c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "b", Reason: "stolen"}})
	rRv, head3 := c.commit(c.now, quorum, rv)
	k, err = VerifyKeys(c.g, &ledger.KeysAnswer{Device: "b", Enroll: rEn[0], Rekey: rRk[0], Revoke: rRv[0], Head: *head3}, "b", fresh)
	if err != nil || !k.Revoked || k.Reason != "stolen" {
		t.Fatalf("after revocation: %+v, %v", k, err)
	}
	if _, err := SealTo(k, []byte("x")); !errors.Is(err, ErrRevoked) {
		t.Errorf("SealTo a revoked device: err = %v, want ErrRevoked", err)
	}
}

// TestVerifyConfigGroupsFromEnrollment: a device that does not keep its
// groups takes them from the enrollment receipt the answer carries, and
// refuses an answer whose enrollment is missing, another device's, or
// not a committed enrollment.
func TestVerifyConfigGroupsFromEnrollment(t *testing.T) {
	c := newTestChain(t, "site-a")
	devKey := mustKey(t)
	pub, _ := ledger.MarshalPublicKey(devKey)
	enroll := func(id string, groups ...string) []byte {
		return c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindEnroll, Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub, Groups: groups}})
	}
	rEnroll, _ := c.commit(c.now, quorum, enroll("dev-1", "meters"), enroll("dev-2", "other"))
	cfg := []byte("interval = 10\n")
	rCfg, head := c.commit(c.now.Add(time.Second), quorum, c.configSet("group:meters", 1, cfg))
	policy := ConfigPolicy{Device: "dev-1", Freshness: Freshness{MaxAge: 10 * time.Minute, Now: func() time.Time { return c.now.Add(time.Minute) }}}
	answer := func(enrollment *ledger.Receipt) *ledger.ConfigAnswer {
		return &ledger.ConfigAnswer{Device: "dev-1", Receipt: rCfg[0], Head: *head, Enrollment: enrollment}
	}
	if acc, err := VerifyConfig(c.g, answer(rEnroll[0]), sha256.Sum256(cfg), policy); err != nil || acc.Target != "group:meters" {
		t.Fatalf("groups from the enrollment: %+v, %v", acc, err)
	}
	forged := *rEnroll[0]
	forged.Tx = enroll("dev-1", "meters", "x")
	for name, e := range map[string]*ledger.Receipt{"none": nil, "another device's": rEnroll[1], "not committed": &forged, "not an enrollment": rCfg[0]} {
		if _, err := VerifyConfig(c.g, answer(e), sha256.Sum256(cfg), policy); !errors.Is(err, ErrProof) {
			t.Errorf("enrollment %s: %v, want ErrProof", name, err)
		}
	}
}

// TestCheckFirmwareNullVote: a gateway's answer with a null among its
// votes is refused as a bad proof, not a crash of the device.
func TestCheckFirmwareNullVote(t *testing.T) {
	c := newTestChain(t, "site-a")
	vendor := mustKey(t)
	vendorDER, _ := ledger.MarshalPublicKey(vendor)
	vendorKey, err := ledger.ParsePublicKey(vendorDER)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("image"))
	rel := c.sign(vendor, "acme", ledger.Body{Kind: ledger.KindFirmwarePublish, FirmwarePublish: &ledger.FirmwarePublish{
		Model: "th-2", Version: 2, SHA256: sum[:], Size: 5, Expires: c.now.Add(time.Hour).UnixMilli()}})
	pol := c.sign(c.admin, "admin", ledger.Body{Kind: ledger.KindFirmwarePolicy, FirmwarePolicy: &ledger.FirmwarePolicy{Group: "fleet", MinGoodVotes: 1}})
	rs, head := c.commit(c.now, quorum, rel, pol)
	a := &ledger.FirmwareAnswer{Device: "dev-1", Group: "fleet", Release: rs[0], Policy: rs[1], Votes: []*ledger.Receipt{nil}, Head: *head}
	p := FirmwarePolicy{Device: "dev-1", Model: "th-2", Groups: []string{"fleet"}, Installed: 1, Freshness: Freshness{Now: func() time.Time { return c.now }}}
	if _, err := CheckFirmware(c.g, vendorKey, a, p); !errors.Is(err, ErrProof) {
		t.Fatalf("CheckFirmware with a null vote: %v, want ErrProof", err)
	}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.DecodeFirmwareAnswer(b); !errors.Is(err, ledger.ErrAnswer) {
		t.Fatalf("DecodeFirmwareAnswer with a null vote: %v, want ErrAnswer", err)
	}
}
