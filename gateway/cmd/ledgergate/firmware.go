package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// list splits a comma-separated flag value, dropping empty entries.
func list(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func cmdVendorKeygen(_ context.Context, e *env, args []string) error {
	out, a, err := keygen(e, "vendor keygen", "file NAME for the maintenance key; its public key (to build into devices, and to enroll) goes to NAME.pub", args)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s (private, mode 0600: keep it offline) and %s.pub (%s)\n", out, out, a)
	return nil
}

func cmdVendorEnroll(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "vendor enroll")
	id := fs.String("id", "", "vendor id")
	pub := fs.String("pubkey", "", "the vendor's maintenance public key (NAME.pub)")
	models := fs.String("models", "", "the models it makes, comma-separated")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id", "pubkey", "models"); err != nil {
		return err
	}
	der, err := device.LoadPublicKey(*pub)
	if err != nil {
		return err
	}
	ms := list(*models)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindVendorEnroll, VendorEnroll: &ledger.VendorEnroll{Vendor: *id, PublicKey: der, Models: ms}})
}

func cmdReviewerEnroll(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "reviewer enroll")
	id := fs.String("id", "", "reviewer id")
	pub := fs.String("pubkey", "", "the reviewer's public key (NAME.pub from 'vendor keygen' or 'device keygen')")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id", "pubkey"); err != nil {
		return err
	}
	der, err := device.LoadPublicKey(*pub)
	if err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindReviewerEnroll, ReviewerEnroll: &ledger.ReviewerEnroll{Reviewer: *id, PublicKey: der}})
}

func cmdFirmwarePublish(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware publish")
	keyPath := fs.String("vendor-key", "", "the vendor's maintenance key")
	vendor := fs.String("vendor", "", "vendor id (the kid of the manifest)")
	model := fs.String("model", "", "the model the image is for")
	version := fs.Uint64("version", 0, "the release's version")
	image := fs.String("image", "", "the image file")
	expires := fs.Duration("expires", 90*24*time.Hour, "how long devices may install it")
	minVersion := fs.Uint64("min-version", 0, "the lowest version it upgrades from (0: any)")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "vendor-key", "vendor", "model", "version", "image"); err != nil {
		return err
	}
	// The image is hashed, then sent, from the file: it is never in
	// memory whole.
	img, err := os.Open(*image)
	if err != nil {
		return fmt.Errorf("read %s: %w", *image, err)
	}
	defer img.Close()
	h := sha256.New()
	size, err := io.Copy(h, img)
	if err != nil {
		return fmt.Errorf("read %s: %w", *image, err)
	}
	if size > api.MaxImageBytes {
		return fmt.Errorf("%s: %d bytes; a gateway takes images of at most %d", *image, size, api.MaxImageBytes)
	}
	if _, err := img.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read %s: %w", *image, err)
	}
	sum := [32]byte(h.Sum(nil))
	key, err := device.LoadKey(*keyPath)
	if err != nil {
		return err
	}
	c := apiURL.client()
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	until := time.Now().Add(*expires)
	env, err := ledger.SignTx(key, *vendor, &ledger.Body{Kind: ledger.KindFirmwarePublish, ChainID: st.ChainID, FirmwarePublish: &ledger.FirmwarePublish{
		Model: *model, Version: *version, SHA256: sum[:], Size: uint64(size), Expires: until.UnixMilli(), MinVersion: *minVersion,
	}})
	if err != nil {
		return err
	}
	// The file must not change between hashing and sending: the gateway
	// would refuse it (the hash, or the size, would not be the manifest's).
	rb, err := c.publish(ctx, "/api/v1/firmware", env, io.LimitReader(img, size), size)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "firmware.publish %s version %d: committed in block %d, tx %s\n  image sha256 %x, %d bytes, expires %s\n",
		*model, *version, rb.Height, rb.TxID, sum, size, until.UTC().Format(time.RFC3339))
	return nil
}

// releaseFlags name a release.
type releaseFlags struct {
	model   *string
	version *uint64
}

func addReleaseFlags(fs interface {
	String(string, string, string) *string
	Uint64(string, uint64, string) *uint64
}) releaseFlags {
	return releaseFlags{model: fs.String("model", "", "model"), version: fs.Uint64("version", 0, "version")}
}

func (r releaseFlags) release() ledger.Release {
	return ledger.Release{Model: *r.model, Version: *r.version}
}

func cmdFirmwareVote(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware vote")
	rel := addReleaseFlags(fs)
	keyPath := fs.String("reviewer-key", "", "the reviewer's private key")
	reviewer := fs.String("reviewer", "", "reviewer id")
	good := fs.Bool("good", false, "vote good")
	bad := fs.Bool("bad", false, "vote bad")
	reason := fs.String("reason", "", "why")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "model", "version", "reviewer-key", "reviewer"); err != nil {
		return err
	}
	if *good == *bad {
		return usageError(fs, "give exactly one of --good and --bad")
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
	env, err := ledger.SignTx(key, *reviewer, &ledger.Body{Kind: ledger.KindFirmwareVote, ChainID: st.ChainID,
		FirmwareVote: &ledger.FirmwareVote{Release: rel.release(), Good: *good, Reason: *reason}})
	if err != nil {
		return err
	}
	rb, _, err := c.submit(ctx, env)
	if err != nil {
		return err
	}
	verdict := "good"
	if *bad {
		verdict = "bad"
	}
	fmt.Fprintf(e.stdout, "firmware.vote %s %s version %d by %s: committed in block %d\n", verdict, *rel.model, *rel.version, *reviewer, rb.Height)
	return nil
}

