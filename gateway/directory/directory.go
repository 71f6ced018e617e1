package directory

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/blob"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// ErrNotFound reports a device, configuration or blob that does not exist
// (it wraps index.ErrNotFound, so callers may test for either).
var ErrNotFound = index.ErrNotFound

// ErrNoBlock is returned before the chain has its first block: there is
// no certified head to prove freshness with yet.
var ErrNoBlock = errors.New("directory: the chain has no block yet")

// Fetcher gets a blob from the other gateways of the cluster, checked
// against its address.
type Fetcher func(ctx context.Context, sum [32]byte) ([]byte, error)

// Deps are what a Directory is built from.
type Deps struct {
	Chain  *chain.Chain
	Index  *index.Index
	Blobs  *blob.Store
	Fetch  Fetcher // nil: a single gateway, nowhere to fetch from
	Logger *slog.Logger
}

// Directory answers questions about devices with proofs.
type Directory struct {
	d    Deps
	head atomic.Pointer[ledger.Head]

	mu       sync.Mutex
	fetching map[[32]byte]bool
	// rollouts caches rollouts at index height rolloutsAt (see rollout).
	rollouts   map[rolloutKey]*GroupRollout
	rolloutsAt uint64
	wg         sync.WaitGroup
}

// New returns a Directory; it does no I/O.
func New(d Deps) *Directory { return &Directory{d: d, fetching: map[[32]byte]bool{}} }

// Head returns the newest committed block's header and certificate.
func (x *Directory) Head() (*ledger.Head, error) {
	height, _ := x.d.Chain.State().Tip()
	if height == 0 {
		return nil, ErrNoBlock
	}
	if h := x.head.Load(); h != nil && h.Header.Height == height {
		return h, nil
	}
	b, err := x.d.Chain.Block(height)
	if err != nil {
		return nil, err
	}
	h := &ledger.Head{Header: b.Header, Cert: b.Cert}
	x.head.Store(h)
	return h, nil
}

