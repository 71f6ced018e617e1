package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// OperatorKeyFile is the operators' encryption key in the data directory:
// every configuration is sealed to it too, so operators can read and diff
// what they published.
const OperatorKeyFile = "operator.enc"

func operatorKeyFlag(fs *flagSet) *string {
	return fs.String("operator-key", "", "operators' encryption key (default DATA/"+OperatorKeyFile+"; created on first publish)")
}

// operatorKey loads the operators' encryption key, creating it if create
// is set and it does not exist.
func operatorKey(e *env, path, data string, create bool) (*ecdh.PrivateKey, error) {
	if path == "" {
		path = filepath.Join(data, OperatorKeyFile)
	}
	k, err := device.LoadEncKey(path)
	if err == nil || !create || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if k, err = device.GenerateEncKey(); err != nil {
		return nil, err
	}
	if err := device.WriteEncKeyPair(path, k); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stderr, "created the operators' encryption key %s (keep it: it opens every configuration)\n", path)
	return k, nil
}

// publish posts a tx with the size off-chain bytes it names, read from
// data (a sealed blob, a firmware image), and returns the tx's receipt
// once committed. The body streams: PublishHead, then data.
func (c *client) publish(ctx context.Context, path string, env []byte, data io.Reader, size int64) (*api.ReceiptBody, error) {
	head := api.PublishHead(env, size)
	var rb api.ReceiptBody
	if err := c.doStream(ctx, http.MethodPost, path, "application/cbor", io.MultiReader(bytes.NewReader(head), data), int64(len(head))+size, &rb); err != nil {
		return nil, err
	}
	return &rb, nil
}

func (c *client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, "", nil, out)
}

// raw fetches path and returns the body undecoded.
func (c *client) raw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway API %s: %w (is the gateway running? see --api)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &apiError{Status: resp.StatusCode, Reason: "http", Msg: strings.TrimSpace(string(data))}
	}
	return data, nil
}

func cmdConfigPublish(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config publish")
	target := fs.String("target", "", "a device id, or group:NAME for every device enrolled in group NAME")
	file := fs.String("file", "", "the configuration file")
	version := fs.Uint64("version", 0, "version; must be above the target's last (default: last + 1)")
	ctype := fs.String("content-type", "application/octet-stream", "the configuration's content type")
	uri := fs.String("uri", "", "another place the sealed blob can be downloaded from (optional)")
	opKey := operatorKeyFlag(fs)
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "target", "file"); err != nil {
		return err
	}
	dev, group, ok := ledger.ParseTarget(*target)
	if !ok {
		return usageError(fs, fmt.Sprintf("--target %q: want a device id or group:NAME", *target))
	}
	plain, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	if len(plain) > ledger.MaxConfigBytes {
		return fmt.Errorf("%s is %d bytes; a configuration may have at most %d", *file, len(plain), ledger.MaxConfigBytes)
	}
	c := admin.api.client()
	members := []string{dev}
	if group != "" {
		var g struct{ Devices []string }
		if err := c.get(ctx, "/api/v1/groups/"+url.PathEscape(group), &g); err != nil {
			return err
		}
		members = g.Devices
	}
	op, err := operatorKey(e, *opKey, *admin.data, true)
	if err != nil {
		return err
	}
	opPub, err := device.EncPublicKey(op)
	if err != nil {
		return err
	}
	recipients := [][]byte{opPub}
	var sealedTo, skipped []string
	for _, id := range members {
		var k api.KeysBody
		if err := c.get(ctx, "/api/v1/devices/"+url.PathEscape(id)+"/keys", &k); err != nil {
			return fmt.Errorf("keys of %s: %w", id, err)
		}
		switch {
		case k.Status != index.StatusActive:
			skipped = append(skipped, id+" (revoked)")
		case len(k.EncKey) == 0:
			skipped = append(skipped, id+" (no encryption key)")
		default:
			recipients = append(recipients, k.EncKey)
			sealedTo = append(sealedTo, id)
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(e.stderr, "not sealed to: %s\n", strings.Join(skipped, ", "))
	}
	if dev != "" && len(sealedTo) == 0 {
		return fmt.Errorf("device %s cannot read a configuration: %s", dev, strings.Join(skipped, ", "))
	}
	if *version == 0 {
		var tc struct{ Configs []index.ConfigInfo }
		if err := c.get(ctx, "/api/v1/configs/"+url.PathEscape(*target), &tc); err != nil {
			return err
		}
		*version = 1
		if n := len(tc.Configs); n > 0 {
			*version = tc.Configs[n-1].Version + 1
		}
	}
	sealed, err := device.Seal(recipients, plain)
	if err != nil {
		return err
	}
	sum, blobSum := sha256.Sum256(plain), sha256.Sum256(sealed)
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	key, err := admin.loadKey()
	if err != nil {
		return err
	}
	env, err := ledger.SignTx(key, *admin.id, &ledger.Body{Kind: ledger.KindConfigSet, ChainID: st.ChainID, ConfigSet: &ledger.ConfigSet{
		Target: *target, Version: *version, SHA256: sum[:], Size: uint64(len(plain)), ContentType: *ctype, Blob: blobSum[:], URI: *uri,
	}})
	if err != nil {
		return err
	}
	rb, err := c.publish(ctx, "/api/v1/configs", env, bytes.NewReader(sealed), int64(len(sealed)))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "config.set %s version %d: committed in block %d, tx %s\n  sha256 %x, %d bytes, sealed to %d device(s) and the operators: blob %x\n",
		*target, *version, rb.Height, rb.TxID, sum, len(plain), len(sealedTo), blobSum)
	return nil
}

