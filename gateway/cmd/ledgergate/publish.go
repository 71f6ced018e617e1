package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// chainFlags find the chain id for offline device commands.
type chainFlags struct{ chainID, genesis *string }

func addChainFlags(fs *flagSet) chainFlags {
	return chainFlags{
		chainID: fs.String("chain-id", "", "chain id (default: read from --genesis)"),
		genesis: genesisFlag(fs, "genesis file to read the chain id from"),
	}
}

// signer loads the device key at keyPath and finds the chain id: what
// every offline device command needs before it signs.
func (c chainFlags) signer(keyPath string) (crypto.Signer, string, error) {
	key, err := device.LoadKey(keyPath)
	if err != nil {
		return nil, "", err
	}
	chainID, err := c.id()
	if err != nil {
		return nil, "", err
	}
	return key, chainID, nil
}

func (c chainFlags) id() (string, error) {
	if *c.chainID != "" {
		return *c.chainID, nil
	}
	g, err := readGenesis(*c.genesis)
	if err != nil {
		return "", fmt.Errorf("%w (or pass --chain-id)", err)
	}
	return g.ChainID, nil
}

func cmdDeviceToken(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "device token")
	keyPath := fs.String("key", "", "the device's private key file")
	id := fs.String("id", "", "device id (the MQTT username and client id)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid, at most 24h")
	chain := addChainFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "key", "id"); err != nil {
		return err
	}
	key, chainID, err := chain.signer(*keyPath)
	if err != nil {
		return err
	}
	tok, err := device.Token(key, *id, chainID, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

func cmdDevicePublish(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "device publish")
	keyPath := fs.String("key", "", "the device's private key file; its sequence counter is kept in KEY.seq")
	id := fs.String("id", "", "device id")
	seqFlag := fs.Uint64("seq", 0, "sequence number (default: the next one of KEY.seq, resynced from the gateway's last seq on a replay refusal)")
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "gateway MQTT address, tcp://host:port")
	stream := fs.String("stream", "default", "stream name")
	in := fs.String("in", "", "payload file (default: standard input)")
	ctype := fs.String("content-type", "application/octet-stream", "payload content type")
	receiptOut := fs.String("receipt-out", "", "write the receipt (CBOR) to this file")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	chain := addChainFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "key", "id"); err != nil {
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl, err := device.Dial(ctx, *id, key, chainID, device.DialOptions{Broker: *broker})
	if err != nil {
		return err
	}
	defer cl.Close()
	counter := device.OpenSeq(*keyPath + ".seq")
	rec := ledger.Record{DeviceID: *id, Stream: *stream, Time: time.Now().UnixMilli(), ContentType: *ctype, Payload: payload}
	var env []byte
	if *seqFlag != 0 {
		// An explicit seq: no resync, but the counter moves past it.
		rec.Seq = *seqFlag
		if env, err = device.SignRecord(key, chainID, rec); err != nil {
			return err
		}
		if err := usedSeq(counter, rec.Seq); err != nil {
			return err
		}
		if err := cl.Publish(ctx, *stream, env); err != nil {
			return seqHint(err)
		}
	} else if env, err = cl.PublishRecord(ctx, counter, rec); err != nil {
		return seqHint(err)
	}
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil {
		return err
	}
	seq := tx.Body.Record.Seq
	receipt, err := cl.Receipt(ctx, env)
	if err != nil {
		return err
	}
	if *receiptOut != "" {
		if err := os.WriteFile(*receiptOut, receipt, 0o644); err != nil {
			return fmt.Errorf("write receipt: %w", err)
		}
	}
	r, err := ledger.DecodeReceipt(receipt)
	if err != nil {
		return err
	}
	txid := ledger.TxID(env)
	fmt.Fprintf(e.stdout, "committed: seq %d, tx %x in block %d\n", seq, txid, r.Header.Height)
	return nil
}

// usedSeq records in counter that seq was used, unless a higher one was.
func usedSeq(counter *device.SeqFile, seq uint64) error {
	last, err := counter.Last()
	if err != nil || last >= seq {
		return err
	}
	return counter.Set(seq)
}

// seqHint adds to a replay refusal what to do about it.
func seqHint(err error) error {
	var re *device.RefusedError
	if errors.As(err, &re) && re.Reason == device.ReasonReplay && re.LastSeq != nil {
		return fmt.Errorf("%w; the device's last seq is %d: use --seq %d or above", err, *re.LastSeq, *re.LastSeq+1)
	}
	return err
}

// readPayload reads a record's payload from a file, or from standard
// input when the name is empty or "-". It reads at most 1 MiB + 1 byte, so
// an oversized payload fails at signing with a clear limit.
func readPayload(e *env, name string) ([]byte, error) {
	var b []byte
	var err error
	if name == "" || name == "-" {
		b, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20+1))
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	return b, nil
}
