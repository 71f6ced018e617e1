package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Ledger is what the API needs of the commit pipeline.
type Ledger interface {
	// Decode decodes a tx as the chain does, refusing it (malformed,
	// too_large) as the chain does.
	Decode(env []byte) (*ledger.Tx, error)
	// SubmitTx commits a tx decoded (once) by Decode and waits for its
	// receipt.
	SubmitTx(ctx context.Context, tx *ledger.Tx) (*ledger.Receipt, error)
	Receipt(id [32]byte) (*ledger.Receipt, error)
	Block(height uint64) (*ledger.Block, error)
}

// Index is what the API reads of the index.
type Index interface {
	Height() (uint64, error)
	Counts() (index.Counts, error)
	Blocks(before uint64, limit int) ([]index.BlockInfo, error)
	TxsInBlock(height uint64) ([]index.TxInfo, error)
	Tx(id [32]byte) (*index.TxInfo, error)
	Device(id string) (*index.Device, error)
	Devices(after string, limit int) ([]index.Device, error)
	Records(device string, beforeSeq uint64, limit int) ([]index.TxInfo, error)
	QueryRecords(q index.RecordQuery) ([]index.RecordInfo, error)
	PrunedHeight() (uint64, error)
	Base() (uint64, error)
}

// NodeInfo is the static part of /api/v1/status.
type NodeInfo struct {
	ChainID     string `json:"chain_id"`
	NodeID      string `json:"node_id"`
	GenesisHash string `json:"genesis_hash"`
	Version     string `json:"version"`
	// KeyHardware is false for a software node key.
	KeyHardware bool   `json:"key_hardware"`
	Key         string `json:"key"` // where the node key lives, e.g. "software key, not hardware-backed (...)"
	Nodes       int    `json:"nodes"`
	Quorum      int    `json:"quorum"`
	MaxTxBytes  int    `json:"max_tx_bytes"`
}

// Cluster is the consensus part of /api/v1/status.
type Cluster struct {
	View             uint64 `json:"view"`
	Primary          string `json:"primary"`
	ViewChanging     bool   `json:"view_changing"`
	StableCheckpoint uint64 `json:"stable_checkpoint"`
	Peers            []Peer `json:"peers"`
}

// Peer is another gateway of the cluster as this one sees it.
type Peer struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	Height    uint64 `json:"height"` // as the peer last reported it
	Lag       int64  `json:"lag"`    // blocks the peer is behind this gateway (negative: ahead)
}

// Server is the API's http.Handler.
type Server struct {
	info       NodeInfo
	cluster    func() Cluster
	dir        Directory
	configs    Configs
	fw         Firmware
	fleet      Fleet
	fwReports  FirmwareReports
	ledger     Ledger
	index      Index
	logger     *slog.Logger
	started    time.Time
	ready      atomic.Bool
	health     func() error // why this gateway cannot commit now; nil if it can
	egress     func() any   // nil: no egress connectors
	storage    func() any   // nil: not reported
	members    func() Members
	policy     PolicySource
	mux        *http.ServeMux
	routes     []string      // the patterns registered with handle
	uploads    chan struct{} // a slot per upload being read (upload.go)
	auth       *AuthPolicy   // nil: every route is open
	membership Membership    // nil: no /api/v1/cluster/proof
}

