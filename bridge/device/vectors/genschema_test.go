package vectors

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// schemaTypes are the wire structures of package ledger, by their name in
// docs/protocol.md.
var schemaTypes = []struct {
	name string
	v    any
}{
	{"Body", ledger.Body{}},
	{"Enroll", ledger.Enroll{}}, {"Revoke", ledger.Revoke{}}, {"Rekey", ledger.Rekey{}}, {"Record", ledger.Record{}},
	{"ConfigSet", ledger.ConfigSet{}}, {"ConfigReport", ledger.ConfigReport{}}, {"Heartbeat", ledger.Heartbeat{}}, {"NodeSnapshot", ledger.NodeSnapshot{}},
	{"ClusterReconfig", ledger.ClusterReconfig{}},
	{"VendorEnroll", ledger.VendorEnroll{}}, {"ReviewerEnroll", ledger.ReviewerEnroll{}},
	{"FirmwarePublish", ledger.FirmwarePublish{}}, {"FirmwareVote", ledger.FirmwareVote{}},
	{"FirmwareApprove", ledger.FirmwareApprove{}}, {"FirmwareRevoke", ledger.FirmwareRevoke{}},
	{"FirmwarePolicy", ledger.FirmwarePolicy{}}, {"FirmwareReport", ledger.FirmwareReport{}},
	{"FleetBatch", ledger.FleetBatch{}}, {"BatchDevice", ledger.BatchDevice{}}, {"FleetApprove", ledger.FleetApprove{}},
	{"FleetRevoke", ledger.FleetRevoke{}}, {"DeviceClaim", ledger.DeviceClaim{}}, {"EnrollToken", ledger.EnrollToken{}},
	{"claims", ledger.TokenClaims{}},
	{"Genesis", ledger.Genesis{}}, {"Node", ledger.Node{}}, {"Admin", ledger.Admin{}}, {"Params", ledger.Params{}},
	{"Header", ledger.Header{}}, {"Cert", ledger.Cert{}}, {"Sig", ledger.Sig{}}, {"Block", ledger.Block{}}, {"Stub", ledger.Stub{}},
	{"Receipt", ledger.Receipt{}}, {"SnapshotProof", ledger.SnapshotProof{}}, {"Head", ledger.Head{}},
	{"ConfigAnswer", ledger.ConfigAnswer{}}, {"KeysAnswer", ledger.KeysAnswer{}}, {"FirmwareAnswer", ledger.FirmwareAnswer{}},
}

// cddlType is the CDDL type of a Go field type.
func cddlType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "tstr"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Pointer:
		return cddlType(t.Elem())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bstr"
		}
		return "[* " + cddlType(t.Elem()) + "]"
	case reflect.Struct:
		return t.Name()
	}
	return t.String()
}

// fields lists a struct's CBOR map keys, embedded structs flattened as
// the encoder does.
func fields(t reflect.Type) []map[string]any {
	var out []map[string]any
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("cbor")
		if f.Anonymous && tag == "" {
			out = append(out, fields(f.Type)...)
			continue
		}
		parts := strings.Split(tag, ",")
		key, err := strconv.Atoi(parts[0])
		if err != nil || !f.IsExported() {
			continue
		}
		presence := "required"
		if strings.Contains(tag, "omitempty") {
			presence = "omitted when empty"
		}
		out = append(out, map[string]any{"key": key, "name": f.Name, "type": cddlType(f.Type), "presence": presence})
	}
	return out
}

func (x *gen) schema() {
	f := x.file("schema", "schema",
		"The map keys of every CBOR structure of package ledger, read from the Go types: key, Go field name, CDDL type and whether the field is omitted when empty. A new or changed field changes this file, so the vectors test fails until it is regenerated, and protocol.md is reviewed with it.",
		"Each case lists the fields of the protocol.md structure it names; they are the Go type's.")
	for _, s := range schemaTypes {
		f.Cases = append(f.Cases, &Case{Name: s.name, Inputs: map[string]any{"go_type": reflect.TypeOf(s.v).String(), "fields": fields(reflect.TypeOf(s.v))}, Verdict: "ok"})
	}
}
