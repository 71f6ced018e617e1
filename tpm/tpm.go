package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

const (
	// DefaultDevice is the kernel's TPM 2.0 resource manager.
	DefaultDevice = "/dev/tpmrm0"
	// DefaultHandle is the persistent handle of the node key.
	DefaultHandle uint32 = 0x81010001
	// DefaultRateLimit is how long each signature takes at least when the
	// TPM's firmware is known to leak ECDSA nonces through timing (TPM-Fail).
	DefaultRateLimit = 100 * time.Millisecond

	// Owner persistent handles (TCG "Registry of Reserved TPM 2.0 Handles
	// and Localities"): 0x81000000-0x817FFFFF belong to the owner; the rest
	// of 0x81 is the platform's.
	ownerPersistentFirst uint32 = 0x81000000
	ownerPersistentLast  uint32 = 0x817FFFFF

	// maxAuth is the longest auth value a key whose name algorithm is
	// SHA-256 may have (TPM 2.0 Part 3, TPM2_Create: TPM_RC_SIZE when the
	// authValue is longer than the nameAlg digest).
	maxAuth = 32
)

// Errors. Each is returned wrapped with the detail that names the path,
// the handle or the TPM's response code; test with errors.Is.
var (
	// ErrNoTPM reports that there is no TPM at the path tried.
	ErrNoTPM = errors.New("tpm: no TPM")
	// ErrClosed reports use of a TPM after Close.
	ErrClosed = errors.New("tpm: closed")
	// ErrNoNodeKey reports that the node key's handle is empty.
	ErrNoNodeKey = errors.New("tpm: no node key in the TPM")
	// ErrKeyExists reports that CreateKey found a node key already at the
	// handle; it is left as it is.
	ErrKeyExists = errors.New("tpm: a node key already exists")
	// ErrHandleTaken reports that the handle holds an object that is not a
	// node key (not an unrestricted, non-duplicable ECC P-256 signing key).
	ErrHandleTaken = errors.New("tpm: handle holds another object")
	// ErrAuth reports that the TPM refused the auth value given for the node
	// key (TPM_RC_AUTH_FAIL or TPM_RC_BAD_AUTH).
	ErrAuth = errors.New("tpm: wrong auth value for the node key")
	// ErrLockout reports that the TPM is in dictionary-attack lockout
	// (TPM_RC_LOCKOUT) and refuses the node key until it recovers.
	ErrLockout = errors.New("tpm: the TPM is in dictionary-attack lockout after too many wrong auth values")
	// ErrUnavailable reports that the TPM does not answer now: its device
	// or socket is gone, the connection to it broke, it says it is busy,
	// not started or in failure mode, or what answers holds no longer the
	// node key. Nothing was signed. The TPM reconnects by itself, with
	// backoff, on later calls: retry later.
	ErrUnavailable = errors.New("tpm: TPM unavailable")
	// ErrUnsupported reports a TPM without ECC P-256, ECDSA or SHA-256.
	ErrUnsupported = errors.New("tpm: the TPM does not support ECDSA P-256 with SHA-256")
)

