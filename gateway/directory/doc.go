// Package directory answers what devices and operators ask about devices,
// with proofs: a device's configuration (configuration control) and a
// device's keys (the key directory). It also keeps the off-chain
// configuration blobs.
//
// Every answer is built from committed txs only: the receipt of each tx
// it relies on, and the newest block with its commit certificate (the
// Head), so a device can check the answer with nothing but the genesis
// and bound how stale it is (bridge/device.VerifyConfig, VerifyKeys).
//
// Blobs: a config.set names its sealed blob by SHA-256. The gateway stores
// a blob only together with an admin-signed config.set that names it, or
// an image with a vendor-signed firmware.publish (CheckConfig or
// CheckFirmware first, then PutBlob streams the bytes to disk, checking
// them against the tx), and serves or fetches from peers only blobs that a
// committed config.set names; a blob from a peer is checked against its
// address before it is stored.
package directory
