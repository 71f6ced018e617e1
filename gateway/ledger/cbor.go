package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// encMode is RFC 8949 section 4.2.1 core deterministic encoding.
var encMode = mustEncMode()

// decMode refuses what an attacker could use to give one value two
// encodings or to exhaust memory. Canonical form is then enforced by
// re-encoding (see unmarshal).
var decMode = mustDecMode()

func mustEncMode() cbor.EncMode {
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeUnix
	em, err := opts.EncMode()
	if err != nil {
		panic("ledger: invariant: cbor enc mode: " + err.Error())
	}
	return em
}

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   16,
		MaxArrayElements:  1 << 20,
		MaxMapPairs:       1 << 10,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("ledger: invariant: cbor dec mode: " + err.Error())
	}
	return dm
}

// ErrNotCanonical reports CBOR that decodes but is not in deterministic form.
var ErrNotCanonical = errors.New("ledger: cbor not in deterministic encoding")

// marshal encodes v deterministically.
func marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// unmarshal decodes data into v and checks that data is exactly the
// deterministic encoding of the result: no trailing bytes, no unknown
// fields, no non-minimal lengths, sorted map keys. When it fails because
// of one field of a map (missing, of the wrong type, present though
// empty, unknown) the error is a *FieldError that names it.
func unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		if fe := describeFields(data, reflect.TypeOf(v)); fe != nil {
			return fe
		}
		return fmt.Errorf("ledger: cbor: %w", err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("ledger: cbor re-encode: %w", err)
	}
	if !bytes.Equal(again, data) {
		if fe := describeFields(data, reflect.TypeOf(v)); fe != nil {
			return fe
		}
		return ErrNotCanonical
	}
	return nil
}