// Options says where the TPM is and which key to use. Device and Socket are
// exclusive; with neither, Open uses DefaultDevice.
type Options struct {
	// Device is a TPM character device, e.g. /dev/tpmrm0 (the kernel's
	// resource manager; prefer it over /dev/tpm0).
	Device string
	// Socket is the Unix socket of a TPM simulator (swtpm's
	// --server type=unixio).
	Socket string
	// Handle is the persistent handle of the node key, in the owner range
	// 0x81000000-0x817FFFFF. Zero means DefaultHandle.
	Handle uint32
	// Auth is the node key's auth value (at most 32 bytes). Empty means the
	// key needs no auth value.
	Auth []byte
	// RateLimit is the least time a signature takes, and so the least time
	// between two, when VulnerableFirmware reports the TPM's firmware as
	// leaking ECDSA nonces through timing. Zero means DefaultRateLimit; a
	// negative value turns pacing off.
	RateLimit time.Duration
	// Logger receives the package's logs. Nil discards them.
	Logger *slog.Logger
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Device != "" && o.Socket != "" {
		errs = append(errs, errors.New("tpm: options: set Device or Socket, not both"))
	}
	if o.Handle != 0 && (o.Handle < ownerPersistentFirst || o.Handle > ownerPersistentLast) {
		errs = append(errs, fmt.Errorf("tpm: options: handle 0x%08x is not an owner persistent handle (0x%08x-0x%08x)",
			o.Handle, ownerPersistentFirst, ownerPersistentLast))
	}
	if len(o.Auth) > maxAuth {
		errs = append(errs, fmt.Errorf("tpm: options: auth value is %d bytes, at most %d", len(o.Auth), maxAuth))
	}
	return errors.Join(errs...)
}

// TPM is an open TPM 2.0. Its methods are safe for concurrent use: one
// mutex serialises every command on the transport.
type TPM struct {
	log       *slog.Logger
	path      string
	handle    tpm2.TPMHandle
	auth      []byte
	rateLimit time.Duration
	fixed     fixedProps // read at Open

	opts Options          // where the TPM is, to reopen it
	now  func() time.Time // the clock of the reconnect backoff

	mu      sync.Mutex    // guards everything below and every use of tr
	tr      transport.TPM // every command goes through it: conn{t}
	raw     transport.TPMCloser
	closed  bool
	salt    *saltKey       // owner storage primary for salted sessions, loaded on first need
	keyName tpm2.TPM2BName // the node key's name, once Signer read it; checked on reconnect
	down    error          // why raw is nil: the TPM went away
	retry   time.Time      // no reconnect before then
	backoff time.Duration  // the last wait between reconnects
}

// Reconnect backoff: after the TPM went away, the first call tries to
// reopen it at once; each failed try doubles the wait before the next,
// from minReconnect up to maxReconnect. Calls in between fail at once
// with ErrUnavailable.
const (
	minReconnect = 100 * time.Millisecond
	maxReconnect = 5 * time.Second
)

// Open opens the TPM that o names and reads its fixed properties. It fails
// with ErrNoTPM when nothing answers at the path.
func Open(o Options) (*TPM, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Handle == 0 {
		o.Handle = DefaultHandle
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path, tr, err := openTransport(o)
	if err != nil {
		return nil, err
	}
	t := &TPM{
		log:       log.With("component", "tpm"),
		path:      path,
		handle:    tpm2.TPMHandle(o.Handle),
		auth:      append([]byte(nil), o.Auth...),
		rateLimit: o.RateLimit,
		opts:      o,
		now:       time.Now,
		raw:       tr,
	}
	t.tr = conn{t}
	fixed, err := readFixed(tr)
	if err != nil {
		tr.Close()
		if isNoServer(err) {
			return nil, fmt.Errorf("%w at %s: %w", ErrNoTPM, path, err)
		}
		return nil, fmt.Errorf("tpm: %s: read TPM properties (is it a TPM 2.0?): %w", path, err)
	}
	t.fixed = fixed
	t.log.Info("tpm opened", "path", path, "manufacturer", fixed.manufacturer,
		"vendor", fixed.vendor, "firmware", fixed.firmware.String())
	return t, nil
}

func openTransport(o Options) (string, transport.TPMCloser, error) {
	path, open := o.Device, linuxtpm.Open
	hint := "is the TPM enabled in the firmware setup, and the tpm_crb or tpm_tis driver loaded?"
	if o.Socket != "" {
		path, open = o.Socket, linuxudstpm.Open
		hint = "is the simulator running?"
	}
	if path == "" {
		path = DefaultDevice
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("%w at %s: no such file (%s)", ErrNoTPM, path, hint)
		}
		return "", nil, fmt.Errorf("tpm: %s: %w", path, err)
	}
	tr, err := open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", nil, fmt.Errorf("tpm: open %s: %w (the user needs read-write access, e.g. membership of group tss)", path, err)
		}
		return "", nil, fmt.Errorf("tpm: open %s: %w", path, err)
	}
	return path, tr, nil
}

