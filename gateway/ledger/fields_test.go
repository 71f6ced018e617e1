package ledger

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// everyKind returns a valid body of every tx kind, with every optional
// field set, keyed by the Body member (CBOR key) that carries it.
func everyKind(t *testing.T) map[uint64]*Body {
	t.Helper()
	key := fixedEd25519()
	pub := pubDER(t, key)
	xk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := x509.MarshalPKIXPublicKey(xk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]byte, 32)
	sum[0] = 1
	rel := Release{Model: "m-1", Version: 3}
	b := func(k Kind) *Body { return &Body{Kind: k, ChainID: testChain} }
	bodies := map[uint64]*Body{}
	add := func(key uint64, body *Body) { bodies[key] = body }
	e := b(KindEnroll)
	e.Enroll = &Enroll{DeviceID: "dev-1", PublicKey: pub, Model: "m-1", Groups: []string{"a", "b"}, EncKey: enc}
	add(3, e)
	r := b(KindRevoke)
	r.Revoke = &Revoke{DeviceID: "dev-1", Reason: "lost"}
	add(4, r)
	rk := b(KindRekey)
	rk.Rekey = &Rekey{DeviceID: "dev-1", Seq: 4, PublicKey: pub, EncKey: enc}
	add(5, rk)
	add(6, record("dev-1", 1))
	cs := b(KindConfigSet)
	cs.ConfigSet = &ConfigSet{Target: "group:g", Version: 2, SHA256: sum, Size: 10, ContentType: "application/json", Blob: sum, URI: "https://x"}
	add(7, cs)
	cr := b(KindConfigReport)
	cr.ConfigReport = &ConfigReport{DeviceID: "dev-1", Seq: 2, Version: 1, SHA256: sum}
	add(8, cr)
	hb := b(KindHeartbeat)
	hb.Heartbeat = &Heartbeat{Node: "n-1", Time: 5}
	add(9, hb)
	ve := b(KindVendorEnroll)
	ve.VendorEnroll = &VendorEnroll{Vendor: "v", PublicKey: pub, Models: []string{"m-1"}}
	add(10, ve)
	re := b(KindReviewerEnroll)
	re.ReviewerEnroll = &ReviewerEnroll{Reviewer: "r", PublicKey: pub}
	add(11, re)
	fp := b(KindFirmwarePublish)
	fp.FirmwarePublish = &FirmwarePublish{Model: "m-1", Version: 3, SHA256: sum, Size: 100, Expires: 1_700_000_000_000, MinVersion: 1}
	add(12, fp)
	fv := b(KindFirmwareVote)
	fv.FirmwareVote = &FirmwareVote{Release: rel, Good: true, Reason: "fine"}
	add(13, fv)
	fa := b(KindFirmwareApprove)
	fa.FirmwareApprove = &FirmwareApprove{Release: rel, Group: "g"}
	add(14, fa)
	fr := b(KindFirmwareRevoke)
	fr.FirmwareRevoke = &FirmwareRevoke{Release: rel, Group: "g", Reason: "bad"}
	add(15, fr)
	po := b(KindFirmwarePolicy)
	po.FirmwarePolicy = &FirmwarePolicy{Group: "g", RequireApproval: true, MinGoodVotes: 1, Waves: []uint32{50, 100}, MaxFailurePct: 5}
	add(16, po)
	rep := b(KindFirmwareReport)
	rep.FirmwareReport = &FirmwareReport{DeviceID: "dev-1", Seq: 3, Model: "m-1", Version: 3, OK: true, Detail: "done"}
	add(17, rep)
	ns := b(KindSnapshot)
	ns.NodeSnapshot = &NodeSnapshot{Node: "n-1", Height: 16, Hash: sum}
	add(18, ns)
	rc := b(KindReconfig)
	node := pubDER(t, newP256(t))
	rc.ClusterReconfig = &ClusterReconfig{Nodes: []Node{{ID: "n-1", PublicKey: node}, {ID: "n-2", PublicKey: node, Addrs: []string{"10.0.0.2:7000"}},
		{ID: "n-3", PublicKey: node}, {ID: "n-5", PublicKey: node}}}
	add(19, rc)
	fb := b(KindFleetBatch)
	fb.FleetBatch = &FleetBatch{Batch: "b-1", Model: "m-1", Groups: []string{"a"}, Devices: []BatchDevice{{DeviceID: "dev-1", PublicKey: pub}, {DeviceID: "dev-2", PublicKey: pub}}}
	add(20, fb)
	fap := b(KindFleetApprove)
	fap.FleetApprove = &FleetApprove{Batch: "b-1"}
	add(21, fap)
	frv := b(KindFleetRevoke)
	frv.FleetRevoke = &FleetRevoke{Batch: "b-1", Reason: "recall"}
	add(22, frv)
	// A claim's forms exclude each other; this one has the fields no
	// other form has: evidence (and every attribute).
	dc := b(KindDeviceClaim)
	dc.DeviceClaim = &DeviceClaim{DeviceID: "dev-1", Batch: "b-1", Evidence: []byte{0xd2}, PublicKey: pub, Model: "m-1", Groups: []string{"a", "b"}}
	add(23, dc)
	et := b(KindEnrollToken)
	et.EnrollToken = &EnrollToken{Hash: sum, Expires: 1_700_000_000_000, DeviceID: "dev-9", Model: "m-1", Groups: []string{"a"}}
	add(24, et)
	ps := b(KindPolicySet)
	ps.PolicySet = &PolicySet{Version: 1, Rules: []Rule{{Name: "r", When: "true", Allow: "record.size < 10", Rate: &Rate{Count: 1, Window: 1000}}}}
	add(25, ps)
	return bodies
}

