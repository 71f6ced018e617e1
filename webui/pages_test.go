package webui

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
)

// TestClusterAndSeedsPages renders what a gateway of a cluster with seed
// discovery shows: its peers with their lag, and the DNSSEC state.
func TestClusterAndSeedsPages(t *testing.T) {
	u := newTestUI(t, false)
	u.ui.d.Status = func() (api.Status, error) {
		return api.Status{NodeInfo: api.NodeInfo{NodeID: "gw-1", KeyHardware: true, Key: "TPM 2.0 key at 0x81010001", Nodes: 4, Quorum: 3},
			Height: 42, Ready: true, Cluster: &api.Cluster{View: 3, Primary: "gw-4", Peers: []api.Peer{
				{ID: "gw-2", Addr: "10.0.0.2:7001", Connected: true, Height: 42},
				{ID: "gw-3", Addr: "10.0.0.3:7001", Connected: false, Height: 30, Lag: 12},
			}}}, nil
	}
	u.ui.d.Seeds = func() *Seeds {
		return &Seeds{Zones: []string{"site.example."}, Servers: []string{"127.0.0.1:53"}, MinSeeds: 1,
			Checked: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC),
			Peers:   []SeedPeer{{ID: "gw-2", Addrs: []string{"10.0.0.2:7001"}, Zones: []string{"site.example."}, Pinned: true}},
			Chain:   []string{"anchor DS site.example. tag 1 alg 13"}, Problems: []string{"seeds: zone b.example.: bogus: RRSIG expired"}}
	}
	c := u.client()
	u.login(c, testPassword)
	for _, tt := range []struct {
		path string
		want []string
	}{
		{"/", []string{">TPM<", "view <span data-field=\"view\">3</span>", "gw-4", `data-peer="gw-3"`, `<td data-col="lag">12</td>`,
			`<span class="tag bad">no</span>`, "4 nodes, a block needs 3 signatures"}},
		{"/seeds", []string{"secure", "gw-2", "genesis key", "anchor DS site.example.", "RRSIG expired"}},
	} {
		code, body, _ := u.do(c, "GET", tt.path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", tt.path, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", tt.path, w)
			}
		}
	}
}

// storageStatus has the fields of retention.Status the overview reads.
type storageStatus struct {
	Enabled                  bool
	MaxBytes, UsedBytes      int64
	PrunedHeight             uint64
	NearlyFull, LowDisk      bool
	DiskFreeBytes, DiskBytes int64
}

// The storage warnings as the overview renders them, shown or hidden (the
// live updates show and hide them).
const (
	budgetShown  = `data-field="warn_nearly_full"><span class="tag warn">Budget nearly spent`
	budgetHidden = `data-field="warn_nearly_full" hidden>`
	diskShown    = `data-field="warn_low_disk"><span class="tag bad">Disk nearly full`
	diskHidden   = `data-field="warn_low_disk" hidden>`
)

// TestStorageWarnings: the overview shows the storage, and warns when the
// retention budget is nearly spent or the disk nearly full; not otherwise.
func TestStorageWarnings(t *testing.T) {
	u := newTestUI(t, false)
	c := u.client()
	u.login(c, testPassword)
	for _, tt := range []struct {
		name    string
		st      storageStatus
		want    []string
		notWant []string
	}{
		{"within budget", storageStatus{Enabled: true, MaxBytes: 20_000_000, UsedBytes: 9_500_000, PrunedHeight: 812, DiskFreeBytes: 50e9, DiskBytes: 100e9},
			[]string{">9.5 MB<", "of 20.0 MB", `block <span data-field="pruned_height">812<`, ">50.0 GB</span> free on disk", budgetHidden, diskHidden},
			[]string{budgetShown, diskShown}},
		{"budget nearly spent", storageStatus{Enabled: true, MaxBytes: 20_000_000, UsedBytes: 19_000_000, NearlyFull: true, DiskFreeBytes: 50e9, DiskBytes: 100e9},
			[]string{">19.0 MB<", budgetShown, diskHidden}, []string{budgetHidden, diskShown}},
		{"disk nearly full", storageStatus{UsedBytes: 3_000_000_000, DiskFreeBytes: 1_000_000_000, DiskBytes: 32e9, LowDisk: true},
			[]string{">3.0 GB<", "Retention off", diskShown, ">1.0 GB</span> free on disk", budgetHidden}, []string{budgetShown, diskHidden}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u.ui.d.Status = func() (api.Status, error) {
				return api.Status{NodeInfo: api.NodeInfo{NodeID: "gw-1"}, Ready: true, Storage: tt.st}, nil
			}
			code, body, _ := u.do(c, "GET", "/", nil)
			if code != http.StatusOK {
				t.Fatalf("GET /: %d", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("overview lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("overview shows %q", w)
				}
			}
		})
	}
}
