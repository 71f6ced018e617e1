package daemon

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ReportEvery is how often long work reports how far it is: to the log,
// and during a start to Options.Starting. A step that can count its
// progress (blocks replayed or indexed) reports when it has made some; one
// that cannot (an SQL statement that upgrades the index) reports how long
// it has run.
const ReportEvery = 5 * time.Second

// reporter reports the progress of long work, at most every ReportEvery
// for a step, and the step's first and last report always.
type reporter struct {
	logger *slog.Logger
	notify func(status string) // Options.Starting; nil: the log only

	mu   sync.Mutex // guards step, last, and calls of notify
	step string     // the step reported last
	last time.Time  // when
}

func newReporter(logger *slog.Logger, notify func(status string)) *reporter {
	return &reporter{logger: logger, notify: notify}
}

// blocks reports that step (a constant message, e.g. "indexing") has done
// blocks of total.
func (r *reporter) blocks(step string, done, total uint64) {
	if !r.due(step, done == total) {
		return
	}
	r.logger.Info(step, "block", done, "of", total)
	r.status(fmt.Sprintf("%s: block %d of %d", step, done, total))
}

// due says whether a report of step is due now, and notes it if so: the
// step's first, its last, or ReportEvery after the one before.
func (r *reporter) due(step string, last bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if step == r.step && !last && now.Sub(r.last) < ReportEvery {
		return false
	}
	r.step, r.last = step, now
	return true
}

// status passes a status line to notify, if there is one, one call at a
// time.
func (r *reporter) status(s string) {
	if r.notify == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notify(s)
}

// during runs fn, a step that cannot count its progress: it passes step
// to notify when fn starts, then, for as long as fn runs, logs and passes
// on every ReportEvery how long it has run. fn may name what it does more
// precisely with retitle (e.g. once it finds the index needs an upgrade);
// the later reports carry that title.
func (r *reporter) during(step string, fn func(retitle func(string)) error) error {
	start := time.Now()
	var mu sync.Mutex
	title := step
	retitle := func(s string) {
		mu.Lock()
		title = s
		mu.Unlock()
		r.status(s)
	}
	r.status(step)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ReportEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				s := title
				mu.Unlock()
				took := time.Since(start).Round(time.Second)
				r.logger.Info("still "+step, "step", s, "for", took)
				r.status(fmt.Sprintf("%s (%s)", s, took))
			}
		}
	})
	err := fn(retitle)
	close(stop)
	wg.Wait()
	return err
}
