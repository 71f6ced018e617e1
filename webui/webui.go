package webui

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

//go:embed templates static
var assets embed.FS

// Index is what the dashboard reads of the index.
type Index interface {
	Device(id string) (*index.Device, error)
	SearchDevices(q, after string, limit int) ([]index.Device, error)
	Records(device string, beforeSeq uint64, limit int) ([]index.TxInfo, error)
	Blocks(before uint64, limit int) ([]index.BlockInfo, error)
	TxsInBlock(height uint64) ([]index.TxInfo, error)
	Tx(id [32]byte) (*index.TxInfo, error)
}

// Ledger is what the dashboard needs of the commit pipeline.
type Ledger interface {
	Submit(ctx context.Context, env []byte) (*ledger.Receipt, error)
	Receipt(id [32]byte) (*ledger.Receipt, error)
	// MembershipProof proves the chain's member changes to anyone
	// holding the genesis (chain.Chain.MembershipProof): the receipt
	// page checks a receipt with the member sets it proves, as a device
	// that holds it does.
	MembershipProof() (ledger.MembershipProof, error)
}

// Connection is a device connected to a front end.
type Connection struct {
	Device   string
	Listener string // e.g. "mqtt tcp"
	Remote   string
	Since    time.Time
}

// Seeds is the state of seed discovery.
type Seeds struct {
	Zones    []string
	Servers  []string
	MinSeeds int
	Checked  time.Time // last discovery; zero: none yet
	Err      string    // why the last discovery failed; "" if it succeeded
	Peers    []SeedPeer
	Chain    []string // the validated chain of trust, step by step
	Problems []string // zones that gave no accepted answer, and why
	Verified int      // signature verifications the last discovery made
}

// SeedPeer is a peer the seeds named, after validation.
type SeedPeer struct {
	ID     string
	Addrs  []string
	Zones  []string
	Pinned bool // its key pin is its genesis key
}

// Admin is the admin key the dashboard signs enroll and revoke txs with.
type Admin struct {
	ID  string
	Key crypto.Signer
}

// Options are the operator login's settings.
type Options struct {
	PasswordHash string // bcrypt, from the config; "" = PasswordFile
	PasswordFile string // where a password set with the setup token is kept
	SessionIdle  time.Duration
	SessionMax   time.Duration
}

// Deps are what the dashboard shows and acts on.
type Deps struct {
	Status    func() (api.Status, error)
	Index     Index
	Ledger    Ledger
	Genesis   *ledger.Genesis
	Gatherer  prometheus.Gatherer // the gateway's metrics: charts and refusals
	Connected func() []Connection // nil: no connection-oriented front end
	Seeds     func() *Seeds       // nil: seed discovery is off
	Settings  string              // the effective configuration, TOML
	Admin     *Admin              // nil: the dashboard is read only
	Tokens    Tokens              // the API's token store; nil: no tokens page
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now (tests set a fake clock)

	// Records reads committed records with their payloads (the API's
	// Records); nil: the device page lists records without charts.
	Records func(index.RecordQuery) ([]api.Record, error)

	// Fleet reads the fleet's configurations and firmware reports; nil:
	// no drift or rollout pages.
	Fleet Fleet
	// Rollouts returns a model's releases, newest first, with their
	// rollout per group (the directory's FirmwareStatus); nil: no
	// rollout page.
	Rollouts func(model string, now time.Time) ([]Release, error)
	// Batches reads the vendors' batches and this gateway's claims in
	// flight (the API's read model); nil: no batches page.
	Batches api.Fleet
	// Policy reads the access rules in force and their history (the
	// API's read model); nil: no policies page.
	Policy api.PolicySource
}

// Server is the dashboard's http.Handler.
type Server struct {
	d     Deps
	auth  *auth
	live  *live
	pages map[string]*template.Template
	mux   *http.ServeMux
	h     http.Handler

	streamsMu sync.Mutex
	streams   int           // live pages open
	closing   chan struct{} // closed by Shutdown: live pages end
	closeOnce sync.Once

	recent recentRecords // the device pages' newest records (records.go)
	drift  driftCache    // the fleet's configuration states (fleet.go)
}

