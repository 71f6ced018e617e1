package ledger

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// TestReasons checks that Reasons lists every Reason constant of
// reason.go once, each with a known action: the front ends' tables are
// checked against Reasons, so a reason missing here would go unmapped.
func TestReasons(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "reason.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[Reason]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			v, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			declared[Reason(v)] = true
		}
	}
	if len(declared) == 0 {
		t.Fatal("no Reason constants found in reason.go")
	}
	listed := map[Reason]bool{}
	for _, ri := range Reasons {
		if listed[ri.Reason] {
			t.Errorf("%s is listed twice", ri.Reason)
		}
		listed[ri.Reason] = true
		if !declared[ri.Reason] {
			t.Errorf("%s is listed but not a constant", ri.Reason)
		}
		switch ri.Action {
		case ActionResend, ActionResync, ActionRekey, ActionFix, ActionGiveUp:
		default:
			t.Errorf("%s: unknown action %q", ri.Reason, ri.Action)
		}
	}
	for r := range declared {
		if !listed[r] {
			t.Errorf("%s is a constant but not in Reasons", r)
		}
	}
}
