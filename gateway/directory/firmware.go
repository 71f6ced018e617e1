package directory

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Firmware rollout (docs/firmware.md). A release is offered to a device
// when, for one of the device's groups:
//
//  1. it is published for the device's model, not expired, and not revoked
//     for the group or everywhere;
//  2. the group's policy allows it: approved for the group, or, unless the
//     policy requires approval, at least MinGoodVotes good votes and no bad
//     one (a group without policy requires approval);
//  3. the device is in an open wave of the release's rollout in the group.
//
// The newest such release is the device's firmware. Waves: the group's
// active devices of the model, ordered by SHA-256(model, version, device
// id) so every gateway computes the same order, are split at the policy's
// cumulative percentages. Wave 1 is open once the release is allowed;
// wave k+1 once every device of waves 1..k reported on the release and at
// most MaxFailurePct percent of those reports are failures.

// Wave is one wave of a release's rollout in a group.
type Wave struct {
	Percent  uint32 `json:"percent"` // cumulative share of the group
	Devices  int    `json:"devices"` // in this wave
	Reported int    `json:"reported"`
	Failed   int    `json:"failed"`
	Open     bool   `json:"open"`
}

// GroupRollout is a release in one group.
type GroupRollout struct {
	Group    string                `json:"group"`
	Policy   ledger.FirmwarePolicy `json:"policy"`
	Allowed  bool                  `json:"allowed"`
	Why      string                `json:"why"` // why it is, or is not, allowed
	Approved bool                  `json:"approved"`
	Revoked  bool                  `json:"revoked"`
	Waves    []Wave                `json:"waves"`
	Halted   bool                  `json:"halted"` // a wave's failures stopped the rollout

	order   []string // the group's devices of the model, in rollout order
	open    int      // devices offered: those of the open waves
	polRc   *ledger.Receipt
	approve *index.FirmwareEvent
	good    []index.FirmwareEvent
}

// ReleaseStatus is a release with its votes and its rollout per group.
type ReleaseStatus struct {
	index.ReleaseInfo
	Expired bool                  `json:"expired"`
	Good    int                   `json:"good_votes"`
	Bad     int                   `json:"bad_votes"`
	Events  []index.FirmwareEvent `json:"events"` // votes, approvals, revocations
	Groups  []GroupRollout        `json:"groups"`
}

// policy returns a group's firmware policy and the receipt of its tx; the
// default, owner approval required, and nil if it has none.
func (x *Directory) policy(group string) (ledger.FirmwarePolicy, *ledger.Receipt, error) {
	def := ledger.FirmwarePolicy{Group: group, RequireApproval: true}
	ev, err := x.d.Index.Policy(group)
	if errors.Is(err, index.ErrNotFound) {
		return def, nil, nil
	}
	if err != nil {
		return def, nil, err
	}
	rc, err := x.receipt(ev.TxID)
	if err != nil {
		return def, nil, err
	}
	tx, err := ledger.DecodeTx(rc.Tx, 0)
	if err != nil || tx.Body.FirmwarePolicy == nil {
		return def, nil, fmt.Errorf("directory: invariant: policy tx %s", ev.TxID)
	}
	return *tx.Body.FirmwarePolicy, rc, nil
}

// rollout evaluates release r in group g.
//
// A rollout depends only on the indexed ledger, so it is kept until the
// index moves on: republishing the manifests of a group's thousands of
// devices computes each rollout once, not once per device. The result is
// shared: callers do not change it.
func (x *Directory) rollout(r *index.ReleaseInfo, events []index.FirmwareEvent, g string) (*GroupRollout, error) {
	h, err := x.d.Index.Height()
	if err != nil {
		return nil, err
	}
	key := rolloutKey{ledger.Release{Model: r.Model, Version: r.Version}, g}
	x.mu.Lock()
	if x.rolloutsAt != h {
		x.rollouts, x.rolloutsAt = map[rolloutKey]*GroupRollout{}, h
	}
	ro := x.rollouts[key]
	x.mu.Unlock()
	if ro != nil {
		return ro, nil
	}
	if ro, err = x.computeRollout(r, events, g); err != nil {
		return nil, err
	}
	x.mu.Lock()
	if x.rolloutsAt == h {
		x.rollouts[key] = ro
	}
	x.mu.Unlock()
	return ro, nil
}

// rolloutKey names a release's rollout in a group.
type rolloutKey struct {
	ledger.Release
	group string
}

