package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

func cmdTxSubmit(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tx submit")
	apiURL := apiFlag(fs)
	receiptOut := fs.String("receipt-out", "", "write the receipt (CBOR) to this file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintln(fs.Output(), "ledgergate tx submit: want exactly one MSG file")
		fs.Usage()
		return errUsage
	}
	env, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read %s: %w", pos[0], err)
	}
	rb, raw, err := apiURL.client().submit(ctx, env)
	if err != nil {
		return err
	}
	if *receiptOut != "" {
		if err := os.WriteFile(*receiptOut, raw, 0o644); err != nil {
			return fmt.Errorf("write receipt: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "committed: tx %s in block %d at index %d\n", rb.TxID, rb.Height, rb.Index)
	return nil
}

func cmdReceiptVerify(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "receipt verify")
	genesis := genesisFlag(fs, "the chain's genesis file (all that verification needs)")
	proof := fs.String("proof", "", "a membership proof file (CBOR, docs/protocol.md 10.2; GET /api/v1/cluster/proof): verify with the member sets it proves, for a receipt certified after a member change")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintln(fs.Output(), "ledgergate receipt verify: want exactly one RECEIPT file")
		fs.Usage()
		return errUsage
	}
	g, err := readGenesis(*genesis)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read receipt: %w", err)
	}
	v, err := device.NewVerifier(g)
	if err != nil {
		return err
	}
	if *proof != "" {
		pb, err := os.ReadFile(*proof)
		if err != nil {
			return fmt.Errorf("read membership proof: %w", err)
		}
		if _, err := v.FollowProof(pb); err != nil {
			return err
		}
	}
	r, err := v.VerifyReceipt(data)
	if err != nil {
		if *proof == "" && errors.Is(err, ledger.ErrCert) {
			return fmt.Errorf("%w (after a change of the cluster's members, pass the membership proof with --proof)", err)
		}
		return err
	}
	tx, err := ledger.DecodeTx(r.Tx, 0)
	if err != nil {
		return err
	}
	signers := make([]string, len(r.Cert.Sigs))
	for i, s := range r.Cert.Sigs {
		signers[i] = s.Node
	}
	fmt.Fprintf(e.stdout, "valid: tx %x (%s by %s) is in block %d of chain %s, committed by %v at %s\n",
		tx.ID, tx.Body.Kind, tx.Author, r.Header.Height, r.Header.ChainID, signers,
		time.UnixMilli(r.Header.Time).UTC().Format(time.RFC3339))
	return nil
}

func cmdLedgerVerify(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "ledger verify")
	data := dataFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	g, err := daemon.LoadGenesis(*data)
	if err != nil {
		return err
	}
	// Read-only: it checks a running gateway's log as it stands, and a
	// stopped one's without cutting anything.
	blog, err := ledger.OpenLog(filepath.Join(*data, daemon.BlocksDir), ledger.LogOptions{ReadOnly: true})
	if err != nil {
		return daemon.ExplainLogError(err, *data, len(g.Nodes) > 1)
	}
	defer blog.Close()
	// A gateway that joined from a snapshot has no blocks up to its
	// base: the chain is checked from the state of that snapshot on.
	var from *state.State
	if base, _ := blog.Base(); base > 0 {
		if from, err = daemon.BaseState(*data, g, blog); err != nil {
			return err
		}
	}
	sum, err := chain.VerifyFrom(g, blog, from, func(done, total uint64) {
		fmt.Fprintf(e.stderr, "verified %d of %d blocks\n", done, total)
	})
	if err != nil {
		return daemon.ExplainLogError(err, *data, len(g.Nodes) > 1)
	}
	if sum.Base > 0 {
		fmt.Fprintf(e.stdout, "from base: the block log starts after block %d (the gateway joined from a snapshot); blocks %d to %d checked from that snapshot's state, which matches the log's base hash\n",
			sum.Base, sum.Base+1, sum.Base+sum.Blocks)
		n, err := daemon.BaseProof(*data, g, blog)
		if err != nil {
			return fmt.Errorf("ledger verify: the snapshot the block log starts from is not proven certified: %w", err)
		}
		fmt.Fprintf(e.stdout, "base snapshot: certified by %d members (its proof verifies with the genesis alone and the membership proof in blocks/%s)\n", n, ledger.LogMembersFile)
	}
	for _, w := range sum.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(e.stdout, "ok: %d blocks, %d txs, chain %s, tip %x\n", sum.Blocks, sum.Txs, g.ChainID, sum.Tip)
	if ch := sum.Members.Changes(); len(ch) > 0 {
		fmt.Fprintf(e.stdout, "members changed at heights %s: each block's certificate checked with the set in force at its height\n", describeChanges(ch))
		if sum.BaseChanges > 0 {
			fmt.Fprintf(e.stdout, "members: %d change(s) at or below the base proven by blocks/%s with the genesis alone\n", sum.BaseChanges, ledger.LogMembersFile)
		}
	}
	if sum.Pruned > 0 {
		fmt.Fprintf(e.stdout, "pruned: %d records in %d blocks between heights %d and %d (retention): their leaf hashes match the Merkle roots, their payloads and signatures are gone\n",
			sum.Pruned, sum.PrunedBlocks, sum.PrunedFrom, sum.PrunedTo)
	}
	return nil
}

func cmdLedgerReindex(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "ledger reindex")
	data := dataFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	n, err := daemon.Reindex(ctx, *data, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "reindexed %d blocks\n", n)
	return nil
}

// describeChanges lists member changes as "40 (5 nodes from 113), ...".
func describeChanges(ch []*ledger.Epoch) string {
	parts := make([]string, len(ch))
	for i, e := range ch {
		parts[i] = fmt.Sprintf("%d (%d nodes from %d: %s)", e.Height, e.N(), e.Start, strings.Join(e.IDs(), " "))
	}
	return strings.Join(parts, ", ")
}
