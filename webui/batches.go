package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The batches page: vendors' batch manifests, their approval and
// revocation, and the claims of their devices (docs/fleet.md).

type batchesData struct {
	Status  string // the filter: "", pending, approved, revoked
	Counts  map[string]int
	Batches []api.BatchInfo
	Pending []api.PendingClaim
	Admin   bool
}

func (s *Server) batches(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.d.Batches == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no fleet batches.")
		return
	}
	d := batchesData{Status: r.URL.Query().Get("status"), Counts: map[string]int{}, Admin: s.d.Admin != nil, Pending: s.d.Batches.Claims()}
	for _, b := range s.d.Batches.Batches() {
		d.Counts[b.Status]++
		if d.Status == "" || b.Status == d.Status {
			d.Batches = append(d.Batches, b)
		}
	}
	// Pending first: what the operator has to act on.
	rank := map[string]int{"pending": 0, "approved": 1, "revoked": 2}
	sort.SliceStable(d.Batches, func(i, j int) bool { return rank[d.Batches[i].Status] < rank[d.Batches[j].Status] })
	sort.Slice(d.Pending, func(i, j int) bool { return d.Pending[i].Since.Before(d.Pending[j].Since) })
	s.render(w, r, http.StatusOK, "batches", page{Title: "Batches and claims", Nav: "batches", Session: ss, Flash: batchFlash(r.URL.Query()), Data: d})
}

func batchFlash(q url.Values) string {
	switch q.Get("done") {
	case "approved":
		return fmt.Sprintf("Approved batch %s in block %s: its devices may claim.", q.Get("batch"), q.Get("height"))
	case "revoked":
		return fmt.Sprintf("Revoked batch %s in block %s: no further claims from it.", q.Get("batch"), q.Get("height"))
	}
	return ""
}

type batchData struct {
	Batch   api.BatchInfo
	Devices []api.BatchDevice
	Filter  string // "", claimed, unclaimed
	Next    string
	First   bool
	Matches int
	Admin   bool
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.d.Batches == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no fleet batches.")
		return
	}
	id := r.PathValue("id")
	body, ok := s.d.Batches.Batch(id)
	b, devs := body.BatchInfo, body.DeviceList
	if !ok {
		s.fail(w, r, ss, http.StatusNotFound, "No batch "+strconv.Quote(id)+" is on the ledger.")
		return
	}
	q := r.URL.Query()
	d := batchData{Batch: b, Filter: q.Get("claimed"), First: q.Get("after") == "", Admin: s.d.Admin != nil}
	after := q.Get("after")
	for _, dv := range devs { // sorted by id
		if d.Filter == "claimed" && !dv.Claimed || d.Filter == "unclaimed" && dv.Claimed {
			continue
		}
		d.Matches++
		switch {
		case dv.ID <= after:
		case len(d.Devices) < pageSize:
			d.Devices = append(d.Devices, dv)
		case d.Next == "":
			d.Next = d.Devices[len(d.Devices)-1].ID
		}
	}
	s.render(w, r, http.StatusOK, "batch", page{Title: "Batch " + id, Nav: "batches", Session: ss, Data: d})
}

// batchAct is approving or revoking a batch.
type batchAct struct {
	Action string // approve or revoke
	Batch  api.BatchInfo
	Reason string
}

// Path is where the confirmation form posts.
func (a batchAct) Path() string { return "/batches/" + url.PathEscape(a.Batch.ID) + "/" + a.Action }

func (s *Server) parseBatchAct(w http.ResponseWriter, r *http.Request, ss *session, action string) (*batchAct, bool) {
	if s.d.Batches == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no fleet batches.")
		return nil, false
	}
	b, ok := s.d.Batches.Batch(r.PathValue("id"))
	if !ok {
		s.fail(w, r, ss, http.StatusNotFound, "No batch "+strconv.Quote(r.PathValue("id"))+" is on the ledger.")
		return nil, false
	}
	if s.d.Admin == nil {
		s.fail(w, r, ss, http.StatusForbidden, "This gateway holds no admin key for the dashboard (webui.admin_key): use ledgergate fleet "+action+".")
		return nil, false
	}
	return &batchAct{Action: action, Batch: b.BatchInfo}, true
}

func (s *Server) batchActPage(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		if a, ok := s.parseBatchAct(w, r, ss, action); ok {
			s.renderBatchAct(w, r, ss, http.StatusOK, "", a)
		}
	}
}

func (s *Server) renderBatchAct(w http.ResponseWriter, r *http.Request, ss *session, code int, errMsg string, a *batchAct) {
	title := "Approve batch " + a.Batch.ID
	if a.Action == "revoke" {
		title = "Revoke batch " + a.Batch.ID
	}
	s.render(w, r, code, "batch-act", page{Title: title, Nav: "batches", Session: ss, Error: errMsg, Data: a})
}

// batchActPost approves or revokes after the operator typed the batch's id.
func (s *Server) batchActPost(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		a, ok := s.parseBatchAct(w, r, ss, action)
		if !ok {
			return
		}
		a.Reason = strings.TrimSpace(r.PostFormValue("reason"))
		if r.PostFormValue("confirm") != a.Batch.ID {
			s.renderBatchAct(w, r, ss, http.StatusBadRequest, "Type the batch's id exactly to confirm.", a)
			return
		}
		var body ledger.Body
		switch {
		case a.Batch.Status == "revoked":
			s.renderBatchAct(w, r, ss, http.StatusConflict, "The batch is revoked already.", a)
			return
		case action == "revoke":
			body = ledger.Body{Kind: ledger.KindFleetRevoke, FleetRevoke: &ledger.FleetRevoke{Batch: a.Batch.ID, Reason: a.Reason}}
		case a.Batch.Status == "approved":
			s.renderBatchAct(w, r, ss, http.StatusConflict, "The batch is approved already.", a)
			return
		default:
			body = ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: a.Batch.ID}}
		}
		rc, err := s.submit(r.Context(), body)
		if err != nil {
			code, _ := api.ErrorStatus(err)
			s.renderBatchAct(w, r, ss, code, "Refused: "+err.Error(), a)
			return
		}
		done := map[string]string{"approve": "approved", "revoke": "revoked"}[action]
		s.d.Logger.Info("dashboard "+done+" a batch", "batch", a.Batch.ID, "height", rc.Header.Height, "remote", r.RemoteAddr)
		v := url.Values{"batch": {a.Batch.ID}, "height": {strconv.FormatUint(rc.Header.Height, 10)}, "done": {done}}
		http.Redirect(w, r, "/batches?"+v.Encode(), http.StatusSeeOther)
	}
}
