package webui

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
)

// Tokens is what the tokens page manages: the API's token store.
type Tokens interface {
	List() ([]api.Token, error)
	Create(name string, scopes []api.Scope, ttl time.Duration) (string, api.Token, error)
	Revoke(id string) (api.Token, error)
}

// Operator reports whether r carries the cookie of a live operator
// session. The API counts such a GET as having every scope: the
// dashboard's links to JSON answers work behind API tokens.
func (s *Server) Operator(r *http.Request) bool {
	return s.auth.session(cookieFor(r).get(r)) != nil
}

// tokenLifetimes are the expiries the form offers; "" never expires.
var tokenLifetimes = []struct{ Value, Label string }{
	{"720h", "30 days"}, {"2160h", "90 days"}, {"8760h", "1 year"}, {"", "never"},
}

type tokenRow struct {
	api.Token
	State string
}

type tokensData struct {
	Tokens    []tokenRow
	Scopes    []api.Scope
	Lifetimes []struct{ Value, Label string }
	Form      tokenForm
	// New is the token just created, shown once; "" otherwise.
	New   string
	NewID string
}

type tokenForm struct {
	Name    string
	Scopes  []string
	Expires string
}

func (s *Server) tokens(w http.ResponseWriter, r *http.Request, ss *session) {
	flash := ""
	// Only a token id is echoed: a link cannot put its own words on the page.
	if id := r.URL.Query().Get("revoked"); id != "" {
		if _, ok := api.TokenID("lgt_" + id + "_x"); ok {
			flash = "Revoked token " + id + "."
		}
	}
	s.tokensPage(w, r, ss, http.StatusOK, flash, "", tokenForm{Scopes: []string{string(api.ScopeReadRecords)}, Expires: "2160h"}, "", "")
}

func (s *Server) tokensPage(w http.ResponseWriter, r *http.Request, ss *session, code int, flash, errMsg string, f tokenForm, newTok, newID string) {
	if s.d.Tokens == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no API token store.")
		return
	}
	ts, err := s.d.Tokens.List()
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the API tokens failed: "+err.Error())
		return
	}
	d := tokensData{Scopes: api.Scopes, Lifetimes: tokenLifetimes, Form: f, New: newTok, NewID: newID}
	now := s.d.Now()
	for _, t := range ts {
		d.Tokens = append(d.Tokens, tokenRow{Token: t, State: t.State(now)})
	}
	s.render(w, r, code, "tokens", page{Title: "API tokens", Nav: "tokens", Session: ss, Flash: flash, Error: errMsg, Data: d})
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, ss *session) {
	r.ParseForm()
	f := tokenForm{Name: strings.TrimSpace(r.PostFormValue("name")), Scopes: r.PostForm["scope"], Expires: r.PostFormValue("expires")}
	bad := func(msg string) { s.tokensPage(w, r, ss, http.StatusBadRequest, "", msg, f, "", "") }
	if s.d.Tokens == nil {
		bad("This gateway has no API token store.")
		return
	}
	var ttl time.Duration
	if f.Expires != "" {
		if !slices.ContainsFunc(tokenLifetimes, func(l struct{ Value, Label string }) bool { return l.Value == f.Expires }) {
			bad("Pick an expiry from the list.")
			return
		}
		ttl, _ = time.ParseDuration(f.Expires)
	}
	var scopes []api.Scope
	for _, sc := range f.Scopes {
		p, err := api.ParseScope(sc)
		if err != nil {
			bad(strings.TrimPrefix(err.Error(), "api: "))
			return
		}
		scopes = append(scopes, p)
	}
	if len(scopes) == 0 {
		bad("Pick at least one scope.")
		return
	}
	tok, t, err := s.d.Tokens.Create(f.Name, scopes, ttl)
	if err != nil {
		bad("Creating the token failed: " + strings.TrimPrefix(err.Error(), "api: "))
		return
	}
	s.d.Logger.Info("dashboard created an API token", "token", t.ID, "name", t.Name, "scopes", t.Scopes, "remote", r.RemoteAddr)
	// The page that shows the secret is the answer to the POST itself: it
	// is never in a URL, a redirect or a cache (no-store).
	s.tokensPage(w, r, ss, http.StatusOK, "Created token "+t.ID+" ("+t.Name+").", "",
		tokenForm{Scopes: []string{string(api.ScopeReadRecords)}, Expires: "2160h"}, tok, t.ID)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if s.d.Tokens == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no API token store.")
		return
	}
	if _, err := s.d.Tokens.Revoke(id); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, api.ErrNoSuchToken) {
			code = http.StatusNotFound
		}
		s.tokensPage(w, r, ss, code, "", "Revoking the token failed: "+strings.TrimPrefix(err.Error(), "api: "), tokenForm{Expires: "2160h"}, "", "")
		return
	}
	s.d.Logger.Info("dashboard revoked an API token", "token", id, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/tokens?revoked="+id, http.StatusSeeOther)
}