func cmdFirmwareApprove(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware approve")
	rel := addReleaseFlags(fs)
	group := fs.String("group", "", "the group it is approved for")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "model", "version", "group"); err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindFirmwareApprove, FirmwareApprove: &ledger.FirmwareApprove{Release: rel.release(), Group: *group}})
}

func cmdFirmwareRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware revoke")
	rel := addReleaseFlags(fs)
	group := fs.String("group", "", "the group it is withdrawn from (default: every group)")
	reason := fs.String("reason", "", "why")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "model", "version"); err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindFirmwareRevoke, FirmwareRevoke: &ledger.FirmwareRevoke{Release: rel.release(), Group: *group, Reason: *reason}})
}

func cmdFirmwarePolicy(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware policy")
	group := fs.String("group", "", "the group")
	approval := fs.Bool("require-approval", false, "a release needs the owner's approval (firmware approve)")
	votes := fs.Uint("votes", 0, "without approval: the good votes a release needs (and no bad one)")
	waves := fs.String("waves", "100", "rollout waves: cumulative percentages of the group, e.g. 10,50,100")
	maxFail := fs.Uint("max-failures", 0, "the next wave starts only if at most this percentage of the reports so far are failures")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "group"); err != nil {
		return err
	}
	p := &ledger.FirmwarePolicy{Group: *group, RequireApproval: *approval, MinGoodVotes: uint32(*votes), MaxFailurePct: uint32(*maxFail)}
	for _, w := range list(*waves) {
		n, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			return usageError(fs, fmt.Sprintf("--waves %q: want percentages like 10,50,100", *waves))
		}
		p.Waves = append(p.Waves, uint32(n))
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindFirmwarePolicy, FirmwarePolicy: p})
}

func cmdFirmwareStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware status")
	model := fs.String("model", "", "the model (default: every model with releases)")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c := apiURL.client()
	models := []string{*model}
	if *model == "" {
		var ms struct{ Models []string }
		if err := c.get(ctx, "/api/v1/firmware", &ms); err != nil {
			return err
		}
		models = ms.Models
	}
	var releases []directory.ReleaseStatus
	for _, m := range models {
		var st struct{ Releases []directory.ReleaseStatus }
		if err := c.get(ctx, "/api/v1/firmware/"+url.PathEscape(m), &st); err != nil {
			return err
		}
		releases = append(releases, st.Releases...)
	}
	if len(releases) == 0 {
		fmt.Fprintln(e.stdout, "no release")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range releases {
		exp := ""
		if r.Expired {
			exp = ", EXPIRED"
		}
		fmt.Fprintf(tw, "%s version %d by %s (block %d)%s: %d good, %d bad votes\n", r.Model, r.Version, r.Vendor, r.Height, exp, r.Good, r.Bad)
		for _, g := range r.Groups {
			state := "not allowed"
			if g.Allowed {
				state = "allowed"
			}
			if g.Halted {
				state += ", HALTED"
			}
			fmt.Fprintf(tw, "  group %s\t%s: %s\t", g.Group, state, g.Why)
			for i, w := range g.Waves {
				open := "waiting"
				if w.Open {
					open = "open"
				}
				fmt.Fprintf(tw, " wave %d (%d%%, %d devices): %s, %d reported, %d failed;", i+1, w.Percent, w.Devices, open, w.Reported, w.Failed)
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

func cmdFirmwareVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "firmware verify")
	id := fs.String("device", "", "the device to check for")
	image := fs.String("image", "", "the image file")
	vendorPub := fs.String("vendor-pubkey", "", "the vendor's maintenance public key, as built into the device")
	installed := fs.Uint64("installed", 0, "the version the device runs (default: what it last reported)")
	rel := addReleaseFlags(fs)
	check := addConfigCheckFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "device", "image", "vendor-pubkey"); err != nil {
		return err
	}
	img, err := os.ReadFile(*image)
	if err != nil {
		return fmt.Errorf("read %s: %w", *image, err)
	}
	der, err := device.LoadPublicKey(*vendorPub)
	if err != nil {
		return err
	}
	vk, err := ledger.ParsePublicKey(der)
	if err != nil {
		return err
	}
	g, c, err := check.load()
	if err != nil {
		return err
	}
	keys, err := keysOf(ctx, c, g, *id)
	if err != nil {
		return err
	}
	var hist struct{ Installed uint64 }
	if err := c.get(ctx, "/api/v1/devices/"+url.PathEscape(*id)+"/firmware/history", &hist); err != nil {
		return err
	}
	if *installed == 0 {
		*installed = hist.Installed
	}
	path := "/api/v1/devices/" + url.PathEscape(*id) + "/firmware"
	if *rel.version != 0 {
		model := *rel.model
		if model == "" {
			model = keys.Model
		}
		path += "/" + url.PathEscape(model) + "/" + strconv.FormatUint(*rel.version, 10)
	}
	var fb api.FirmwareBody
	if err := c.get(ctx, path, &fb); err != nil {
		return err
	}
	a, err := ledger.DecodeFirmwareAnswer(fb.Answer)
	if err != nil {
		return err
	}
	f, err := device.VerifyFirmware(g, vk, a, img, device.FirmwarePolicy{Device: *id, Model: keys.Model, Groups: keys.Groups, Installed: *installed})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("refused: %w", err)}
	}
	fmt.Fprintf(e.stdout, "installable: %s is %s version %d (sha256 %s) for %s, over version %d, allowed in group %s\n",
		*image, f.Model, f.Version, hex.EncodeToString(f.SHA256), *id, *installed, a.Group)
	return nil
}
