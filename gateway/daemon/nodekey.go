package daemon

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/tpm"
)

// Waits between tries while the node key cannot sign: the TPM package
// gates its own reconnects (100ms doubling to 5s), so a try in between
// costs nothing but fails at once.
const (
	keyRetryMin = 100 * time.Millisecond
	keyRetryMax = time.Second
)

// keyWatch is the node key as the running gateway uses it. It notes when
// the key cannot sign for now (the TPM went away: tpm.ErrUnavailable) and
// when it signs again, for /readyz and the log; run probes a key that is
// down until it is back, so that readiness recovers even when nothing
// else signs. Every signature of the running gateway goes through it.
type keyWatch struct {
	tpm.Signer
	logger *slog.Logger

	mu    sync.Mutex
	down  error     // why the key cannot sign; nil when it can
	since time.Time // when it went down
	wake  chan struct{}
}

func newKeyWatch(k tpm.Signer, logger *slog.Logger) *keyWatch {
	return &keyWatch{Signer: k, logger: logger, wake: make(chan struct{}, 1)}
}

// unavailable reports a signing error that is a condition to wait out,
// not a broken key.
func unavailable(err error) bool { return errors.Is(err, tpm.ErrUnavailable) }

// Sign signs with the node key and notes whether it could.
func (w *keyWatch) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := w.Signer.Sign(r, digest, opts)
	w.note(err)
	return sig, err
}

// note records the outcome of a signature: down on tpm.ErrUnavailable, up
// on success; other errors say nothing about availability.
func (w *keyWatch) note(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil && w.down != nil:
		w.logger.Info("node key signs again", "down_for", time.Since(w.since).Round(time.Millisecond))
		w.down = nil
	case unavailable(err):
		if w.down == nil {
			w.since = time.Now()
			w.logger.Warn("node key cannot sign: votes and heartbeats wait until it can", "err", err)
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
		w.down = err
	}
}

// health says why the node key cannot sign now, for /readyz; nil if it can.
func (w *keyWatch) health() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down == nil {
		return nil
	}
	return fmt.Errorf("node key: TPM unavailable for %s: %w", time.Since(w.since).Round(time.Second), w.down)
}

func (w *keyWatch) isDown() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down != nil
}

// probe is what run signs to learn whether the key is back: the digest of
// a fixed text, which no vote, tx or handshake signs.
var probe = sha256.Sum256([]byte("ledgergate node key availability probe"))

// run probes the key while it is down, with backoff, until ctx ends.
func (w *keyWatch) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for pause := keyRetryMin; w.isDown(); pause = min(2*pause, keyRetryMax) {
			if !wait(ctx, pause) {
				return
			}
			w.Sign(rand.Reader, probe[:], crypto.SHA256)
		}
	}
}

// waiting returns a signer for the replica. When the key cannot sign for
// now it waits, with backoff, and tries again until it signs or ctx ends:
// the replica's driver stays inside the core's step, sending nothing and
// signing nothing else, and picks up where it was once the key is back.
// Staying silent keeps PBFT safe (a replica that does not answer is one
// the protocol already tolerates), and the vote it then signs is the one
// the core decided on before, so nothing conflicting is ever signed.
// Messages that reach the replica meanwhile are dropped, and recovered by
// retransmission.
func (w *keyWatch) waiting(ctx context.Context) crypto.Signer {
	return waitingSigner{w: w, ctx: ctx}
}

type waitingSigner struct {
	w   *keyWatch
	ctx context.Context
}

func (s waitingSigner) Public() crypto.PublicKey { return s.w.Public() }

func (s waitingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	for pause := keyRetryMin; ; pause = min(2*pause, keyRetryMax) {
		sig, err := s.w.Sign(r, digest, opts)
		if err == nil || !unavailable(err) {
			return sig, err
		}
		if !wait(s.ctx, pause) {
			return nil, fmt.Errorf("daemon: node key: %w; %w", err, s.ctx.Err())
		}
	}
}

// wait waits d, or less if ctx ends first; it reports whether ctx is
// still going.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
