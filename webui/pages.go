package webui

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

const (
	pageSize      = 50
	submitTimeout = 30 * time.Second
	maxStreams    = 32 // live pages open at once
)

func subtleEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// ---- login, setup, logout

// safeNext is where to go after login: a path on this site, else "/".
func safeNext(v string) string {
	u, err := url.Parse(v)
	if err != nil || v == "" || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") ||
		u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/events") {
		return "/"
	}
	return v
}

type loginData struct {
	Next    string
	Expired bool
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.auth.needsSetup() {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	if s.auth.session(cookieFor(r).get(r)) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", page{Title: "Log in", Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	next := safeNext(r.PostFormValue("next"))
	ck := cookieFor(r)
	old := ck.get(r)
	ss, err := s.auth.login(remoteAddr(r), r.PostFormValue("password"))
	if err != nil {
		code := http.StatusUnauthorized
		msg := "Wrong password."
		if errors.Is(err, errTooMany) {
			code = http.StatusTooManyRequests
			w.Header().Set("Retry-After", strconv.Itoa(int(loginWindow.Seconds())))
			msg = "Too many failed logins from here. " + strings.TrimPrefix(err.Error(), errTooMany.Error()+": ")
		}
		s.d.Logger.Warn("dashboard login refused", "remote", r.RemoteAddr, "err", err)
		s.render(w, r, code, "login", page{Title: "Log in", Error: msg, Data: loginData{Next: next}})
		return
	}
	s.auth.logout(old) // a session id never survives a login
	ck.set(w, ss.id, s.auth.max)
	s.d.Logger.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	if !s.auth.needsSetup() {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "setup", page{Title: "Set the operator password"})
}

func (s *Server) setupPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	pw := r.PostFormValue("password")
	fail := func(code int, msg string) {
		s.render(w, r, code, "setup", page{Title: "Set the operator password", Error: msg})
	}
	if pw != r.PostFormValue("confirm") {
		fail(http.StatusBadRequest, "The two passwords differ.")
		return
	}
	ss, err := s.auth.setup(remoteAddr(r), r.PostFormValue("token"), pw)
	switch {
	case errors.Is(err, errAlreadySetUp):
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	case errors.Is(err, errBadSetup):
		s.d.Logger.Warn("dashboard setup refused: wrong token", "remote", r.RemoteAddr)
		fail(http.StatusUnauthorized, "Wrong setup token. It is in the gateway's log (journalctl -u ledgergate).")
		return
	case errors.Is(err, errTooMany):
		w.Header().Set("Retry-After", strconv.Itoa(int(loginWindow.Seconds())))
		fail(http.StatusTooManyRequests, "Too many failed attempts from here. Try again later.")
		return
	case err != nil:
		fail(http.StatusBadRequest, strings.TrimPrefix(err.Error(), "webui: "))
		return
	}
	cookieFor(r).set(w, ss.id, s.auth.max)
	s.d.Logger.Info("dashboard operator password set", "remote", r.RemoteAddr, "file", s.auth.file)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	ck := cookieFor(r)
	if ss := s.auth.session(ck.get(r)); ss != nil {
		if !validCSRF(r, ss) {
			s.fail(w, r, ss, http.StatusForbidden, "The form's CSRF token is missing or wrong. Reload the page and try again.")
			return
		}
		s.auth.logout(ss.id)
	}
	ck.clear(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// ---- overview

type overviewData struct {
	Status  api.Status
	Live    snapshot
	Devices int // connected
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	st, err := s.d.Status()
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the status failed: "+err.Error())
		return
	}
	d := overviewData{Status: st, Live: s.live.snapshot()}
	if s.d.Connected != nil {
		d.Devices = len(s.d.Connected())
	}
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Session: ss, Node: st.NodeInfo, Data: d})
}

// ---- devices

type deviceRow struct {
	index.Device
	Connected *Connection
	Rate      float64 // records per minute over the last minutes
}

type devicesData struct {
	Query   string
	Devices []deviceRow
	Next    string
	Admin   bool
	Form    enrollForm
}

type enrollForm struct {
	ID, Model, Groups, PublicKey, EncKey string
}

func (s *Server) connections() map[string]*Connection {
	m := map[string]*Connection{}
	if s.d.Connected == nil {
		return m
	}
	for _, c := range s.d.Connected() {
		m[c.Device] = &c
	}
	return m
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request, ss *session) {
	s.devicesPage(w, r, ss, http.StatusOK, "", "", enrollForm{})
}

