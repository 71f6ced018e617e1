package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Access control (docs/api.md, "Authentication"): each API route has a
// rule in the table below, matched with the same patterns as the routes
// themselves (an http.ServeMux of rules), so a route and its rule cannot
// disagree on which requests they cover. A path under /api/ that no rule
// covers needs the admin scope (fail closed). Paths outside /api/ that
// have no rule (the dashboard) are the dashboard's to guard.

// access is how a route is guarded.
type access int

const (
	accessOpen    access = iota // never asks for a token (health)
	accessScoped                // needs rule.scope when tokens are required
	accessDevice                // a device's route (docs/protocol.md 13.4): open unless api.device_paths = "tokens"
	accessSubmit                // POST /api/v1/txs: the scope the tx's kind needs (KindScope)
	accessMetrics               // needs read:metrics when api.metrics_token is set
)

// rule guards the routes of one pattern.
type rule struct {
	access access
	scope  Scope
	also   Scope // a second scope that grants the route too; "" if none
}

// needs lists the scopes that grant the route.
func (ru rule) needs() []Scope {
	if ru.also != "" {
		return []Scope{ru.scope, ru.also}
	}
	return []Scope{ru.scope}
}

// rules is the table of routes and what they need. TestRulesCoverRoutes
// checks that every route the server registers has its rule here.
var rules = map[string]rule{
	"GET /healthz": {accessOpen, "", ""},
	"GET /readyz":  {accessOpen, "", ""},
	"GET /metrics": {accessMetrics, ScopeMetrics, ""},

	"GET /api/v1/status":                                  {accessScoped, ScopeReadLedger, ScopeSubmit}, // the chain id, to sign txs
	"GET /api/v1/blocks":                                  {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/cluster/members":                         {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/policy":                                  {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/policy/history":                          {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/blocks/{height}":                         {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/txs/{id}":                                {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/txs/{id}/receipt":                        {accessDevice, ScopeReadLedger, ""},
	"GET /api/v1/cluster/proof":                           {accessDevice, ScopeReadLedger, ""},
	"POST /api/v1/txs":                                    {accessSubmit, ScopeSubmit, ""},
	"GET /api/v1/firmware":                                {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/firmware/{model}":                        {accessScoped, ScopeReadLedger, ""},
	"GET /api/v1/firmware/images/{sum}":                   {accessDevice, ScopeReadRecords, ""},
	"POST /api/v1/firmware":                               {accessScoped, ScopeSubmit, ""}, // a vendor's firmware.publish
	"POST /api/v1/configs":                                {accessScoped, ScopeAdmin, ""},  // an admin's config.set
	"GET /api/v1/records":                                 {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/devices":                                 {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}":                            {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/records":                    {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/configs/{target}":                        {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/groups/{group}":                          {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/drift":                                   {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/fleet/batches":                           {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/fleet/batches/{id}":                      {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/fleet/claims":                            {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/blobs/{sum}":                             {accessDevice, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/keys":                       {accessDevice, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/config":                     {accessDevice, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/config/blob":                {accessDevice, ScopeReadRecords, ""},
	"POST /api/v1/devices/{id}/config/verify":             {accessDevice, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/config/history":             {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/firmware":                   {accessDevice, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/firmware/history":           {accessScoped, ScopeReadRecords, ""},
	"GET /api/v1/devices/{id}/firmware/{model}/{version}": {accessDevice, ScopeReadRecords, ""},
}

// KindScope is the scope a token needs to submit a tx of kind: admin for
// the kinds only an admin may sign, submit for the others (a device's,
// a vendor's, a reviewer's). device is true for the kinds a device signs
// about itself, which devices may submit without a token while
// api.device_paths is "open".
func KindScope(kind ledger.Kind) (scope Scope, device bool) {
	switch kind {
	case ledger.KindRecord, ledger.KindConfigReport, ledger.KindFirmwareReport, ledger.KindRekey:
		return ScopeSubmit, true
	case ledger.KindDeviceClaim:
		// A device enrolling itself holds its key, not an API token; the
		// claim is authenticated by its own signature (protocol.md 6.18).
		return ScopeSubmit, true
	case ledger.KindFirmwarePublish, ledger.KindFirmwareVote, ledger.KindFleetBatch:
		return ScopeSubmit, false
	}
	// device.enroll, device.revoke, config.set, vendor.enroll,
	// reviewer.enroll, firmware.approve, firmware.revoke,
	// firmware.policy, node.heartbeat, and any kind added later.
	return ScopeAdmin, false
}

// AuthPolicy says which requests need an API token.
type AuthPolicy struct {
	// Required: the scoped routes need a token (api.auth, "auto" off
	// loopback).
	Required bool
	// DevicePaths: the device routes need their scope too
	// (api.device_paths = "tokens"); only with Required.
	DevicePaths bool
	// Metrics: /metrics needs a token with read:metrics
	// (api.metrics_token), whatever Required says.
	Metrics bool
	Tokens  *Tokens
	// Operator reports whether r comes with a live dashboard session; it
	// counts as every scope for GET and HEAD requests (the dashboard's
	// links to JSON answers). nil: no dashboard.
	Operator func(r *http.Request) bool
}

// SetAuth sets the access policy; without it every route is open. It must
// be called before the server serves.
func (s *Server) SetAuth(p AuthPolicy) error {
	if (p.Required || p.Metrics) && p.Tokens == nil {
		return errors.New("api: tokens required but no token store")
	}
	s.auth = &p
	return nil
}

// caller is who a request comes from, as far as the API checked.
type caller struct {
	checked  bool   // tokens are required for this request's route
	token    *Token // the token presented, nil if none
	operator bool   // a dashboard session, for a safe method
}

// has reports whether the caller may do what needs scope. A request
// whose route asked for no token may do anything that route does.
func (c *caller) has(scope Scope) bool {
	return !c.checked || c.operator || c.token != nil && c.token.Has(scope)
}

type callerKey struct{}

func callerOf(r *http.Request) *caller {
	if c, ok := r.Context().Value(callerKey{}).(*caller); ok {
		return c
	}
	return &caller{}
}

var ruleMux = func() *http.ServeMux {
	m := http.NewServeMux()
	for p, ru := range rules {
		m.Handle(p, ruleHandler(ru))
	}
	return m
}()

// ruleHandler carries a rule through the mux; it is never served.
type ruleHandler rule

func (ruleHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// ruleFor returns the rule of r's route; ok is false for a path that is
// not the API's (the dashboard's).
func ruleFor(r *http.Request) (rule, bool) {
	h, pattern := ruleMux.Handler(r)
	if ru, isRule := h.(ruleHandler); isRule && pattern != "" {
		return rule(ru), true
	}
	if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/api" {
		return rule{accessScoped, ScopeAdmin, ""}, true
	}
	return rule{}, false
}

// guard checks r against the policy: it answers a refusal and returns
// nil, or returns r with its caller for the handlers.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) *http.Request {
	p := s.auth
	ru, ok := ruleFor(r)
	if p == nil || !ok {
		return r
	}
	// need: the route refuses a caller without its scope; checked: the
	// caller is looked at (a submit's kind decides later; a device route
	// open to all shows more to a token with its scope).
	var need, checked bool
	switch ru.access {
	case accessScoped:
		need, checked = p.Required, p.Required
	case accessSubmit:
		// Every kind needs at least submit unless devices' own kinds are
		// open: then the body is not read without it.
		need, checked = p.Required && p.DevicePaths, p.Required
	case accessDevice:
		need, checked = p.Required && p.DevicePaths, p.Required
	case accessMetrics:
		need, checked = p.Metrics, p.Metrics
	}
	if !checked {
		return r
	}
	c := &caller{checked: true}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	if safe && p.Operator != nil && p.Operator(r) {
		c.operator = true
		return r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
	}
	if hdr := r.Header.Get("Authorization"); hdr != "" {
		tok, found := strings.CutPrefix(hdr, "Bearer ")
		if !found {
			s.unauthorized(w, r, ru.needs(), "invalid_request", "want the header Authorization: Bearer lgt_...")
			return nil
		}
		t, err := p.Tokens.Check(strings.TrimSpace(tok))
		if err != nil {
			s.refuseToken(w, r, ru.needs(), t, err)
			return nil
		}
		c.token = &t
	}
	if need && !slices.ContainsFunc(ru.needs(), c.has) {
		s.forbidden(w, r, c, ru.needs())
		return nil
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
}

// refuseToken answers a token that Check refused.
func (s *Server) refuseToken(w http.ResponseWriter, r *http.Request, scope []Scope, t Token, err error) {
	switch {
	case errors.Is(err, ErrTokenStore):
		// The store logged why, once.
		writeError(w, http.StatusInternalServerError, string(ledger.ReasonInternal),
			"the gateway cannot read its API token store; its log says why")
		return
	case errors.Is(err, ErrTokenRevoked), errors.Is(err, ErrTokenExpired):
		s.logger.Info("api token refused", "token", t.ID, "err", err, "path", r.URL.Path, "remote", r.RemoteAddr)
		s.unauthorized(w, r, scope, "invalid_token", fmt.Sprintf("API token %s %s", t.ID, strings.TrimPrefix(err.Error(), "api: API token ")))
		return
	}
	id, _ := TokenID(r.Header.Get("Authorization")[len("Bearer "):])
	s.logger.Info("api token refused", "token", id, "err", err, "path", r.URL.Path, "remote", r.RemoteAddr)
	s.unauthorized(w, r, scope, "invalid_token", "unknown or wrong API token")
}

// unauthorized answers 401 (RFC 6750 3): no token, or not a good one.
func (s *Server) unauthorized(w http.ResponseWriter, _ *http.Request, scope []Scope, code, msg string) {
	h := `Bearer realm="ledgergate"`
	if code != "" {
		h += `, error="` + code + `"`
	}
	w.Header().Set("WWW-Authenticate", h)
	if msg == "" {
		msg = "this needs an API token with scope " + orList(scope) + ": send Authorization: Bearer lgt_... (docs/api.md, Authentication)"
	}
	writeError(w, http.StatusUnauthorized, ReasonUnauthorized, msg)
}

// forbidden answers 403 "forbidden": the caller lacks scope; without a
// token at all it is 401.
func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, c *caller, scope []Scope) {
	if c.token == nil {
		s.unauthorized(w, r, scope, "", "")
		return
	}
	names := make([]string, len(scope))
	for i, sc := range scope {
		names[i] = string(sc)
	}
	// RFC 6750 3: scope is a space-separated list; any one of them grants.
	w.Header().Set("WWW-Authenticate", `Bearer realm="ledgergate", error="insufficient_scope", scope="`+strings.Join(names, " ")+`"`)
	have := make([]string, len(c.token.Scopes))
	for i, sc := range c.token.Scopes {
		have[i] = string(sc)
	}
	s.logger.Info("api token lacks a scope", "token", c.token.ID, "need", orList(scope), "path", r.URL.Path, "remote", r.RemoteAddr)
	writeError(w, http.StatusForbidden, string(ledger.ReasonForbidden),
		fmt.Sprintf("API token %s (scopes %s) may not do this: it needs scope %s", c.token.ID, strings.Join(have, ", "), orList(scope)))
}

// orList is "a", or "a or b".
func orList(scopes []Scope) string {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	return strings.Join(names, " or ")
}

// ReasonUnauthorized is the API's reason for a missing or refused token
// (401). It is not a ledger reason: devices never get it from MQTT or
// CoAP.
const ReasonUnauthorized = "unauthorized"

// checkKind refuses, after the fact of decoding, a submit of a tx whose
// kind the caller may not submit. It reports whether the request may go on.
func (s *Server) checkKind(w http.ResponseWriter, r *http.Request, kind ledger.Kind) bool {
	c := callerOf(r)
	if !c.checked {
		return true
	}
	scope, device := KindScope(kind)
	if device && !s.auth.DevicePaths {
		return true
	}
	if c.has(scope) {
		return true
	}
	if c.token == nil {
		s.unauthorized(w, r, []Scope{scope}, "", "a "+string(kind)+" tx needs an API token with scope "+string(scope)+
			": send Authorization: Bearer lgt_... (docs/api.md, Authentication)")
		return false
	}
	s.forbidden(w, r, c, []Scope{scope})
	return false
}

// fullDeviceView reports whether r may see a device's activity (last
// seq, last seen, record count): a device route open to all shows only
// what the answer proves.
func fullDeviceView(r *http.Request) bool { return callerOf(r).has(ScopeReadRecords) }
