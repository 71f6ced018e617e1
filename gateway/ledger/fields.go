package ledger

import (
	"cmp"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/fxamacker/cbor/v2"
)

// FieldError says which field of a CBOR map made it fail to decode: a
// required field missing, a field of the wrong type, a field that must be
// omitted when empty but is present and empty, or a field the structure
// does not have. unmarshal returns it in place of the bare "not in
// deterministic encoding" whenever it can name the field.
type FieldError struct {
	// Path names the nested structure the field is in ("data.record" for
	// a tx body's record payload); empty for the top level.
	Path string
	// Msg names the field and what is wrong with it, as in
	// "missing required field 3 (seq)".
	Msg string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// payloadKinds names each payload member of Body by its tx kind, so a
// field error inside one reads "data.record: ..." (a test checks that
// every payload member has a name here).
var payloadKinds = map[uint64]Kind{
	3:  KindEnroll,
	4:  KindRevoke,
	5:  KindRekey,
	6:  KindRecord,
	7:  KindConfigSet,
	8:  KindConfigReport,
	9:  KindHeartbeat,
	10: KindVendorEnroll,
	11: KindReviewerEnroll,
	12: KindFirmwarePublish,
	13: KindFirmwareVote,
	14: KindFirmwareApprove,
	15: KindFirmwareRevoke,
	16: KindFirmwarePolicy,
	17: KindFirmwareReport,
	18: KindSnapshot,
	19: KindReconfig,
	20: KindFleetBatch,
	21: KindFleetApprove,
	22: KindFleetRevoke,
	23: KindDeviceClaim,
	24: KindEnrollToken,
	25: KindPolicySet,
}

var bodyType = reflect.TypeFor[Body]()

// structField is a member of a struct encoded as a map with integer keys.
type structField struct {
	key       uint64
	name      string // for people: "device id", "seq"
	omitempty bool   // may be absent; must be absent when empty
	typ       reflect.Type
}

// label is how messages name the field: "field 3 (seq)".
func (f *structField) label() string {
	return "field " + strconv.FormatUint(f.key, 10) + " (" + f.name + ")"
}

// fieldsOf lists the fields of t as the encoder sees them (embedded
// structs flattened); ok is false unless t is a struct encoded as a map
// with integer keys.
func fieldsOf(t reflect.Type) (fields []structField, ok bool) {
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("cbor")
		if sf.Anonymous && tag == "" {
			inner, ok := fieldsOf(sf.Type)
			if !ok {
				return nil, false
			}
			fields = append(fields, inner...)
			continue
		}
		if !sf.IsExported() || tag == "-" {
			continue
		}
		parts := strings.Split(tag, ",")
		if !slices.Contains(parts[1:], "keyasint") {
			return nil, false
		}
		key, err := strconv.ParseUint(parts[0], 10, 64)
		if err != nil {
			return nil, false
		}
		fields = append(fields, structField{key: key, name: words(sf.Name), omitempty: slices.Contains(parts[1:], "omitempty"), typ: sf.Type})
	}
	slices.SortFunc(fields, func(a, b structField) int { return cmp.Compare(a.key, b.key) })
	return fields, len(fields) > 0
}

