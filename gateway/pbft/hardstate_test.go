package pbft_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// TestHardStateAsked: the view a replica asked for survives the disk
// (a replica that rejoined a lower view must not vote there after a
// restart either), and a hard state without it encodes as before, so
// that an older ledgergate still reads it.
func TestHardStateAsked(t *testing.T) {
	hs := pbft.HardState{View: 3, Asked: 4, Votes: []pbft.SeqVote{{Seq: 7, View: 3}}}
	got, err := pbft.DecodeHardState(pbft.EncodeHardState(&hs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, hs) {
		t.Fatalf("decoded %+v, want %+v", *got, hs)
	}
	type before struct { // HardState before Asked
		View         uint64          `cbor:"1,keyasint"`
		Changing     bool            `cbor:"2,keyasint"`
		Votes        []pbft.SeqVote  `cbor:"3,keyasint"`
		Stable       uint64          `cbor:"4,keyasint"`
		StableDigest pbft.Digest     `cbor:"5,keyasint"`
		Proof        []*pbft.Message `cbor:"6,keyasint"`
	}
	hs.Asked = 0
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	old, err := em.Marshal(before{View: hs.View, Votes: hs.Votes})
	if err != nil {
		t.Fatal(err)
	}
	if enc := pbft.EncodeHardState(&hs); !bytes.Equal(enc, old) {
		t.Fatalf("a hard state without Asked encodes as %x, before as %x", enc, old)
	}
}
