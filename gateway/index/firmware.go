package index

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// applyFirmware indexes a firmware tx.
func applyFirmware(tx *writer, h *ledger.Header, i int, t *ledger.Tx) error {
	b := &t.Body
	ins := func(kind ledger.Kind, r ledger.Release, group string, good bool, detail string) error {
		g := 0
		if good {
			g = 1
		}
		_, err := tx.Exec(`INSERT INTO firmware (kind, model, version, grp, author, good, detail, height, idx, tx_id, time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			string(kind), r.Model, int64(r.Version), group, t.Author, g, detail, int64(h.Height), i, t.ID[:], h.Time)
		return err
	}
	var err error
	switch {
	case b.VendorEnroll != nil:
		v := b.VendorEnroll
		_, err = tx.Exec(`INSERT INTO vendors (id, public_key, models, height) VALUES (?, ?, ?, ?)`,
			v.Vendor, v.PublicKey, strings.Join(v.Models, ","), int64(h.Height))
	case b.ReviewerEnroll != nil:
		r := b.ReviewerEnroll
		_, err = tx.Exec(`INSERT INTO reviewers (id, public_key, height) VALUES (?, ?, ?)`, r.Reviewer, r.PublicKey, int64(h.Height))
	case b.FirmwarePublish != nil:
		f := b.FirmwarePublish
		_, err = tx.Exec(`INSERT INTO releases (model, version, vendor, sha256, size, expires, min_version, height, tx_id, time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			f.Model, int64(f.Version), t.Author, f.SHA256, int64(f.Size), f.Expires, int64(f.MinVersion), int64(h.Height), t.ID[:], h.Time)
	case b.FirmwareVote != nil:
		err = ins(b.Kind, b.FirmwareVote.Release, "", b.FirmwareVote.Good, b.FirmwareVote.Reason)
	case b.FirmwareApprove != nil:
		err = ins(b.Kind, b.FirmwareApprove.Release, b.FirmwareApprove.Group, false, "")
	case b.FirmwareRevoke != nil:
		err = ins(b.Kind, b.FirmwareRevoke.Release, b.FirmwareRevoke.Group, false, b.FirmwareRevoke.Reason)
	case b.FirmwarePolicy != nil:
		err = ins(b.Kind, ledger.Release{}, b.FirmwarePolicy.Group, false, "")
	case b.FirmwareReport != nil:
		r := b.FirmwareReport
		ok := 0
		if r.OK {
			ok = 1
		}
		_, err = tx.Exec(`INSERT INTO firmware_reports (device, height, idx, model, version, ok, detail, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.DeviceID, int64(h.Height), i, r.Model, int64(r.Version), ok, r.Detail, h.Time)
	}
	if err != nil {
		return fmt.Errorf("index %s: %w", b.Kind, err)
	}
	return nil
}

// ReleaseInfo is a published firmware release.
type ReleaseInfo struct {
	Model      string `json:"model"`
	Version    uint64 `json:"version"`
	Vendor     string `json:"vendor"`
	SHA256     string `json:"sha256"` // of the image, hex; its address in the store
	Size       uint64 `json:"size"`
	Expires    int64  `json:"expires"` // Unix ms
	MinVersion uint64 `json:"min_version"`
	Height     uint64 `json:"height"`
	TxID       string `json:"tx_id"`
	Time       int64  `json:"time"`
}

const releaseCols = `model, version, vendor, sha256, size, expires, min_version, height, tx_id, time`

func scanRelease(r rowScanner) (ReleaseInfo, error) {
	var x ReleaseInfo
	var sum, id []byte
	err := r.Scan(&x.Model, u64{&x.Version}, &x.Vendor, &sum, u64{&x.Size}, &x.Expires, u64{&x.MinVersion}, u64{&x.Height}, &id, &x.Time)
	x.SHA256, x.TxID = hex.EncodeToString(sum), hex.EncodeToString(id)
	return x, err
}

// Releases returns a model's releases, newest version first.
func (x *Index) Releases(model string) ([]ReleaseInfo, error) {
	rs, err := list(x.read(), scanRelease, `SELECT `+releaseCols+` FROM releases WHERE model = ? ORDER BY version DESC LIMIT ?`, model, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: releases of %q: %w", model, err)
	}
	return rs, nil
}

// Release returns one release, or ErrNotFound.
func (x *Index) Release(model string, version uint64) (*ReleaseInfo, error) {
	r, err := scanRelease(x.read().QueryRow(`SELECT `+releaseCols+` FROM releases WHERE model = ? AND version = ?`, model, int64(version)))
	if err != nil {
		return nil, fmt.Errorf("index: release %s %d: %w", model, version, notFound(err))
	}
	return &r, nil
}

// ReleaseByImage returns a release whose image has the SHA-256 sum, or
// ErrNotFound.
func (x *Index) ReleaseByImage(sum [32]byte) (*ReleaseInfo, error) {
	r, err := scanRelease(x.read().QueryRow(`SELECT `+releaseCols+` FROM releases WHERE sha256 = ? LIMIT 1`, sum[:]))
	if err != nil {
		return nil, fmt.Errorf("index: release of image %x: %w", sum, notFound(err))
	}
	return &r, nil
}

// FirmwareEvent is a vote, approval, revocation or policy.
type FirmwareEvent struct {
	Kind    string `json:"kind"`
	Model   string `json:"model,omitempty"`
	Version uint64 `json:"version,omitempty"`
	Group   string `json:"group,omitempty"`
	Author  string `json:"author"`
	Good    bool   `json:"good,omitempty"` // votes
	Detail  string `json:"detail,omitempty"`
	Height  uint64 `json:"height"`
	TxID    string `json:"tx_id"`
	Time    int64  `json:"time"`
}

const eventCols = `kind, model, version, grp, author, good, detail, height, tx_id, time`

func scanEvent(r rowScanner) (FirmwareEvent, error) {
	var e FirmwareEvent
	var id []byte
	err := r.Scan(&e.Kind, &e.Model, u64{&e.Version}, &e.Group, &e.Author, &e.Good, &e.Detail, u64{&e.Height}, &id, &e.Time)
	e.TxID = hex.EncodeToString(id)
	return e, err
}

// ReleaseEvents returns the votes, approvals and revocations of a release,
// in commit order.
func (x *Index) ReleaseEvents(model string, version uint64) ([]FirmwareEvent, error) {
	es, err := list(x.read(), scanEvent, `SELECT `+eventCols+` FROM firmware WHERE model = ? AND version = ? ORDER BY height, idx`, model, int64(version))
	if err != nil {
		return nil, fmt.Errorf("index: events of %s %d: %w", model, version, err)
	}
	return es, nil
}

// Policy returns a group's newest firmware policy tx, or ErrNotFound.
func (x *Index) Policy(group string) (*FirmwareEvent, error) {
	e, err := scanEvent(x.read().QueryRow(`SELECT `+eventCols+` FROM firmware WHERE grp = ? AND kind = ? ORDER BY height DESC, idx DESC LIMIT 1`,
		group, string(ledger.KindFirmwarePolicy)))
	if err != nil {
		return nil, fmt.Errorf("index: firmware policy of %q: %w", group, notFound(err))
	}
	return &e, nil
}

// FirmwareReport is a device's report of an installation.
type FirmwareReport struct {
	Device  string `json:"device"`
	Model   string `json:"model"`
	Version uint64 `json:"version"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
	Height  uint64 `json:"height"`
	Time    int64  `json:"time"`
}

func scanFwReport(r rowScanner) (FirmwareReport, error) {
	var f FirmwareReport
	err := r.Scan(&f.Device, &f.Model, u64{&f.Version}, &f.OK, &f.Detail, u64{&f.Height}, &f.Time)
	return f, err
}

const fwReportCols = `device, model, version, ok, detail, height, time`

// DeviceFirmwareReports returns a device's firmware reports in commit order.
func (x *Index) DeviceFirmwareReports(device string) ([]FirmwareReport, error) {
	rs, err := list(x.read(), scanFwReport, `SELECT * FROM (SELECT `+fwReportCols+` FROM firmware_reports WHERE device = ?
		ORDER BY height DESC, idx DESC LIMIT ?) ORDER BY height`, device, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: firmware reports of %q: %w", device, err)
	}
	return rs, nil
}

// ReleaseReports returns the last report of each device about a release.
func (x *Index) ReleaseReports(model string, version uint64) (map[string]FirmwareReport, error) {
	rs, err := list(x.read(), scanFwReport, `SELECT `+fwReportCols+` FROM firmware_reports WHERE model = ? AND version = ? ORDER BY height, idx`,
		model, int64(version))
	if err != nil {
		return nil, fmt.Errorf("index: reports of %s %d: %w", model, version, err)
	}
	out := map[string]FirmwareReport{}
	for _, r := range rs {
		out[r.Device] = r
	}
	return out, nil
}

// DevicesOfModel returns the active devices of a model, in id order.
func (x *Index) DevicesOfModel(model string) ([]string, error) {
	scan := func(r rowScanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}
	ids, err := list(x.read(), scan, `SELECT id FROM devices WHERE model = ? AND status = ? ORDER BY id`, model, StatusActive)
	if err != nil {
		return nil, fmt.Errorf("index: devices of model %q: %w", model, err)
	}
	return ids, nil
}

// FirmwareModels returns the models that have releases, in order.
func (x *Index) FirmwareModels() ([]string, error) {
	scan := func(r rowScanner) (string, error) {
		var m string
		return m, r.Scan(&m)
	}
	ms, err := list(x.read(), scan, `SELECT DISTINCT model FROM releases ORDER BY model LIMIT ?`, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: firmware models: %w", err)
	}
	return ms, nil
}