// New builds the dashboard; it reads the operator password file and does
// no other I/O.
func New(o Options, d Deps) (*Server, error) {
	var errs []error
	if d.Status == nil || d.Index == nil || d.Ledger == nil || d.Genesis == nil || d.Logger == nil {
		errs = append(errs, errors.New("webui: Status, Index, Ledger, Genesis and Logger are required"))
	}
	if o.SessionIdle <= 0 || o.SessionMax < o.SessionIdle {
		errs = append(errs, fmt.Errorf("webui: session idle %s, max %s: want 0 < idle <= max", o.SessionIdle, o.SessionMax))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a, err := newAuth(o, d.Now)
	if err != nil {
		return nil, err
	}
	s := &Server{d: d, auth: a, live: newLive(d.Gatherer, d.Now), mux: http.NewServeMux(), closing: make(chan struct{})}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.loginPost)
	s.mux.HandleFunc("GET /setup", s.setupPage)
	s.mux.HandleFunc("POST /setup", s.setupPost)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.handle("GET /{$}", s.overview)
	s.handle("GET /devices", s.devices)
	s.handle("POST /devices", s.enroll)
	s.handle("GET /devices/{id}", s.device)
	s.handle("GET /devices/{id}/records", s.recordsFragment)
	s.handle("GET /devices/{id}/revoke", s.revokePage)
	s.handle("POST /devices/{id}/revoke", s.revoke)
	s.handle("GET /ledger", s.ledger)
	s.handle("GET /ledger/blocks/{height}", s.block)
	s.handle("GET /ledger/txs/{id}", s.tx)
	s.handle("GET /ledger/receipt", s.receiptPage)
	s.handle("POST /ledger/receipt", s.receiptCheck)
	s.handle("GET /seeds", s.seeds)
	s.handle("GET /settings", s.settings)
	s.handle("GET /tokens", s.tokens)
	s.handle("POST /tokens", s.createToken)
	s.handle("POST /tokens/{id}/revoke", s.revokeToken)
	s.handle("GET /drift", s.driftPage)
	s.handle("GET /rollouts", s.rollouts)
	for _, act := range []string{"approve", "halt"} {
		s.handle("GET /rollouts/{model}/{version}/{group}/"+act, s.rolloutActPage(act))
		s.handle("POST /rollouts/{model}/{version}/{group}/"+act, s.rolloutActPost(act))
	}
	s.handle("GET /batches", s.batches)
	s.handle("GET /batches/{id}", s.batch)
	for _, act := range []string{"approve", "revoke"} {
		s.handle("GET /batches/{id}/"+act, s.batchActPage(act))
		s.handle("POST /batches/{id}/"+act, s.batchActPost(act))
	}
	s.handle("GET /policies", s.policies)
	s.handle("GET /events", s.events)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusNotFound, "No such page: "+r.URL.Path)
	})
	// Cross-origin protection refuses, for every non-safe method, a
	// request a browser marks as cross-site (Sec-Fetch-Site) or whose
	// Origin is another host; the forms' CSRF token is the second line,
	// for browsers that send neither.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusForbidden, "Cross-origin request refused.")
	}))
	s.h = cop.Handler(http.HandlerFunc(s.serve))
	return s, nil
}

// SetupToken returns the one-time token that sets the operator password,
// or "" once a password is set. The gateway logs it at start.
func (s *Server) SetupToken() string { return s.auth.setupToken() }

// Shutdown ends the live streams, which would otherwise hold up the HTTP
// server's shutdown (register it with http.Server.RegisterOnShutdown).
func (s *Server) Shutdown() { s.closeOnce.Do(func() { close(s.closing) }) }

// Run samples the metrics for the live view until ctx ends.
func (s *Server) Run(ctx context.Context) { s.live.run(ctx) }

// Committed tells the dashboard about a committed block.
func (s *Server) Committed(b *ledger.Block, txs []*ledger.Tx) { s.live.committed(b, txs) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	s.mux.ServeHTTP(w, r)
}

// handler is a page that needs a logged-in operator.
type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// handle registers a page behind the login: without a live session a GET
// goes to the login page and anything else is refused; a POST must carry
// the session's CSRF token.
func (s *Server) handle(pattern string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		ss := s.auth.session(cookieFor(r).get(r))
		if ss == nil {
			if s.auth.needsSetup() {
				http.Redirect(w, r, "/setup", http.StatusSeeOther)
				return
			}
			if r.Method == http.MethodGet && r.URL.Path != "/events" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended. Log in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !validCSRF(r, ss) {
				s.fail(w, r, ss, http.StatusForbidden, "The form's CSRF token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		h(w, r, ss)
	})
}

// maxFormBytes bounds a form (the largest is a pasted receipt).
const maxFormBytes = 256 << 10

func validCSRF(r *http.Request, ss *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && len(got) == len(ss.csrf) && subtleEq(got, ss.csrf)
}

// page is what every template gets.
type page struct {
	Title    string
	Nav      string // which entry of the menu is current
	Session  *session
	CSRF     string // the session's form token
	Insecure bool   // served over plain HTTP to the network
	Node     api.NodeInfo
	Flash    string // a one-line success message
	Error    string
	Data     any
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ms":        fmtMillis,
		"short":     shortHex,
		"join":      strings.Join,
		"ago":       ago,
		"rate":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"hasPrefix": strings.HasPrefix,
		"has":       slices.Contains[[]string],
		"bytes":     fmtBytes,
		"pct":       pct,
		"window":    fmtWindow,
		"fingerprint": func(der []byte) string {
			sum := sha256.Sum256(der)
			return hex.EncodeToString(sum[:])
		},
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a page; a template error is a bug and is logged.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if p.Node.NodeID == "" {
		if st, err := s.d.Status(); err == nil {
			p.Node = st.NodeInfo
		}
	}
	p.Insecure = !cookieFor(r).secure
	if p.Session != nil {
		p.CSRF = p.Session.csrf
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.d.Logger.Error("webui template failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail shows an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, code int, msg string) {
	s.render(w, r, code, "error", page{Title: http.StatusText(code), Session: ss, Error: msg})
}

// fmtBytes writes a size in bytes as 1.5 MB, 20 MB, 3.2 GB (powers of
// 1000, as retention.max_bytes "20MB" is written).
func fmtBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// pct is part of whole in whole percent, for bars and their labels.
func pct(part, whole int) int {
	if whole <= 0 {
		return 0
	}
	return part * 100 / whole
}

// fmtWindow writes a rate window in milliseconds as 1 s, 10 min, 1 h, 1 d.
func fmtWindow(ms uint64) string {
	for _, u := range []struct {
		ms   uint64
		name string
	}{{86_400_000, "d"}, {3_600_000, "h"}, {60_000, "min"}, {1000, "s"}} {
		if ms >= u.ms && ms%u.ms == 0 {
			return fmt.Sprintf("%d %s", ms/u.ms, u.name)
		}
	}
	return fmt.Sprintf("%d ms", ms)
}
