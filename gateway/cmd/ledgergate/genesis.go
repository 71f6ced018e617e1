package main

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/daemon"
)

// initKey is `init --key-only`: the first step of joining a chain.
func initKey(e *env, data, nodeID string, signer config.Signer) error {
	der, err := daemon.InitKey(data, signer, nil)
	if errors.Is(err, daemon.ErrKeyExists) {
		return fmt.Errorf("%w; it is kept, not replaced (its public key is in %s)", err, filepath.Join(data, daemon.NodePubFile))
	}
	if err != nil {
		return err
	}
	pub := filepath.Join(data, daemon.NodePubFile)
	if signer.Kind == "software" {
		fmt.Fprintf(e.stdout, "created node key %s (software key, not hardware-backed)\n", filepath.Join(data, daemon.NodeKeyFile))
	} else {
		fmt.Fprintf(e.stdout, "node key in the TPM at %s\n", signer.TPMHandle)
	}
	fmt.Fprintf(e.stdout, "public key %s, fingerprint %s:\n", pub, daemon.KeyFingerprint(der))
	pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	fmt.Fprintf(e.stdout, "Send %s to whoever builds the genesis, for: ledgergate genesis new ... --node %s,HOST:PORT,%s\n", pub, nodeID, daemon.NodePubFile)
	fmt.Fprintf(e.stdout, "then join with: ledgergate init --data %s --genesis GENESIS\n", data)
	return nil
}

// initJoin is `init --genesis`: the second step of joining a chain.
func initJoin(e *env, data, genesis, as string, signer config.Signer) error {
	g, id, err := daemon.Join(data, genesis, as, signer, nil)
	if err != nil {
		return err
	}
	h := g.Hash()
	fmt.Fprintf(e.stdout, "joined chain %s as node %s (%d nodes, quorum %d, genesis hash %x)\n",
		g.ChainID, id, len(g.Nodes), g.Quorum(), h)
	return nil
}

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func cmdGenesisNew(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "genesis new")
	chainID := fs.String("chain-id", "", "the chain id: 1 to 64 of A-Z a-z 0-9 . _ -")
	var nodes, admins listFlag
	fs.Var(&nodes, "node", "a node as ID,HOST:PORT,KEY.pub: its id, the address its peers dial (empty, as in ID,,KEY.pub, when seed discovery finds it), its node.pub from 'init --key-only' (repeat for each node)")
	fs.Var(&admins, "admin", "an admin's public key file, e.g. NAME.pub from 'device keygen' (repeatable)")
	adminID := fs.String("admin-id", "", "the admin's id, with a single --admin (default: the file's base name without .pub)")
	out := fs.String("out", "", "where to write the genesis")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "chain-id", "node", "admin", "out"); err != nil {
		return err
	}
	if *adminID != "" && len(admins) > 1 {
		return usageError(fs, "--admin-id names a single --admin; with several, name each file ID.pub")
	}
	spec := daemon.GenesisSpec{ChainID: *chainID, Time: time.Now()}
	for _, n := range nodes {
		parts := strings.SplitN(n, ",", 3)
		if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
			return usageError(fs, fmt.Sprintf("--node %q: want ID,HOST:PORT,KEY.pub, e.g. --node gw1,192.0.2.1:7001,gw1/node.pub (or gw1,,gw1/node.pub with seeds)", n))
		}
		spec.Nodes = append(spec.Nodes, daemon.NodeSpec{ID: parts[0], Addr: parts[1], PubFile: parts[2]})
	}
	for _, a := range admins {
		spec.Admins = append(spec.Admins, daemon.AdminSpec{ID: *adminID, PubFile: a})
	}
	g, err := daemon.NewGenesis(spec)
	if err != nil {
		return err
	}
	if err := daemon.WriteGenesis(*out, g, *force); err != nil {
		if errors.Is(err, daemon.ErrExists) {
			return fmt.Errorf("%w (--force overwrites it)", err)
		}
		return err
	}
	n, f := len(g.Nodes), (len(g.Nodes)-1)/3
	fmt.Fprintf(e.stdout, "wrote %s: chain %s, n %d, f %d (faulty nodes tolerated), quorum %d, genesis hash %x\n",
		*out, g.ChainID, n, f, g.Quorum(), g.Hash())
	if f == 0 && n > 1 {
		fmt.Fprintf(e.stdout, "note: %d nodes tolerate no faulty node; 4 tolerate one\n", n)
	}
	return nil
}

func cmdGenesisShow(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "genesis show")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one genesis FILE")
	}
	g, err := readGenesis(pos[0])
	if err != nil {
		return err
	}
	h := g.Hash()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "chain\t%s\n", g.ChainID)
	fmt.Fprintf(tw, "hash\t%s\n", hex.EncodeToString(h[:]))
	fmt.Fprintf(tw, "created\t%s\n", time.UnixMilli(g.Time).UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "n\t%d\n", len(g.Nodes))
	fmt.Fprintf(tw, "f\t%d\n", (len(g.Nodes)-1)/3)
	fmt.Fprintf(tw, "quorum\t%d\n", g.Quorum())
	fmt.Fprintf(tw, "max_tx_bytes\t%d\n", g.Params.MaxTxBytes)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDR\tKEY FINGERPRINT (SHA-256)")
	for _, n := range g.Nodes {
		addr := strings.Join(n.Addrs, ",")
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.ID, addr, daemon.KeyFingerprint(n.PublicKey))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADMIN\tKEY FINGERPRINT (SHA-256)")
	for _, a := range g.Admins {
		fmt.Fprintf(tw, "%s\t%s\n", a.ID, daemon.KeyFingerprint(a.PublicKey))
	}
	return tw.Flush()
}