// isNoServer reports a socket with nobody listening behind it.
func isNoServer(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// Path is the device or socket the TPM was opened at.
func (t *TPM) Path() string { return t.path }

// Handle is the persistent handle of the node key.
func (t *TPM) Handle() uint32 { return uint32(t.handle) }

// Close flushes what the TPM holds for this process and closes the
// transport. It is idempotent. Signers of this TPM fail with ErrClosed
// afterwards.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	if t.raw == nil { // the TPM went away; nothing is open
		return nil
	}
	var errs []error
	if t.salt != nil {
		if _, err := (tpm2.FlushContext{FlushHandle: t.salt.handle}).Execute(t.tr); err != nil {
			errs = append(errs, fmt.Errorf("tpm: flush salt key: %w", err))
		}
		t.salt = nil
	}
	if err := t.raw.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tpm: close %s: %w", t.path, err))
	}
	t.raw = nil
	return errors.Join(errs...)
}

// lock takes the transport mutex, or fails if the TPM is closed, or gone
// and not back yet (ErrUnavailable); it reopens a TPM that went away.
func (t *TPM) lock() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if t.raw == nil {
		if err := t.reconnect(); err != nil {
			t.mu.Unlock()
			return err
		}
	}
	return nil
}

// conn is the transport every command goes through. A failure of the
// transport itself (the device or socket is gone, the connection broke;
// not an answer of the TPM, which go-tpm decodes after Send) closes it and
// reports ErrUnavailable; the next command reopens it (lock). The caller
// holds t.mu.
type conn struct{ t *TPM }

func (c conn) Send(cmd []byte) ([]byte, error) {
	t := c.t
	if t.raw == nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnavailable, t.path, t.down)
	}
	rsp, err := t.raw.Send(cmd)
	if err != nil {
		t.lost(err)
		return nil, fmt.Errorf("%w at %s: %w", ErrUnavailable, t.path, err)
	}
	return rsp, nil
}

// lost closes the transport after it failed with err. What the TPM held
// for this process (the salt key) is gone with the connection: the kernel's
// resource manager flushes it, a restarted simulator never had it. The
// next command reopens at once. The caller holds t.mu.
func (t *TPM) lost(err error) {
	if t.raw != nil {
		t.raw.Close()
		t.raw = nil
		t.log.Warn("tpm went away; reconnecting with backoff", "path", t.path, "err", err)
	}
	t.salt = nil
	t.down = err
	t.retry = time.Time{}
	t.backoff = 0
}

// reconnect reopens the TPM after it went away, at most once per backoff
// interval, and checks that it answers and that the node key, once a
// signer read it, is still the one at the handle: a TPM that lost its
// state, or another TPM at the path, stays unavailable. The caller holds
// t.mu and t.raw is nil.
func (t *TPM) reconnect() error {
	now := t.now()
	if now.Before(t.retry) {
		return fmt.Errorf("%w at %s (next try in %s): %w", ErrUnavailable, t.path,
			t.retry.Sub(now).Round(time.Millisecond), t.down)
	}
	_, raw, err := openTransport(t.opts)
	if err == nil {
		t.raw = raw
		if err = t.checkBack(); err != nil && t.raw != nil {
			t.raw.Close()
			t.raw = nil
		}
	}
	if err != nil {
		t.backoff = min(max(2*t.backoff, minReconnect), maxReconnect)
		t.retry = now.Add(t.backoff)
		t.down = err
		return fmt.Errorf("%w at %s (next try in %s): %w", ErrUnavailable, t.path, t.backoff, err)
	}
	t.down, t.retry, t.backoff = nil, time.Time{}, 0
	t.log.Info("tpm back", "path", t.path)
	return nil
}