func (x *Directory) computeRollout(r *index.ReleaseInfo, events []index.FirmwareEvent, g string) (*GroupRollout, error) {
	pol, rc, err := x.policy(g)
	if err != nil {
		return nil, err
	}
	ro := &GroupRollout{Group: g, Policy: pol, polRc: rc}
	bad := 0
	for i := range events {
		e := &events[i]
		switch ledger.Kind(e.Kind) {
		case ledger.KindFirmwareVote:
			if e.Good {
				ro.good = append(ro.good, *e)
			} else {
				bad++
			}
		case ledger.KindFirmwareApprove:
			if e.Group == g {
				ro.Approved, ro.approve = true, e
			}
		case ledger.KindFirmwareRevoke:
			if e.Group == g || e.Group == "" {
				ro.Revoked = true
			}
		}
	}
	switch {
	case ro.Revoked:
		ro.Why = "revoked"
	case ro.Approved:
		ro.Allowed, ro.Why = true, "approved by the owner"
	case pol.RequireApproval:
		ro.Why = "waiting for the owner's approval"
	case bad > 0:
		ro.Why = fmt.Sprintf("held by %d bad vote(s)", bad)
	case len(ro.good) < int(pol.MinGoodVotes):
		ro.Why = fmt.Sprintf("%d of %d good votes", len(ro.good), pol.MinGoodVotes)
	default:
		ro.Allowed, ro.Why = true, fmt.Sprintf("%d good votes, no bad one", len(ro.good))
	}
	if !ro.Allowed {
		ro.approve, ro.good = nil, nil
	} else if ro.approve != nil {
		ro.good = nil // the approval is the proof
	}
	return ro, x.waves(r, ro)
}

// waves splits the group's devices of the model into the policy's waves
// and finds the open ones.
func (x *Directory) waves(r *index.ReleaseInfo, ro *GroupRollout) error {
	members, err := x.d.Index.GroupMembers(ro.Group)
	if err != nil {
		return err
	}
	ofModel, err := x.d.Index.DevicesOfModel(r.Model)
	if err != nil {
		return err
	}
	rank := func(id string) [32]byte {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], r.Version)
		return sha256.Sum256([]byte(r.Model + "\x00" + string(v[:]) + id))
	}
	for _, id := range members {
		if _, ok := slices.BinarySearch(ofModel, id); ok {
			ro.order = append(ro.order, id)
		}
	}
	// Each device's rank is hashed once, not at every comparison: the
	// dashboard's rollout page sorts groups of thousands.
	ranks := make(map[string][32]byte, len(ro.order))
	for _, id := range ro.order {
		ranks[id] = rank(id)
	}
	slices.SortFunc(ro.order, func(a, b string) int {
		ra, rb := ranks[a], ranks[b]
		return cmp.Compare(string(ra[:]), string(rb[:]))
	})
	reports, err := x.d.Index.ReleaseReports(r.Model, r.Version)
	if err != nil {
		return err
	}
	n, from, open := len(ro.order), 0, ro.Allowed
	reported, failed := 0, 0 // over the waves so far
	for _, pct := range ro.Policy.WavesOf() {
		to := (n*int(pct) + 99) / 100
		w := Wave{Percent: pct, Devices: to - from, Open: open}
		for _, id := range ro.order[from:to] {
			if rep, ok := reports[id]; ok {
				w.Reported++
				if !rep.OK {
					w.Failed++
				}
			}
		}
		ro.Waves = append(ro.Waves, w)
		if open {
			ro.open = to
		}
		reported, failed = reported+w.Reported, failed+w.Failed
		// The next wave opens once all so far reported, failures in bound.
		done := reported == to
		within := failed*100 <= int(ro.Policy.MaxFailurePct)*reported
		if open && done && !within {
			ro.Halted = true
		}
		open = open && done && within
		from = to
	}
	return nil
}

// offered reports whether device is in an open wave of ro.
func (ro *GroupRollout) offered(device string) bool {
	return slices.Contains(ro.order[:ro.open], device)
}

// FirmwareAnswer returns the newest release device may install now, with
// its proofs; ErrNotFound if there is none. A release whose minimum
// version is above the version the device last reported installing is
// passed over for an older one it can install first; if there is none,
// the newest such release is answered with Blocked set.
func (x *Directory) FirmwareAnswer(device string, now time.Time) (*ledger.FirmwareAnswer, *index.ReleaseInfo, error) {
	d, err := x.d.Index.Device(device)
	if err != nil {
		return nil, nil, err
	}
	if d.Status != index.StatusActive || d.Model == "" {
		return nil, nil, fmt.Errorf("directory: no firmware for device %s: %w", device, ErrNotFound)
	}
	rels, err := x.d.Index.Releases(d.Model)
	if err != nil {
		return nil, nil, err
	}
	var blocked *index.ReleaseInfo // the newest allowed release the device is below the minimum of
	var blockedRo *GroupRollout
releases:
	for i := range rels {
		r := &rels[i]
		if now.UnixMilli() >= r.Expires {
			continue
		}
		events, err := x.d.Index.ReleaseEvents(r.Model, r.Version)
		if err != nil {
			return nil, nil, err
		}
		for _, g := range d.Groups {
			ro, err := x.rollout(r, events, g)
			if err != nil {
				return nil, nil, err
			}
			if !ro.Allowed || !ro.offered(device) {
				continue
			}
			if d.FwHeight > 0 && d.FwVersion < r.MinVersion {
				if blocked == nil {
					blocked, blockedRo = r, ro
				}
				break // an older release may be the step
			}
			if blocked != nil && r.Version <= d.FwVersion {
				break releases // no step between what it runs and what it is below the minimum of
			}
			a, err := x.firmwareAnswer(device, r, ro, nil)
			return a, r, err
		}
	}
	if blocked != nil {
		a, err := x.firmwareAnswer(device, blocked, blockedRo, nil)
		if a != nil {
			a.Blocked = ledger.FirmwareBelowMinVersion
		}
		return a, blocked, err
	}
	return nil, nil, fmt.Errorf("directory: no firmware for device %s: %w", device, ErrNotFound)
}