// ConfigAnswer is device's current configuration with its proof; the
// answer's Match says whether hash (if not nil) is its SHA-256. A device
// without configuration gets an answer without receipt, and info nil.
func (x *Directory) ConfigAnswer(device string, hash []byte) (*ledger.ConfigAnswer, *index.ConfigInfo, error) {
	head, err := x.Head()
	if err != nil {
		return nil, nil, err
	}
	d, err := x.d.Index.Device(device)
	if err != nil {
		return nil, nil, err
	}
	a := &ledger.ConfigAnswer{Device: device, Head: *head}
	if a.Enrollment, err = x.receipt(hex.EncodeToString(d.EnrollTx)); err != nil {
		return nil, nil, err
	}
	cur, err := x.d.Index.CurrentConfig(device)
	if errors.Is(err, index.ErrNotFound) {
		return a, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if a.Receipt, err = x.receipt(cur.TxID); err != nil {
		return nil, nil, err
	}
	a.Match = hash != nil && hex.EncodeToString(hash) == cur.SHA256
	return a, cur, nil
}

// receipt builds the receipt of a committed tx named by its hex id.
func (x *Directory) receipt(txID string) (*ledger.Receipt, error) {
	id, err := ledger.ParseHash(txID)
	if err != nil {
		return nil, fmt.Errorf("directory: invariant: %w", err)
	}
	return x.d.Chain.Receipt(id)
}

// KeysAnswer is device's keys with their proofs.
func (x *Directory) KeysAnswer(device string) (*ledger.KeysAnswer, *index.Device, error) {
	head, err := x.Head()
	if err != nil {
		return nil, nil, err
	}
	d, err := x.d.Index.Device(device)
	if err != nil {
		return nil, nil, err
	}
	a := &ledger.KeysAnswer{Device: device, Head: *head}
	if a.Enroll, err = x.receipt(hex.EncodeToString(d.EnrollTx)); err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(d.KeysTx, d.EnrollTx) {
		if a.Rekey, err = x.receipt(hex.EncodeToString(d.KeysTx)); err != nil {
			return nil, nil, err
		}
	}
	if len(d.RevokeTx) > 0 {
		if a.Revoke, err = x.receipt(hex.EncodeToString(d.RevokeTx)); err != nil {
			return nil, nil, err
		}
	}
	return a, d, nil
}

// Blob returns the blob with address sum if a committed config.set names
// it: from the store, or else from another gateway (then it is stored).
func (x *Directory) Blob(ctx context.Context, sum [32]byte) ([]byte, error) {
	data, err := x.d.Blobs.Get(sum)
	if !errors.Is(err, blob.ErrNotFound) {
		return data, err
	}
	if err := x.named(sum); err != nil {
		return nil, err
	}
	if x.d.Fetch == nil {
		return nil, fmt.Errorf("directory: blob %x was never uploaded to this gateway: %w", sum, ErrNotFound)
	}
	data, err = x.d.Fetch(ctx, sum)
	if err != nil {
		return nil, fmt.Errorf("directory: blob %x: not here, and no other gateway has it (%v): %w", sum, err, ErrNotFound)
	}
	if _, err := x.d.Blobs.Put(data); err != nil {
		return nil, err
	}
	return data, nil
}

// ReadImage reads len(p) bytes from offset off of the firmware image
// whose SHA-256 is sum, and returns how many it read and the image's
// size: a part of it, for block-wise transfers (the device checks the
// hash of the whole). A release on the ledger must name the image; one
// this gateway lacks is fetched from another gateway first. Errors carry
// a reason for the front ends (bridge.ReasonOf).
func (x *Directory) ReadImage(ctx context.Context, sum [32]byte, p []byte, off int64) (int, int64, error) {
	if _, err := x.d.Index.ReleaseByImage(sum); err != nil {
		if errors.Is(err, index.ErrNotFound) {
			err = fmt.Errorf("directory: no release has image %x: %w", sum, ErrNotFound)
		}
		return 0, 0, refusal(err)
	}
	if !x.d.Blobs.Has(sum) {
		if _, err := x.Blob(ctx, sum); err != nil {
			return 0, 0, refusal(err)
		}
	}
	n, size, err := x.d.Blobs.ReadAt(sum, p, off)
	if errors.Is(err, blob.ErrNotFound) {
		err = fmt.Errorf("directory: image %x: %w", sum, ErrNotFound)
	}
	if err != nil {
		return 0, 0, refusal(err)
	}
	return n, size, nil
}

// OpenImage opens the firmware image whose SHA-256 is sum, to be served
// in parts without holding it in memory (the device checks the hash of
// the whole). A release on the ledger must name the image; one this
// gateway lacks is fetched from another gateway first.
func (x *Directory) OpenImage(ctx context.Context, sum [32]byte) (io.ReadSeekCloser, error) {
	if _, err := x.d.Index.ReleaseByImage(sum); err != nil {
		if errors.Is(err, index.ErrNotFound) {
			err = fmt.Errorf("directory: no release has image %x: %w", sum, ErrNotFound)
		}
		return nil, err
	}
	return x.OpenBlob(ctx, sum)
}

// OpenBlob opens the blob with address sum, as Blob finds it, to be
// served without holding it in memory: from the store, or else fetched
// from another gateway first. A committed config.set or release must
// name it.
func (x *Directory) OpenBlob(ctx context.Context, sum [32]byte) (io.ReadSeekCloser, error) {
	if !x.d.Blobs.Has(sum) {
		if _, err := x.Blob(ctx, sum); err != nil {
			return nil, err
		}
	} else if err := x.named(sum); err != nil {
		return nil, err
	}
	f, err := x.d.Blobs.Open(sum)
	if errors.Is(err, blob.ErrNotFound) {
		err = fmt.Errorf("directory: blob %x: %w", sum, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// named checks that a committed config.set or firmware release names the
// blob: the gateway serves and fetches nothing else.
func (x *Directory) named(sum [32]byte) error {
	cs, err := x.d.Index.ConfigsByBlob(sum)
	if err != nil {
		return err
	}
	if len(cs) > 0 {
		return nil
	}
	_, err = x.d.Index.ReleaseByImage(sum)
	if errors.Is(err, index.ErrNotFound) {
		return fmt.Errorf("directory: blob %x: no config.set or release names it: %w", sum, ErrNotFound)
	}
	return err
}

// CheckConfig checks env, an admin-signed config.set, against the
// committed state: what an upload must pass before its sealed blob is
// read (PutBlob).
func (x *Directory) CheckConfig(env []byte) (*ledger.Tx, error) {
	c, err := x.d.Chain.State().Check(env)
	if err != nil {
		return nil, err
	}
	if c.Tx.Body.ConfigSet == nil {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("a %s tx, want config.set", c.Tx.Body.Kind)}
	}
	return c.Tx, nil
}

// PutBlob stores the off-chain bytes that tx, a config.set or
// firmware.publish checked by CheckConfig or CheckFirmware, names: size
// bytes read from r, streamed to disk and checked against the SHA-256
// (and for an image the size) that tx names. The caller submits tx next:
// the bytes are then in place before any device learns of them. Bytes
// that are not the ones named are refused as malformed; an error of r
// is returned wrapped.
func (x *Directory) PutBlob(tx *ledger.Tx, r io.Reader, size int64) error {
	var sum []byte
	switch b := &tx.Body; {
	case b.ConfigSet != nil:
		sum = b.ConfigSet.Blob
	case b.FirmwarePublish != nil:
		if uint64(size) != b.FirmwarePublish.Size {
			return &ledger.RefusedError{Reason: ledger.ReasonMalformed,
				Detail: fmt.Sprintf("an image of %d bytes; the manifest names %d", size, b.FirmwarePublish.Size)}
		}
		sum = b.FirmwarePublish.SHA256
	default:
		return fmt.Errorf("directory: invariant: PutBlob of a %s tx", b.Kind)
	}
	if len(sum) != 32 {
		return fmt.Errorf("directory: invariant: a checked %s names a %d-byte hash", tx.Body.Kind, len(sum))
	}
	err := x.d.Blobs.PutFrom([32]byte(sum), size, r)
	if errors.Is(err, blob.ErrMismatch) {
		return &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: err.Error()}
	}
	return err
}

// Committed fetches, in the background, the blobs of committed
// config.sets that this gateway lacks, so that it can serve them when the
// gateway they were uploaded to is down. It does not block.
func (x *Directory) Committed(ctx context.Context, txs []*ledger.Tx) {
	if x.d.Fetch == nil {
		return
	}
	for _, tx := range txs {
		var sum [32]byte
		switch b := &tx.Body; {
		case b.ConfigSet != nil:
			sum = [32]byte(b.ConfigSet.Blob)
		case b.FirmwarePublish != nil:
			sum = [32]byte(b.FirmwarePublish.SHA256)
		default:
			continue
		}
		x.mu.Lock()
		busy := x.fetching[sum]
		x.fetching[sum] = true
		x.mu.Unlock()
		if busy || x.d.Blobs.Has(sum) {
			continue
		}
		x.wg.Go(func() {
			defer func() {
				x.mu.Lock()
				delete(x.fetching, sum)
				x.mu.Unlock()
			}()
			x.prefetch(ctx, sum)
		})
	}
}

// prefetch tries to fetch a blob a few times, backing off, then gives up
// (a device asking for it later makes another try).
func (x *Directory) prefetch(ctx context.Context, sum [32]byte) {
	wait := time.Second
	for try := 1; ; try++ {
		if _, err := x.Blob(ctx, sum); err == nil || ctx.Err() != nil {
			return
		} else if try == 5 {
			x.d.Logger.Warn("config blob not found on any gateway", "blob", hex.EncodeToString(sum[:]), "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// Wait waits for background fetches (after their ctx ended).
func (x *Directory) Wait() { x.wg.Wait() }

// Affected returns the devices whose manifests (configuration, firmware)
// a committed block may have changed: targets of config.sets (group
// members included), devices of a model whose releases changed, members
// of a group whose firmware policy changed, devices in a rollout wave a
// report just opened, and devices just enrolled. Each model and group is
// looked up once per block: a block of many reports costs one rollout
// per release and group, not one per report.
func (x *Directory) Affected(txs []*ledger.Tx) []string {
	var out []string
	models, groups := map[string]bool{}, map[string]bool{}
	reported := map[ledger.Release][]*index.Device{} // release -> the devices that reported on it
	for _, tx := range txs {
		switch b := &tx.Body; {
		case b.Enroll != nil:
			out = append(out, b.Enroll.DeviceID)
		case b.DeviceClaim != nil:
			out = append(out, b.DeviceClaim.DeviceID)
		case b.FirmwarePolicy != nil:
			groups[b.FirmwarePolicy.Group] = true
		case b.FirmwareReport != nil:
			if d, err := x.d.Index.Device(b.FirmwareReport.DeviceID); err == nil {
				r := ledger.Release{Model: b.FirmwareReport.Model, Version: b.FirmwareReport.Version}
				reported[r] = append(reported[r], d)
			}
		case b.ConfigSet != nil:
			if dev, group, _ := ledger.ParseTarget(b.ConfigSet.Target); dev != "" {
				out = append(out, dev)
			} else {
				groups[group] = true
			}
		default:
			if m, ok := firmwareModel(b); ok {
				models[m] = true
			}
		}
	}
	for m := range models {
		ids, err := x.d.Index.DevicesOfModel(m)
		if err != nil {
			x.d.Logger.Warn("devices of model", "model", m, "err", err)
		}
		out = append(out, ids...)
	}
	for g := range groups {
		ids, err := x.d.Index.GroupMembers(g)
		if err != nil {
			x.d.Logger.Warn("group members", "group", g, "err", err)
		}
		out = append(out, ids...)
	}
	for r, ds := range reported {
		if !models[r.Model] {
			out = append(out, x.waveOpened(r, ds)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// waveOpened returns the devices that release r's rollout offered it to
// because the reports of devices completed their wave: the devices of
// the wave after it, if it is now open. Any other report changes no
// device's offer.
func (x *Directory) waveOpened(r ledger.Release, reporters []*index.Device) []string {
	rel, err := x.d.Index.Release(r.Model, r.Version)
	if err != nil {
		return nil // a report of a release this ledger does not know offers nothing
	}
	events, err := x.d.Index.ReleaseEvents(r.Model, r.Version)
	if err != nil {
		x.d.Logger.Warn("release events", "model", r.Model, "version", r.Version, "err", err)
		return nil
	}
	var out []string
	done := map[string]bool{}
	rollouts := map[string]*GroupRollout{} // one per group, however many reported
	for _, d := range reporters {
		for _, g := range d.Groups {
			if done[g] {
				continue
			}
			ro := rollouts[g]
			if ro == nil {
				if ro, err = x.rollout(rel, events, g); err != nil {
					x.d.Logger.Warn("rollout", "model", r.Model, "version", r.Version, "group", g, "err", err)
					done[g] = true
					continue
				}
				rollouts[g] = ro
			}
			at := slices.Index(ro.order, d.ID)
			for k, from := 0, 0; at >= 0 && k+1 < len(ro.Waves); k++ {
				to := from + ro.Waves[k].Devices
				if at < to { // d's wave: did it complete, and open the next?
					if w := ro.Waves[k]; w.Reported == w.Devices && ro.Waves[k+1].Open {
						out = append(out, ro.order[to:to+ro.Waves[k+1].Devices]...)
						done[g] = true
					}
					break
				}
				from = to
			}
		}
	}
	return out
}

// firmwareModel is the model a firmware tx about a release is about.
func firmwareModel(b *ledger.Body) (string, bool) {
	switch {
	case b.FirmwarePublish != nil:
		return b.FirmwarePublish.Model, true
	case b.FirmwareVote != nil:
		return b.FirmwareVote.Model, true
	case b.FirmwareApprove != nil:
		return b.FirmwareApprove.Model, true
	case b.FirmwareRevoke != nil:
		return b.FirmwareRevoke.Model, true
	}
	return "", false
}

// Answers returns the Directory as the front ends see it.
func (x *Directory) Answers() bridge.Answers { return answers{x} }

// answers adapts a Directory to bridge.Answers: CBOR answers, errors with
// reasons.
type answers struct{ x *Directory }

func (a answers) Config(device string) ([]byte, error) {
	ans, info, err := a.x.ConfigAnswer(device, nil)
	if err != nil {
		return nil, refusal(err)
	}
	if info == nil {
		return nil, nil
	}
	return ans.Encode()
}

func (a answers) VerifyConfig(device string, hash []byte) ([]byte, error) {
	ans, _, err := a.x.ConfigAnswer(device, hash)
	if err != nil {
		return nil, refusal(err)
	}
	return ans.Encode()
}

func (a answers) Blob(ctx context.Context, device string, ref []byte) ([]byte, error) {
	var sum [32]byte
	if len(ref) == 0 {
		cur, err := a.x.d.Index.CurrentConfig(device)
		if err != nil {
			return nil, refusal(err)
		}
		b, _ := hex.DecodeString(cur.Blob)
		sum = [32]byte(b)
	} else {
		if len(ref) != 32 {
			return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: "a blob address is 32 bytes"}
		}
		sum = [32]byte(ref)
		if err := a.x.mayRead(device, sum); err != nil {
			return nil, refusal(err)
		}
	}
	data, err := a.x.Blob(ctx, sum)
	if err != nil {
		return nil, refusal(err)
	}
	return data, nil
}

// mayRead checks that a config.set for device or one of its groups names
// the blob: a device downloads only its own configurations.
func (x *Directory) mayRead(device string, sum [32]byte) error {
	d, err := x.d.Index.Device(device)
	if err != nil {
		return err
	}
	cs, err := x.d.Index.ConfigsByBlob(sum)
	if err != nil {
		return err
	}
	for _, c := range cs {
		dev, group, _ := ledger.ParseTarget(c.Target)
		if dev == device || group != "" && slices.Contains(d.Groups, group) {
			return nil
		}
	}
	return fmt.Errorf("directory: no configuration of device %s has blob %x: %w", device, sum, ErrNotFound)
}

func (a answers) Keys(_, other string) ([]byte, error) {
	ans, _, err := a.x.KeysAnswer(other)
	if err != nil {
		return nil, refusal(err)
	}
	return ans.Encode()
}

// refusal gives err a reason the front ends report.
func refusal(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: err.Error()}
	case errors.Is(err, ErrNoBlock):
		return &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: err.Error()}
	}
	return err
}

func (a answers) Firmware(device string) ([]byte, error) {
	ans, _, err := a.x.FirmwareAnswer(device, clock.Now())
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, refusal(err)
	}
	return ans.Encode()
}