// generic decodes a body's encoding into maps that a test can edit.
func generic(t *testing.T, body *Body) map[any]any {
	t.Helper()
	enc, err := marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[any]any
	if err := cbor.Unmarshal(enc, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeEdited signs the edited body m and decodes it.
func decodeEdited(t *testing.T, m map[any]any) error {
	t.Helper()
	payload, err := marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signEnvelope(fixedEd25519(), "dev-1", payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeTx(env, 0)
	return err
}

// wrongValue is a value of another CBOR type than a field of type t takes.
func wrongValue(t reflect.Type) (v any, got string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.String {
		return uint64(7), "unsigned integer"
	}
	return "x", "text string"
}

// emptyValue is the encoding of the empty value of t.
func emptyValue(t reflect.Type) any {
	switch t.Kind() {
	case reflect.String:
		return ""
	case reflect.Bool:
		return false
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return []byte{}
		}
		return []any{}
	}
	return uint64(0)
}

func TestPayloadKindsCoverBody(t *testing.T) {
	fields, ok := fieldsOf(bodyType)
	if !ok {
		t.Fatal("Body is not a keyasint struct")
	}
	bodies := everyKind(t)
	for _, f := range fields {
		if f.typ.Kind() != reflect.Pointer {
			continue
		}
		k, ok := payloadKinds[f.key]
		if !ok {
			t.Errorf("Body %s has no kind in payloadKinds", f.label())
			continue
		}
		b, ok := bodies[f.key]
		if !ok {
			t.Errorf("no test body for %s", k)
			continue
		}
		if b.Kind != k {
			t.Errorf("payloadKinds[%d] = %s, but that member carries %s", f.key, k, b.Kind)
		}
		if err := b.Validate(); err != nil {
			t.Errorf("test body %s: %v", k, err)
		}
	}
}

// TestDecodeTxNamesTheField: a tx body missing a required field, with a
// field of the wrong type, with an optional field present but empty, or
// with an unknown field, is refused with an error naming the field, for
// every member of every tx kind.
func TestDecodeTxNamesTheField(t *testing.T) {
	for pkey, body := range everyKind(t) {
		kind := string(body.Kind)
		var payload reflect.Type // the Body member of key pkey (keys 20 to 24 are not ours)
		bodyFields, _ := fieldsOf(bodyType)
		for _, bf := range bodyFields {
			if bf.key == pkey {
				payload = bf.typ.Elem()
			}
		}
		fields, ok := fieldsOf(payload)
		if !ok {
			t.Fatalf("%s: payload is not a keyasint struct", kind)
		}
		if err := decodeEdited(t, generic(t, body)); err != nil {
			t.Fatalf("%s: unedited body: %v", kind, err)
		}
		for _, f := range fields {
			label := fmt.Sprintf("field %d (%s)", f.key, f.name)
			if !f.omitempty {
				t.Run(kind+"/missing "+label, func(t *testing.T) {
					m := generic(t, body)
					delete(m[pkey].(map[any]any), f.key)
					want := fmt.Sprintf("ledger: malformed tx: %s: missing required %s", kind, label)
					if err := decodeEdited(t, m); err == nil || err.Error() != want {
						t.Fatalf("got %v\nwant %s", err, want)
					}
				})
			} else {
				t.Run(kind+"/empty "+label, func(t *testing.T) {
					m := generic(t, body)
					m[pkey].(map[any]any)[f.key] = emptyValue(f.typ)
					want := fmt.Sprintf("ledger: malformed tx: %s: %s: present but empty; omit it", kind, label)
					if err := decodeEdited(t, m); err == nil || err.Error() != want {
						t.Fatalf("got %v\nwant %s", err, want)
					}
				})
			}
			t.Run(kind+"/wrong type "+label, func(t *testing.T) {
				m := generic(t, body)
				v, got := wrongValue(f.typ)
				m[pkey].(map[any]any)[f.key] = v
				err := decodeEdited(t, m)
				prefix := fmt.Sprintf("ledger: malformed tx: %s: %s: want ", kind, label)
				if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), ", got "+got) {
					t.Fatalf("got %v\nwant %s..., got %s", err, prefix, got)
				}
			})
		}
		t.Run(kind+"/unknown field", func(t *testing.T) {
			m := generic(t, body)
			m[pkey].(map[any]any)[uint64(99)] = uint64(1)
			want := fmt.Sprintf("ledger: malformed tx: %s: unknown field 99", kind)
			if err := decodeEdited(t, m); err == nil || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
		})
	}
}

