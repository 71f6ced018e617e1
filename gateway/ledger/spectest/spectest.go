// Package spectest reads docs/protocol.md for tests that check the code
// against the specification: the refusal table of section 14 is what each
// front end maps reasons through.
package spectest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Columns of the refusal table in docs/protocol.md, section 14.1.
const (
	ColMQTT5 = 3 // MQTT 5 PUBACK: 0x..
	ColCoAP  = 5 // CoAP: 4.03
	ColHTTP  = 6 // HTTP: 403
)

// ReasonCodes returns column col of the refusal table of docs/protocol.md
// for each reason: the code, without its notes.
func ReasonCodes(t testing.TB, col int) map[ledger.Reason]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[ledger.Reason]string{}
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
		codes[r] = strings.Fields(cells[col])[0]
	}
	if len(codes) != len(ledger.Reasons) {
		t.Errorf("docs/protocol.md lists %d reasons, ledger.Reasons %d", len(codes), len(ledger.Reasons))
	}
	return codes
}

// repoRoot is the folder of go.mod above the test's working directory.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("spectest: no go.mod above the test's directory")
		}
		dir = parent
	}
}