// words turns a Go field name into lowercase words: "DeviceID" is
// "device id", "ContentType" "content type", "SHA256" "sha256".
func words(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			acronymEnd := unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || acronymEnd {
				b.WriteByte(' ')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

var unmarshalerType = reflect.TypeFor[cbor.Unmarshaler]()

// describeFields looks for a field of data, decoded as a t, that is
// missing, of the wrong type, present though empty, or unknown. It
// returns nil when it finds none (the data is wrong some other way:
// unsorted keys, a non-minimal length, a number out of range) or when t
// is not a struct encoded as a map with integer keys.
func describeFields(data []byte, t reflect.Type) *FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return describeStruct(data, t, "")
}

func describeStruct(data []byte, t reflect.Type, path string) *FieldError {
	fields, ok := fieldsOf(t)
	if !ok || len(data) == 0 {
		return nil
	}
	if got := majorName(data); got != "map" {
		return &FieldError{Path: path, Msg: "want map, got " + got}
	}
	var m map[uint64]cbor.RawMessage
	if err := decMode.Unmarshal(data, &m); err != nil {
		return nil
	}
	for i := range fields {
		f := &fields[i]
		raw, present := m[f.key]
		if !present {
			if !f.omitempty {
				return &FieldError{Path: path, Msg: "missing required " + f.label()}
			}
			continue
		}
		sub := joinPath(path, f.label())
		if k, ok := payloadKinds[f.key]; ok && t == bodyType {
			sub = string(k)
		}
		if e := describeValue(raw, f.typ, path, f.label(), sub); e != nil {
			return e
		}
		if f.omitempty && isEmpty(raw, f.typ) {
			return &FieldError{Path: path, Msg: f.label() + ": present but empty; omit it"}
		}
	}
	var unknown []uint64
	for k := range m {
		if !slices.ContainsFunc(fields, func(f structField) bool { return f.key == k }) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return &FieldError{Path: path, Msg: "unknown field " + strconv.FormatUint(unknown[0], 10)}
	}
	return nil
}

func joinPath(path, elem string) string {
	if path == "" {
		return elem
	}
	return path + ": " + elem
}

// describeValue checks that raw has the CBOR type a t decodes from, and
// looks inside maps and arrays. An error of raw itself is reported at
// path as "label: want ..."; sub is the path of what is inside raw.
func describeValue(raw []byte, t reflect.Type, path, label, sub string) *FieldError {
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return nil
	}
	want := ""
	switch t.Kind() {
	case reflect.Pointer:
		return describeValue(raw, t.Elem(), path, label, sub)
	case reflect.Struct:
		if _, ok := fieldsOf(t); !ok {
			return nil
		}
		if got := majorName(raw); got != "map" {
			return &FieldError{Path: path, Msg: label + ": want map, got " + got}
		}
		return describeStruct(raw, t, sub)
	case reflect.String:
		want = "text string"
	case reflect.Bool:
		want = "boolean"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "unsigned integer"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "integer"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			want = "byte string"
			break
		}
		if got := majorName(raw); got != "array" {
			return &FieldError{Path: path, Msg: label + ": want array, got " + got}
		}
		var items []cbor.RawMessage
		if err := decMode.Unmarshal(raw, &items); err != nil {
			return nil
		}
		for i, it := range items {
			item := "item " + strconv.Itoa(i)
			if e := describeValue(it, t.Elem(), path, label+": "+item, joinPath(sub, item)); e != nil {
				return e
			}
		}
		return nil
	case reflect.Map:
		want = "map"
	default:
		return nil
	}
	got := majorName(raw)
	if got == want || want == "integer" && (got == "unsigned integer" || got == "negative integer") {
		return nil
	}
	return &FieldError{Path: path, Msg: label + ": want " + want + ", got " + got}
}

// isEmpty reports whether raw is the encoding of the empty value of t,
// which the encoder omits from an omitempty field.
func isEmpty(raw []byte, t reflect.Type) bool {
	if len(raw) != 1 {
		return false
	}
	switch t.Kind() {
	case reflect.String:
		return raw[0] == 0x60
	case reflect.Slice:
		return raw[0] == 0x40 || raw[0] == 0x80
	case reflect.Map:
		return raw[0] == 0xa0
	case reflect.Bool:
		return raw[0] == 0xf4
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return raw[0] == 0x00
	}
	return false
}

// majorName names the CBOR type of the item raw starts with (RFC 8949
// section 3.1).
func majorName(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] >> 5 {
	case 0:
		return "unsigned integer"
	case 1:
		return "negative integer"
	case 2:
		return "byte string"
	case 3:
		return "text string"
	case 4:
		return "array"
	case 5:
		return "map"
	case 6:
		return "tag"
	}
	switch raw[0] {
	case 0xf4, 0xf5:
		return "boolean"
	case 0xf6:
		return "null"
	case 0xf7:
		return "undefined"
	case 0xf9, 0xfa, 0xfb:
		return "float"
	}
	return "simple value"
}
