// Package config is ledgergate's configuration file: TOML, decoded
// strictly (an unknown key is an error), with a safe default for every
// setting and a Validate that reports every problem at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"golang.org/x/crypto/bcrypt"
)

// DefaultPath is where the packaged gateway reads its configuration.
const DefaultPath = "/etc/ledgergate/ledgergate.toml"

// Config is the whole configuration.
type Config struct {
	// DataDir holds the genesis, the node key, the block log and the index.
	DataDir string  `toml:"data_dir"`
	API     API     `toml:"api"`
	MQTT    MQTT    `toml:"mqtt"`
	CoAP    CoAP    `toml:"coap"`
	Signer  Signer  `toml:"signer"`
	Batch   Batch   `toml:"batch"`
	Cluster Cluster `toml:"cluster"`
	// Snapshot says when the state is written as a snapshot (docs/snapshots.md).
	Snapshot Snapshot `toml:"snapshot"`
	Seeds    Seeds    `toml:"seeds"`
	WebUI    WebUI    `toml:"webui"`
	Log      LogLevel `toml:"log"`
	// Egress are the connectors that deliver committed records onward.
	Egress []Egress `toml:"egress"`
	// Retention prunes old record payloads (docs/retention.md).
	Retention Retention `toml:"retention"`
}

// Retention is the policy that prunes the payloads (envelopes) of old
// data.record txs and their index rows, keeping every block header,
// certificate, Merkle root and every other tx. Keep and MaxBytes both
// zero (the default): keep everything.
type Retention struct {
	// Keep prunes the records of blocks older than this, by block time.
	// 0: no age limit.
	Keep Duration `toml:"keep"`
	// MaxBytes is the budget of the block log, the index and its WAL
	// together, as "20MB" or "2GiB": past 70% of it the oldest records
	// are pruned until usage is under 50%. 0: no size limit.
	MaxBytes Size `toml:"max_bytes"`
	// Interval is how often the policy is checked.
	Interval Duration `toml:"interval"`
}

// Enabled says whether the policy prunes anything.
func (r Retention) Enabled() bool { return r.Keep > 0 || r.MaxBytes > 0 }

// SegmentBytes is the block log's segment size under the policy: only
// sealed segments are pruned, so with a budget a segment is a sixteenth
// of it (at least 256 KiB, at most the 64 MiB default); 0 (the default
// size) without one.
func (r Retention) SegmentBytes() int64 {
	if r.MaxBytes == 0 {
		return 0
	}
	return min(max(int64(r.MaxBytes)/16, 256<<10), 64<<20)
}

// Size is a number of bytes written as "20MB", "512KiB", "1GB" or "1000"
// (kB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024).
type Size int64

// UnmarshalText parses a size.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the size in bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// ParseSize parses a size as Size.UnmarshalText does.
func ParseSize(t string) (Size, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	num, mul := t, int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			num, mul = strings.TrimSpace(n), u.mul
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mul {
		return 0, fmt.Errorf("size %q: want a whole number of bytes with an optional unit, e.g. 20MB, 512KiB, 2GiB", t)
	}
	return Size(v * mul), nil
}

// WebUI is the operator dashboard, served on the API listener
// (docs/dashboard.md).
type WebUI struct {
	Enabled bool `toml:"enabled"`
	// PasswordHash is the operator's bcrypt password hash, as printed by
	// `ledgergate webui hash-password`. Empty: the password is the one set
	// with the one-time setup token the gateway logs on its first start,
	// kept in data_dir/operator.hash.
	PasswordHash string `toml:"password_hash"`
	// AdminKey is the admin key the dashboard signs enroll and revoke txs
	// with, relative to data_dir; its id in the chain is AdminID. Empty:
	// the dashboard is read only.
	AdminKey string `toml:"admin_key"`
	AdminID  string `toml:"admin_id"`
	// SessionIdle ends a session after this long without a request;
	// SessionMax ends it this long after login, whatever its use.
	SessionIdle Duration `toml:"session_idle"`
	SessionMax  Duration `toml:"session_max"`
}

