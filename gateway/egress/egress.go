package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/index"
)

// Kinds of connector.
const (
	KindMQTT    = "mqtt"
	KindNATS    = "nats"
	KindWebhook = "webhook"
)

// Start positions of a connector that has no cursor yet.
const (
	StartBeginning = "beginning" // every record from block 1 on
	StartNow       = "now"       // only records committed after its first start
)

// Defaults of the settings a connector may leave empty.
const (
	DefaultBatch       = 100
	DefaultTimeout     = 10 * time.Second
	DefaultMQTTTopic   = "ledgergate/{chain}/{device}/{stream}"
	DefaultNATSSubject = "ledgergate.{chain}.{device}.{stream}"
	DefaultNATSStream  = "LEDGERGATE"
	// DefaultWindow is how many MQTT or NATS messages a connector keeps
	// unacknowledged at once; MaxWindow is the most it may be set to.
	DefaultWindow = 64
	MaxWindow     = 1000
)

// MQTT protocol versions of an mqtt connector.
const (
	MQTT5   = "5"
	MQTT311 = "3.1.1"
)

// Config is one connector (config.Egress, with paths made absolute).
type Config struct {
	Name string
	Kind string // KindMQTT, KindNATS or KindWebhook
	// Filters: a record is delivered if its device, one of the device's
	// groups and its stream pass; an empty list passes everything.
	Devices, Groups, Streams []string
	// Nodes are the node ids that run the connector; empty: every node.
	Nodes []string
	Start string // StartBeginning (default) or StartNow
	URL   string
	// Batch bounds the records sent before the cursor is saved; for a
	// webhook, the records in one POST. 0: DefaultBatch.
	Batch int
	// Timeout bounds one delivery attempt (a POST, a PUBACK, a PubAck). 0:
	// DefaultTimeout.
	Timeout time.Duration
	// Window bounds the MQTT and NATS messages sent and not yet
	// acknowledged (the webhook sends Batch per POST). 0: DefaultWindow.
	Window int

	// MQTT.
	Protocol                  string // MQTT5 (default) or MQTT311
	Topic                     string // template: {chain}, {device}, {stream}
	ClientID                  string
	Username, PasswordFile    string
	CAFile, CertFile, KeyFile string
	// NATS JetStream.
	Stream, Subject      string
	CredsFile, TokenFile string
	// Webhook.
	SecretFile string // HMAC-SHA256 key of X-Ledgergate-Signature
}

// Blocks is the block log (*ledger.Log), read by height. A connector of
// a gateway that joined from a snapshot cannot send the blocks at or
// below the log's base: ReadHeight fails for them (ledger.ErrBelowBase).
type Blocks interface {
	ReadHeight(h uint64) ([]byte, error)
	Base() (uint64, [32]byte)
}

// Index is the read side of the SQLite index (*index.Index). A connector
// follows its height: a block is indexed after it is durable and before
// its submitters are answered.
type Index interface {
	Height() (uint64, error)
	Counts() (index.Counts, error)
	Device(id string) (*index.Device, error)
}

// Deps are what a Manager reads and where it keeps its cursors.
type Deps struct {
	Dir      string // the cursors' directory, data_dir/egress
	Node     string // this node's id, for Config.Nodes
	Blocks   Blocks
	Index    Index
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: no metrics
}

// Manager runs the connectors of a gateway.
type Manager struct {
	d     Deps
	conns []*connector
	open  []*connector // the connectors of this node, once opened
}

