package daemon

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/tpm"
)

// NodeKey is the node's identity key and how to release it.
type NodeKey struct {
	tpm.Signer
	t *tpm.TPM // nil for a software key
}

// Close releases the TPM, if the key is in one.
func (k *NodeKey) Close() error {
	if k == nil || k.t == nil {
		return nil
	}
	return k.t.Close()
}

// TPMOptions turns the signer configuration into the TPM's options.
func TPMOptions(s config.Signer, logger *slog.Logger) (tpm.Options, error) {
	h, err := s.Handle()
	if err != nil {
		return tpm.Options{}, err
	}
	o := tpm.Options{Handle: h, Logger: logger}
	if s.TPMSocket != "" {
		o.Socket = s.TPMSocket
	} else {
		o.Device = s.TPMDevice
	}
	if s.TPMAuthFile != "" {
		b, err := os.ReadFile(s.TPMAuthFile)
		if err != nil {
			return tpm.Options{}, fmt.Errorf("daemon: signer.tpm_auth_file: %w", err)
		}
		o.Auth = trimNewline(b)
	}
	return o, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// errNoTPMHint explains what a gateway without a TPM must be told.
const errNoTPMHint = `a gateway without a TPM runs only with an explicitly configured software key: set [signer] kind = "software" (or use ledgergate run --dev)`

// OpenNodeKey opens the node key the configuration names: the key in the
// TPM, or a software key file under dir.
func OpenNodeKey(s config.Signer, dir string, logger *slog.Logger) (*NodeKey, error) {
	return nodeKey(s, dir, logger, false)
}

// trySign signs once at start, so that a wrong auth value or a locked-out
// TPM stops the gateway with a clear error before it takes part in
// anything.
func trySign(k tpm.Signer) error {
	d := sha256.Sum256([]byte("ledgergate node key self-test"))
	if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		return fmt.Errorf("daemon: the node key cannot sign: %w", err)
	}
	return nil
}

// CreateNodeKey makes the node key: a new software key file under dir
// (never replacing one), or the key in the TPM. A TPM that already holds
// a node key at the handle keeps it: the gateway keeps its identity.
func CreateNodeKey(s config.Signer, dir string, logger *slog.Logger) (*NodeKey, error) {
	return nodeKey(s, dir, logger, true)
}

// nodeKey opens, or first creates, the configured node key.
func nodeKey(s config.Signer, dir string, logger *slog.Logger, create bool) (*NodeKey, error) {
	switch s.Kind {
	case "software":
		path := keyPath(dir, s.KeyFile)
		if !create {
			k, err := tpm.LoadSoftwareKey(path)
			if errors.Is(err, tpm.ErrNoKey) {
				return nil, fmt.Errorf("daemon: signer.kind = \"software\" but %w", err)
			}
			if err != nil {
				return nil, err
			}
			return &NodeKey{Signer: k}, nil
		}
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrKeyExists, path)
		}
		k, err := tpm.CreateSoftwareKey(path)
		if err != nil {
			return nil, err
		}
		return &NodeKey{Signer: k}, nil
	case "tpm":
		t, err := openTPM(s, logger)
		if err != nil {
			return nil, err
		}
		if create {
			if _, err := t.CreateKey(); err != nil && !errors.Is(err, tpm.ErrKeyExists) {
				t.Close()
				return nil, err
			}
		}
		k, err := t.Signer()
		if err == nil {
			err = trySign(k)
		}
		if err != nil {
			t.Close()
			if errors.Is(err, tpm.ErrNoNodeKey) {
				return nil, fmt.Errorf("daemon: %w: create it with `ledgergate init` or `ledgergate tpm init`", err)
			}
			return nil, err
		}
		return &NodeKey{Signer: k, t: t}, nil
	}
	return nil, fmt.Errorf("daemon: signer.kind %q: want \"tpm\" or \"software\"", s.Kind)
}

// openTPM opens the configured TPM and warns about firmware known to leak
// ECDSA keys through timing (TPM-Fail).
func openTPM(s config.Signer, logger *slog.Logger) (*tpm.TPM, error) {
	o, err := TPMOptions(s, logger)
	if err != nil {
		return nil, err
	}
	t, err := tpm.Open(o)
	if errors.Is(err, tpm.ErrNoTPM) {
		return nil, fmt.Errorf("daemon: %w; %s", err, errNoTPMHint)
	}
	if err != nil {
		return nil, err
	}
	if info, err := t.Info(); err == nil {
		if bad, why := tpm.VulnerableFirmware(info); bad && logger != nil {
			logger.Warn("TPM firmware is known to leak ECDSA keys through signing time (TPM-Fail); signing is paced; update the firmware",
				"manufacturer", info.Manufacturer, "firmware", info.Firmware.String(), "why", why)
		}
	}
	return t, nil
}