// configCheck is what the operator-side checks need: the API, the
// genesis, and the device's groups as its proven enrollment says.
type configCheck struct {
	api           *apiTarget
	genesis, data *string
}

func addConfigCheckFlags(fs *flagSet) configCheck {
	return configCheck{
		api:     apiFlag(fs),
		data:    dataFlag(fs),
		genesis: genesisFlag(fs, "the chain's genesis file"),
	}
}

func (f configCheck) load() (*ledger.Genesis, *client, error) {
	g, err := readGenesis(*f.genesis)
	return g, f.api.client(), err
}

// keysOf looks up and verifies a device's keys.
func keysOf(ctx context.Context, c *client, g *ledger.Genesis, id string) (*device.DeviceKeys, error) {
	var kb api.KeysBody
	if err := c.get(ctx, "/api/v1/devices/"+url.PathEscape(id)+"/keys", &kb); err != nil {
		return nil, err
	}
	a, err := ledger.DecodeKeysAnswer(kb.Answer)
	if err != nil {
		return nil, err
	}
	return device.VerifyKeys(g, a, id, device.Freshness{})
}

func cmdConfigVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config verify")
	id := fs.String("device", "", "device id")
	file := fs.String("file", "", "the configuration file to check")
	check := addConfigCheckFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "device", "file"); err != nil {
		return err
	}
	plain, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	g, c, err := check.load()
	if err != nil {
		return err
	}
	keys, err := keysOf(ctx, c, g, *id)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(plain)
	var cb api.ConfigBody
	if err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(*id)+"/config/verify", "application/octet-stream", sum[:], &cb); err != nil {
		return err
	}
	a, err := ledger.DecodeConfigAnswer(cb.Answer)
	if err != nil {
		return err
	}
	acc, err := device.VerifyConfig(g, a, sum, device.ConfigPolicy{Device: *id, Groups: keys.Groups})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("not accepted: %s (sha256 %x): %w", *file, sum, err)}
	}
	fmt.Fprintf(e.stdout, "accepted: %s is the current configuration of %s: %s version %d, committed in block %d\n",
		*file, *id, acc.Target, acc.Version, acc.Height)
	return nil
}

func cmdConfigHistory(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config history")
	id := fs.String("device", "", "device id")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "device"); err != nil {
		return err
	}
	var h api.HistoryBody
	if err := apiURL.client().get(ctx, "/api/v1/devices/"+url.PathEscape(*id)+"/config/history", &h); err != nil {
		return err
	}
	if len(h.Configs) == 0 {
		fmt.Fprintf(e.stdout, "no configuration was published for %s\n", *id)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tVERSION\tBLOCK\tTIME\tSIZE\tSHA256\tBY")
	for _, c := range h.Configs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\n", c.Target, c.Version, c.Height, when(c.Time), c.Size, c.SHA256[:16], c.Author)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range h.Reports {
		fmt.Fprintf(e.stdout, "reported applying version %d (sha256 %s) in block %d at %s\n", r.Version, r.SHA256[:16], r.Height, when(r.Time))
	}
	return nil
}

