package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func cmdDeviceKeygen(_ context.Context, e *env, args []string) error {
	out, a, err := keygen(e, "device keygen", "file NAME for the private key; the public key goes to NAME.pub", args)
	if err != nil {
		return err
	}
	ek, err := device.GenerateEncKey()
	if err != nil {
		return err
	}
	if err := device.WriteEncKeyPair(out+".enc", ek); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s (private, mode 0600) and %s.pub (%s signing key),\n  %s.enc (private, mode 0600) and %s.enc.pub (X25519 encryption key)\n", out, out, a, out, out)
	return nil
}

// keygen is the common part of the keygen commands: it parses --alg and
// --out and writes a signing key pair to NAME and NAME.pub.
func keygen(e *env, name, outHelp string, args []string) (string, ledger.Alg, error) {
	fs := newFlags(e, name)
	alg := fs.String("alg", "es256", "es256 (ECDSA P-256) or ed25519")
	out := fs.String("out", "", outHelp)
	if _, err := parse(fs, args); err != nil {
		return "", "", err
	}
	if err := need(fs, "out"); err != nil {
		return "", "", err
	}
	a, err := device.ParseAlg(*alg)
	if err != nil {
		return "", "", err
	}
	key, err := device.GenerateKey(a)
	if err != nil {
		return "", "", err
	}
	return *out, a, device.WriteKeyPair(*out, key)
}

// adminFlags are the flags of commands that sign as the admin.
type adminFlags struct {
	api           *apiTarget
	key, id, data *string
}

func addAdminFlags(fs *flagSet) adminFlags {
	return adminFlags{
		api:  apiFlag(fs),
		key:  fs.String("admin-key", "", "admin private key (default DATA/admin.key)"),
		id:   fs.String("admin-id", "admin", "admin id in the genesis (the kid of the tx)"),
		data: dataFlag(fs),
	}
}

// submit signs body as the admin, submits it and prints the outcome.
func (a adminFlags) submit(ctx context.Context, e *env, body ledger.Body) error {
	st, err := a.api.client().status(ctx)
	if err != nil {
		return err
	}
	rb, err := a.sign(ctx, st.ChainID, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s: committed in block %d, tx %s\n", body.Kind, about(&body), rb.Height, rb.TxID)
	return nil
}

// about names what an admin tx is about, for its output.
func about(b *ledger.Body) string {
	switch {
	case b.FirmwareApprove != nil:
		return fmt.Sprintf("%s version %d for group %s", b.FirmwareApprove.Model, b.FirmwareApprove.Version, b.FirmwareApprove.Group)
	case b.FirmwareRevoke != nil:
		return fmt.Sprintf("%s version %d", b.FirmwareRevoke.Model, b.FirmwareRevoke.Version)
	case b.FirmwarePolicy != nil:
		return "group " + b.FirmwarePolicy.Group
	case b.FleetApprove != nil:
		return "batch " + b.FleetApprove.Batch
	case b.FleetRevoke != nil:
		return "batch " + b.FleetRevoke.Batch
	}
	return b.Subject()
}

// submitQuiet is submit without output, for many txs.
func (a adminFlags) submitQuiet(ctx context.Context, chainID string, body ledger.Body) error {
	_, err := a.sign(ctx, chainID, body)
	return err
}

// loadKey reads the admin's signing key.
func (a adminFlags) loadKey() (crypto.Signer, error) {
	keyPath := *a.key
	if keyPath == "" {
		keyPath = filepath.Join(*a.data, daemon.AdminKeyFile)
	}
	return device.LoadKey(keyPath)
}

func (a adminFlags) sign(ctx context.Context, chainID string, body ledger.Body) (*api.ReceiptBody, error) {
	key, err := a.loadKey()
	if err != nil {
		return nil, err
	}
	body.ChainID = chainID
	env, err := ledger.SignTx(key, *a.id, &body)
	if err != nil {
		return nil, err
	}
	rb, _, err := a.api.client().submit(ctx, env)
	return rb, err
}

func cmdDeviceEnroll(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device enroll")
	id := fs.String("id", "", "device id: 1 to 64 of A-Z a-z 0-9 . _ -")
	pub := fs.String("pubkey", "", "the device's public key file (NAME.pub from 'device keygen')")
	encPub := fs.String("enc-pubkey", "", "the device's encryption key (NAME.enc.pub from 'device keygen'): what configurations are sealed to")
	model := fs.String("model", "", "the device's model")
	groups := fs.String("group", "", "the groups it belongs to, comma-separated (configurations may target a group)")
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
	en := &ledger.Enroll{DeviceID: *id, PublicKey: der, Model: *model}
	if *encPub != "" {
		if en.EncKey, err = device.LoadEncPublicKey(*encPub); err != nil {
			return err
		}
	}
	if *groups != "" {
		en.Groups = strings.Split(*groups, ",")
		slices.Sort(en.Groups)
		en.Groups = slices.Compact(en.Groups)
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindEnroll, Enroll: en})
}

func cmdDeviceRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device revoke")
	id := fs.String("id", "", "device id")
	reason := fs.String("reason", "", "why, for the record (at most 256 bytes)")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id"); err != nil {
		return err
	}
	return admin.submit(ctx, e, ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: *id, Reason: *reason}})
}

func cmdDeviceList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device list")
	apiURL := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c := apiURL.client()
	var all []index.Device
	after := ""
	for {
		var page struct {
			Devices []index.Device `json:"devices"`
			Next    string         `json:"next"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/devices?limit=1000&after="+url.QueryEscape(after), "", nil, &page); err != nil {
			return err
		}
		all = append(all, page.Devices...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tALG\tLAST SEQ\tRECORDS\tLAST SEEN")
	for _, d := range all {
		seen := "-"
		if d.LastSeen > 0 {
			seen = time.UnixMilli(d.LastSeen).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.Status, d.Alg, d.LastSeq, d.Records, seen)
	}
	return tw.Flush()
}

func cmdDeviceSign(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "device sign")
	keyPath := fs.String("key", "", "the device's private key file")
	id := fs.String("id", "", "device id")
	seq := fs.Uint64("seq", 0, "sequence number: must be above every seq this device used before (default: the next one of KEY.seq; an explicit one is recorded there too)")
	stream := fs.String("stream", "default", "stream name")
	in := fs.String("in", "", "payload file (default: standard input; - too)")
	ctype := fs.String("content-type", "application/octet-stream", "payload content type")
	chain := addChainFlags(fs)
	out := fs.String("out", "", "where to write the signed tx (COSE_Sign1)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "key", "id", "out"); err != nil {
		return err
	}
	key, chainID, err := chain.signer(*keyPath)
	if err != nil {
		return err
	}
	payload, err := readPayload(e, *in)
	if err != nil {
		return err
	}
	// KEY.seq remembers the highest seq signed, so that 'device publish'
	// goes on above it.
	counter := device.OpenSeq(*keyPath + ".seq")
	if *seq == 0 {
		if *seq, err = counter.Next(); err != nil {
			return err
		}
	} else if err := usedSeq(counter, *seq); err != nil {
		return err
	}
	env, err := device.SignRecord(key, chainID, ledger.Record{
		DeviceID: *id, Stream: *stream, Seq: *seq, Time: time.Now().UnixMilli(), ContentType: *ctype, Payload: payload,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, env, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	txid := ledger.TxID(env)
	fmt.Fprintf(e.stdout, "wrote %s: data.record by %s seq %d, %d bytes, tx %x\n", *out, *id, *seq, len(env), txid)
	return nil
}

func readGenesis(path string) (*ledger.Genesis, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read genesis: %w", err)
	}
	return ledger.ParseGenesis(b)
}

// cmdDeviceRekey replaces a device's keys with a device.rekey signed by
// its current key, submitted over the API.
func cmdDeviceRekey(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device rekey")
	keyPath := fs.String("key", "", "the device's current private key file (OLD): it signs the re-key")
	id := fs.String("id", "", "device id")
	newPath := fs.String("new-key", "", "the new private key file (NEW, from 'device keygen --out NEW'): the re-key carries its public key, and NEW.enc.pub's")
	noEnc := fs.Bool("no-enc-key", false, "re-key without an encryption key (when NEW.enc.pub does not exist): the device then has none, and configurations can no longer be sealed to it")
	seqFlag := fs.Uint64("seq", 0, "sequence number (default: the next one of OLD.seq, resynced from the gateway's last seq on a replay refusal)")
	receiptOut := fs.String("receipt-out", "", "write the receipt (CBOR) to this file")
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "key", "id", "new-key"); err != nil {
		return err
	}
	if *newPath == *keyPath {
		return usageError(fs, "--new-key must be another key than --key")
	}
	key, err := device.LoadKey(*keyPath)
	if err != nil {
		return err
	}
	// The new private key, not only NEW.pub: re-keying to a key whose
	// private half is not at hand would lock the device out.
	newKey, err := device.LoadKey(*newPath)
	if err != nil {
		return err
	}
	newPub, err := ledger.MarshalPublicKey(newKey)
	if err != nil {
		return err
	}
	var encPub []byte
	switch _, err := os.Stat(*newPath + ".enc.pub"); {
	case err == nil && *noEnc:
		return usageError(fs, fmt.Sprintf("--no-enc-key, but %s.enc.pub exists", *newPath))
	case err == nil:
		if encPub, err = device.LoadEncPublicKey(*newPath + ".enc.pub"); err != nil {
			return err
		}
	case !*noEnc:
		return fmt.Errorf("%s.enc.pub: %w: a re-key replaces the encryption key too; make NEW with 'device keygen --out NEW', or pass --no-enc-key to leave the device without one", *newPath, err)
	}
	c := apiURL.client()
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	counter := device.OpenSeq(*keyPath + ".seq")
	sign := func(seq uint64) ([]byte, error) {
		return device.SignRekey(key, st.ChainID, ledger.Rekey{DeviceID: *id, Seq: seq, PublicKey: newPub, EncKey: encPub})
	}
	seq := *seqFlag
	var rb *api.ReceiptBody
	var receipt []byte
	for try := 0; ; try++ {
		if *seqFlag == 0 {
			if seq, err = counter.Next(); err != nil {
				return err
			}
		} else if err := usedSeq(counter, seq); err != nil {
			return err
		}
		env, err := sign(seq)
		if err != nil {
			return err
		}
		rb, receipt, err = c.submit(ctx, env)
		if err == nil {
			break
		}
		var ae *apiError
		if try > 0 || *seqFlag != 0 || !errors.As(err, &ae) || ae.Reason != device.ReasonReplay || ae.LastSeq == nil || *ae.LastSeq < seq {
			return err
		}
		// OLD.seq is behind the ledger: go on above the gateway's last seq.
		if err := counter.Set(*ae.LastSeq); err != nil {
			return err
		}
	}
	// NEW's counter goes on from the re-key's seq.
	if err := usedSeq(device.OpenSeq(*newPath+".seq"), seq); err != nil {
		return err
	}
	if *receiptOut != "" {
		if err := os.WriteFile(*receiptOut, receipt, 0o644); err != nil {
			return fmt.Errorf("write receipt: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "device.rekey %s: committed in block %d, tx %s, seq %d\n", *id, rb.Height, rb.TxID, seq)
	fmt.Fprintf(e.stdout, "the ledger now holds %s's keys: sign and connect with --key %s from now on (its counter, %s.seq, goes on from seq %d); what %s signs is refused\n",
		*newPath, *newPath, *newPath, seq, *keyPath)
	return nil
}