// TestDecodeTxFieldMessages pins the exact messages of the common cases.
func TestDecodeTxFieldMessages(t *testing.T) {
	rec := func(edit func(m, r map[any]any)) map[any]any {
		m := generic(t, record("dev-1", 1))
		edit(m, m[uint64(6)].(map[any]any))
		return m
	}
	cases := []struct {
		name string
		m    map[any]any
		want string
	}{
		{"record without seq", rec(func(_, r map[any]any) { delete(r, uint64(3)) }),
			"ledger: malformed tx: data.record: missing required field 3 (seq)"},
		{"record without device id", rec(func(_, r map[any]any) { delete(r, uint64(1)) }),
			"ledger: malformed tx: data.record: missing required field 1 (device id)"},
		{"stream a number", rec(func(_, r map[any]any) { r[uint64(2)] = uint64(5) }),
			"ledger: malformed tx: data.record: field 2 (stream): want text string, got unsigned integer"},
		{"seq negative", rec(func(_, r map[any]any) { r[uint64(3)] = int64(-1) }),
			"ledger: malformed tx: data.record: field 3 (seq): want unsigned integer, got negative integer"},
		{"payload text", rec(func(_, r map[any]any) { r[uint64(6)] = "21.5C" }),
			"ledger: malformed tx: data.record: field 6 (payload): want byte string, got text string"},
		{"empty content type", rec(func(_, r map[any]any) { r[uint64(5)] = "" }),
			"ledger: malformed tx: data.record: field 5 (content type): present but empty; omit it"},
		{"unknown record field", rec(func(_, r map[any]any) { r[uint64(9)] = uint64(1) }),
			"ledger: malformed tx: data.record: unknown field 9"},
		{"no chain id", rec(func(m, _ map[any]any) { delete(m, uint64(2)) }),
			"ledger: malformed tx: body: missing required field 2 (chain id)"},
		{"no kind", rec(func(m, _ map[any]any) { delete(m, uint64(1)) }),
			"ledger: malformed tx: body: missing required field 1 (kind)"},
		{"unknown body field", rec(func(m, _ map[any]any) { m[uint64(99)] = uint64(1) }),
			"ledger: malformed tx: body: unknown field 99"},
		{"record not a map", rec(func(m, _ map[any]any) { m[uint64(6)] = []any{uint64(1)} }),
			"ledger: malformed tx: body: field 6 (record): want map, got array"},
		{"group not text", func() map[any]any {
			m := generic(t, everyKind(t)[3])
			m[uint64(3)].(map[any]any)[uint64(4)] = []any{"a", uint64(2)}
			return m
		}(), "ledger: malformed tx: device.enroll: field 4 (groups): item 1: want text string, got unsigned integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeEdited(t, c.m)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestWords(t *testing.T) {
	for in, want := range map[string]string{
		"DeviceID": "device id", "ContentType": "content type", "SHA256": "sha256", "Seq": "seq",
		"URI": "uri", "OK": "ok", "MaxFailurePct": "max failure pct", "EncKey": "enc key", "ChainID": "chain id",
	} {
		if got := words(in); got != want {
			t.Errorf("words(%q) = %q, want %q", in, got, want)
		}
	}
}
