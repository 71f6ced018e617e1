package coap

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// proofSource serves fixed proof bytes.
type proofSource []byte

func (p proofSource) MembershipProof() ([]byte, error) { return p, nil }

// vectorProof is the two-change membership proof of docs/vectors: a
// real proof of several KiB, so that it goes block-wise.
func vectorProof(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "vectors", "membership.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Cases []struct{ Name, Hex string } }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Cases {
		if c.Name == "two-changes" {
			p, err := hex.DecodeString(c.Hex)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ledger.DecodeMembershipProof(p); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatal("no two-changes vector")
	return nil
}

// TestMembershipProof: GET /lg/v1/cluster/proof is 2.05 with the
// Membership's bytes (CBOR, block-wise when over a block), over UDP and
// to a device's DTLS session; other methods and formats are refused, a
// gateway without a Membership answers 4.04, and "cluster" names no
// device's resources.
func TestMembershipProof(t *testing.T) {
	proof := vectorProof(t)
	if len(proof) <= 1024 {
		t.Fatalf("the proof is %d bytes: too small to test block-wise", len(proof))
	}
	node := startNode(t)
	s := startServerWithDeps(t, node, Config{}, Deps{Answers: newFakeAnswers(), Membership: proofSource(proof)})
	for _, szx := range []blockwise.SZX{blockwise.SZX64, blockwise.SZX1024} {
		cc := dialUDP(t, s.udpAddr, szx)
		wantBody(t, get(t, cc, "/lg/v1/cluster/proof"), message.AppCBOR, proof)
	}
	d := enroll(t, node, "sensor-1", ledger.ES256)
	dc := mustDialDTLS(t, s.dtlsAddr, d.key)
	wantBody(t, get(t, dc, "/lg/v1/cluster/proof"), message.AppCBOR, proof)

	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	wantCode(t, get(t, cc, "/lg/v1/cluster/proof", message.Option{ID: message.Accept, Value: []byte{42}}), codes.NotAcceptable)
	wantCode(t, postPath(t, cc, "/lg/v1/cluster/proof", []byte{0x80}), codes.MethodNotAllowed)
	enroll(t, node, "cluster", ledger.ES256)
	wantCode(t, get(t, cc, "/lg/v1/cluster/config"), codes.NotFound)

	bare := startServerWithDeps(t, node, Config{}, Deps{Answers: newFakeAnswers()})
	wantCode(t, get(t, dialUDP(t, bare.udpAddr, blockwise.SZX1024), "/lg/v1/cluster/proof"), codes.NotFound)
}

// TestLibcoapMembershipProof: libcoap's coap-client reads the membership
// proof in 64-byte Block2 blocks over UDP, and over DTLS with a device's
// certificate; the bytes are the proof.
func TestLibcoapMembershipProof(t *testing.T) {
	proof := vectorProof(t)
	node := startNode(t)
	s := startServerWithDeps(t, node, Config{}, Deps{Membership: proofSource(proof)})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	dir := t.TempDir()
	certFile, keyFile := writePEM(t, dir, selfSigned(t, d.key, "sensor-1"))
	for _, tc := range []struct {
		name, bin, uri string
		extra          []string
	}{
		{"udp", "coap-client-notls", "coap://" + s.udpAddr + "/lg/v1/cluster/proof", []string{"-b", "64"}},
		{"dtls", "coap-client-openssl", "coaps://" + s.dtlsAddr + "/lg/v1/cluster/proof", []string{"-c", certFile, "-j", keyFile, "-n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".cbor")
			args := append(append([]string{"-m", "get", "-A", "60", "-o", out}, tc.extra...), tc.uri)
			msg, err := coapClient(t, tc.bin, args...)
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", tc.bin, args, err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, proof) {
				t.Fatalf("%d bytes (%v), want the %d-byte proof\n%s", len(got), err, len(proof), msg)
			}
		})
	}
}
