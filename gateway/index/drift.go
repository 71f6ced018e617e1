package index

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Configuration states of a device (ConfigState.State).
const (
	ConfigNone    = "none"    // no configuration applies to the device
	ConfigCurrent = "current" // it reported applying its configuration (version and hash)
	ConfigBehind  = "behind"  // it reported another version or hash
	ConfigNever   = "never"   // it never reported applying any
)

// ConfigState is an active device's configuration: the config.set that
// applies to it (CurrentConfig: its own newest, else the most recently
// committed one among its groups') and the one it last reported applying.
type ConfigState struct {
	Device string   `json:"device"`
	Model  string   `json:"model"`
	Groups []string `json:"groups"`
	// The configuration that applies; Target is "" if none does.
	Target  string `json:"target"`
	Version uint64 `json:"version"`
	SHA256  string `json:"sha256"`
	Height  uint64 `json:"height"` // block of its config.set
	// What the device last reported; ReportedHeight 0: never.
	Reported       uint64 `json:"reported_version"`
	ReportedSHA256 string `json:"reported_sha256"`
	ReportedHeight uint64 `json:"reported_height"`
}

// State is ConfigNone, ConfigCurrent, ConfigBehind or ConfigNever.
func (s *ConfigState) State() string {
	switch {
	case s.Target == "":
		return ConfigNone
	case s.ReportedHeight == 0:
		return ConfigNever
	case s.Reported == s.Version && s.ReportedSHA256 == s.SHA256:
		return ConfigCurrent
	}
	return ConfigBehind
}

// ConfigStates returns the configuration state of every active device,
// in id order: the fleet's drift as of the indexed height.
//
// Cost: two statements, each one pass in primary-key order: the newest
// config.set of each target (configs, by target and version), and the
// active devices' groups and reports (devices, by id). Resolving a
// device's configuration is then a map lookup per target. With 10,000
// devices it is a few tens of milliseconds (BenchmarkConfigStates); the
// dashboard keeps the result until the index moves on.
func (x *Index) ConfigStates() ([]ConfigState, error) {
	db := x.read()
	// SQLite answers the bare columns of an aggregate query with max()
	// from the row holding the maximum: the newest version of a target.
	latest := map[string]ConfigInfo{}
	cs, err := list(db, scanConfig, `SELECT target, max(version), height, idx, tx_id, author, sha256, size, content_type, blob, uri, time
		FROM configs GROUP BY target`)
	if err != nil {
		return nil, fmt.Errorf("index: config states: %w", err)
	}
	for _, c := range cs {
		latest[c.Target] = c
	}
	scan := func(r rowScanner) (ConfigState, error) {
		var s ConfigState
		var groups string
		var sum []byte
		err := r.Scan(&s.Device, &s.Model, &groups, u64{&s.Reported}, &sum, u64{&s.ReportedHeight})
		s.Groups = []string{}
		if groups != "" {
			s.Groups = strings.Split(groups, ",")
		}
		if s.ReportedHeight > 0 {
			s.ReportedSHA256 = hex.EncodeToString(sum)
		}
		return s, err
	}
	states, err := list(db, scan, `SELECT id, model, groups, cfg_version, cfg_sha256, cfg_height FROM devices WHERE status = ? ORDER BY id`, StatusActive)
	if err != nil {
		return nil, fmt.Errorf("index: config states: %w", err)
	}
	for i := range states {
		s := &states[i]
		c, ok := latest[s.Device]
		if !ok {
			var best *ConfigInfo
			for _, g := range s.Groups {
				gc, ok := latest["group:"+g]
				if ok && (best == nil || gc.Height > best.Height || gc.Height == best.Height && gc.Index > best.Index) {
					best = &gc
				}
			}
			if best == nil {
				continue
			}
			c = *best
		}
		s.Target, s.Version, s.SHA256, s.Height = c.Target, c.Version, c.SHA256, c.Height
	}
	return states, nil
}

// GroupsOfModel returns the groups that have active devices of model, in
// order: one pass over the group memberships, each checked against the
// device's row.
func (x *Index) GroupsOfModel(model string) ([]string, error) {
	scan := func(r rowScanner) (string, error) {
		var g string
		return g, r.Scan(&g)
	}
	gs, err := list(x.read(), scan, `SELECT DISTINCT g.grp FROM device_groups g JOIN devices d ON d.id = g.device
		WHERE d.model = ? AND d.status = ? ORDER BY g.grp LIMIT ?`, model, StatusActive, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: groups of model %q: %w", model, err)
	}
	return gs, nil
}