func (s *Server) devicesPage(w http.ResponseWriter, r *http.Request, ss *session, code int, flash, errMsg string, form enrollForm) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	ds, err := s.d.Index.SearchDevices(q, r.URL.Query().Get("after"), pageSize)
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the devices failed: "+err.Error())
		return
	}
	conns := s.connections()
	d := devicesData{Query: q, Admin: s.d.Admin != nil, Form: form}
	for _, dv := range ds {
		d.Devices = append(d.Devices, deviceRow{Device: dv, Connected: conns[dv.ID], Rate: s.live.rate(dv.ID)})
	}
	if len(ds) == pageSize {
		d.Next = ds[len(ds)-1].ID
	}
	s.render(w, r, code, "devices", page{Title: "Devices", Nav: "devices", Session: ss, Flash: flash, Error: errMsg, Data: d})
}

// parsePEM reads one PEM PUBLIC KEY block.
func parsePEM(text, what string) ([]byte, error) {
	b, _ := pem.Decode([]byte(strings.TrimSpace(text)))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: want a PEM block \"PUBLIC KEY\" (the NAME.pub file of ledgergate device keygen)", what)
	}
	return b.Bytes, nil
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request, ss *session) {
	f := enrollForm{
		ID: strings.TrimSpace(r.PostFormValue("id")), Model: strings.TrimSpace(r.PostFormValue("model")),
		Groups: strings.TrimSpace(r.PostFormValue("groups")), PublicKey: r.PostFormValue("pubkey"), EncKey: r.PostFormValue("enckey"),
	}
	bad := func(code int, msg string) { s.devicesPage(w, r, ss, code, "", msg, f) }
	if s.d.Admin == nil {
		bad(http.StatusForbidden, "This gateway holds no admin key for the dashboard (webui.admin_key), so it cannot enroll devices.")
		return
	}
	en := &ledger.Enroll{DeviceID: f.ID, Model: f.Model}
	var err error
	if en.PublicKey, err = parsePEM(f.PublicKey, "Public key"); err != nil {
		bad(http.StatusBadRequest, err.Error())
		return
	}
	if _, err := ledger.ParsePublicKey(en.PublicKey); err != nil {
		bad(http.StatusBadRequest, "Public key: "+err.Error())
		return
	}
	if strings.TrimSpace(f.EncKey) != "" {
		if en.EncKey, err = parsePEM(f.EncKey, "Encryption key"); err != nil {
			bad(http.StatusBadRequest, err.Error())
			return
		}
		if _, err := ledger.ParseEncKey(en.EncKey); err != nil {
			bad(http.StatusBadRequest, "Encryption key: "+err.Error())
			return
		}
	}
	for g := range strings.SplitSeq(f.Groups, ",") {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(en.Groups, g) {
			en.Groups = append(en.Groups, g)
		}
	}
	slices.Sort(en.Groups)
	rc, err := s.submit(r.Context(), ledger.Body{Kind: ledger.KindEnroll, Enroll: en})
	if err != nil {
		code, _ := api.ErrorStatus(err)
		bad(code, "Enroll refused: "+err.Error())
		return
	}
	s.d.Logger.Info("dashboard enrolled a device", "device", en.DeviceID, "height", rc.Header.Height, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/devices/"+url.PathEscape(en.DeviceID)+"?done=enrolled", http.StatusSeeOther)
}

// submit signs body with the dashboard's admin key and waits for its commit.
func (s *Server) submit(ctx context.Context, body ledger.Body) (*ledger.Receipt, error) {
	body.ChainID = s.d.Genesis.ChainID
	env, err := ledger.SignTx(s.d.Admin.Key, s.d.Admin.ID, &body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, submitTimeout)
	defer cancel()
	return s.d.Ledger.Submit(ctx, env)
}

type deviceData struct {
	Device    *index.Device
	Connected *Connection
	Rate      float64
	Records   []index.TxInfo
	Live      *recordsData // charts and records with payloads; nil without Deps.Records
	Admin     bool
}

func (s *Server) device(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	dv, err := s.d.Index.Device(id)
	if errors.Is(err, index.ErrNotFound) {
		s.fail(w, r, ss, http.StatusNotFound, "No device "+strconv.Quote(id)+" is enrolled.")
		return
	} else if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the device failed: "+err.Error())
		return
	}
	d := deviceData{Device: dv, Connected: s.connections()[id], Rate: s.live.rate(id), Admin: s.d.Admin != nil}
	if s.d.Records != nil {
		d.Live, err = s.deviceRecords(dv)
	} else {
		d.Records, err = s.d.Index.Records(id, 0, 20)
	}
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the records failed: "+err.Error())
		return
	}
	flash := ""
	switch r.URL.Query().Get("done") {
	case "enrolled":
		flash = "Enrolled " + id + " in block " + strconv.FormatUint(dv.EnrolledHeight, 10) + "."
	case "revoked":
		flash = "Revoked " + id + " in block " + strconv.FormatUint(dv.RevokedHeight, 10) + "."
	}
	s.render(w, r, http.StatusOK, "device", page{Title: "Device " + id, Nav: "devices", Session: ss, Flash: flash, Data: d})
}

