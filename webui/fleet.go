package webui

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The fleet pages: configuration drift and firmware rollouts
// (docs/dashboard.md "The fleet").

// Fleet is what the fleet pages read of the index.
type Fleet interface {
	Height() (uint64, error)
	ConfigStates() ([]index.ConfigState, error)
	FirmwareModels() ([]string, error)
	ReleaseReports(model string, version uint64) (map[string]index.FirmwareReport, error)
}

// Release is a firmware release with its rollout in each group that has
// devices of its model (the directory's FirmwareStatus).
type Release struct {
	index.ReleaseInfo
	Expired bool
	Good    int // reviewers' votes
	Bad     int
	Groups  []Rollout
}

// Rollout is a release in one group.
type Rollout struct {
	Group    string
	Policy   ledger.FirmwarePolicy
	Allowed  bool
	Why      string // why it is, or is not, allowed
	Approved bool
	Revoked  bool // withdrawn from the group (or every group): the operator's halt
	Halted   bool // a wave's failures stopped the rollout
	Waves    []Wave
}

// Wave is one wave of a rollout.
type Wave struct {
	Percent  uint32 // cumulative share of the group
	Devices  int
	Reported int
	Failed   int
	Open     bool
}

// ---- configuration drift

// driftCache keeps the fleet's configuration states until the index moves
// on: a page of drift is then a filter over memory, and the index pass
// (index.ConfigStates) runs at most once per height however many pages
// are asked for.
type driftCache struct {
	mu     sync.Mutex
	height uint64
	states []index.ConfigState
	at     time.Time
}

func (s *Server) configStates() ([]index.ConfigState, uint64, error) {
	h, err := s.d.Fleet.Height()
	if err != nil {
		return nil, 0, err
	}
	c := &s.drift
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states != nil && c.height == h {
		return c.states, h, nil
	}
	st, err := s.d.Fleet.ConfigStates()
	if err != nil {
		return nil, 0, err
	}
	c.states, c.height, c.at = st, h, s.d.Now()
	return st, h, nil
}

// targetCount is what the drift page says of one configuration target.
type targetCount struct {
	Target  string // group:NAME; "" for the devices' own configurations
	Version uint64 // the newest (for a group)
	Devices int
	Current int
	Behind  int
	Never   int
}

type driftData struct {
	Height  uint64
	Total   int // active devices
	Counts  map[string]int
	Targets []targetCount
	// The filter and the page.
	State, Target, Query string
	Rows                 []index.ConfigState
	Matches              int // rows that pass the filter
	Next                 string
	First                bool
	States               []string
}

var driftStates = []string{"", index.ConfigBehind, index.ConfigNever, index.ConfigCurrent, index.ConfigNone}

func (s *Server) driftPage(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.d.Fleet == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no index of the fleet.")
		return
	}
	q := r.URL.Query()
	d := driftData{State: q.Get("state"), Target: strings.TrimSpace(q.Get("target")), Query: strings.TrimSpace(q.Get("q")),
		Counts: map[string]int{}, States: driftStates}
	if !slices.Contains(driftStates, d.State) {
		s.fail(w, r, ss, http.StatusBadRequest, "A state is one of behind, never, current or none.")
		return
	}
	states, h, err := s.configStates()
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the fleet's configurations failed: "+err.Error())
		return
	}
	d.Height, d.Total = h, len(states)
	targets := map[string]*targetCount{}
	for i := range states {
		st := &states[i]
		state := st.State()
		d.Counts[state]++
		if state == index.ConfigNone {
			continue
		}
		key := st.Target
		if !strings.HasPrefix(key, "group:") {
			key = ""
		}
		tc := targets[key]
		if tc == nil {
			tc = &targetCount{Target: key}
			targets[key] = tc
		}
		if key != "" {
			tc.Version = st.Version
		}
		tc.Devices++
		switch state {
		case index.ConfigCurrent:
			tc.Current++
		case index.ConfigBehind:
			tc.Behind++
		case index.ConfigNever:
			tc.Never++
		}
	}
	for _, tc := range targets {
		d.Targets = append(d.Targets, *tc)
	}
	sort.Slice(d.Targets, func(i, j int) bool { return d.Targets[i].Target < d.Targets[j].Target })

	// The page: the devices after "after" (ids are in order) that pass
	// the filter.
	after := q.Get("after")
	d.First = after == ""
	from := sort.Search(len(states), func(i int) bool { return states[i].Device > after })
	match := func(st *index.ConfigState) bool {
		switch {
		case d.State != "" && st.State() != d.State:
			return false
		case d.Target == "device" && (st.Target == "" || strings.HasPrefix(st.Target, "group:")):
			return false
		case d.Target != "" && d.Target != "device" && st.Target != d.Target:
			return false
		case d.Query != "" && !strings.Contains(st.Device, d.Query) && !strings.Contains(st.Model, d.Query):
			return false
		}
		return true
	}
	for i := range states {
		st := &states[i]
		if !match(st) {
			continue
		}
		d.Matches++
		if i >= from && len(d.Rows) < pageSize {
			d.Rows = append(d.Rows, *st)
		} else if i >= from && d.Next == "" {
			d.Next = d.Rows[len(d.Rows)-1].Device
		}
	}
	s.render(w, r, http.StatusOK, "drift", page{Title: "Configuration drift", Nav: "drift", Session: ss, Data: d})
}

