package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// enrollIn enrolls a new ES256 device in groups over the API.
func (a *admin) enrollIn(t testing.TB, apiURL, id string, groups ...string) crypto.Signer {
	t.Helper()
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ledger.MarshalPublicKey(key)
	env, err := ledger.SignTx(a.key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: a.chainID,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub, Model: "m1", Groups: groups}})
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, _, err := post(context.Background(), apiURL, env); err != nil || code != http.StatusOK {
		t.Fatalf("enroll %s: %d %s %v", id, code, reason, err)
	}
	return key
}

// policyDevice is a device publishing records over MQTT to one gateway.
type policyDevice struct {
	id  string
	key crypto.Signer
	cl  *device.Client
	seq uint64
}

// publish signs a record of size bytes on stream with the next seq and
// publishes it; it returns the refusal ("" when committed) and its
// detail. A refused record's seq is used again by the next one.
func (d *policyDevice) publish(t *testing.T, chainID, stream string, size int) (string, string) {
	t.Helper()
	env, err := ledger.SignTx(d.key, d.id, &ledger.Body{Kind: ledger.KindRecord, ChainID: chainID,
		Record: &ledger.Record{DeviceID: d.id, Stream: stream, Seq: d.seq + 1, Time: time.Now().UnixMilli(), Payload: make([]byte, size)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = d.cl.Publish(ctx, stream, env)
	var re *device.RefusedError
	switch {
	case err == nil:
		d.seq++
		return "", ""
	case errors.As(err, &re):
		return re.Reason, re.Detail
	}
	t.Fatalf("%s: publish seq %d on %s: %v", d.id, d.seq+1, stream, err)
	return "", ""
}

// TestClusterPolicy is issue 25's policy on four real gateways, records
// over MQTT: a group allowed only stream temp is refused on video with
// reason policy and the rule's name; a size limit and a per-device rate
// limit are enforced the same way whichever gateway a device talks to
// (the gateways end on one head: the same blocks, so the same verdicts);
// the policy takes effect at its height and not before (a record it
// would refuse, committed before it, stays, and `ledger verify` replays
// every verdict); a gateway restarted rebuilds the same policy.
func TestClusterPolicy(t *testing.T) {
	c := newCluster(t, 4)
	dir := filepath.Dir(c.data[0])
	api0 := c.gws[0].api
	chainID := c.admin.chainID
	sensorKey := c.admin.enrollIn(t, api0, "sensor-1", "floor-2", "sensors")
	camKey := c.admin.enrollIn(t, api0, "cam-1", "cameras")
	dial := func(id string, key crypto.Signer, gw int) *policyDevice {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var cl *device.Client
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for {
			// The enrollment committed on gateway 1; the others
			// apply it a moment later.
			if cl, err = device.Dial(ctx, id, key, chainID, device.DialOptions{Broker: "tcp://" + c.mqttAddr(gw)}); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling another process
		}
		if err != nil {
			t.Fatalf("%s on gateway %d: %v", id, gw+1, err)
		}
		t.Cleanup(func() { cl.Close() })
		return &policyDevice{id: id, key: key, cl: cl}
	}
	sensor := dial("sensor-1", sensorKey, 1) // a backup: its records go to the primary
	cam := dial("cam-1", camKey, 2)

	// Before any policy: a sensor's video of 100 bytes is taken.
	if r, d := sensor.publish(t, chainID, "video", 100); r != "" {
		t.Fatalf("before the policy: %s %s", r, d)
	}
	before, _ := c.head(0)

	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"version": 1, "rules": [
  {"name": "sensors-temp-only", "when": "'sensors' in device.groups", "allow": "record.stream == 'temp'"},
  {"name": "max-size", "allow": "record.size <= 64"},
  {"name": "per-device-rate", "rate": {"count": 3, "window": 2678400000}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, dir, "policy", "set", "--policy", policy, "--api", api0, "--admin-key", filepath.Join(dir, "admin.key"), "--admin-id", "admin", "--data", c.data[0])
	if !strings.Contains(out, "committed in block") {
		t.Fatalf("policy set: %s", out)
	}
	// A policy that calls now() is refused at submission, naming the rule.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version": 2, "rules": [{"name": "clock", "allow": "now() > 0"}]}`), 0o644)
	if _, errs, code := cli(t, dir, "policy", "set", "--policy", bad, "--api", api0, "--admin-key", filepath.Join(dir, "admin.key"), "--data", c.data[0]); code == 0 || !strings.Contains(errs, `rule "clock"`) || !strings.Contains(errs, "now") {
		t.Fatalf("a policy with now(): exit %d: %s", code, errs)
	}

	var hist api.PolicyHistory
	getJSON(t, api0, "/api/v1/policy/history", &hist)
	if len(hist.Changes) != 1 || hist.Changes[0].Height <= before || len(hist.Changes[0].Rules) != 3 {
		t.Fatalf("history %+v", hist)
	}
	hp := hist.Changes[0].Height

	type verdict struct {
		dev    *policyDevice
		stream string
		size   int
		rule   string // "": taken
	}
	for _, v := range []verdict{
		{sensor, "temp", 8, ""},
		{sensor, "video", 8, "sensors-temp-only"},
		{cam, "video", 65, "max-size"},
		{cam, "video", 64, ""},
		{cam, "video", 1, ""},
		{sensor, "temp", 8, ""},
		{cam, "video", 1, ""},
		{cam, "video", 1, "per-device-rate"}, // the fourth of cam-1's
		{sensor, "temp", 8, ""},              // its third: refused ones do not count
		{sensor, "temp", 8, "per-device-rate"},
	} {
		reason, detail := v.dev.publish(t, chainID, v.stream, v.size)
		t.Logf("%s on %s (%d bytes): %q %s", v.dev.id, v.stream, v.size, reason, detail)
		switch {
		case v.rule == "" && reason != "":
			t.Errorf("%s on %s (%d bytes): refused %s: %s", v.dev.id, v.stream, v.size, reason, detail)
		case v.rule != "" && (reason != string(ledger.ReasonPolicy) || !strings.Contains(detail, `rule "`+v.rule+`"`)):
			t.Errorf("%s on %s (%d bytes): got %q %q, want policy naming rule %q", v.dev.id, v.stream, v.size, reason, detail, v.rule)
		}
	}

	// The same blocks on every gateway, the same policy and history.
	h, _ := c.converge(hp+1, time.Minute)
	var want api.Policy
	getJSON(t, api0, fmt.Sprintf("/api/v1/policy?height=%d", h), &want)
	counts := txCounts(t, api0)
	if code := getJSON(t, api0, "/api/v1/policy?height=99999999", nil); code != http.StatusBadRequest {
		t.Errorf("policy at a height above the tip: HTTP %d, want 400", code)
	}
	for i, g := range c.gws {
		var p, none api.Policy
		getJSON(t, g.api, fmt.Sprintf("/api/v1/policy?height=%d", h), &p)
		if p.Policy == nil || p.Policy.Hash != want.Policy.Hash || p.Policy.Height != hp {
			t.Errorf("gateway %d: policy %+v, want %+v", i+1, p.Policy, want.Policy)
		}
		getJSON(t, g.api, fmt.Sprintf("/api/v1/policy?height=%d", hp-1), &none)
		if none.Policy != nil {
			t.Errorf("gateway %d: a policy in force at %d, before its block %d", i+1, hp-1, hp)
		}
		if i > 0 {
			got := txCounts(t, g.api)
			for id, n := range counts {
				if got[id] != n {
					t.Errorf("gateway %d holds tx %s %d times, gateway 1 %d", i+1, id, got[id], n)
				}
			}
		}
		// Replaying the chain gives the same verdicts: the record
		// committed before the policy, and every one after it.
		if out, errs, code := cli(t, "", "ledger", "verify", "--data", c.data[i]); code != 0 || !strings.HasPrefix(out, "ok:") {
			t.Errorf("gateway %d: ledger verify: exit %d\n%s%s", i+1, code, out, errs)
		}
	}

	// A gateway restarted (state rebuilt from its log and snapshot) has
	// the same history and goes on judging the same way.
	c.gws[3].stop()
	g4 := c.restart(3)
	var hist4 api.PolicyHistory
	deadline := time.Now().Add(time.Minute)
	for getJSON(t, g4.api, "/api/v1/policy/history", &hist4) != http.StatusOK || len(hist4.Changes) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("restarted gateway 4: history %+v", hist4)
		}
		time.Sleep(100 * time.Millisecond) // polling another process
	}
	if hist4.Changes[0].Hash != hist.Changes[0].Hash || hist4.Changes[0].Height != hp {
		t.Fatalf("restarted gateway 4: history %+v, want %+v", hist4.Changes, hist.Changes)
	}
	cam4 := dial("cam-1", camKey, 3)
	cam4.seq = cam.seq
	if reason, detail := cam4.publish(t, chainID, "video", 1); reason != string(ledger.ReasonPolicy) || !strings.Contains(detail, "per-device-rate") {
		t.Errorf("cam-1 through the restarted gateway: %q %q, want the rate refusal", reason, detail)
	}
	out = mustCLI(t, dir, "policy", "show", "--api", g4.api)
	if !strings.Contains(out, fmt.Sprintf("version 1, set in block %d", hp)) || !strings.Contains(out, "sensors-temp-only") {
		t.Errorf("policy show: %s", out)
	}
	out = mustCLI(t, dir, "policy", "history", "--api", g4.api)
	if !strings.Contains(out, fmt.Sprintf("version 1: block %d", hp)) {
		t.Errorf("policy history: %s", out)
	}
}
