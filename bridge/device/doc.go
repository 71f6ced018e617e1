// Package device is the device-side SDK: key files, signed records and
// offline receipt verification. It depends only on the ledger formats, so
// device software can use it without any of the gateway.
package device