// ReleaseAnswer answers a device's question about one release: its
// manifest and what the device's groups say of it, the revocation
// included if it is revoked. It is what a device checks an image it got
// elsewhere with.
func (x *Directory) ReleaseAnswer(device, model string, version uint64) (*ledger.FirmwareAnswer, error) {
	d, err := x.d.Index.Device(device)
	if err != nil {
		return nil, err
	}
	r, err := x.d.Index.Release(model, version)
	if err != nil {
		return nil, err
	}
	events, err := x.d.Index.ReleaseEvents(model, version)
	if err != nil {
		return nil, err
	}
	var revoke *index.FirmwareEvent
	var best *GroupRollout
	for _, g := range d.Groups {
		ro, err := x.rollout(r, events, g)
		if err != nil {
			return nil, err
		}
		if best == nil || ro.Allowed && !best.Allowed {
			best = ro
		}
	}
	for i := range events {
		e := &events[i]
		if ledger.Kind(e.Kind) == ledger.KindFirmwareRevoke && (e.Group == "" || slices.Contains(d.Groups, e.Group)) {
			revoke = e
		}
	}
	if best == nil {
		best = &GroupRollout{}
	}
	return x.firmwareAnswer(device, r, best, revoke)
}

// firmwareAnswer gathers the receipts an answer carries.
func (x *Directory) firmwareAnswer(device string, r *index.ReleaseInfo, ro *GroupRollout, revoke *index.FirmwareEvent) (*ledger.FirmwareAnswer, error) {
	head, err := x.Head()
	if err != nil {
		return nil, err
	}
	d, err := x.d.Index.Device(device)
	if err != nil {
		return nil, err
	}
	a := &ledger.FirmwareAnswer{Device: device, Group: ro.Group, Policy: ro.polRc, Head: *head}
	if a.Enrollment, err = x.receipt(hex.EncodeToString(d.EnrollTx)); err != nil {
		return nil, err
	}
	if a.Release, err = x.receipt(r.TxID); err != nil {
		return nil, err
	}
	if ro.approve != nil {
		if a.Approval, err = x.receipt(ro.approve.TxID); err != nil {
			return nil, err
		}
	}
	for _, v := range ro.good {
		rc, err := x.receipt(v.TxID)
		if err != nil {
			return nil, err
		}
		a.Votes = append(a.Votes, rc)
	}
	if revoke != nil {
		if a.Revoke, err = x.receipt(revoke.TxID); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// FirmwareStatus returns a model's releases, newest first, with their
// votes and their rollout in each group that has devices of the model.
func (x *Directory) FirmwareStatus(model string, now time.Time) ([]ReleaseStatus, error) {
	rels, err := x.d.Index.Releases(model)
	if err != nil {
		return nil, err
	}
	// One query, not a device read per device of the model: the
	// dashboard's rollout page asks this for fleets of thousands.
	groups, err := x.d.Index.GroupsOfModel(model)
	if err != nil {
		return nil, err
	}
	var out []ReleaseStatus
	for _, r := range rels {
		events, err := x.d.Index.ReleaseEvents(r.Model, r.Version)
		if err != nil {
			return nil, err
		}
		st := ReleaseStatus{ReleaseInfo: r, Expired: now.UnixMilli() >= r.Expires, Events: events, Groups: []GroupRollout{}}
		for _, e := range events {
			if ledger.Kind(e.Kind) == ledger.KindFirmwareVote {
				if e.Good {
					st.Good++
				} else {
					st.Bad++
				}
			}
		}
		for _, g := range groups {
			ro, err := x.rollout(&r, events, g)
			if err != nil {
				return nil, err
			}
			st.Groups = append(st.Groups, *ro)
		}
		out = append(out, st)
	}
	return out, nil
}

// CheckFirmware checks env, a vendor-signed firmware.publish, against the
// committed state, and that the image to come has the size the manifest
// names: what an upload must pass before its image is read (PutBlob).
func (x *Directory) CheckFirmware(env []byte, size int64) (*ledger.Tx, error) {
	c, err := x.d.Chain.State().Check(env)
	if err != nil {
		return nil, err
	}
	f := c.Tx.Body.FirmwarePublish
	if f == nil {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("a %s tx, want firmware.publish", c.Tx.Body.Kind)}
	}
	if uint64(size) != f.Size {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed,
			Detail: fmt.Sprintf("an image of %d bytes; the manifest names %d", size, f.Size)}
	}
	return c.Tx, nil
}
