package mqtt

import (
	"strings"
	"testing"
)

// TestCutDevicePrefix: cutDevicePrefix answers as cutting the built
// devicePrefix does.
func TestCutDevicePrefix(t *testing.T) {
	for _, c := range []struct {
		topic, device, rest string
		ok                  bool
	}{
		{"lg/v1/dev-1/data/temp", "dev-1", "data/temp", true},
		{"lg/v1/dev-1/", "dev-1", "", true},
		{"lg/v1/dev-1", "dev-1", "", false},
		{"lg/v1/dev-10/data/temp", "dev-1", "", false},
		{"lg/v1/dev-/data/temp", "dev-1", "", false},
		{"lg/v1//data/temp", "dev-1", "", false},
		{"lg/v2/dev-1/data/temp", "dev-1", "", false},
		{"lg/v1/other/data/temp", "dev-1", "", false},
		{"", "dev-1", "", false},
		{"lg/v1/", "", "", false},
		{"lg/v1//x", "", "x", true},
	} {
		rest, ok := cutDevicePrefix(c.topic, c.device)
		wantRest, wantOK := strings.CutPrefix(c.topic, devicePrefix(c.device))
		if !wantOK {
			wantRest = ""
		}
		if rest != c.rest || ok != c.ok || rest != wantRest || ok != wantOK {
			t.Errorf("cutDevicePrefix(%q, %q) = %q, %v; want %q, %v (devicePrefix: %q, %v)",
				c.topic, c.device, rest, ok, c.rest, c.ok, wantRest, wantOK)
		}
	}
}
