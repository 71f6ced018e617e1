package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// runPeer keeps an outbound connection to p and drains p's queue onto it
// until ctx ends. A failed dial or a lost connection is retried with
// backoff; the queue is kept.
func (t *Transport) runPeer(ctx context.Context, p *peer, cert *tls.Certificate) {
	log := t.log.With("peer", p.ID)
	var (
		b         backoff
		f         failures
		connected bool // at least once
	)
	for {
		conn, err := t.dial(ctx, cert, p, alpnPeer)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Log(ctx, f.level(time.Now()), "peer dial failed", "addr", p.address(), "failures", f.streak, "err", err)
			if !sleep(ctx, b.next()) {
				return
			}
			continue
		}
		if connected {
			p.reconnects.Add(1)
		}
		connected = true
		level := slog.LevelInfo
		if f.streak > 1 {
			level = slog.LevelDebug // flapping: the failures already warn
		}
		log.Log(ctx, level, "peer connected")

		start := time.Now()
		err = t.pump(ctx, p, conn)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= healthyAfter {
			b.reset()
			f.reset()
		}
		level = f.level(time.Now())
		if level == slog.LevelWarn && errors.Is(err, io.EOF) {
			level = slog.LevelInfo // the peer closed it: a restart, most likely
		}
		log.Log(ctx, level, "peer connection lost", "failures", f.streak, "err", err)
		if !sleep(ctx, b.next()) {
			return
		}
	}
}

// pump writes a status frame now and every pingEvery, and p's messages as
// they come, until a write fails, the peer closes the connection, or ctx
// ends. It closes conn before returning.
func (t *Transport) pump(ctx context.Context, p *peer, conn *tls.Conn) error {
	// Nothing is expected on an outbound connection: reading only notices
	// the peer closing it, or refusing our key after the handshake (TLS
	// 1.3 clients finish before the server has checked them).
	dead := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		if err == nil {
			err = fmt.Errorf("%w: data on an outbound connection", ErrProtocol)
		}
		dead <- err
	})
	defer wg.Wait()
	defer conn.Close()

	w := bufio.NewWriterSize(progressWriter{conn, writeTimeout}, bufSize)
	if err := t.writeStatus(w); err != nil {
		return err
	}
	p.connected.Store(true)
	defer p.connected.Store(false)
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-dead:
			return fmt.Errorf("cluster: read: %w", err)
		case <-tick.C:
			if err := t.writeStatus(w); err != nil {
				return err
			}
		case m := <-p.queue:
			if err := writeMessages(w, p, m); err != nil {
				return err
			}
		}
	}
}

// writeStatus writes and flushes a status frame with our height.
func (t *Transport) writeStatus(w *bufio.Writer) error {
	var h uint64
	if t.cfg.Height != nil {
		h = t.cfg.Height()
	}
	if err := writeFrame(w, frameStatus, encodeStatus(h)); err != nil {
		return fmt.Errorf("cluster: write status: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("cluster: write status: %w", err)
	}
	return nil
}

// writeMessages writes m and whatever else is queued, up to writeBatch
// messages, and flushes. On failure the whole batch counts as dropped,
// though some of it may have arrived.
func writeMessages(w *bufio.Writer, p *peer, m []byte) error {
	var n uint64
	for {
		n++
		if err := writeFrame(w, frameMessage, m); err != nil {
			p.dropped.Add(n)
			return fmt.Errorf("cluster: write message: %w", err)
		}
		if n == writeBatch {
			break
		}
		more := false
		select {
		case m = <-p.queue:
			more = true
		default:
		}
		if !more {
			break
		}
	}
	if err := w.Flush(); err != nil {
		p.dropped.Add(n)
		return fmt.Errorf("cluster: write message: %w", err)
	}
	p.sent.Add(n)
	return nil
}

// readPeer reads p's message stream until it fails or ctx ends, handing
// messages to the Handler and recording status frames.
func (t *Transport) readPeer(ctx context.Context, conn *tls.Conn, p *peer, remote string) {
	log := t.log.With("peer", p.ID, "remote", remote)
	if old := p.setInbound(conn); old != nil {
		old.Close()
		log.Info("peer inbound replaced")
	} else {
		log.Debug("peer inbound connected")
	}
	defer p.clearInbound(conn)
	if t.peer(p.ID) != p {
		// SetPeers removed it while it shook hands: SetPeers closes the
		// inbound connection it finds, and this one came after.
		log.Info("peer inbound closed: no longer a peer")
		return
	}

	// Status frames come every second: ten seconds without a byte means
	// the peer or the path is dead.
	r := bufio.NewReaderSize(progressReader{conn, idleTimeout}, bufSize)
	for {
		typ, payload, err := readFrame(r, t.cfg.MaxFrame)
		if err == nil {
			p.lastSeen.Store(time.Now().UnixNano())
			switch typ {
			case frameMessage:
				t.h.Message(p.ID, payload)
				continue
			case frameStatus:
				var h uint64
				if h, err = decodeStatus(payload); err == nil {
					p.height.Store(h)
					continue
				}
			default:
				err = fmt.Errorf("%w: %s frame on a message stream", ErrProtocol, typ)
			}
		}
		switch {
		case ctx.Err() != nil:
		case !p.isInbound(conn):
			log.Debug("peer inbound closed", "err", err)
		case errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrProtocol):
			log.Warn("peer protocol violation", "err", err)
		case errors.Is(err, io.EOF):
			log.Info("peer inbound closed")
		default:
			log.Warn("peer inbound closed", "err", err)
		}
		return
	}
}

// setInbound makes c p's inbound stream and returns the one it replaces.
func (p *peer) setInbound(c net.Conn) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.in
	p.in = c
	return old
}

func (p *peer) clearInbound(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == c {
		p.in = nil
	}
}

func (p *peer) isInbound(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.in == c
}

// progressReader gives each read its own deadline, d from its start: a
// peer that stalls is noticed within d, while a large frame on a slow link
// is not cut off as long as bytes flow.
type progressReader struct {
	c net.Conn
	d time.Duration
}

func (r progressReader) Read(p []byte) (int, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(r.d))
	return r.c.Read(p)
}

// progressWriter writes in chunks of ioChunk bytes, each with a deadline d
// from its start, for the same reason.
type progressWriter struct {
	c net.Conn
	d time.Duration
}

func (w progressWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), ioChunk)
		_ = w.c.SetWriteDeadline(time.Now().Add(w.d))
		m, err := w.c.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// backoff is exponential: backoffMin doubling to backoffMax, each wait
// drawn from the upper half of the current step.
type backoff struct{ cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, backoffMin), backoffMax)
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// failures counts a peer's run of failed connections so that a peer that
// stays down warns once, then once every warnEvery, not at every retry.
type failures struct {
	streak   int
	lastWarn time.Time
}

func (f *failures) level(now time.Time) slog.Level {
	f.streak++
	if f.streak == 1 || now.Sub(f.lastWarn) >= warnEvery {
		f.lastWarn = now
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (f *failures) reset() { f.streak = 0 }

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