type revokeData struct {
	ID, Reason string
}

func (s *Server) revokePage(w http.ResponseWriter, r *http.Request, ss *session) {
	s.revokeForm(w, r, ss, http.StatusOK, "", revokeData{ID: r.PathValue("id")})
}

func (s *Server) revokeForm(w http.ResponseWriter, r *http.Request, ss *session, code int, errMsg string, d revokeData) {
	dv, err := s.d.Index.Device(d.ID)
	switch {
	case errors.Is(err, index.ErrNotFound):
		s.fail(w, r, ss, http.StatusNotFound, "No device "+strconv.Quote(d.ID)+" is enrolled.")
		return
	case err != nil:
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the device failed: "+err.Error())
		return
	case dv.Status == index.StatusRevoked:
		s.fail(w, r, ss, http.StatusConflict, "Device "+d.ID+" is already revoked.")
		return
	case s.d.Admin == nil:
		s.fail(w, r, ss, http.StatusForbidden, "This gateway holds no admin key for the dashboard (webui.admin_key), so it cannot revoke devices.")
		return
	}
	s.render(w, r, code, "revoke", page{Title: "Revoke " + d.ID, Nav: "devices", Session: ss, Error: errMsg, Data: d})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, ss *session) {
	d := revokeData{ID: r.PathValue("id"), Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if r.PostFormValue("confirm") != d.ID {
		s.revokeForm(w, r, ss, http.StatusBadRequest, "Type the device id exactly to confirm.", d)
		return
	}
	if s.d.Admin == nil {
		s.revokeForm(w, r, ss, http.StatusForbidden, "", d)
		return
	}
	if _, err := s.submit(r.Context(), ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: d.ID, Reason: d.Reason}}); err != nil {
		code, _ := api.ErrorStatus(err)
		s.revokeForm(w, r, ss, code, "Revoke refused: "+err.Error(), d)
		return
	}
	s.d.Logger.Info("dashboard revoked a device", "device", d.ID, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/devices/"+url.PathEscape(d.ID)+"?done=revoked", http.StatusSeeOther)
}

// ---- ledger

type ledgerData struct {
	Blocks []index.BlockInfo
	Next   uint64 // "before" of the next page; 0: none
	First  bool   // the newest page: new blocks are added live
}

func (s *Server) ledger(w http.ResponseWriter, r *http.Request, ss *session) {
	before, err := strconv.ParseUint(r.URL.Query().Get("before"), 10, 64)
	if err != nil {
		before = 0
	}
	bs, err := s.d.Index.Blocks(before, pageSize)
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the blocks failed: "+err.Error())
		return
	}
	d := ledgerData{Blocks: bs, First: before == 0}
	if len(bs) == pageSize && bs[len(bs)-1].Height > 1 {
		d.Next = bs[len(bs)-1].Height
	}
	s.render(w, r, http.StatusOK, "ledger", page{Title: "Ledger", Nav: "ledger", Session: ss, Data: d})
}

type blockData struct {
	Height uint64
	Prev   uint64 // 0: the first block
	Next   uint64
	Info   *index.BlockInfo
	Txs    []index.TxInfo
}

