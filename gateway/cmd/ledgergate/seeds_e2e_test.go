package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/seeds"
	"github.com/ledgergate/ledgergate/seeds/seedstest"
)

// TestClusterFromSeeds: four gateways whose genesis holds no address find
// each other only through a DNSSEC-signed seed zone (signed with BIND's
// tools, served on 127.0.0.1), form a cluster and commit; a device finds
// the gateways' brokers through the same zone.
func TestClusterFromSeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const n = 4
	c := &testCluster{t: t}
	var nodeFlags, records []string
	listens, brokers := make([]string, n), make([]string, n)
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		data := filepath.Join(dir, id)
		c.data = append(c.data, data)
		mustCLI(t, dir, "init", "--software-key", "--data", data, "--node-id", id)
		nodeFlags = append(nodeFlags, "--node", id+",,"+filepath.Join(data, "node.pub"))
		// The zone names these ports before the gateways bind them
		// (freeAddrOn says why they stay free until then).
		listens[i], brokers[i] = freeAddrOn(t, seedsHost), freeAddrOn(t, seedsHost)
		der, err := device.LoadPublicKey(filepath.Join(data, "node.pub"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(listens[i])
		_, mqttPort, _ := net.SplitHostPort(brokers[i])
		records = append(records,
			fmt.Sprintf("_ledgergate._tcp 300 IN SRV 0 0 %s %s", port, id),
			fmt.Sprintf("_mqtt._tcp 300 IN SRV %d 0 %s %s", i, mqttPort, id),
			fmt.Sprintf("%s 300 IN A %s", id, seedsHost),
			fmt.Sprintf(`%s 300 IN TXT "lg1 node=%s spki-sha256=%x"`, id, id, sha256.Sum256(der)))
	}
	zone := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "site.test.", Algorithm: 13, Records: records})
	dns := seedstest.Serve(t, zone)
	anchors := filepath.Join(dir, "anchors.txt")
	if err := os.WriteFile(anchors, []byte(zone.Anchor), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", filepath.Join(dir, "admin.key"))
	gen := filepath.Join(dir, "genesis.json")
	mustCLI(t, dir, append(append([]string{"genesis", "new", "--chain-id", "test-seeds"}, nodeFlags...),
		"--admin", filepath.Join(dir, "admin.key.pub"), "--admin-id", "admin", "--out", gen)...)
	for i, data := range c.data {
		mustCLI(t, dir, "init", "--software-key", "--data", data, "--genesis", gen)
		conf := filepath.Join(data, "ledgergate.toml")
		toml := fmt.Sprintf("[cluster]\nlisten = %q\n\n[seeds]\nzones = [\"site.test.\"]\nanchors_file = %q\nservers = [%q]\n",
			listens[i], anchors, dns.Addr())
		if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if out := mustCLI(t, dir, "seeds", "check", "--config", conf); !strings.Contains(out, "node-4 at ["+seedsHost+":") {
				t.Errorf("seeds check:\n%s", out)
			}
		}
	}
	for i, data := range c.data {
		c.gws = append(c.gws, startGateway(t, data, "--config", filepath.Join(data, "ledgergate.toml"), "--mqtt", brokers[i]))
	}
	key, err := device.LoadKey(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = &admin{key: key, chainID: "test-seeds"}
	devKey := c.admin.enroll(t, c.gws[0].api, "meter-1", ledger.ES256)
	c.converge(1, time.Minute)

	// A device finds the brokers through the zone and publishes.
	addrs, err := device.DiscoverBrokers(ctx, seeds.Config{Zones: []string{"site.test."}, Anchors: zone.Anchor, Servers: []string{dns.Addr()}})
	if err != nil || len(addrs) != n || addrs[0] != brokers[0] {
		t.Fatalf("DiscoverBrokers = %v, %v; want the %d brokers, %s first", addrs, err, n, brokers[0])
	}
	cl, err := device.Dial(ctx, "meter-1", devKey, "test-seeds", device.DialOptions{Broker: "tcp://" + addrs[1]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Publish(ctx, "s", signAs(t, devKey, "test-seeds", "meter-1", 1)); err != nil {
		t.Fatalf("publish through a discovered broker: %v", err)
	}
	c.converge(2, time.Minute)
}
