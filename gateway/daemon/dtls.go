package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgergate/ledgergate/gateway/config"
)

// The gateway's own DTLS certificate, when none is configured.
const (
	DTLSCertFile = "coap-dtls.crt"
	DTLSKeyFile  = "coap-dtls.key"
)

// dtlsCertificate loads the configured DTLS certificate or, if none is
// configured, the self-signed one in the data directory, making it on
// first use. Devices pin it or skip server authentication (RFC 7925
// allows both); what authenticates a device is its own certificate.
func dtlsCertificate(c config.CoAP, dataDir string) (tls.Certificate, error) {
	if c.DTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.DTLSCert, c.DTLSKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("daemon: coap dtls certificate: %w", err)
		}
		return cert, nil
	}
	certPath, keyPath := filepath.Join(dataDir, DTLSCertFile), filepath.Join(dataDir, DTLSKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		if err != nil {
			return cert, fmt.Errorf("daemon: coap dtls certificate %s: %w", certPath, err)
		}
		return cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "ledgergate coap"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}
