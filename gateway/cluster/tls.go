package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// ErrPeerKey is returned when the other side of a connection does not prove
// the genesis key it must hold.
var ErrPeerKey = errors.New("cluster: peer key refused")

// ALPN protocols: what a connection is for.
const (
	alpnPeer  = "ledgergate-peer/1"  // message stream, outbound side sends only
	alpnFetch = "ledgergate-fetch/1" // one fetch request and its response
	alpnBlob  = "ledgergate-blob/1"  // one blob request and its response

	alpnSnapshot = "ledgergate-snapshot/2" // one snapshot chunk request and its response
)

// selfSigned makes the node's TLS certificate: self-signed by signer, with
// CN = id. Peers pin the key, not the certificate, so its fields matter
// little; only signer.Public and signer.Sign are used.
func selfSigned(signer crypto.Signer, id string, now time.Time) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("cluster: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("cluster: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster: parse own certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer, Leaf: leaf}, nil
}

// checkKey reports whether k is a valid P-256 public key.
func checkKey(k crypto.PublicKey) error {
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek == nil {
		return fmt.Errorf("key of type %T, want *ecdsa.PublicKey", k)
	}
	if ek.Curve != elliptic.P256() {
		return errors.New("key is not on P-256")
	}
	if _, err := ek.ECDH(); err != nil {
		return fmt.Errorf("invalid P-256 key: %w", err)
	}
	return nil
}

// keyID is the canonical form of a public key, used as a map key: its PKIX
// DER encoding.
func keyID(k crypto.PublicKey) (string, bool) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", false
	}
	return string(der), true
}

// fingerprint names a key in logs and errors: the first 8 bytes of the
// SHA-256 of its PKIX DER.
func fingerprint(k crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return fmt.Sprintf("(%T)", k)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

// baseTLS is what every connection of the cluster shares: TLS 1.3 only, our
// certificate, no session resumption.
func baseTLS(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{*cert},
		SessionTicketsDisabled: true,
	}
}

// serverTLS accepts any client certificate at the TLS layer and then pins
// it: the leaf key must be one of our peers' genesis keys.
func (t *Transport) serverTLS(cert *tls.Certificate) *tls.Config {
	c := baseTLS(cert)
	c.ClientAuth = tls.RequireAnyClientCert // chains are not verified; keys are pinned below
	c.NextProtos = []string{alpnPeer, alpnFetch, alpnBlob, alpnSnapshot}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := t.inboundPeer(cs)
		return err
	}
	return c
}

// clientTLS pins the server of a connection to p's genesis key.
func clientTLS(cert *tls.Certificate, p *peer, proto string) *tls.Config {
	c := baseTLS(cert)
	// Chains are not verified: VerifyConnection pins the leaf key instead.
	c.InsecureSkipVerify = true
	c.NextProtos = []string{proto}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := checkState(cs, proto); err != nil {
			return err
		}
		leaf := cs.PeerCertificates[0]
		if !p.PublicKey.Equal(leaf.PublicKey) {
			return fmt.Errorf("%w: %s at %s presented key %s, want its genesis key %s",
				ErrPeerKey, p.ID, p.address(), fingerprint(leaf.PublicKey), fingerprint(p.PublicKey))
		}
		return nil
	}
	return c
}

// checkState checks what pinning needs from a finished handshake: TLS 1.3,
// a certificate, and one of our application protocols.
func checkState(cs tls.ConnectionState, protos ...string) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("%w: TLS version %#x, want 1.3", ErrPeerKey, cs.Version)
	}
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate", ErrPeerKey)
	}
	if !slices.Contains(protos, cs.NegotiatedProtocol) {
		return fmt.Errorf("%w: application protocol %q, want one of %q", ErrPeerKey, cs.NegotiatedProtocol, protos)
	}
	return nil
}

// inboundPeer is the peer whose genesis key the client of cs proved.
func (t *Transport) inboundPeer(cs tls.ConnectionState) (*peer, error) {
	if err := checkState(cs, alpnPeer, alpnFetch, alpnBlob, alpnSnapshot); err != nil {
		return nil, err
	}
	leaf := cs.PeerCertificates[0]
	if id, ok := keyID(leaf.PublicKey); ok {
		if p := t.set.Load().byKey[id]; p != nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: key %s (CN %q) is not the genesis key of any peer",
		ErrPeerKey, fingerprint(leaf.PublicKey), leaf.Subject.CommonName)
}
