package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// applyFleet indexes what a device.claim later needs of a fleet tx: the
// key, model and groups a batch gives each of its devices, and the model
// and groups an enrollment token gives. It runs before the block's
// device rows (deviceSet.apply), so a claim in the block of its batch
// finds it.
func applyFleet(w *writer, t *ledger.Tx) error {
	b := &t.Body
	var err error
	switch {
	case b.FleetBatch != nil:
		f := b.FleetBatch
		groups := strings.Join(f.Groups, ",")
		for _, d := range f.Devices {
			if _, err = w.Exec(`INSERT INTO fleet_devices (device, batch, public_key, model, groups) VALUES (?, ?, ?, ?, ?)`,
				d.DeviceID, f.Batch, d.PublicKey, f.Model, groups); err != nil {
				break
			}
		}
	case b.EnrollToken != nil:
		e := b.EnrollToken
		_, err = w.Exec(`INSERT INTO enroll_tokens (hash, model, groups) VALUES (?, ?, ?)`, e.Hash, e.Model, strings.Join(e.Groups, ","))
	}
	if err != nil {
		return fmt.Errorf("index %s: %w", b.Kind, err)
	}
	return nil
}

// claimed returns what a committed device.claim enrolls: the key, model
// and groups; key nil if its batch or token is not indexed (published
// before the base of a gateway that joined from a snapshot, whose index
// lacks the devices enrolled before its base too).
func (w *writer) claimed(c *ledger.DeviceClaim) (key []byte, model string, groups []string, _ error) {
	var g string
	var err error
	if c.Path() == ledger.ClaimByToken {
		h := ledger.SecretHash(c.Secret)
		key = c.PublicKey
		err = w.c.QueryRowContext(context.Background(), `SELECT model, groups FROM enroll_tokens WHERE hash = ?`, h[:]).Scan(&model, &g)
	} else {
		err = w.c.QueryRowContext(context.Background(), `SELECT public_key, model, groups FROM fleet_devices WHERE device = ?`, c.DeviceID).Scan(&key, &model, &g)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("claim of %s: %w", c.DeviceID, err)
	}
	if g != "" {
		groups = strings.Split(g, ",")
	}
	return key, model, groups, nil
}
