package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/daemon"
)

// configEnv names the environment variable that replaces the default
// configuration file, /etc/ledgergate/ledgergate.toml (main reads it; ""
// reads none). Tests set it; an operator may too.
const configEnv = "LEDGERGATE_CONFIG"

// The commands that talk to a gateway follow the installed one: what
// --api, --data and --genesis are when not given comes from the
// configuration the gateway runs with (--config FILE, else the default
// file if it exists), else from the built-in defaults of `run --dev`.
// An explicit flag always wins. flagSet.resolve does this, once, for
// every command: apiFlag, dataFlag and genesisFlag only register.

// gatewayFlagsHelp ends the help of the commands with gateway flags.
const gatewayFlagsHelp = `
--api, --data and --genesis follow the installed gateway: a flag given wins;
else api.listen and data_dir of the configuration (--config FILE, else
/etc/ledgergate/ledgergate.toml if it exists; $` + configEnv + ` replaces that
path, "" reads none); else http://127.0.0.1:8080 and ./ledgergate-data.
The genesis is DATA/genesis.json. A configuration that does not parse is an
error. An API with tls_cert is reached over HTTPS, pinned to that certificate.
`

// flagSet is a command's flag set, with the gateway flags it has.
type flagSet struct {
	*flag.FlagSet
	e  *env
	gw gatewayFlags
}

// gatewayFlags are the flags that name the gateway a command works on;
// nil if the command does not have the flag.
type gatewayFlags struct {
	config  *string
	api     *apiTarget
	data    *source
	genesis *source
}

// source is a resolved path or address and where it came from, for
// error messages: "--data", "/etc/ledgergate/ledgergate.toml data_dir",
// "built-in default".
type source struct {
	v    string
	from string
}

// apiTarget is the API a command talks to.
type apiTarget struct {
	source
	// pin, if set, is the DER certificate the API must present: the
	// api.tls_cert of the configuration the address came from.
	pin []byte
}

// client returns a client of the API, with the token of $LEDGERGATE_TOKEN.
func (a *apiTarget) client() *client {
	c := newClient(a.v)
	c.from = a.from
	if a.pin != nil {
		pin := a.pin
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{
			// The gateway's certificate is pinned instead: the address
			// taken from api.listen (127.0.0.1 for 0.0.0.0) need not be
			// a name the certificate carries.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, pin) {
					return errors.New("the gateway's certificate is not the one in api.tls_cert")
				}
				return nil
			},
		}
		c.http.Transport = tr
	}
	return c
}

func (f *flagSet) ensureConfigFlag() {
	if f.gw.config == nil {
		f.gw.config = f.String("config", "", "the gateway's configuration file, for api.listen and data_dir (default: "+
			f.e.defaultConfigDesc()+")")
	}
}

// apiFlag registers --api (and --config).
func apiFlag(fs *flagSet) *apiTarget {
	fs.ensureConfigFlag()
	fs.gw.api = &apiTarget{}
	fs.StringVar(&fs.gw.api.v, "api", "", "gateway API URL (default: from api.listen of the configuration, else "+defaultAPI+")")
	return fs.gw.api
}

// dataFlag registers --data (and --config).
func dataFlag(fs *flagSet) *string {
	fs.ensureConfigFlag()
	fs.gw.data = &source{}
	fs.StringVar(&fs.gw.data.v, "data", "", "data directory (default: data_dir of the configuration, else "+config.Dev().DataDir+")")
	return &fs.gw.data.v
}

// genesisFlag registers --genesis (and --config).
func genesisFlag(fs *flagSet, help string) *string {
	fs.ensureConfigFlag()
	fs.gw.genesis = &source{}
	fs.StringVar(&fs.gw.genesis.v, "genesis", "", help+" (default: DATA/"+daemon.GenesisFile+", DATA as --data, else data_dir of the configuration, else "+config.Dev().DataDir+")")
	return &fs.gw.genesis.v
}

