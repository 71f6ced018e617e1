// Package tpm provides the gateway's node identity key as a crypto.Signer.
//
// The key signs commit votes and authenticates the node to its peers. It
// lives in a TPM 2.0 (HardwareSigner); where there is none, a software key
// in a PKCS#8 PEM file (mode 0600) is available, and it says so:
// Signer.Hardware reports false, and the gateway logs and reports
// "software key, not hardware-backed".
//
// # The TPM node key
//
// Open talks to a TPM through the kernel's resource manager (/dev/tpmrm0)
// or a simulator's Unix socket (swtpm). CreateKey generates the node key
// inside the TPM: ECC NIST P-256, ECDSA with SHA-256, unrestricted, with
// fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth and sign set, no
// authPolicy, and an optional auth value. A key without an auth value is
// also noDA: there is nothing to guess, and a dictionary-attack lockout
// caused by other keys must not stop the node from signing. It is made under the owner
// hierarchy's ECC storage primary (the TCG standard SRK template, created
// for the occasion and flushed after) and made persistent at a handle
// (default 0x81010001) with TPM2_EvictControl. The private key never leaves
// the TPM: fixedTPM and fixedParent make TPM2_Duplicate fail, and this
// package has no call that would export it.
//
// Signer reads the key back (TPM2_ReadPublic, checking that the name the
// TPM reports is the name of the public area and that the key is a node
// key) and returns a HardwareSigner whose Sign runs TPM2_Sign and returns
// an ASN.1 DER ECDSA signature, checked against the public key.
//
// # Sessions
//
// Commands that carry a secret run in an HMAC session salted with the
// owner storage primary (so the session key is known only to this process
// and the TPM) with AES-128-CFB encryption of the first command parameter:
//
//  1. TPM2_Create in CreateKey, whose first parameter, the sensitive area,
//     carries the key's auth value: it crosses the bus encrypted.
//  2. TPM2_Sign, when the key has an auth value: the auth value is never
//     sent, only an HMAC keyed with it and the salt, which a bus sniffer
//     cannot attack offline; the digest crosses encrypted; and the TPM's
//     answer is checked with the response HMAC.
//
// TPM2_Sign without an auth value, TPM2_Load, TPM2_EvictControl,
// TPM2_ReadPublic, TPM2_GetCapability and TPM2_CreatePrimary carry no
// secret and use a password session with the empty auth value, or none.
// The salt key's public area comes from the TPM itself, so salting defends
// against a passive observer of the bus, not an active interposer.
//
// # When the TPM goes away
//
// A TPM can stop answering while the gateway runs: the simulator's socket
// is gone, the device is reset or unbound, the TPM is busy, not started or
// in failure mode. Every such failure is ErrUnavailable, and nothing was
// signed; it is a condition to retry, not a broken key. A failure of the
// transport closes it, and the next call reopens the device or socket: at
// once the first time, then at most once per backoff interval, doubling
// from 100ms to 5s (calls in between fail at once). A reopened TPM must
// answer as a TPM 2.0 and hold, at the handle, the node key with the name
// the signer read; a TPM that lost its state, or another TPM at the path,
// stays ErrUnavailable (wrapping ErrNoNodeKey), so the signer never signs
// with another key. What the TPM held for this process (the salt key) is
// made again on need.
//
// # The caller's duties
//
//  1. Give Open a Logger; nothing is logged to slog's default.
//  2. Run CreateKey once, at provisioning; it refuses (ErrKeyExists,
//     ErrHandleTaken) rather than replace anything.
//  3. Keep the owner hierarchy's auth value empty (as Linux leaves it), or
//     CreateKey and authed signing cannot create the storage primary.
//  4. Configure the key's auth value correctly: each wrong one counts
//     towards the TPM's dictionary-attack lockout (ErrAuth, then
//     ErrLockout), which locks out every DA-protected key in the TPM.
//  5. Treat ErrUnavailable as "not now": stay silent, say so, call again
//     later; the TPM reconnects on later calls.
//  6. Close the TPM when done; its signers fail with ErrClosed afterwards.
//
// # TPM-Fail
//
// Intel PTT and ST33 firmware before the 2019 fixes leak ECDSA nonces
// through timing (CVE-2019-11090, CVE-2019-16863). VulnerableFirmware
// recognises them; on such a TPM each signature is padded to at least
// Options.RateLimit (default 100ms), which hides its duration from remote
// callers and slows the collection of samples. It does not stop a local
// attacker who times the TPM itself: update the firmware.
package tpm
