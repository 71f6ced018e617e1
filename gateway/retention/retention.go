package retention

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The budget's thresholds: a pass starts pruning when usage is over
// highWater of the budget and prunes until it is under lowWater (or
// nothing sealed is left to prune). The gap lets the log, the index and
// the WAL grow between passes.
const (
	highWater = 0.70
	lowWater  = 0.50
	// warnWater is where Status says the budget is nearly spent: usage
	// that pruning could not bring under highWater is still growing.
	warnWater = 0.85
	// lowDiskDivisor: Status says the disk is low when less than a tenth
	// of its file system is free.
	lowDiskDivisor = 10
	// deleteBatch is how many txs rows one SQL transaction of
	// index.PruneRecords looks at.
	deleteBatch = 2000
)

// Config is the policy. Keep and MaxBytes both zero: the Pruner only
// measures.
type Config struct {
	Keep     time.Duration // prune records of blocks older than this, by block time
	MaxBytes int64         // budget of Paths together
	Interval time.Duration // between passes
	// Paths are measured for the budget: the block log directory, the
	// index file and its -wal and -shm files. A missing path counts 0.
	Paths []string
}

// Deps are what a Pruner works on.
type Deps struct {
	Log      *ledger.Log
	Index    *index.Index
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: no metrics
	Now      func() time.Time      // nil: time.Now
	// Hold, if set, returns the lowest height whose records someone still
	// needs (the egress connectors' lowest cursor): age pruning leaves the
	// segments that reach it, budget pruning does not (a full disk would
	// stop the chain) and logs what it pruned undelivered.
	Hold func() (height uint64, ok bool)
}

// Status is what the Pruner reports (API status, dashboard).
type Status struct {
	Enabled      bool      `json:"enabled"`
	Keep         string    `json:"keep,omitempty"`      // the age limit, "" if none
	MaxBytes     int64     `json:"max_bytes,omitempty"` // the budget, 0 if none
	UsedBytes    int64     `json:"used_bytes"`          // block log + index + WAL at the last pass
	PrunedHeight uint64    `json:"pruned_height"`       // records of blocks up to here are pruned
	Pruned       uint64    `json:"pruned_records"`      // index rows of records deleted since start
	LastPass     time.Time `json:"last_pass,omitzero"`
	// NearlyFull is set when usage is over 85% of the budget after a
	// pass: pruning cannot keep up, or what it cannot prune (headers,
	// the segment being written, the index) fills the budget.
	NearlyFull bool `json:"nearly_full"`
	// DiskFreeBytes and DiskBytes are the free space (for this process)
	// and the size of the file system of the block log; LowDisk is set
	// when less than 10% of it is free, budget or not.
	DiskFreeBytes int64  `json:"disk_free_bytes"`
	DiskBytes     int64  `json:"disk_bytes"`
	LowDisk       bool   `json:"low_disk"`
	LastError     string `json:"last_error,omitempty"`
}

// Pruner applies a retention policy.
type Pruner struct {
	cfg    Config
	d      Deps
	logger *slog.Logger
	m      *metrics

	mu     sync.Mutex
	status Status
	done   uint64 // every sealed segment up to this height is pruned, in the log and the index
	unmet  bool   // the last pass could not bring usage under the budget's high water (Pass only)
}