// New returns the API handler. gatherer serves /metrics.
func New(info NodeInfo, l Ledger, x Index, gatherer prometheus.Gatherer, logger *slog.Logger) *Server {
	s := &Server{info: info, ledger: l, index: x, logger: logger, started: time.Now(), mux: http.NewServeMux(),
		uploads: make(chan struct{}, DefaultMaxUploads)}
	s.handle("GET /api/v1/status", s.status)
	s.handle("GET /api/v1/devices", s.devices)
	s.handle("GET /api/v1/devices/{id}", s.device)
	s.handle("GET /api/v1/devices/{id}/records", s.records)
	s.handle("GET /api/v1/records", s.queryRecords)
	s.handle("GET /api/v1/blocks", s.blocks)
	s.handle("GET /api/v1/blocks/{height}", s.block)
	s.handle("GET /api/v1/txs/{id}", s.tx)
	s.handle("GET /api/v1/txs/{id}/receipt", s.receipt)
	s.handle("POST /api/v1/txs", s.submit)
	s.handle("GET /api/v1/cluster/members", s.clusterMembers)
	s.handle("GET /api/v1/policy", s.policyInForce)
	s.handle("GET /api/v1/policy/history", s.policyHistory)
	s.handle("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.handle("GET /readyz", s.readyz)
	s.handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s
}

// SetCluster sets where the status reads the consensus state from.
func (s *Server) SetCluster(f func() Cluster) { s.cluster = f }

// SetEgress sets where the status reads the egress connectors' state
// from. It must be called before the server serves.
func (s *Server) SetEgress(f func() any) { s.egress = f }

// SetStorage sets where the status reads the storage and retention
// state from. It must be called before the server serves.
func (s *Server) SetStorage(f func() any) { s.storage = f }

// SetReady marks the node ready (every listener bound, the ledger open).
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// SetHealth sets what /readyz asks besides SetReady: f returns why this
// gateway cannot commit now (no quorum reachable, a view change that
// does not end, txs waiting past the commit timeout), nil if it can. It
// must be called before the server serves.
func (s *Server) SetHealth(f func() error) { s.health = f }

// ServeHTTP checks the request against the access policy (auth.go), then
// serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r = s.guard(w, r); r != nil {
		s.mux.ServeHTTP(w, r)
	}
}

// handle registers a route; its access rule is in auth.go's table.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, h)
}

