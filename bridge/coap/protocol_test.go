package coap

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReasonTableMatchesProtocol checks that the CoAP column of the
// refusal table in docs/protocol.md (section 14) is responseCodes: the
// specification and the code say the same.
func TestReasonTableMatchesProtocol(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[ledger.Reason]string{}
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| reason | action | meaning |") {
			in = true
			continue
		}
		if in && !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !in || len(cells) != 7 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		r := ledger.Reason(strings.Trim(strings.TrimSpace(cells[0]), "`"))
		documented[r] = strings.Fields(cells[5])[0] // the code, without its notes
	}
	if len(documented) != len(ledger.Reasons) {
		t.Errorf("docs/protocol.md lists %d reasons, ledger.Reasons %d", len(documented), len(ledger.Reasons))
	}
	for _, ri := range ledger.Reasons {
		c, ok := responseCodes[ri.Reason]
		if !ok {
			continue // TestReasonTable reports it
		}
		if got := fmt.Sprintf("%d.%02d", c>>5, c&31); got != documented[ri.Reason] {
			t.Errorf("%s: the code says %s, docs/protocol.md %q", ri.Reason, got, documented[ri.Reason])
		}
	}
}