func when(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

func cmdConfigDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config diff")
	id := fs.String("device", "", "device id")
	from := fs.Uint64("from", 0, "version to diff from")
	to := fs.Uint64("to", 0, "version to diff to")
	target := fs.String("target", "", "the target the versions are of (default: that of the device's current configuration)")
	opKey := operatorKeyFlag(fs)
	apiURL := apiFlag(fs)
	data := dataFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "device", "from", "to"); err != nil {
		return err
	}
	c := apiURL.client()
	var h api.HistoryBody
	if err := c.get(ctx, "/api/v1/devices/"+url.PathEscape(*id)+"/config/history", &h); err != nil {
		return err
	}
	if len(h.Configs) == 0 {
		return fmt.Errorf("no configuration was published for %s", *id)
	}
	if *target == "" {
		*target = h.Configs[len(h.Configs)-1].Target
	}
	find := func(v uint64) (*index.ConfigInfo, error) {
		for i := range h.Configs {
			if h.Configs[i].Target == *target && h.Configs[i].Version == v {
				return &h.Configs[i], nil
			}
		}
		return nil, fmt.Errorf("%s has no version %d for %s (see config history)", *target, v, *id)
	}
	key, err := operatorKey(e, *opKey, *data, false)
	if err != nil {
		return err
	}
	var texts [2][]byte
	for i, v := range []uint64{*from, *to} {
		ci, err := find(v)
		if err != nil {
			return err
		}
		blob, err := c.raw(ctx, "/api/v1/blobs/"+ci.Blob)
		if err != nil {
			return err
		}
		b, _ := hex.DecodeString(ci.SHA256)
		bs, _ := hex.DecodeString(ci.Blob)
		if texts[i], err = device.OpenConfig(&ledger.ConfigSet{SHA256: b, Size: ci.Size, Blob: bs}, blob, key); err != nil {
			return fmt.Errorf("%s version %d: %w", *target, v, err)
		}
	}
	fmt.Fprintf(e.stdout, "--- %s version %d\n+++ %s version %d\n", *target, *from, *target, *to)
	for _, l := range diffLines(strings.SplitAfter(string(texts[0]), "\n"), strings.SplitAfter(string(texts[1]), "\n")) {
		io.WriteString(e.stdout, l)
		if !strings.HasSuffix(l, "\n") {
			io.WriteString(e.stdout, "\n\\ No newline at end of file\n")
		}
	}
	return nil
}

// diffLines is a line diff of a and b by longest common subsequence:
// lines prefixed "  ", "- " or "+ ". Configurations are small, so the
// quadratic table is fine; beyond maxDiffLines it lists both whole.
func diffLines(a, b []string) []string {
	const maxDiffLines = 5000
	if n := len(a); n > 0 && a[n-1] == "" {
		a = a[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == "" {
		b = b[:n-1]
	}
	var out []string
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		for _, l := range a {
			out = append(out, "- "+l)
		}
		for _, l := range b {
			out = append(out, "+ "+l)
		}
		return out
	}
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, "  "+a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] > lcs[i+1][j]):
			out = append(out, "+ "+b[j])
			j++
		default:
			out = append(out, "- "+a[i])
			i++
		}
	}
	return out
}

func cmdConfigDrift(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "config drift")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var d struct{ Devices []index.Drift }
	if err := apiURL.client().get(ctx, "/api/v1/drift", &d); err != nil {
		return err
	}
	if len(d.Devices) == 0 {
		fmt.Fprintln(e.stdout, "no drift: every device with a configuration reported applying it")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tCURRENT\tREPORTED")
	for _, x := range d.Devices {
		rep := "never"
		if x.Since > 0 {
			rep = "version " + strconv.FormatUint(x.Reported, 10) + " (block " + strconv.FormatUint(x.Since, 10) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s version %d\t%s\n", x.Device, x.Current.Target, x.Current.Version, rep)
	}
	return tw.Flush()
}

func cmdDeviceKeys(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device keys")
	id := fs.String("id", "", "device id")
	check := addConfigCheckFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id"); err != nil {
		return err
	}
	g, c, err := check.load()
	if err != nil {
		return err
	}
	k, err := keysOf(ctx, c, g, *id)
	if err != nil {
		return err
	}
	fp := k.SigningKey.Fingerprint()
	status := "active"
	if k.Revoked {
		status = "REVOKED (" + k.Reason + ")"
	}
	fmt.Fprintf(e.stdout, "device %s: %s, verified against genesis %s\n  signing key: %s sha256 %x (set in block %d)\n",
		k.ID, status, g.ChainID, k.SigningKey.Alg, fp, k.Height)
	if k.EncKey != nil {
		efp := sha256.Sum256(k.EncKey)
		fmt.Fprintf(e.stdout, "  encryption key: X25519 sha256 %x\n", efp)
	} else {
		fmt.Fprintln(e.stdout, "  encryption key: none")
	}
	fmt.Fprintf(e.stdout, "  model: %s, groups: %s\n", k.Model, strings.Join(k.Groups, ","))
	return nil
}