// readyz is 200 "ready" while the gateway can commit, else 503 with the
// reason "not_ready" (starting or stopping), "storage_full" (the disk
// filled: it stopped committing until restarted) or "unavailable" (it
// cannot commit now: the error says why).
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "starting or stopping")
		return
	}
	if s.health != nil {
		if err := s.health(); err != nil {
			var re *ledger.RefusedError
			if errors.As(err, &re) && re.Reason == ledger.ReasonStorageFull {
				w.Header().Set("Retry-After", retryStorageFull)
				writeError(w, http.StatusServiceUnavailable, string(re.Reason), re.Detail)
				return
			}
			w.Header().Set("Retry-After", retryUnavailable)
			writeError(w, http.StatusServiceUnavailable, string(ledger.ReasonUnavailable), err.Error())
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// retryUnavailable is the Retry-After, in seconds, of a 503
// "unavailable": the tx did not commit in time and stays queued; the
// client sends the same bytes again after this long.
const retryUnavailable = "2"

// retryStorageFull is the Retry-After, in seconds, of a 507
// "storage_full" and of /readyz then: the gateway commits again only once
// an operator freed space and restarted it.
const retryStorageFull = "60"

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
	// LastSeq is, with reason replay only, the device's last seq this
	// gateway committed or queued.
	LastSeq *uint64 `json:"last_seq,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the client may be gone; nothing to do about it
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Reason: reason})
}

// writeErr maps an error from the ledger or the index to a response.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	code, reason := ErrorStatus(err)
	switch code {
	case http.StatusServiceUnavailable:
		switch reason {
		case string(ledger.ReasonOverloaded):
			w.Header().Set("Retry-After", "1")
		case string(ledger.ReasonUnavailable):
			w.Header().Set("Retry-After", retryUnavailable)
		}
	case http.StatusInsufficientStorage:
		w.Header().Set("Retry-After", retryStorageFull)
	case http.StatusGatewayTimeout:
		writeError(w, code, reason, "gave up waiting for the commit: "+err.Error())
		return
	case http.StatusInternalServerError:
		s.logger.Error("api request failed", "err", err)
	}
	body := errorBody{Error: err.Error(), Reason: reason}
	if last, ok := ledger.LastSeqOf(err); ok {
		body.LastSeq = &last
	}
	writeJSON(w, code, body)
}

// httpStatus is the HTTP status of each refusal reason: the HTTP column
// of the table in docs/protocol.md. TestReasonTable checks that every
// reason has one.
var httpStatus = map[ledger.Reason]int{
	ledger.ReasonMalformed:      http.StatusBadRequest,
	ledger.ReasonTooLarge:       http.StatusRequestEntityTooLarge,
	ledger.ReasonWrongChain:     http.StatusBadRequest,
	ledger.ReasonTopic:          http.StatusForbidden,
	ledger.ReasonNotRecord:      http.StatusBadRequest,
	ledger.ReasonNotReport:      http.StatusBadRequest,
	ledger.ReasonWrongCert:      http.StatusForbidden,
	ledger.ReasonUnknownAuthor:  http.StatusForbidden,
	ledger.ReasonBadSignature:   http.StatusForbidden,
	ledger.ReasonForbidden:      http.StatusForbidden,
	ledger.ReasonRevoked:        http.StatusForbidden,
	ledger.ReasonReplay:         http.StatusConflict,
	ledger.ReasonExists:         http.StatusConflict,
	ledger.ReasonUnknownDevice:  http.StatusUnprocessableEntity,
	ledger.ReasonStaleVersion:   http.StatusConflict,
	ledger.ReasonUnknownRelease: http.StatusNotFound,
	ledger.ReasonPolicy:         http.StatusForbidden,
	ledger.ReasonNotFound:       http.StatusNotFound,
	ledger.ReasonBadOption:      http.StatusBadRequest,       // CoAP only
	ledger.ReasonMethod:         http.StatusMethodNotAllowed, // CoAP only
	ledger.ReasonNotAcceptable:  http.StatusNotAcceptable,    // CoAP only
	ledger.ReasonIncomplete:     http.StatusBadRequest,       // CoAP only
	ledger.ReasonFormat:         http.StatusUnsupportedMediaType,
	ledger.ReasonProxy:          http.StatusBadRequest, // CoAP only
	ledger.ReasonOverloaded:     http.StatusServiceUnavailable,
	ledger.ReasonUnavailable:    http.StatusServiceUnavailable,
	ledger.ReasonStorageFull:    http.StatusInsufficientStorage, // RFC 4918 11.5
	ledger.ReasonInternal:       http.StatusInternalServerError,
}

// ErrorStatus is the HTTP status and reason of an error from the ledger
// or the index: a refusal's own reason, not found, overloaded, ...
func ErrorStatus(err error) (int, string) {
	var re *ledger.RefusedError
	switch {
	case errors.As(err, &re):
		if code, ok := httpStatus[re.Reason]; ok {
			return code, string(re.Reason)
		}
		return http.StatusInternalServerError, string(re.Reason)
	case errors.Is(err, ledger.ErrPruned):
		return http.StatusGone, "pruned"
	case errors.Is(err, index.ErrNotFound), errors.Is(err, chain.ErrNotFound):
		return http.StatusNotFound, string(ledger.ReasonNotFound)
	case errors.Is(err, chain.ErrClosed):
		return http.StatusServiceUnavailable, string(ledger.ReasonUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	}
	return http.StatusInternalServerError, string(ledger.ReasonInternal)
}

// Status is the body of /api/v1/status.
type Status struct {
	NodeInfo
	Height        uint64       `json:"height"`
	Counts        index.Counts `json:"counts"`
	Ready         bool         `json:"ready"`               // what /readyz says: the gateway can commit
	NotReady      string       `json:"not_ready,omitempty"` // why not
	StartedAt     time.Time    `json:"started_at"`
	UptimeSeconds int64        `json:"uptime_seconds"`
	Cluster       *Cluster     `json:"cluster,omitempty"`
	Egress        any          `json:"egress,omitempty"` // the egress connectors (docs/egress.md); none: absent
	// Storage is the disk usage of the block log, index and WAL, the
	// retention budget and the pruned height (docs/retention.md).
	Storage any `json:"storage,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st, err := s.Status()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Status returns what /api/v1/status answers.
func (s *Server) Status() (Status, error) {
	c, err := s.index.Counts()
	if err != nil {
		return Status{}, err
	}
	st := Status{
		NodeInfo: s.info, Height: c.Blocks, Counts: c, Ready: s.ready.Load(),
		StartedAt: s.started.UTC(), UptimeSeconds: int64(time.Since(s.started).Seconds()),
	}
	if !st.Ready {
		st.NotReady = "starting or stopping"
	} else if s.health != nil {
		if err := s.health(); err != nil {
			st.Ready, st.NotReady = false, err.Error()
			var re *ledger.RefusedError
			if errors.As(err, &re) {
				st.NotReady = re.Detail
			}
		}
	}
	if s.members != nil {
		m := s.members()
		st.Nodes, st.Quorum = len(m.InForce.Nodes), m.InForce.Quorum
	}
	if s.cluster != nil {
		cl := s.cluster()
		st.Cluster = &cl
	}
	if s.egress != nil {
		st.Egress = s.egress()
	}
	if s.storage != nil {
		st.Storage = s.storage()
	}
	return st, nil
}

// Mount serves h (the dashboard) at every path the API does not own.
// It must be called before the server serves.
func (s *Server) Mount(h http.Handler) { s.mux.Handle("/", h) }

// limit reads ?limit=, default 100, at most 1000.
func limit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, fmt.Errorf("limit %q: want 1 to 1000", v)
	}
	return n, nil
}

