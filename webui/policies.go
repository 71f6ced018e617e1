package webui

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/ledgergate/ledgergate/gateway/api"
)

// The policies page: the on-ledger access rules in force and their
// history (docs/policy.md), read only: policies are set with
// ledgergate policy set, after policy test.

type policiesData struct {
	Tip     uint64
	At      uint64 // the height asked for; the tip if none
	AtTip   bool
	InForce *api.PolicyEntry  // at At; nil: none
	Shown   *api.PolicyEntry  // a version of the history asked for, if any
	History []api.PolicyEntry // newest first
}

func (s *Server) policies(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.d.Policy == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway does not report its policy.")
		return
	}
	q := r.URL.Query()
	d := policiesData{Tip: s.d.Policy.Tip()}
	d.At, d.AtTip = d.Tip, true
	if v := q.Get("height"); v != "" {
		h, err := strconv.ParseUint(v, 10, 64)
		if err != nil || h > d.Tip {
			s.fail(w, r, ss, http.StatusBadRequest, "A height is a whole number up to "+strconv.FormatUint(d.Tip, 10)+", this gateway's newest block.")
			return
		}
		d.At, d.AtTip = h, h == d.Tip
	}
	if p, ok := s.d.Policy.PolicyAt(d.At); ok {
		d.InForce = &p
	}
	d.History = s.d.Policy.PolicyHistory()
	slices.Reverse(d.History)
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.fail(w, r, ss, http.StatusBadRequest, "A version is a whole number.")
			return
		}
		for i := range d.History {
			if d.History[i].Version == n {
				d.Shown = &d.History[i]
			}
		}
		if d.Shown == nil {
			s.fail(w, r, ss, http.StatusNotFound, "No policy version "+v+" was set.")
			return
		}
	}
	s.render(w, r, http.StatusOK, "policies", page{Title: "Policies", Nav: "policies", Session: ss, Data: d})
}