// Seeds finds the other gateways through DNSSEC-signed seed zones
// (docs/seeds.md) instead of, or besides, the addresses in the genesis.
type Seeds struct {
	// Zones publish _ledgergate._tcp SRV records, the targets' A/AAAA and
	// TXT key pins. Empty: no seed discovery.
	Zones []string `toml:"zones"`
	// AnchorsFile holds the trust anchor: DS or DNSKEY records in zone
	// file syntax, as unbound and BIND take them. Relative to DataDir.
	AnchorsFile string `toml:"anchors_file"`
	// Servers are the DNS servers to ask (host:port): resolvers or the
	// zones' authoritative servers. Their AD bit is never trusted.
	Servers []string `toml:"servers"`
	// MinSeeds is how many zones must agree on a peer.
	MinSeeds int `toml:"min_seeds"`
}

// API is the HTTP API and dashboard listener.
type API struct {
	Listen string `toml:"listen"` // host:port
	// TLSCert and TLSKey (PEM), when both are set, serve the API and the
	// dashboard over HTTPS only.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// MaxUploads bounds the uploads (POST /api/v1/firmware and
	// /api/v1/configs) whose bytes are received at once; more get 503
	// "overloaded" with Retry-After.
	MaxUploads int `toml:"max_uploads"`
	// Auth says when the API asks for tokens (docs/api.md,
	// "Authentication"): "auto" (tokens on the scoped routes when Listen
	// is not a loopback address), "tokens" (always), "off" (never; off
	// loopback the gateway logs a warning at start).
	Auth string `toml:"auth"`
	// DevicePaths: "open" (the routes devices use, docs/protocol.md 13.4,
	// answer without a token: devices authenticate by their signatures)
	// or "tokens" (they need their scope too).
	DevicePaths string `toml:"device_paths"`
	// MetricsToken: /metrics needs a token with scope read:metrics,
	// whatever Auth says.
	MetricsToken bool `toml:"metrics_token"`
}

// TokensRequired reports whether the scoped routes need an API token:
// Auth "tokens", or "auto" with a Listen address that is not loopback
// (0.0.0.0 and :: listen on every address, so they are not).
func (a API) TokensRequired() bool {
	switch a.Auth {
	case "tokens":
		return true
	case "off":
		return false
	}
	return !LoopbackAddr(a.Listen)
}

