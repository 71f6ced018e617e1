package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/tpm"
)

// tpmFlags pick the TPM: from the configuration's [signer], overridden by
// flags.
type tpmFlags struct {
	e                                        *env
	config, device, socket, handle, authFile *string
}

func newTPMFlags(fs *flagSet) tpmFlags {
	return tpmFlags{
		e:        fs.e,
		config:   fs.String("config", "", "configuration file, for [signer] (default: "+fs.e.defaultConfigDesc()+")"),
		device:   fs.String("device", "", "TPM device (overrides signer.tpm_device; default /dev/tpmrm0)"),
		socket:   fs.String("socket", "", "swtpm Unix socket instead of a device (overrides signer.tpm_socket)"),
		handle:   fs.String("handle", "", "persistent handle of the node key (overrides signer.tpm_handle; default 0x81010001)"),
		authFile: fs.String("auth-file", "", "file holding the key's auth value (overrides signer.tpm_auth_file)"),
	}
}

// withTPM parses a tpm command's flags, opens the TPM they name, and runs
// do on it.
func withTPM(e *env, name string, args []string, do func(t *tpm.TPM) error) error {
	fs := newFlags(e, name)
	f := newTPMFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	t, err := f.open()
	if err != nil {
		return err
	}
	defer t.Close()
	return do(t)
}

// open opens the TPM the flags and configuration name.
func (f tpmFlags) open() (*tpm.TPM, error) {
	cfg, err := loadConfig(f.e, false, *f.config)
	if err != nil {
		return nil, err
	}
	s := cfg.Signer
	s.Kind = "tpm"
	if *f.device != "" {
		s.TPMDevice, s.TPMSocket = *f.device, ""
	}
	if *f.socket != "" {
		s.TPMSocket = *f.socket
	}
	if *f.handle != "" {
		s.TPMHandle = *f.handle
	}
	if *f.authFile != "" {
		s.TPMAuthFile = *f.authFile
	}
	o, err := daemon.TPMOptions(s, nil)
	if err != nil {
		return nil, err
	}
	return tpm.Open(o)
}

func cmdTPMInfo(_ context.Context, e *env, args []string) error {
	return withTPM(e, "tpm info", args, func(t *tpm.TPM) error {
		info, err := t.Info()
		if err != nil {
			return err
		}
		yes := func(b bool) string {
			if b {
				return "yes"
			}
			return "NO"
		}
		fmt.Fprintf(e.stdout, "TPM:           %s\n", info.Path)
		fmt.Fprintf(e.stdout, "manufacturer:  %s (%s)\n", info.Manufacturer, strings.TrimSpace(info.VendorString))
		fmt.Fprintf(e.stdout, "firmware:      %s\n", info.Firmware)
		fmt.Fprintf(e.stdout, "ECC P-256:     %s\nECDSA:         %s\nSHA-256:       %s\n", yes(info.ECCP256), yes(info.ECDSA), yes(info.SHA256))
		switch {
		case info.NodeKey:
			fmt.Fprintf(e.stdout, "node key:      present at 0x%08x\n", info.Handle)
		case info.KeyPresent:
			fmt.Fprintf(e.stdout, "node key:      0x%08x holds another object, not a node key\n", info.Handle)
		default:
			fmt.Fprintf(e.stdout, "node key:      none at 0x%08x (create it with: ledgergate tpm init)\n", info.Handle)
		}
		if bad, why := tpm.VulnerableFirmware(info); bad {
			fmt.Fprintf(e.stdout, "WARNING:       %s\n", why)
		}
		return nil
	})
}

func cmdTPMInit(_ context.Context, e *env, args []string) error {
	return withTPM(e, "tpm init", args, func(t *tpm.TPM) error {
		pub, err := t.CreateKey()
		if errors.Is(err, tpm.ErrKeyExists) {
			return &exitError{code: 1, err: fmt.Errorf("%w; it is kept (ledgergate tpm pubkey prints it)", err)}
		}
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created the node key in the TPM at 0x%08x, fingerprint %s:\n", t.Handle(), daemon.KeyFingerprint(der))
		return pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	})
}

func cmdTPMPubkey(_ context.Context, e *env, args []string) error {
	return withTPM(e, "tpm pubkey", args, func(t *tpm.TPM) error {
		s, err := t.Signer()
		if err != nil {
			return err
		}
		der, err := ledger.MarshalPublicKey(s)
		if err != nil {
			return err
		}
		return pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	})
}
