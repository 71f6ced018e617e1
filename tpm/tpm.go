package tpm

import (
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

	mu     sync.Mutex // guards everything below and every use of tr
	tr     transport.TPMCloser
	closed bool
	salt   *saltKey // owner storage primary for salted sessions, loaded on first need
}

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
		tr:        tr,
	}
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
	var errs []error
	if t.salt != nil {
		if _, err := (tpm2.FlushContext{FlushHandle: t.salt.handle}).Execute(t.tr); err != nil {
			errs = append(errs, fmt.Errorf("tpm: flush salt key: %w", err))
		}
		t.salt = nil
	}
	if err := t.tr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tpm: close %s: %w", t.path, err))
	}
	return errors.Join(errs...)
}

// lock takes the transport mutex, or fails if the TPM is closed.
func (t *TPM) lock() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// keyErr turns the TPM's answers about the node key's authorisation into
// the package's sentinels; any other error passes through.
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
	}
	return err
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