// ---- firmware rollouts

type rolloutsData struct {
	Models   []string
	Model    string
	Releases []releaseView
	Admin    bool
}

type releaseView struct {
	Release
	Groups []rolloutView
}

type rolloutView struct {
	Rollout
	Waves    []waveView
	Failures []index.FirmwareReport // the group's devices' failed reports, newest first (at most maxFailures)
	More     int                    // failures beyond those
}

// waveView is a wave as the page draws it.
type waveView struct {
	Wave
	Number  int
	Share   uint32 // of the group, in percent: Percent minus the wave before's
	OKPct   int    // of its devices: reported ok, failed
	FailPct int
	State   string // open, done, waiting, halted
}

func viewWaves(ro *Rollout) []waveView {
	var out []waveView
	var prev uint32
	for i, w := range ro.Waves {
		v := waveView{Wave: w, Number: i + 1, Share: w.Percent - prev, OKPct: pct(w.Reported-w.Failed, w.Devices), FailPct: pct(w.Failed, w.Devices)}
		prev = w.Percent
		switch {
		case w.Open && w.Reported == w.Devices:
			v.State = "done"
		case w.Open:
			v.State = "open"
		case ro.Halted && i > 0 && ro.Waves[i-1].Open:
			v.State = "halted"
		default:
			v.State = "waiting"
		}
		out = append(out, v)
	}
	return out
}

const maxFailures = 20

func (s *Server) rollouts(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.d.Fleet == nil || s.d.Rollouts == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no firmware directory.")
		return
	}
	models, err := s.d.Fleet.FirmwareModels()
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the firmware models failed: "+err.Error())
		return
	}
	d := rolloutsData{Models: models, Model: r.URL.Query().Get("model"), Admin: s.d.Admin != nil}
	if d.Model == "" && len(models) > 0 {
		d.Model = models[0]
	}
	flash := ""
	if d.Model != "" {
		rels, err := s.d.Rollouts(d.Model, s.d.Now())
		if err != nil {
			s.fail(w, r, ss, http.StatusInternalServerError, "Reading the rollouts failed: "+err.Error())
			return
		}
		for _, rel := range rels {
			v := releaseView{Release: rel}
			reports, err := s.d.Fleet.ReleaseReports(rel.Model, rel.Version)
			if err != nil {
				s.fail(w, r, ss, http.StatusInternalServerError, "Reading the reports failed: "+err.Error())
				return
			}
			var failed []index.FirmwareReport
			for _, rep := range reports {
				if !rep.OK {
					failed = append(failed, rep)
				}
			}
			slices.SortFunc(failed, func(a, b index.FirmwareReport) int { return cmp.Compare(b.Height, a.Height) })
			members := s.groupsOf(failed)
			for _, g := range rel.Groups {
				rv := rolloutView{Rollout: g, Waves: viewWaves(&g)}
				for _, rep := range failed {
					if !slices.Contains(members[rep.Device], g.Group) {
						continue
					}
					if len(rv.Failures) < maxFailures {
						rv.Failures = append(rv.Failures, rep)
					} else {
						rv.More++
					}
				}
				v.Groups = append(v.Groups, rv)
			}
			d.Releases = append(d.Releases, v)
		}
		flash = rolloutFlash(r.URL.Query())
	}
	s.render(w, r, http.StatusOK, "rollouts", page{Title: "Firmware rollouts", Nav: "rollouts", Session: ss, Flash: flash, Data: d})
}

// groupsOf returns the groups of the devices that reported failures.
func (s *Server) groupsOf(failed []index.FirmwareReport) map[string][]string {
	out := map[string][]string{}
	for _, rep := range failed {
		if dv, err := s.d.Index.Device(rep.Device); err == nil {
			out[rep.Device] = dv.Groups
		}
	}
	return out
}

func rolloutFlash(q url.Values) string {
	switch q.Get("done") {
	case "approved":
		return fmt.Sprintf("Approved %s version %s for group %s in block %s.", q.Get("model"), q.Get("version"), q.Get("group"), q.Get("height"))
	case "halted":
		return fmt.Sprintf("Halted %s version %s in group %s: revoked for the group in block %s.", q.Get("model"), q.Get("version"), q.Get("group"), q.Get("height"))
	}
	return ""
}

// rolloutAct is an action on a release's rollout in a group: approve it,
// or halt it (a firmware.revoke for the group: the ledger has no other
// way to stop a rollout, and a revoked release stays revoked for the
// group).
type rolloutAct struct {
	Action  string // "approve" or "halt"
	Model   string
	Version uint64
	Group   string
	Reason  string
	Rollout *Rollout
}