// LoopbackAddr reports whether ip:port is on a loopback address
// (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104).
func LoopbackAddr(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// MQTT is the devices' MQTT front end.
type MQTT struct {
	Listen    string `toml:"listen"`     // host:port for plain TCP; "" turns it off
	TLSListen string `toml:"tls_listen"` // host:port for TLS; "" turns it off
	TLSCert   string `toml:"tls_cert"`   // PEM certificate chain, for tls_listen
	TLSKey    string `toml:"tls_key"`    // PEM private key, for tls_listen
	// MaxClients bounds concurrent connections.
	MaxClients int64 `toml:"max_clients"`
	// ReceiveMaximum bounds the QoS 1 messages one device may have in flight.
	ReceiveMaximum uint16 `toml:"receive_maximum"`
	// MaxPacketBytes bounds one MQTT packet.
	MaxPacketBytes uint32 `toml:"max_packet_bytes"`
	// MaxDeviceSessions bounds the sessions one device holds at once
	// (client ids <id> and <id>/... together, connected or kept after a
	// disconnect); one more CONNECT is refused with 0x97.
	MaxDeviceSessions int `toml:"max_device_sessions"`
	// MaxSubscriptions bounds the topic filters one client holds; the
	// filters beyond it are refused with SUBACK 0x97.
	MaxSubscriptions int `toml:"max_subscriptions"`
}

// CoAP is the devices' CoAP front end: UDP and DTLS.
type CoAP struct {
	Listen     string `toml:"listen"`      // UDP host:port; "" turns it off
	DTLSListen string `toml:"dtls_listen"` // DTLS host:port; "" turns it off
	// DTLSCert and DTLSKey are the gateway's DTLS certificate (PEM). Empty:
	// a self-signed P-256 certificate made in data_dir on first start.
	DTLSCert string `toml:"dtls_cert"`
	DTLSKey  string `toml:"dtls_key"`
	// What one client may hold before it is authenticated, and one
	// address or device after (docs/device-protocol.md, "Limits"). "Per
	// address" counts an IPv6 address by its /64.
	//
	// DTLS handshakes under way, in all and per address: a new one
	// beyond replaces the oldest. They take no place of sessions.
	MaxHandshakes        int `toml:"max_handshakes"`
	MaxHandshakesPerAddr int `toml:"max_handshakes_per_addr"`
	// Established DTLS sessions (an enrolled device's key each), in all,
	// per address and per device key: a device's new session beyond one
	// replaces the longest silent one there.
	MaxSessions          int `toml:"max_sessions"`
	MaxSessionsPerAddr   int `toml:"max_sessions_per_addr"`
	MaxSessionsPerDevice int `toml:"max_sessions_per_device"`
	// Block-wise (Block1) uploads being reassembled, in all and per
	// address over UDP; an idle one is dropped after BlockTimeout over
	// DTLS, UDPBlockTimeout over UDP (where nothing is authenticated
	// before the last block).
	MaxTransfers        int      `toml:"max_transfers"`
	MaxTransfersPerAddr int      `toml:"max_transfers_per_addr"`
	BlockTimeout        Duration `toml:"block_timeout"`
	UDPBlockTimeout     Duration `toml:"udp_block_timeout"`
}

// Signer says where the node identity key lives: in the TPM (the
// default), or, only when configured so explicitly, in a software key file.
type Signer struct {
	Kind    string `toml:"kind"`     // "tpm" or "software"
	KeyFile string `toml:"key_file"` // software: PKCS#8 PEM file; relative paths are under DataDir
	// TPMDevice is the TPM character device; TPMSocket, if set, is a
	// swtpm Unix socket used instead (tests, labs).
	TPMDevice string `toml:"tpm_device"`
	TPMSocket string `toml:"tpm_socket"`
	// TPMHandle is the key's persistent handle, e.g. "0x81010001".
	TPMHandle string `toml:"tpm_handle"`
	// TPMAuthFile holds the key's auth value; empty: the key has none.
	TPMAuthFile string `toml:"tpm_auth_file"`
}

// Handle parses TPMHandle.
func (s Signer) Handle() (uint32, error) {
	h, err := strconv.ParseUint(s.TPMHandle, 0, 32)
	if err != nil || h < 0x81000000 || h > 0x817FFFFF {
		return 0, fmt.Errorf("signer.tpm_handle %q: want an owner persistent handle, 0x81000000 to 0x817FFFFF", s.TPMHandle)
	}
	return uint32(h), nil
}

// Batch bounds the blocks this node cuts.
type Batch struct {
	MaxTxs     int      `toml:"max_txs"`
	MaxBytes   int      `toml:"max_bytes"`
	MaxDelay   Duration `toml:"max_delay"`
	MaxPending int      `toml:"max_pending"`
	// Heartbeat is the longest the chain stays without a block: when idle,
	// the primary commits a heartbeat tx, so that the newest certified
	// block devices are shown is never older (freshness). 0 = off.
	Heartbeat Duration `toml:"heartbeat"`
	// CommitTimeout bounds how long a device or API client waits for its
	// tx to commit: past it the answer is "unavailable" (MQTT 5 PUBACK
	// 0x80, CoAP 5.03, HTTP 503) and the tx stays queued; /readyz is 503
	// while a tx waits longer.
	CommitTimeout Duration `toml:"commit_timeout"`
}

// Cluster is this node's part in the PBFT cluster of the genesis nodes.
type Cluster struct {
	// Listen is the host:port for connections from peer gateways; "" = this node's first address in the genesis.
	Listen string `toml:"listen"`
	// ViewChangeTimeout is how long a backup waits for a request to commit before it asks for a new primary; it doubles with each failed view change.
	ViewChangeTimeout Duration `toml:"view_change_timeout"`
	// JoinFromSnapshot: a gateway whose block log is empty (a new one, or
	// one whose disk was replaced) starts from the newest certified
	// snapshot a peer serves and fetches only the blocks after it; false:
	// it fetches every block from 1.
	JoinFromSnapshot bool `toml:"join_from_snapshot"`
}

// Snapshot says when the gateway writes a snapshot of its state, from
// which the next start replays only the later blocks: after every block
// at a height that is a multiple of EveryBlocks, and after the block at
// which the count of committed txs passes a multiple of EveryTxs. Both
// 0: no snapshots (every start replays the whole block log). Gateways of
// one chain should use the same values: they then snapshot at the same
// heights, and attest those snapshots' hashes so that a quorum certifies
// them.
type Snapshot struct {
	EveryBlocks uint64 `toml:"every_blocks"`
	EveryTxs    uint64 `toml:"every_txs"`
}

// LogLevel configures logging.
type LogLevel struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Duration is a time.Duration written as "5ms", "2s".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default is the configuration of an installed gateway.
func Default() Config {
	return Config{
		DataDir: "/var/lib/ledgergate",
		API:     API{Listen: "127.0.0.1:8080", MaxUploads: 2, Auth: "auto", DevicePaths: "open"},
		MQTT: MQTT{Listen: "127.0.0.1:1883", MaxClients: 10_000, ReceiveMaximum: 256, MaxPacketBytes: 128 << 10,
			MaxDeviceSessions: 4, MaxSubscriptions: 32},
		CoAP: CoAP{Listen: "127.0.0.1:5683", DTLSListen: "127.0.0.1:5684",
			MaxHandshakes: 256, MaxHandshakesPerAddr: 8, MaxSessions: 1024, MaxSessionsPerAddr: 256, MaxSessionsPerDevice: 4,
			MaxTransfers: 256, MaxTransfersPerAddr: 16, BlockTimeout: Duration(time.Minute), UDPBlockTimeout: Duration(10 * time.Second)},
		Signer: Signer{Kind: "tpm", KeyFile: "node.key", TPMDevice: "/dev/tpmrm0", TPMHandle: "0x81010001"},
		Batch: Batch{MaxTxs: 1000, MaxBytes: 4 << 20, MaxDelay: Duration(10 * time.Millisecond), MaxPending: 100_000, Heartbeat: Duration(time.Minute),
			CommitTimeout: Duration(5 * time.Second)},
		Cluster:  Cluster{ViewChangeTimeout: Duration(time.Second), JoinFromSnapshot: true},
		Snapshot: Snapshot{EveryBlocks: 10_000, EveryTxs: 50_000},
		Seeds:    Seeds{MinSeeds: 1},
		WebUI: WebUI{Enabled: true, AdminKey: "admin.key", AdminID: "admin",
			SessionIdle: Duration(15 * time.Minute), SessionMax: Duration(8 * time.Hour)},
		Log:       LogLevel{Level: "info", Format: "text"},
		Retention: Retention{Interval: Duration(10 * time.Second)},
	}
}

// Dev is the embedded default of `ledgergate run --dev`.
func Dev() Config {
	c := Default()
	c.DataDir = "./ledgergate-data"
	c.Signer.Kind = "software" // a dev gateway says so in its log and status
	return c
}

// Load reads path over the defaults in base, strictly.
func Load(path string, base Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(b, base)
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes TOML over base and validates the result.
func Parse(b []byte, base Config) (Config, error) {
	c := base
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return Config{}, fmt.Errorf("unknown setting: %s", sm.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return Config{}, fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.DataDir == "" {
		bad("data_dir: must be set")
	}
	if _, err := netip.ParseAddrPort(c.API.Listen); err != nil {
		bad("api.listen %q: want ip:port, e.g. 127.0.0.1:8080", c.API.Listen)
	}
	if c.API.MaxUploads < 1 || c.API.MaxUploads > 64 {
		bad("api.max_uploads %d: want 1 to 64", c.API.MaxUploads)
	}
	switch c.API.Auth {
	case "auto", "tokens", "off":
	default:
		bad("api.auth %q: want \"auto\" (tokens off loopback), \"tokens\" or \"off\"", c.API.Auth)
	}
	switch c.API.DevicePaths {
	case "open", "tokens":
	default:
		bad("api.device_paths %q: want \"open\" or \"tokens\"", c.API.DevicePaths)
	}
	if c.MQTT.Listen != "" {
		if _, err := netip.ParseAddrPort(c.MQTT.Listen); err != nil {
			bad("mqtt.listen %q: want ip:port, e.g. 127.0.0.1:1883, or \"\" for off", c.MQTT.Listen)
		}
	}
	if c.MQTT.TLSListen != "" {
		if _, err := netip.ParseAddrPort(c.MQTT.TLSListen); err != nil {
			bad("mqtt.tls_listen %q: want ip:port, e.g. 0.0.0.0:8883, or \"\" for off", c.MQTT.TLSListen)
		}
		if c.MQTT.TLSCert == "" || c.MQTT.TLSKey == "" {
			bad("mqtt.tls_listen needs mqtt.tls_cert and mqtt.tls_key")
		}
	}
	for name, a := range map[string]string{"coap.listen": c.CoAP.Listen, "coap.dtls_listen": c.CoAP.DTLSListen} {
		if _, err := netip.ParseAddrPort(a); a != "" && err != nil {
			bad("%s %q: want ip:port, or \"\" for off", name, a)
		}
	}
	if (c.CoAP.DTLSCert == "") != (c.CoAP.DTLSKey == "") {
		bad("coap.dtls_cert and coap.dtls_key go together (both empty: a self-signed certificate)")
	}
	for name, n := range map[string]int{"coap.max_handshakes": c.CoAP.MaxHandshakes, "coap.max_handshakes_per_addr": c.CoAP.MaxHandshakesPerAddr,
		"coap.max_sessions": c.CoAP.MaxSessions, "coap.max_sessions_per_addr": c.CoAP.MaxSessionsPerAddr,
		"coap.max_sessions_per_device": c.CoAP.MaxSessionsPerDevice, "coap.max_transfers": c.CoAP.MaxTransfers,
		"coap.max_transfers_per_addr": c.CoAP.MaxTransfersPerAddr} {
		if n < 1 {
			bad("%s %d: want at least 1", name, n)
		}
	}
	for name, d := range map[string]Duration{"coap.block_timeout": c.CoAP.BlockTimeout, "coap.udp_block_timeout": c.CoAP.UDPBlockTimeout} {
		if time.Duration(d) < time.Second || time.Duration(d) > time.Hour {
			bad("%s %s: want 1s to 1h", name, time.Duration(d))
		}
	}
	if c.MQTT.MaxClients < 1 {
		bad("mqtt.max_clients %d: want at least 1", c.MQTT.MaxClients)
	}
	if c.MQTT.ReceiveMaximum < 1 {
		bad("mqtt.receive_maximum %d: want 1 to 65535", c.MQTT.ReceiveMaximum)
	}
	if c.MQTT.MaxPacketBytes < 1024 || c.MQTT.MaxPacketBytes > 16<<20 {
		bad("mqtt.max_packet_bytes %d: want 1024 to 16777216", c.MQTT.MaxPacketBytes)
	}
	if c.MQTT.MaxDeviceSessions < 1 || c.MQTT.MaxDeviceSessions > 1000 {
		bad("mqtt.max_device_sessions %d: want 1 to 1000", c.MQTT.MaxDeviceSessions)
	}
	if c.MQTT.MaxSubscriptions < 2 || c.MQTT.MaxSubscriptions > 10_000 {
		bad("mqtt.max_subscriptions %d: want 2 (receipts and rejects) to 10000", c.MQTT.MaxSubscriptions)
	}
	switch c.Signer.Kind {
	case "software":
		if c.Signer.KeyFile == "" {
			bad("signer.key_file: must be set for a software key")
		}
	case "tpm":
		if c.Signer.TPMDevice == "" && c.Signer.TPMSocket == "" {
			bad("signer: set tpm_device (e.g. /dev/tpmrm0) or tpm_socket")
		}
		if _, err := c.Signer.Handle(); err != nil {
			errs = append(errs, err)
		}
	default:
		bad("signer.kind %q: want \"tpm\" or \"software\"", c.Signer.Kind)
	}
	if c.Batch.MaxTxs < 1 || c.Batch.MaxTxs > 100_000 {
		bad("batch.max_txs %d: want 1 to 100000", c.Batch.MaxTxs)
	}
	if c.Batch.MaxBytes < 64<<10 || c.Batch.MaxBytes > 64<<20 {
		bad("batch.max_bytes %d: want 65536 to 67108864", c.Batch.MaxBytes)
	}
	if d := time.Duration(c.Batch.MaxDelay); d < 0 || d > 10*time.Second {
		bad("batch.max_delay %s: want 0s to 10s", d)
	}
	if d := time.Duration(c.Batch.Heartbeat); d != 0 && (d < time.Second || d > time.Hour) {
		bad("batch.heartbeat %s: want 0s (off) or 1s to 1h", d)
	}
	if d := time.Duration(c.Batch.CommitTimeout); d < 100*time.Millisecond || d > 10*time.Minute {
		bad("batch.commit_timeout %s: want 100ms to 10m", d)
	}
	if c.Batch.MaxPending < c.Batch.MaxTxs {
		bad("batch.max_pending %d: want at least batch.max_txs (%d)", c.Batch.MaxPending, c.Batch.MaxTxs)
	}
	// 1 is refused: each snapshot's attestation (a node.snapshot tx)
	// would make the next one due, for ever.
	if n := c.Snapshot.EveryBlocks; n == 1 || n > 1<<40 {
		bad("snapshot.every_blocks %d: want 0 (never) or 2 to %d", n, uint64(1)<<40)
	}
	if n := c.Snapshot.EveryTxs; n == 1 || n > 1<<40 {
		bad("snapshot.every_txs %d: want 0 (never) or 2 to %d", n, uint64(1)<<40)
	}
	if c.Cluster.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Cluster.Listen); err != nil {
			bad("cluster.listen %q: want ip:port, e.g. 0.0.0.0:7001, or \"\" for this node's first genesis address", c.Cluster.Listen)
		}
	}
	if len(c.Seeds.Zones) > 0 {
		if c.Seeds.AnchorsFile == "" {
			bad("seeds.anchors_file: a trust anchor is required with seeds.zones")
		}
		if len(c.Seeds.Servers) == 0 {
			bad("seeds.servers: at least one DNS server (host:port) is required with seeds.zones")
		}
		for _, srv := range c.Seeds.Servers {
			if _, err := netip.ParseAddrPort(srv); err != nil {
				bad("seeds.servers: %q: want ip:port, e.g. 127.0.0.1:53", srv)
			}
		}
		if c.Seeds.MinSeeds < 1 || c.Seeds.MinSeeds > len(c.Seeds.Zones) {
			bad("seeds.min_seeds %d: want 1 to the number of zones (%d)", c.Seeds.MinSeeds, len(c.Seeds.Zones))
		}
	}
	if d := time.Duration(c.Cluster.ViewChangeTimeout); d < 100*time.Millisecond || d > time.Minute {
		bad("cluster.view_change_timeout %s: want 100ms to 1m", d)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		bad("api.tls_cert and api.tls_key go together")
	}
	if h := c.WebUI.PasswordHash; h != "" {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			bad("webui.password_hash: not a bcrypt hash (make one with: ledgergate webui hash-password)")
		}
	}
	if c.WebUI.AdminKey != "" && c.WebUI.AdminID == "" {
		bad("webui.admin_id: the chain id of webui.admin_key is required")
	}
	idle, max := time.Duration(c.WebUI.SessionIdle), time.Duration(c.WebUI.SessionMax)
	if idle < time.Minute || idle > 24*time.Hour {
		bad("webui.session_idle %s: want 1m to 24h", idle)
	}
	if max < idle || max > 7*24*time.Hour {
		bad("webui.session_max %s: want webui.session_idle (%s) to 168h", max, idle)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
	if d := time.Duration(c.Retention.Keep); d != 0 && d < time.Hour {
		bad("retention.keep %s: want 0s (no age limit) or at least 1h", d)
	}
	if m := c.Retention.MaxBytes; m != 0 && m < 4<<20 {
		bad("retention.max_bytes %d: want 0 (no size limit) or at least 4MiB", m)
	}
	if d := time.Duration(c.Retention.Interval); d < time.Second || d > time.Hour {
		bad("retention.interval %s: want 1s to 1h", d)
	}
	validateEgress(c.Egress, bad)
	return errors.Join(errs...)
}
