package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Zero-touch enrollment (docs/fleet.md): the vendor publishes a batch, the
// owner approves it, devices claim.

func cmdFleetBatchCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fleet batch create")
	keyPath := fs.String("vendor-key", "", "the vendor's maintenance key")
	vendor := fs.String("vendor", "", "vendor id (the kid of the batch)")
	batch := fs.String("batch", "", "batch id")
	model := fs.String("model", "", "the devices' model (one of the vendor's)")
	groups := fs.String("group", "", "groups each device of the batch joins, comma-separated")
	keys := fs.String("keys", "", "a directory of the devices' public keys: ID.pub for device ID")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "vendor-key", "vendor", "batch", "model", "keys"); err != nil {
		return err
	}
	pubs, err := filepath.Glob(filepath.Join(*keys, "*.pub"))
	if err != nil {
		return err
	}
	var devs []ledger.BatchDevice
	for _, p := range pubs {
		id := strings.TrimSuffix(filepath.Base(p), ".pub")
		if strings.HasSuffix(id, ".enc") {
			continue // an encryption key from 'device keygen'
		}
		der, err := device.LoadPublicKey(p)
		if err != nil {
			return err
		}
		devs = append(devs, ledger.BatchDevice{DeviceID: id, PublicKey: der})
	}
	slices.SortFunc(devs, func(a, b ledger.BatchDevice) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	key, err := device.LoadKey(*keyPath)
	if err != nil {
		return err
	}
	c := apiURL.client()
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	gs := list(*groups)
	slices.Sort(gs)
	env, err := ledger.SignTx(key, *vendor, &ledger.Body{Kind: ledger.KindFleetBatch, ChainID: st.ChainID,
		FleetBatch: &ledger.FleetBatch{Batch: *batch, Model: *model, Groups: slices.Compact(gs), Devices: devs}})
	if err != nil {
		return err
	}
	rb, _, err := c.submit(ctx, env)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "fleet.batch %s: %d devices of model %s, committed in block %d, tx %s\n  the owner approves it: ledgergate fleet batch approve --batch %s\n",
		*batch, len(devs), *model, rb.Height, rb.TxID, *batch)
	return nil
}

func cmdFleetBatchApprove(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fleet batch approve")
	batch := fs.String("batch", "", "batch id")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "batch"); err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: *batch}})
}

func cmdFleetBatchRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fleet batch revoke")
	batch := fs.String("batch", "", "batch id")
	reason := fs.String("reason", "", "why, for the record")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "batch"); err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindFleetRevoke, FleetRevoke: &ledger.FleetRevoke{Batch: *batch, Reason: *reason}})
}

func cmdFleetBatchList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fleet batch list")
	batch := fs.String("batch", "", "show this batch's devices")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c := apiURL.client()
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if *batch != "" {
		var b api.BatchBody
		if err := c.get(ctx, "/api/v1/fleet/batches/"+url.PathEscape(*batch), &b); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "batch %s of %s, model %s, %s, %d of %d claimed\n", b.ID, b.Vendor, b.Model, b.Status, b.Claimed, b.Devices)
		fmt.Fprintln(w, "DEVICE\tCLAIMED")
		for _, d := range b.DeviceList {
			fmt.Fprintf(w, "%s\t%v\n", d.ID, d.Claimed)
		}
		return w.Flush()
	}
	var out struct {
		Batches []api.BatchBody `json:"batches"`
	}
	if err := c.get(ctx, "/api/v1/fleet/batches", &out); err != nil {
		return err
	}
	fmt.Fprintln(w, "BATCH\tVENDOR\tMODEL\tSTATUS\tCLAIMED\tDEVICES\tHEIGHT")
	for _, b := range out.Batches {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", b.ID, b.Vendor, b.Model, b.Status, b.Claimed, b.Devices, b.Height)
	}
	return w.Flush()
}

func cmdFleetTokenCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fleet token create")
	id := fs.String("device", "", "the only device id the token may enroll (default: any free id)")
	model := fs.String("model", "", "the device's model")
	groups := fs.String("group", "", "the device's groups, comma-separated")
	expires := fs.Duration("expires", 24*time.Hour, "how long the token may be used, in ledger time")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	h := ledger.SecretHash(secret)
	gs := list(*groups)
	slices.Sort(gs)
	body := ledger.Body{Kind: ledger.KindEnrollToken, EnrollToken: &ledger.EnrollToken{Hash: h[:], Expires: time.Now().Add(*expires).UnixMilli(),
		DeviceID: *id, Model: *model, Groups: slices.Compact(gs)}}
	st, err := admin.api.client().status(ctx)
	if err != nil {
		return err
	}
	rb, err := admin.sign(ctx, st.ChainID, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "enroll.token committed in block %d, tx %s; the ledger holds only its hash %x\n", rb.Height, rb.TxID, h[:8])
	fmt.Fprintf(e.stderr, "the device claims with: ledgergate device claim --key KEY --id ID --secret SECRET%s\n", claimAttrFlags(*model, slices.Compact(gs)))
	fmt.Fprintln(e.stdout, base64.RawURLEncoding.EncodeToString(secret))
	return nil
}

func cmdDeviceClaim(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device claim")
	keyPath := fs.String("key", "", "the device's private key file")
	id := fs.String("id", "", "device id")
	batch := fs.String("batch", "", "the batch that names the device and its key")
	secret := fs.String("secret", "", "a one-time enrollment token ('fleet token create'), instead of a batch")
	model := fs.String("model", "", "with --secret: the model the token gives (the claim must carry it)")
	groups := fs.String("group", "", "with --secret: the groups the token gives, comma-separated (the claim must carry them)")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "key", "id"); err != nil {
		return err
	}
	if (*batch == "") == (*secret == "") {
		return fmt.Errorf("device claim: give --batch or --secret")
	}
	key, err := device.LoadKey(*keyPath)
	if err != nil {
		return err
	}
	c := apiURL.client()
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	pub, err := ledger.MarshalPublicKey(key)
	if err != nil {
		return err
	}
	// A claim carries the device's key, model and groups (docs/protocol.md
	// 6.18): a batch's from the gateway's view of the batch, a token's
	// from the flags (the owner who made the token gave them).
	claim := &ledger.DeviceClaim{DeviceID: *id, Batch: *batch, PublicKey: pub}
	if *secret != "" {
		s, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(*secret))
		if err != nil {
			return fmt.Errorf("device claim: secret: %w", err)
		}
		claim.Secret, claim.Model = s, *model
		if gs := list(*groups); len(gs) > 0 {
			slices.Sort(gs)
			claim.Groups = slices.Compact(gs)
		}
	} else {
		if *model != "" || *groups != "" {
			return fmt.Errorf("device claim: --model and --group go with --secret; a batch claim takes them from the batch")
		}
		var b api.BatchBody
		if err := c.get(ctx, "/api/v1/fleet/batches/"+url.PathEscape(*batch), &b); err != nil {
			return fmt.Errorf("device claim: batch %s: %w", *batch, err)
		}
		claim.Model, claim.Groups = b.Model, b.Groups
		if len(claim.Groups) == 0 {
			claim.Groups = nil
		}
	}
	env, err := ledger.SignTx(key, *id, &ledger.Body{Kind: ledger.KindDeviceClaim, ChainID: st.ChainID, DeviceClaim: claim})
	if err != nil {
		return err
	}
	rb, _, err := c.submit(ctx, env)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "device.claim %s: enrolled in block %d, tx %s\n", *id, rb.Height, rb.TxID)
	return nil
}

// claimAttrFlags is the --model and --group flags a token claim needs to
// carry the token's model and groups (docs/protocol.md 6.18).
func claimAttrFlags(model string, groups []string) string {
	var b strings.Builder
	if model != "" {
		b.WriteString(" --model " + model)
	}
	if len(groups) > 0 {
		b.WriteString(" --group " + strings.Join(groups, ","))
	}
	return b.String()
}