func uintParam(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a whole number", name, v)
	}
	return n, nil
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	ds, err := s.index.Devices(r.URL.Query().Get("after"), n)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	body := struct {
		Devices []index.Device `json:"devices"`
		Next    string         `json:"next,omitempty"`
	}{Devices: ds}
	if len(ds) == n {
		body.Next = ds[len(ds)-1].ID
	}
	if body.Devices == nil {
		body.Devices = []index.Device{}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	d, err := s.index.Device(r.PathValue("id"))
	if err != nil {
		s.writeErr(w, s.maybeBefore(err))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	before, err := uintParam(r.URL.Query().Get("before_seq"), "before_seq")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	id := r.PathValue("id")
	if _, err := s.index.Device(id); err != nil {
		s.writeErr(w, err)
		return
	}
	recs, err := s.index.Records(id, before, n)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if recs == nil {
		recs = []index.TxInfo{}
	}
	writeJSON(w, http.StatusOK, struct {
		Records []index.TxInfo `json:"records"`
	}{recs})
}

func (s *Server) blocks(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	before, err := uintParam(r.URL.Query().Get("before"), "before")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	bs, err := s.index.Blocks(before, n)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if bs == nil {
		bs = []index.BlockInfo{}
	}
	writeJSON(w, http.StatusOK, struct {
		Blocks []index.BlockInfo `json:"blocks"`
	}{bs})
}

// BlockBody is the body of /api/v1/blocks/{height}.
type BlockBody struct {
	Hash        string         `json:"hash"`
	Header      ledger.Header  `json:"header"`
	CertView    uint64         `json:"cert_view"`
	CertSigners []string       `json:"cert_signers"`
	Txs         []index.TxInfo `json:"txs"`
}

func (s *Server) block(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil || h == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "height: want a whole number from 1")
		return
	}
	b, err := s.ledger.Block(h)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	txs, err := s.index.TxsInBlock(h)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	hash := b.Header.Hash()
	body := BlockBody{Hash: hex.EncodeToString(hash[:]), Header: b.Header, CertView: b.Cert.View, Txs: txs}
	for _, sg := range b.Cert.Sigs {
		body.CertSigners = append(body.CertSigners, sg.Node)
	}
	writeJSON(w, http.StatusOK, body)
}