// checkBack asks a reopened TPM whether it is a TPM 2.0 and, once a signer
// read the node key, whether the handle still holds that key. The caller
// holds t.mu.
func (t *TPM) checkBack() error {
	if _, err := readFixed(t.tr); err != nil {
		return err
	}
	if len(t.keyName.Buffer) == 0 {
		return nil
	}
	_, name, err := t.readPublic()
	if isNoObject(err) {
		return fmt.Errorf("%w at handle 0x%08x: the TPM lost it, or another TPM answers", ErrNoNodeKey, uint32(t.handle))
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(name.Buffer, t.keyName.Buffer) {
		return fmt.Errorf("tpm: handle 0x%08x holds another key than the node key this gateway opened", uint32(t.handle))
	}
	return nil
}

// keyErr turns the TPM's answers to TPM2_Sign with the node key into the
// package's sentinels: wrong auth values, lockout, and what makes the key
// unavailable for now; any other error passes through.
func (t *TPM) keyErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w: %s; the lockout auth's holder can clear it at once "+
			"(tpm2_dictionarylockout --clear-lockout); fix the node key's auth value first (%s, handle 0x%08x): %w",
			ErrLockout, t.lockoutState(), t.path, uint32(t.handle), err)
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		return fmt.Errorf("%w at handle 0x%08x (%s); each wrong try counts towards dictionary-attack lockout: %w",
			ErrAuth, uint32(t.handle), t.path, err)
	case notNow(err):
		return fmt.Errorf("%w at %s: %w", ErrUnavailable, t.path, err)
	case isNoObject(err):
		// The key was there when the signer was made: the TPM that answers
		// now lost its state, or is another one.
		return fmt.Errorf("%w at %s: %w at handle 0x%08x: %w", ErrUnavailable, t.path, ErrNoNodeKey, uint32(t.handle), err)
	}
	return err
}

// notNow reports the TPM's answers that say it cannot run the command now
// but may later (TPM 2.0 Part 2, 6.6.3: the warnings; TPM_RC_INITIALIZE
// before TPM2_Startup; TPM_RC_FAILURE in failure mode, until a reset).
func notNow(err error) bool {
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCInitialize, tpm2.TPMRCFailure, tpm2.TPMRCTesting, tpm2.TPMRCYielded,
		tpm2.TPMRCCanceled, tpm2.TPMRCRetry, tpm2.TPMRCNVRate, tpm2.TPMRCNVUnavailable,
		tpm2.TPMRCMemory, tpm2.TPMRCObjectMemory, tpm2.TPMRCSessionMemory} {
		if errors.Is(err, rc) {
			return true
		}
	}
	return false
}

// lockoutState describes the dictionary-attack counters (TPM 2.0 Part 1,
// "Dictionary Attack Protection"), best effort. The caller holds t.mu.
func (t *TPM) lockoutState() string {
	p, err := tpmProperties(t.tr, tpm2.TPMPTLockoutCounter, tpm2.TPMPTLockoutRecovery)
	if err != nil {
		return "the TPM refuses keys without noDA until it forgives enough failures"
	}
	return fmt.Sprintf("%d failures counted, %d allowed (TPM_PT_MAX_AUTH_FAIL); the TPM forgives one every %ds",
		p[tpm2.TPMPTLockoutCounter], p[tpm2.TPMPTMaxAuthFail], p[tpm2.TPMPTLockoutInterval])
}

// isNoObject reports the TPM's answer to a handle with nothing behind it.
func isNoObject(err error) bool {
	var f1 tpm2.TPMFmt1Error
	if errors.As(err, &f1) {
		isHandle, _ := f1.Handle()
		return isHandle && errors.Is(err, tpm2.TPMRCHandle)
	}
	return false
}