func (s *Server) block(w http.ResponseWriter, r *http.Request, ss *session) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil || h == 0 {
		s.fail(w, r, ss, http.StatusBadRequest, "A block height is a whole number from 1.")
		return
	}
	bs, err := s.d.Index.Blocks(h+1, 1)
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the block failed: "+err.Error())
		return
	}
	if len(bs) == 0 || bs[0].Height != h {
		s.fail(w, r, ss, http.StatusNotFound, "No block "+strconv.FormatUint(h, 10)+" yet.")
		return
	}
	txs, err := s.d.Index.TxsInBlock(h)
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the block failed: "+err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "block", page{Title: "Block " + strconv.FormatUint(h, 10), Nav: "ledger", Session: ss,
		Data: blockData{Height: h, Prev: h - 1, Next: h + 1, Info: &bs[0], Txs: txs}})
}

func (s *Server) tx(w http.ResponseWriter, r *http.Request, ss *session) {
	id, err := ledger.ParseHash(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, ss, http.StatusBadRequest, "Not a tx id: "+err.Error()+".")
		return
	}
	info, err := s.d.Index.Tx(id)
	if errors.Is(err, index.ErrNotFound) {
		s.fail(w, r, ss, http.StatusNotFound, "No committed tx has this id.")
		return
	} else if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the tx failed: "+err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "tx", page{Title: "Tx " + shortHex(info.ID), Nav: "ledger", Session: ss, Data: info})
}

// receiptData is the result of a receipt check.
type receiptData struct {
	TxID    string // what was asked
	Pasted  string
	Checked bool
	Valid   bool
	Problem string
	Tx      string // the verified tx's id
	Kind    string
	Author  string
	Height  uint64
	Block   string
	Time    int64
	Signers []string
	Quorum  int
	Proof   int // hashes in the inclusion proof
}

func (s *Server) receiptPage(w http.ResponseWriter, r *http.Request, ss *session) {
	d := receiptData{TxID: strings.TrimSpace(r.URL.Query().Get("tx"))}
	code := http.StatusOK
	if d.TxID != "" {
		code = s.checkByID(&d)
	}
	s.render(w, r, code, "receipt", page{Title: "Check a receipt", Nav: "ledger", Session: ss, Data: d})
}

func (s *Server) receiptCheck(w http.ResponseWriter, r *http.Request, ss *session) {
	d := receiptData{Pasted: strings.TrimSpace(r.PostFormValue("receipt"))}
	code := http.StatusOK
	raw, err := decodeReceiptText(d.Pasted)
	if err != nil {
		d.Checked, d.Problem, code = true, err.Error(), http.StatusBadRequest
	} else if rc, err := ledger.DecodeReceipt(raw); err != nil {
		d.Checked, d.Problem, code = true, err.Error(), http.StatusBadRequest
	} else {
		s.verify(&d, rc)
	}
	s.render(w, r, code, "receipt", page{Title: "Check a receipt", Nav: "ledger", Session: ss, Data: d})
}

// decodeReceiptText reads a receipt pasted as base64, hex, or the JSON
// that the API and ledgergate tx receipt answer.
func decodeReceiptText(t string) ([]byte, error) {
	if t == "" {
		return nil, errors.New("paste a receipt: base64 or hex of its CBOR, or the API's JSON answer")
	}
	if strings.HasPrefix(t, "{") {
		var body struct {
			Receipt string `json:"receipt"`
		}
		if err := json.Unmarshal([]byte(t), &body); err != nil || body.Receipt == "" {
			return nil, errors.New("the JSON has no \"receipt\" field")
		}
		t = body.Receipt
	}
	t = strings.Join(strings.Fields(t), "")
	if b, err := hex.DecodeString(t); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(t); err == nil {
		return b, nil
	}
	if b, err := base64.RawURLEncoding.DecodeString(t); err == nil {
		return b, nil
	}
	return nil, errors.New("not base64 or hex")
}

func (s *Server) checkByID(d *receiptData) int {
	d.Checked = true
	id, err := ledger.ParseHash(d.TxID)
	if err != nil {
		d.Problem = err.Error()
		return http.StatusBadRequest
	}
	rc, err := s.d.Ledger.Receipt(id)
	if err != nil {
		d.Problem = "this gateway has no receipt for it: " + err.Error()
		return http.StatusNotFound
	}
	s.verify(d, rc)
	return http.StatusOK
}

