package bridge

import "sync/atomic"

// DefaultMaxPendingBytes is the budget NewLimiter takes for a size that is
// not positive: 64 MiB of records waiting to commit.
const DefaultMaxPendingBytes = 64 << 20

// Limiter is the gateway's budget of bytes of records that front ends
// hold while they wait for their commits: every front end (MQTT, CoAP)
// acquires a record's size before it proposes the record and releases it
// once the record is answered, so that all of them together never hold
// more than the budget. A record that does not fit is refused as
// overloaded (ReasonOverloaded): the device backs off and sends it again.
// A Limiter is safe for concurrent use; the zero value is not usable.
type Limiter struct {
	max  int64
	used atomic.Int64
}

// NewLimiter returns a budget of maxBytes; a maxBytes that is not
// positive takes DefaultMaxPendingBytes.
func NewLimiter(maxBytes int) *Limiter {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxPendingBytes
	}
	return &Limiter{max: int64(maxBytes)}
}

// Acquire takes n bytes of the budget and reports whether they were
// available; on false nothing was taken. n must not be negative.
func (l *Limiter) Acquire(n int) bool {
	if n < 0 {
		return false
	}
	for {
		used := l.used.Load()
		if used+int64(n) > l.max {
			return false
		}
		if l.used.CompareAndSwap(used, used+int64(n)) {
			return true
		}
	}
}

// Release gives back n bytes taken by Acquire.
func (l *Limiter) Release(n int) {
	if l.used.Add(-int64(n)) < 0 {
		panic("bridge: invariant: limiter released more than it acquired")
	}
}

// Used returns the bytes taken now.
func (l *Limiter) Used() int { return int(l.used.Load()) }

// Max returns the budget.
func (l *Limiter) Max() int { return int(l.max) }
