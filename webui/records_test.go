package webui

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/api"
)

func TestCharts(t *testing.T) {
	rec := func(stream string, ms int64, payload string) api.Record {
		r := api.Record{Stream: stream, BlockTime: ms}
		if json.Valid([]byte(payload)) {
			r.Payload = json.RawMessage(payload)
		} else {
			b64 := "eA=="
			r.PayloadBase64 = &b64
		}
		return r
	}
	// Newest first, as the page reads them.
	recs := []api.Record{
		rec("env", 4000, `{"t":22,"s":{"v":3.3,"deep":{"x":1,"too":{"deep":9}}},"name":"a","on":true}`),
		rec("raw", 3500, `not json`),
		rec("env", 3000, `{"t":21,"s":{"v":3.3}}`),
		rec("log", 2500, `"text"`),
		rec("env", 2000, `{"t":20,"list":[1,2]}`),
	}
	cs := charts(recs)
	var names []string
	for _, c := range cs {
		names = append(names, c.Stream+"/"+c.Field)
	}
	if want := []string{"env/s.deep.x", "env/s.v", "env/t"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("charts %v, want %v", names, want)
	}
	temp := cs[2]
	if len(temp.Dots) != 3 || temp.YMin != "20" || temp.YMax != "22" || temp.XFrom == temp.XTo {
		t.Errorf("t chart: %d dots, y %s..%s, x %s..%s", len(temp.Dots), temp.YMin, temp.YMax, temp.XFrom, temp.XTo)
	}
	// Oldest on the left at the bottom, newest on the right at the top.
	if temp.Dots[0].X != "64.0" || temp.Dots[0].Y != "178.0" || temp.Dots[2].X != "628.0" || temp.Dots[2].Y != "12.0" {
		t.Errorf("t chart dots %+v", temp.Dots)
	}
	// A constant is a flat line in the middle, and says so.
	flat := cs[1]
	if len(flat.Dots) != 2 || flat.Dots[0].Y != flat.Dots[1].Y || !strings.Contains(flat.Summary, "all 3.3") {
		t.Errorf("flat chart: %+v", flat)
	}
	// A single point does not divide by zero.
	one := cs[0]
	if len(one.Dots) != 1 || strings.Contains(one.Line, "NaN") || strings.Contains(one.Line, "Inf") {
		t.Errorf("one-point chart: %+v", one)
	}
	if got := charts(nil); len(got) != 0 {
		t.Errorf("charts of nothing: %v", got)
	}
}