func (a *rolloutAct) path() string {
	return "/rollouts/" + url.PathEscape(a.Model) + "/" + strconv.FormatUint(a.Version, 10) + "/" + url.PathEscape(a.Group) + "/" + a.Action
}

// Path is where the confirmation form posts.
func (a rolloutAct) Path() string { return a.path() }

// parseAct reads the action from the path and finds the rollout.
func (s *Server) parseAct(w http.ResponseWriter, r *http.Request, ss *session, action string) (*rolloutAct, bool) {
	if s.d.Fleet == nil || s.d.Rollouts == nil {
		s.fail(w, r, ss, http.StatusNotFound, "This gateway has no firmware directory.")
		return nil, false
	}
	v, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
	if err != nil {
		s.fail(w, r, ss, http.StatusBadRequest, "A version is a whole number.")
		return nil, false
	}
	a := &rolloutAct{Action: action, Model: r.PathValue("model"), Version: v, Group: r.PathValue("group")}
	rels, err := s.d.Rollouts(a.Model, s.d.Now())
	if err != nil {
		s.fail(w, r, ss, http.StatusInternalServerError, "Reading the rollouts failed: "+err.Error())
		return nil, false
	}
	for _, rel := range rels {
		if rel.Version != v {
			continue
		}
		for _, g := range rel.Groups {
			if g.Group == a.Group {
				a.Rollout = &g
			}
		}
	}
	if a.Rollout == nil {
		s.fail(w, r, ss, http.StatusNotFound, fmt.Sprintf("No release %s version %d has devices in group %q.", a.Model, v, a.Group))
		return nil, false
	}
	if s.d.Admin == nil {
		s.fail(w, r, ss, http.StatusForbidden, "This gateway holds no admin key for the dashboard (webui.admin_key): use ledgergate firmware "+action+".")
		return nil, false
	}
	return a, true
}

func (s *Server) rolloutActPage(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		if a, ok := s.parseAct(w, r, ss, action); ok {
			s.renderAct(w, r, ss, http.StatusOK, "", a)
		}
	}
}

func (s *Server) renderAct(w http.ResponseWriter, r *http.Request, ss *session, code int, errMsg string, a *rolloutAct) {
	title := fmt.Sprintf("Approve %s version %d for %s", a.Model, a.Version, a.Group)
	if a.Action == "halt" {
		title = fmt.Sprintf("Halt %s version %d in %s", a.Model, a.Version, a.Group)
	}
	s.render(w, r, code, "rollout-act", page{Title: title, Nav: "rollouts", Session: ss, Error: errMsg, Data: a})
}

// rolloutActPost approves or halts after the operator typed the group's
// name, as revoking a device asks for its id.
func (s *Server) rolloutActPost(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		a, ok := s.parseAct(w, r, ss, action)
		if !ok {
			return
		}
		a.Reason = strings.TrimSpace(r.PostFormValue("reason"))
		if r.PostFormValue("confirm") != a.Group {
			s.renderAct(w, r, ss, http.StatusBadRequest, "Type the group's name exactly to confirm.", a)
			return
		}
		rel := ledger.Release{Model: a.Model, Version: a.Version}
		body := ledger.Body{Kind: ledger.KindFirmwareApprove, FirmwareApprove: &ledger.FirmwareApprove{Release: rel, Group: a.Group}}
		switch {
		case action == "halt" && a.Rollout.Revoked:
			s.renderAct(w, r, ss, http.StatusConflict, "The release is already revoked for this group.", a)
			return
		case action == "halt":
			if a.Reason == "" {
				a.Reason = "halted from the dashboard"
			}
			body = ledger.Body{Kind: ledger.KindFirmwareRevoke, FirmwareRevoke: &ledger.FirmwareRevoke{Release: rel, Group: a.Group, Reason: a.Reason}}
		case a.Rollout.Approved:
			s.renderAct(w, r, ss, http.StatusConflict, "The release is already approved for this group.", a)
			return
		case a.Rollout.Revoked:
			s.renderAct(w, r, ss, http.StatusConflict, "The release is revoked for this group; an approval would not offer it. Publish a new release.", a)
			return
		}
		rc, err := s.submit(r.Context(), body)
		if err != nil {
			code, _ := api.ErrorStatus(err)
			s.renderAct(w, r, ss, code, "Refused: "+err.Error(), a)
			return
		}
		s.d.Logger.Info("dashboard "+map[string]string{"approve": "approved", "halt": "halted"}[action]+" a firmware rollout",
			"model", a.Model, "version", a.Version, "group", a.Group, "height", rc.Header.Height, "remote", r.RemoteAddr)
		done := url.Values{"model": {a.Model}, "version": {strconv.FormatUint(a.Version, 10)}, "group": {a.Group},
			"height": {strconv.FormatUint(rc.Header.Height, 10)}, "done": {map[string]string{"approve": "approved", "halt": "halted"}[action]}}
		http.Redirect(w, r, "/rollouts?"+done.Encode(), http.StatusSeeOther)
	}
}
