package mqtt

import (
	"bytes"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// proofSource serves fixed proof bytes, or an error.
type proofSource struct {
	b   []byte
	err error
}

func (p proofSource) MembershipProof() ([]byte, error) { return p.b, p.err }

// TestMembershipProofRequest: cluster/proof/get is answered with the
// Membership's bytes on cluster/proof or the response topic; a payload
// is malformed; without a Membership the request is not_found.
func TestMembershipProofRequest(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	proof, err := ledger.MembershipProof{}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(proof, []byte{0x80}) {
		t.Fatalf("the empty proof is %x, protocol.md 10.2 says 80", proof)
	}
	srv := startServerDeps(t, node, Config{}, Deps{Answers: newFakeAnswers(), Membership: proofSource{b: proof}})
	subs := append(answerFilters("dev"), "lg/v1/dev/cluster/proof")
	key := node.Enroll(t, "dev", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{subscribe: subs})

	r, m := c.request(t, "lg/v1/dev/cluster/proof/get", nil, "", nil, "lg/v1/dev/cluster/proof")
	if r.ReasonCode != 0 || !bytes.Equal(m.Payload, proof) || contentType(m) != "application/cbor" {
		t.Fatalf("PUBACK 0x%02x; answer %x, content type %q", r.ReasonCode, m.Payload, contentType(m))
	}
	r, m = c.request(t, "lg/v1/dev/cluster/proof/get", nil, "lg/v1/dev/answers/9", []byte("c9"), "lg/v1/dev/answers/9")
	if r.ReasonCode != 0 || !bytes.Equal(m.Payload, proof) || !bytes.Equal(correlation(m), []byte("c9")) {
		t.Fatalf("PUBACK 0x%02x; answer %x, correlation %q", r.ReasonCode, m.Payload, correlation(m))
	}
	if r := c.publish(t, "lg/v1/dev/cluster/proof/get", []byte("x")); r.ReasonCode != 0x99 || r.Properties.ReasonString != "malformed" {
		t.Fatalf("a payload: PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != ledger.ReasonMalformed {
		t.Fatalf("reject %+v", rj)
	}

	bare := startServerDeps(t, node, Config{}, Deps{Answers: newFakeAnswers()})
	b := mustConnect(t, tcpAddr(bare), "dev", key, chainID, connectOpts{clientID: "dev/2"})
	if r := b.publish(t, "lg/v1/dev/cluster/proof/get", nil); r.ReasonCode != 0x83 || r.Properties.ReasonString != "not_found" {
		t.Fatalf("without a Membership: PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
	}
}