// verify checks rc as a device would, with nothing but the genesis and
// the chain's membership proof (which it checks with the genesis too):
// rc's certificate must be of the member set in force at its height.
func (s *Server) verify(d *receiptData, rc *ledger.Receipt) {
	d.Checked = true
	p, err := s.d.Ledger.MembershipProof()
	if err != nil {
		d.Problem = "this gateway cannot prove its member changes: " + err.Error()
		return
	}
	m, err := ledger.VerifyMembership(s.d.Genesis, p)
	if err != nil {
		d.Problem = "this gateway's membership proof does not verify: " + err.Error()
		return
	}
	if err := m.VerifyReceipt(rc); err != nil {
		d.Problem = err.Error()
		return
	}
	tx, err := ledger.DecodeTx(rc.Tx, s.d.Genesis.Params.MaxTxBytes)
	if err != nil { // VerifyReceipt decoded it already
		d.Problem = err.Error()
		return
	}
	hash := rc.Header.Hash()
	d.Valid = true
	d.Tx, d.Kind, d.Author = hex.EncodeToString(tx.ID[:]), string(tx.Body.Kind), tx.Author
	d.Height, d.Block, d.Time = rc.Header.Height, hex.EncodeToString(hash[:]), rc.Header.Time
	for _, sg := range rc.Cert.Sigs {
		d.Signers = append(d.Signers, sg.Node)
	}
	d.Quorum, d.Proof = m.At(rc.Header.Height).Quorum(), len(rc.Proof)
}

// ---- seeds and settings

type seedsData struct {
	Seeds *Seeds
	Nodes []ledger.Node
}

func (s *Server) seeds(w http.ResponseWriter, r *http.Request, ss *session) {
	d := seedsData{Nodes: s.d.Genesis.Nodes}
	if s.d.Seeds != nil {
		d.Seeds = s.d.Seeds()
	}
	s.render(w, r, http.StatusOK, "seeds", page{Title: "Seeds", Nav: "seeds", Session: ss, Data: d})
}

func (s *Server) settings(w http.ResponseWriter, r *http.Request, ss *session) {
	s.render(w, r, http.StatusOK, "settings", page{Title: "Settings", Nav: "settings", Session: ss, Data: s.d.Settings})
}

// ---- live updates

// update is one Server-Sent Event of the live pages.
type update struct {
	Height       uint64     `json:"height"`
	View         uint64     `json:"view"`
	Primary      string     `json:"primary"`
	ViewChanging bool       `json:"view_changing"`
	Peers        []api.Peer `json:"peers"`
	Counts       any        `json:"counts"`
	Connected    []string   `json:"connected"` // device ids, at most maxLiveIDs
	NConnected   int        `json:"n_connected"`
	Storage      any        `json:"storage,omitempty"` // the status's storage (docs/retention.md)
	snapshot
}

const maxLiveIDs = 1000

func (s *Server) events(w http.ResponseWriter, r *http.Request, ss *session) {
	if !s.acquireStream() {
		http.Error(w, "too many live pages open", http.StatusServiceUnavailable)
		return
	}
	defer s.releaseStream()
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil { // the server's write timeout would end the stream
		http.Error(w, "streaming not supported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	id := ss.id
	for {
		if !s.auth.alive(id) {
			fmt.Fprint(w, "event: expired\ndata: {}\n\n")
			rc.Flush()
			return
		}
		if err := s.writeUpdate(w); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-s.live.wait():
		}
	}
}

func (s *Server) writeUpdate(w http.ResponseWriter) error {
	u := update{snapshot: s.live.snapshot()}
	if st, err := s.d.Status(); err == nil {
		u.Height, u.Counts, u.Storage = st.Height, st.Counts, st.Storage
		if c := st.Cluster; c != nil {
			u.View, u.Primary, u.ViewChanging, u.Peers = c.View, c.Primary, c.ViewChanging, c.Peers
		}
	}
	if s.d.Connected != nil {
		cs := s.d.Connected()
		u.NConnected = len(cs)
		for _, c := range cs[:min(len(cs), maxLiveIDs)] {
			u.Connected = append(u.Connected, c.Device)
		}
	}
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: update\ndata: %s\n\n", b)
	return err
}

func (s *Server) acquireStream() bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams >= maxStreams {
		return false
	}
	s.streams++
	return true
}

func (s *Server) releaseStream() {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	s.streams--
}

// ---- template helpers

// fmtMillis formats a Unix ms time in UTC; "never" for 0.
func fmtMillis(ms int64) string {
	if ms == 0 {
		return "never"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
}

func shortHex(h string) string {
	if len(h) <= 16 {
		return h
	}
	return h[:16] + "…"
}

// ago is a time as "5s ago"; "never" for the zero time.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