// New checks the connectors' configurations; it does no I/O.
func New(cfgs []Config, d Deps) (*Manager, error) {
	m := &Manager{d: d}
	var errs []error
	names := map[string]bool{}
	for _, c := range cfgs {
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("egress: two connectors named %q", c.Name))
		}
		names[c.Name] = true
		c = withDefaults(c)
		if err := check(c); err != nil {
			errs = append(errs, err)
			continue
		}
		m.conns = append(m.conns, &connector{
			cfg: c, exporting: len(c.Nodes) == 0 || slices.Contains(c.Nodes, d.Node),
			path: filepath.Join(d.Dir, c.Name+".cursor"), blocks: d.Blocks, index: d.Index,
			logger: d.Logger.With("egress", c.Name, "kind", c.Kind),
			wake:   make(chan struct{}, 1), groups: map[string][]string{},
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Registry != nil && len(m.conns) > 0 {
		d.Registry.MustRegister(&collector{m: m})
	}
	return m, nil
}

func withDefaults(c Config) Config {
	if c.Start == "" {
		c.Start = StartBeginning
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	switch c.Kind {
	case KindMQTT:
		if c.Protocol == "" {
			c.Protocol = MQTT5
		}
		if c.Topic == "" {
			c.Topic = DefaultMQTTTopic
		}
	case KindNATS:
		if c.Subject == "" {
			c.Subject = DefaultNATSSubject
		}
		if c.Stream == "" {
			c.Stream = DefaultNATSStream
		}
	}
	return c
}

// check is the last line of defence behind config.Validate, which names
// the settings.
func check(c Config) error {
	switch {
	case !validName(c.Name):
		return fmt.Errorf("egress: connector name %q: want 1 to 64 of a-z 0-9 - (it names the cursor file)", c.Name)
	case c.Kind != KindMQTT && c.Kind != KindNATS && c.Kind != KindWebhook:
		return fmt.Errorf("egress %s: kind %q", c.Name, c.Kind)
	case c.Start != StartBeginning && c.Start != StartNow:
		return fmt.Errorf("egress %s: start %q", c.Name, c.Start)
	case c.URL == "":
		return fmt.Errorf("egress %s: no url", c.Name)
	case c.Batch < 1:
		return fmt.Errorf("egress %s: batch %d", c.Name, c.Batch)
	case c.Window < 1 || c.Window > MaxWindow:
		return fmt.Errorf("egress %s: window %d: want 1 to %d", c.Name, c.Window, MaxWindow)
	case c.Kind == KindMQTT && c.Protocol != MQTT5 && c.Protocol != MQTT311:
		return fmt.Errorf("egress %s: protocol %q: want %q or %q", c.Name, c.Protocol, MQTT5, MQTT311)
	}
	return nil
}

// Committed wakes the connectors: a block was committed. It never blocks:
// it is called on the commit path.
func (m *Manager) Committed() {
	for _, c := range m.conns {
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// Open reads the files the connectors of this node need (secrets,
// certificates, cursors) and makes the cursors of new connectors; it does
// not connect to any sink. Its errors are the settings' or the data
// directory's: the gateway should not start with them.
func (m *Manager) Open() error {
	m.open = nil
	for _, c := range m.conns {
		if !c.exporting {
			c.logger.Info("egress connector not run on this node", "node", m.d.Node, "nodes", c.cfg.Nodes)
			continue
		}
		if err := c.open(m.d.Dir); err != nil {
			m.closeSinks()
			return err
		}
		m.open = append(m.open, c)
	}
	return nil
}

// Run runs the connectors Open opened until ctx ends, then closes their
// sinks. A sink that is down makes its connector wait and retry, not Run
// return.
func (m *Manager) Run(ctx context.Context) error {
	defer m.closeSinks()
	var wg sync.WaitGroup
	for _, c := range m.open {
		wg.Go(func() { c.run(ctx) })
	}
	wg.Wait()
	return nil
}

func (m *Manager) closeSinks() {
	for _, c := range m.open {
		c.sink.close()
	}
}

// Status is a connector's state in /api/v1/status.
type Status struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Exporting bool   `json:"exporting"` // false: not run on this node (see nodes)
	Cursor    Cursor `json:"cursor"`
	// LagBlocks and LagRecords are the blocks and txs committed after the
	// cursor; LagRecords counts txs of every kind, so it bounds the
	// records still to deliver from above.
	LagBlocks     uint64     `json:"lag_blocks"`
	LagRecords    uint64     `json:"lag_records"`
	Delivered     uint64     `json:"delivered"` // records acknowledged by the sink since the gateway started
	LastDelivered *time.Time `json:"last_delivered,omitempty"`
	// LastError is the last failed delivery's error; Failing says whether
	// the sink has failed since it last acknowledged.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	Failing     bool       `json:"failing"`
}

// Cursors returns, for each connector that exports from this node, the
// lowest block it has not delivered in full: its cursor's block (or 1
// before its first delivery). Retention holds pruning by age there.
func (m *Manager) Cursors() []uint64 {
	var out []uint64
	for _, c := range m.conns {
		s := c.status()
		if s.Exporting {
			out = append(out, max(s.Cursor.Block, 1))
		}
	}
	return out
}

// Status returns every connector's state, in configuration order.
func (m *Manager) Status() []Status {
	counts, err := m.d.Index.Counts()
	out := make([]Status, 0, len(m.conns))
	for _, c := range m.conns {
		s := c.status()
		if err == nil && s.Exporting {
			s.LagBlocks = sub(counts.Blocks, s.Cursor.Block)
			s.LagRecords = sub(counts.Txs, s.Cursor.Handled)
		}
		out = append(out, s)
	}
	return out
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// open reads the connector's files and makes its sink; it does not
// connect.
func (c *connector) open(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	var err error
	switch c.cfg.Kind {
	case KindMQTT:
		if c.cfg.Protocol == MQTT311 {
			c.sink, err = newMQTT3Sink(c.cfg)
		} else {
			c.sink, err = newMQTTSink(c.cfg)
		}
	case KindNATS:
		c.sink, err = newNATSSink(c.cfg)
	case KindWebhook:
		c.sink, err = newWebhookSink(c.cfg)
	}
	if err != nil {
		return fmt.Errorf("egress %s: %w", c.cfg.Name, err)
	}
	cur, ok, err := loadCursor(c.path)
	if err != nil {
		return err
	}
	if !ok {
		if cur, err = c.startCursor(); err != nil {
			return err
		}
		if err := saveCursor(c.path, cur); err != nil {
			return err
		}
		c.logger.Info("egress connector starts", "start", c.cfg.Start, "block", cur.Block)
	}
	if h, err := c.index.Height(); err == nil && cur.Block > h {
		c.logger.Warn("egress cursor is ahead of the chain (was the data directory replaced?); the connector waits until the chain reaches it",
			"cursor_block", cur.Block, "height", h, "cursor", c.path)
	}
	c.mu.Lock()
	c.cur = cur
	c.mu.Unlock()
	return nil
}

// startCursor is the cursor of a connector's first start.
func (c *connector) startCursor() (Cursor, error) {
	if c.cfg.Start == StartBeginning {
		return Cursor{}, nil
	}
	counts, err := c.index.Counts()
	if err != nil || counts.Blocks == 0 {
		return Cursor{}, err
	}
	if base, _ := c.blocks.Base(); counts.Blocks <= base {
		return Cursor{Block: base}, nil // collect starts after the base
	}
	b, err := c.block(counts.Blocks)
	if err != nil {
		return Cursor{}, err
	}
	return Cursor{Block: counts.Blocks, Index: uint64(max(len(b.Txs), 1) - 1), Handled: counts.Txs}, nil
}

// validName says whether s may name a connector, and so a file.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
