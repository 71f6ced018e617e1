// Package tpm provides the gateway's node identity key as a crypto.Signer.
//
// The key signs commit votes and authenticates the node to its peers. It
// should live in a TPM 2.0; until the TPM signer lands, a software key in a
// PKCS#8 PEM file (mode 0600) is available, and it says so: Signer.Hardware
// reports false, and the gateway logs and reports "software key, not
// hardware-backed".
package tpm