// resolve fills in the gateway flags that were not given: from the
// configuration, else the built-in defaults. A configuration file that
// exists and does not parse is an error naming it.
func (f *flagSet) resolve() error {
	if f.gw.config == nil {
		return nil
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var (
		cfg     *config.Config
		cfgPath string
	)
	needCfg := *f.gw.config != "" ||
		(f.gw.api != nil && !set["api"]) || (f.gw.data != nil && !set["data"]) || (f.gw.genesis != nil && !set["genesis"])
	if needCfg {
		path := *f.gw.config
		if path == "" {
			path = f.e.existingDefaultConfig()
		}
		if path != "" {
			c, err := config.Load(path, config.Default())
			if err != nil {
				return err
			}
			cfg, cfgPath = &c, path
		}
	}
	// The data directory: --data, data_dir, the built-in default.
	data := source{v: config.Dev().DataDir, from: "built-in default"}
	switch {
	case f.gw.data != nil && set["data"]:
		data.from = "--data"
		data.v = f.gw.data.v
	case cfg != nil:
		data = source{v: cfg.DataDir, from: cfgPath + " data_dir"}
	}
	if f.gw.data != nil {
		*f.gw.data = data
	}
	if g := f.gw.genesis; g != nil {
		if set["genesis"] {
			g.from = "--genesis"
		} else {
			g.v = filepath.Join(data.v, daemon.GenesisFile)
			g.from = "in the data directory, " + data.v + " (" + data.from + ")"
		}
	}
	if a := f.gw.api; a != nil {
		switch {
		case set["api"]:
			a.from = "--api"
		case cfg != nil:
			u, pin, err := apiFromConfig(cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", cfgPath, err)
			}
			a.v, a.pin, a.from = u, pin, cfgPath+" api.listen"
		default:
			a.v, a.from = defaultAPI, "built-in default"
		}
	}
	return nil
}

// apiFromConfig is the URL the CLI reaches the API of cfg at: api.listen,
// with a loopback address for an unspecified one (0.0.0.0, ::), over
// HTTPS when api.tls_cert and api.tls_key are set. With HTTPS it also
// returns the certificate to pin, if api.tls_cert is readable (the CLI
// runs as root or the gateway's user); else the system's roots check it.
func apiFromConfig(cfg *config.Config) (string, []byte, error) {
	ap, err := netip.ParseAddrPort(cfg.API.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("api.listen %q: %w", cfg.API.Listen, err)
	}
	addr := ap.Addr()
	if addr.IsUnspecified() {
		if addr.Is4() {
			addr = netip.MustParseAddr("127.0.0.1")
		} else {
			addr = netip.IPv6Loopback()
		}
	}
	host := net.JoinHostPort(addr.Unmap().String(), fmt.Sprint(ap.Port()))
	if cfg.API.TLSCert == "" || cfg.API.TLSKey == "" {
		return "http://" + host, nil, nil
	}
	pemBytes, err := os.ReadFile(cfg.API.TLSCert)
	if err != nil {
		return "https://" + host, nil, nil
	}
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "CERTIFICATE" {
		return "", nil, fmt.Errorf("api.tls_cert %s: no PEM certificate", cfg.API.TLSCert)
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return "", nil, fmt.Errorf("api.tls_cert %s: %w", cfg.API.TLSCert, err)
	}
	return "https://" + host, b.Bytes, nil
}

// defaultConfigDesc names the default configuration file for help texts.
func (e *env) defaultConfigDesc() string {
	if e.configSet {
		if e.configPath == "" {
			return "none, as $" + configEnv + " is empty"
		}
		return e.configPath + " ($" + configEnv + ") when it exists"
	}
	return config.DefaultPath + " when it exists"
}

// existingDefaultConfig returns the default configuration file if it
// exists, else "".
func (e *env) existingDefaultConfig() string {
	path := config.DefaultPath
	if e.configSet {
		path = e.configPath
	}
	if path == "" {
		return ""
	}
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}