// New checks cfg and builds a Pruner. It does no I/O.
func New(cfg Config, d Deps) (*Pruner, error) {
	var errs []error
	if cfg.Keep < 0 || cfg.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("retention: keep %s and max bytes %d must not be negative", cfg.Keep, cfg.MaxBytes))
	}
	if cfg.Interval <= 0 {
		errs = append(errs, fmt.Errorf("retention: interval %s: want more than 0", cfg.Interval))
	}
	if d.Log == nil || d.Index == nil || d.Logger == nil {
		errs = append(errs, errors.New("retention: Log, Index and Logger are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	p := &Pruner{cfg: cfg, d: d, logger: d.Logger, m: newMetrics(d.Registry)}
	p.status = Status{Enabled: cfg.Keep > 0 || cfg.MaxBytes > 0, MaxBytes: cfg.MaxBytes}
	if cfg.Keep > 0 {
		p.status.Keep = cfg.Keep.String()
	}
	p.m.budget.Set(float64(cfg.MaxBytes))
	return p, nil
}

// Run makes a pass at once and then every Interval until ctx ends. A
// failed pass is logged and reported in Status; the next one tries again.
func (p *Pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if err := p.Pass(ctx); err != nil && ctx.Err() == nil {
			p.logger.Warn("retention pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close is a no-op: Run holds nothing once it returned. It exists for
// the New/Run/Close lifecycle.
func (p *Pruner) Close() error { return nil }

// Status returns the Pruner's state as of its last pass.
func (p *Pruner) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Pass measures usage and prunes what the policy says, oldest first.
func (p *Pruner) Pass(ctx context.Context) (err error) {
	defer func() {
		p.mu.Lock()
		p.status.LastPass = p.d.Now()
		p.status.LastError = ""
		if err != nil {
			p.status.LastError = err.Error()
		}
		p.mu.Unlock()
	}()
	used, err := p.usage()
	if err != nil {
		return err
	}
	p.setUsed(used)
	pruned, err := p.d.Index.PrunedHeight()
	if err != nil {
		return err
	}
	p.setPruned(pruned, 0)
	if !p.status.Enabled {
		return nil
	}
	p.mu.Lock()
	done := max(p.done, pruned)
	p.mu.Unlock()
	indexed, err := p.d.Index.Height()
	if err != nil {
		return err
	}
	overBudget := p.cfg.MaxBytes > 0 && float64(used) > highWater*float64(p.cfg.MaxBytes)
	cutoff := p.d.Now().Add(-p.cfg.Keep).UnixMilli()
	lagging := false
	for _, seg := range p.d.Log.Segments() {
		if err := ctx.Err(); err != nil {
			return nil
		}
		if !seg.Sealed || seg.Last <= done || seg.First == 0 {
			continue
		}
		if seg.Last > indexed {
			lagging = true
			break // the index has not caught up: prune its rows on a later pass
		}
		byBudget := overBudget && float64(used) > lowWater*float64(p.cfg.MaxBytes)
		byAge := false
		if p.cfg.Keep > 0 {
			if byAge, err = p.older(seg.Last, cutoff); err != nil {
				return err
			}
		}
		held := false
		if p.d.Hold != nil {
			if h, ok := p.d.Hold(); ok && seg.Last >= h {
				held = true
			}
		}
		if held && !byBudget {
			break // an egress connector has yet to deliver these records
		}
		if !byBudget && !byAge {
			break // segments are in height order: the rest are younger, and usage is under the budget
		}
		if held {
			p.logger.Warn("retention budget prunes records an egress connector has not delivered: they are lost to it",
				"blocks", fmt.Sprintf("%d-%d", seg.First, seg.Last))
		}
		if err := p.pruneSegment(seg); err != nil {
			return err
		}
		done = seg.Last
		p.mu.Lock()
		p.done = done
		p.mu.Unlock()
		if used, err = p.usage(); err != nil {
			return err
		}
		p.setUsed(used)
	}
	unmet := !lagging && p.cfg.MaxBytes > 0 && float64(used) > highWater*float64(p.cfg.MaxBytes)
	if unmet && !p.unmet { // once, not every pass
		p.logger.Warn("retention budget cannot be met: every sealed segment is pruned; what is left is headers, certificates, the segment being written and the index",
			"used_bytes", used, "max_bytes", p.cfg.MaxBytes)
	}
	p.unmet = unmet
	return nil
}

// older says whether the block at height h is older than cutoff (Unix ms).
func (p *Pruner) older(h uint64, cutoff int64) (bool, error) {
	data, err := p.d.Log.ReadHeight(h)
	if err != nil {
		return false, fmt.Errorf("retention: %w", err)
	}
	b, err := ledger.DecodeBlock(data)
	if err != nil {
		return false, fmt.Errorf("retention: block %d: %w", h, err)
	}
	return b.Header.Time < cutoff, nil
}

// pruneSegment rewrites a sealed segment with its records pruned, then
// deletes their index rows.
func (p *Pruner) pruneSegment(seg ledger.Segment) error {
	start := time.Now()
	var records int
	saved, err := p.d.Log.Rewrite(seg.Seq, func(_ uint64, data []byte) ([]byte, error) {
		out, n, err := ledger.PruneRecord(data)
		records += n
		return out, err
	})
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	rows, err := p.d.Index.PruneRecords(seg.Last, deleteBatch)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	p.setPruned(seg.Last, uint64(rows))
	p.m.saved.Add(float64(saved))
	p.logger.Info("pruned records", "segment", seg.Seq, "blocks", fmt.Sprintf("%d-%d", seg.First, seg.Last),
		"records", records, "index_rows", rows, "bytes_saved", saved, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// usage is the size of the measured paths.
func (p *Pruner) usage() (int64, error) {
	var total int64
	for _, path := range p.cfg.Paths {
		n, err := size(path)
		if err != nil {
			return 0, fmt.Errorf("retention: measure %s: %w", path, err)
		}
		total += n
	}
	return total, nil
}

// size is the bytes of a file, or of the files in a directory (not
// recursive), 0 if it does not exist. A file deleted while it is
// measured counts 0.
func size(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return fi.Size(), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(path, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if fi.Mode().IsRegular() {
			total += fi.Size()
		}
	}
	return total, nil
}

func (p *Pruner) setUsed(used int64) {
	var free, total int64
	if len(p.cfg.Paths) > 0 {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(p.cfg.Paths[0], &fs); err == nil {
			free, total = int64(fs.Bavail)*int64(fs.Bsize), int64(fs.Blocks)*int64(fs.Bsize)
		}
	}
	p.mu.Lock()
	p.status.UsedBytes = used
	p.status.NearlyFull = p.cfg.MaxBytes > 0 && float64(used) > warnWater*float64(p.cfg.MaxBytes)
	p.status.DiskFreeBytes, p.status.DiskBytes = free, total
	p.status.LowDisk = total > 0 && free < total/lowDiskDivisor
	p.mu.Unlock()
	p.m.used.Set(float64(used))
	p.m.free.Set(float64(free))
}

func (p *Pruner) setPruned(height, rows uint64) {
	p.mu.Lock()
	p.status.PrunedHeight = max(p.status.PrunedHeight, height)
	p.status.Pruned += rows
	h := p.status.PrunedHeight
	p.mu.Unlock()
	p.m.prunedHeight.Set(float64(h))
	p.m.pruned.Add(float64(rows))
}

// metrics are the Pruner's Prometheus series.
type metrics struct {
	used, budget, prunedHeight, free prometheus.Gauge
	pruned, saved                    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		used: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_storage_used_bytes", Help: "Bytes of the block log, the index and its WAL, at the last retention pass."}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_storage_budget_bytes", Help: "The retention budget (retention.max_bytes); 0 if none."}),
		prunedHeight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_pruned_height", Help: "Records of blocks up to this height were pruned by retention."}),
		free: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_storage_disk_free_bytes", Help: "Free bytes of the block log's file system, at the last retention pass."}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_pruned_records_total", Help: "Index rows of records pruned by retention since start."}),
		saved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_pruned_bytes_total", Help: "Bytes the block log shrank by through retention since start."}),
	}
	if reg != nil {
		reg.MustRegister(m.used, m.budget, m.prunedHeight, m.free, m.pruned, m.saved)
	}
	return m
}