// TxBody is the body of /api/v1/txs/{id}.
type TxBody struct {
	index.TxInfo
	Envelope []byte `json:"envelope"` // the COSE_Sign1 bytes, base64
}

func (s *Server) tx(w http.ResponseWriter, r *http.Request) {
	id, err := ledger.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	info, err := s.index.Tx(id)
	if err != nil {
		s.writeErr(w, s.maybePruned(err))
		return
	}
	b, err := s.ledger.Block(info.Height)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if len(b.Txs[info.Index]) == 0 && b.IsPruned() { // pruned after the index was read
		s.writeErr(w, fmt.Errorf("tx %x at height %d: %w", id, info.Height, ledger.ErrPruned))
		return
	}
	writeJSON(w, http.StatusOK, TxBody{TxInfo: *info, Envelope: b.Txs[info.Index]})
}

// maybeBefore adds to a device that was not found that this gateway
// joined from a snapshot, if it did: a device enrolled before it is in
// the state (it authenticates) but not in the index.
func (s *Server) maybeBefore(err error) error {
	if !errors.Is(err, index.ErrNotFound) {
		return err
	}
	if h, herr := s.index.Base(); herr == nil && h > 0 {
		return fmt.Errorf("%w (this gateway joined from a snapshot at height %d: its index has no device enrolled up to it; ask a gateway whose log starts at block 1)", err, h)
	}
	return err
}

// maybePruned adds to a tx that was not found that retention pruned the
// records up to a height, if it did: the tx may have been one of them.
func (s *Server) maybePruned(err error) error {
	if !errors.Is(err, index.ErrNotFound) && !errors.Is(err, chain.ErrNotFound) {
		return err
	}
	if h, herr := s.index.Base(); herr == nil && h > 0 {
		return fmt.Errorf("%w (this gateway joined from a snapshot at height %d: it has no blocks or txs up to it; ask a gateway whose log starts at block 1)", err, h)
	}
	if h, herr := s.index.PrunedHeight(); herr == nil && h > 0 {
		return fmt.Errorf("%w (retention pruned the records of blocks 1 to %d: if this was one, its payload is gone; the receipt its device holds still verifies)", err, h)
	}
	return err
}

// ReceiptBody is the JSON answer carrying a receipt.
type ReceiptBody struct {
	TxID    string `json:"tx_id"`
	Height  uint64 `json:"height"`
	Index   uint64 `json:"index"`
	Receipt string `json:"receipt"` // base64 of the CBOR receipt
}

func (s *Server) writeReceipt(w http.ResponseWriter, r *http.Request, rc *ledger.Receipt) {
	s.writeAnswer(w, r, rc, func(enc []byte) any {
		id := ledger.TxID(rc.Tx)
		return ReceiptBody{
			TxID: hex.EncodeToString(id[:]), Height: rc.Header.Height, Index: rc.Index,
			Receipt: base64.StdEncoding.EncodeToString(enc),
		}
	})
}

func (s *Server) receipt(w http.ResponseWriter, r *http.Request) {
	id, err := ledger.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rc, err := s.ledger.Receipt(id)
	if err != nil {
		s.writeErr(w, s.maybePruned(err))
		return
	}
	s.writeReceipt(w, r, rc)
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/cose" {
		writeError(w, http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/cose")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.info.MaxTxBytes)))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeError(w, http.StatusRequestEntityTooLarge, string(ledger.ReasonTooLarge), fmt.Sprintf("tx larger than %d bytes", s.info.MaxTxBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		return
	}
	// Decoded here, once: the scope a submit needs depends on the tx's
	// kind, and the decoded tx goes on to the chain. DecodeTx parses, it
	// does not verify; the chain checks the tx in full.
	tx, err := s.ledger.Decode(body)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if callerOf(r).checked && !s.checkKind(w, r, tx.Body.Kind) {
		return
	}
	rc, err := s.ledger.SubmitTx(r.Context(), tx)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeReceipt(w, r, rc)
}
