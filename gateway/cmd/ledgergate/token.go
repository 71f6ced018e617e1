package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
)

// The token commands edit the data directory's token store directly,
// under its lock, as the gateway's dashboard does; a running gateway sees
// the change on its next request. They need no running gateway and no
// token, only write access to the data directory (root or the gateway's
// user), which is the trust boundary of everything else kept there.

// scopeList is a repeatable --scope flag; it also takes a comma list.
type scopeList []api.Scope

func (s *scopeList) String() string {
	parts := make([]string, len(*s))
	for i, sc := range *s {
		parts[i] = string(sc)
	}
	return strings.Join(parts, ",")
}

func (s *scopeList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		sc, err := api.ParseScope(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "api: "))
		}
		*s = append(*s, sc)
	}
	return nil
}

// tokenStore opens the token store of the data directory.
func tokenStore(data string) (*api.Tokens, error) {
	return api.OpenTokens(filepath.Join(data, api.TokensFile), nil)
}

func cmdTokenCreate(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "token create")
	name := fs.String("name", "", "who or what uses the token, e.g. grafana (1 to 64 characters)")
	var scopes scopeList
	fs.Var(&scopes, "scope", "a scope to grant; repeat it, or list them with commas: read:records, read:ledger, submit, read:metrics, admin (admin grants all)")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h for 30 days (default: never expires)")
	data := dataFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument "+pos[0])
	}
	if err := need(fs, "name", "scope"); err != nil {
		return err
	}
	if *expires < 0 {
		return usageError(fs, "--expires must not be negative")
	}
	store, err := tokenStore(*data)
	if err != nil {
		return err
	}
	tok, t, err := store.Create(*name, scopes, *expires)
	if err != nil {
		return err
	}
	exp := "never expires"
	if !t.Expires.IsZero() {
		exp = "expires " + t.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(e.stderr, "created token %s (%s), scopes %s, %s.\nIt is shown this once; the gateway keeps only its hash. Send it as: Authorization: Bearer <token>\n",
		t.ID, t.Name, scopes.String(), exp)
	fmt.Fprintln(e.stdout, tok)
	return nil
}

func cmdTokenList(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "token list")
	data := dataFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument "+pos[0])
	}
	store, err := tokenStore(*data)
	if err != nil {
		return err
	}
	ts, err := store.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tSTATE\tCREATED\tEXPIRES\tLAST USED")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	now := time.Now()
	for _, t := range ts {
		sl := scopeList(t.Scopes)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, sl.String(), t.State(now), when(t.Created), when(t.Expires), when(t.LastUsed))
	}
	return tw.Flush()
}

func cmdTokenRevoke(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "token revoke")
	data := dataFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want the id of one token (ledgergate token list shows them)")
	}
	id := pos[0]
	if tid, ok := api.TokenID(id); ok { // a whole token was pasted: take its id, never echo the secret
		id = tid
	}
	store, err := tokenStore(*data)
	if err != nil {
		return err
	}
	t, err := store.Revoke(id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked token %s (%s) at %s; a running gateway refuses it from its next request on\n",
		t.ID, t.Name, t.Revoked.Format(time.RFC3339))
	return nil
}
