package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Why a firmware answer or image is refused, besides ErrProof and
// ErrStaleHead. Each error wraps one of these.
var (
	// ErrVendorSignature: the manifest is not signed by the vendor key the
	// device has built in (arbitrary software).
	ErrVendorSignature = errors.New("device: manifest not signed by the vendor's key")
	// ErrWrongModel: the manifest is for another model (mix-and-match).
	ErrWrongModel = errors.New("device: manifest for another model")
	// ErrFirmwareRollback: not newer than the installed version, or the
	// installed version is below the release's minimum.
	ErrFirmwareRollback = errors.New("device: not an upgrade from the installed version")
	// ErrExpired: the manifest expired (freeze).
	ErrExpired = errors.New("device: manifest expired")
	// ErrReleaseRevoked: the release was revoked.
	ErrReleaseRevoked = errors.New("device: release revoked")
	// ErrPolicy: the answer does not show the group's policy allows it.
	ErrPolicy = errors.New("device: the group's policy does not allow the release")
	// ErrImage: the image is not the one the manifest names (hash or size).
	ErrImage = errors.New("device: image does not match the manifest")
)

// FirmwarePolicy is what a device knows when it checks a firmware answer.
type FirmwarePolicy struct {
	Device string
	// Model and Groups are the device's; empty: take them from the
	// enrollment receipt the answer carries.
	Model     string
	Groups    []string
	Installed uint64 // the version it runs
	Freshness
}

// VerifyFirmware checks, with the genesis and the vendor's maintenance key
// built into the device, that image may be installed: the checks of TUF.
//
//   - Arbitrary software: the manifest (the firmware.publish tx) is signed
//     by vendorKey, and image has the manifest's SHA-256.
//   - Endless data: image is exactly the manifest's size (download with
//     DownloadImage, which stops at that bound).
//   - Mix-and-match: the manifest binds model, version and hash; the model
//     is the device's.
//   - Rollback: the version is above p.Installed, and p.Installed is not
//     below the manifest's minimum.
//   - Freeze: the manifest has not expired and the answer's newest block
//     is fresh.
//   - The ledger: every receipt verifies with the genesis; the release is
//     not revoked (if the answer carries a revocation); the group's policy
//     (its firmware.policy, or owner approval by default) is met by the
//     approval or the good votes the answer proves.
//
// It returns the manifest.
func VerifyFirmware(g *ledger.Genesis, vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, image []byte, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	return verifyFirmware(m, vendorKey, a, image, p)
}

func verifyFirmware(m *ledger.Members, vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, image []byte, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	f, err := checkFirmware(m, vendorKey, a, p)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(image); uint64(len(image)) != f.Size || !bytes.Equal(sum[:], f.SHA256) {
		return nil, fmt.Errorf("%w: %d bytes, sha256 %x; the manifest names %d bytes, %x", ErrImage, len(image), sum, f.Size, f.SHA256)
	}
	return f, nil
}

// CheckFirmware is VerifyFirmware without the image: whether to download it.
func CheckFirmware(g *ledger.Genesis, vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	return checkFirmware(m, vendorKey, a, p)
}

func checkFirmware(m *ledger.Members, vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	if a.Device != p.Device {
		return nil, fmt.Errorf("%w: answer is for device %q", ErrProof, a.Device)
	}
	receipts := append([]*ledger.Receipt{a.Release, a.Policy, a.Approval, a.Revoke}, a.Votes...)
	if err := p.check(m, &a.Head, receipts...); err != nil {
		return nil, err
	}
	if a.Release == nil {
		return nil, fmt.Errorf("%w: no release", ErrProof)
	}
	if p.Model == "" || p.Groups == nil {
		e, err := enrollmentOf(m, a.Enrollment, p.Device)
		if err != nil {
			return nil, err
		}
		if p.Model == "" {
			p.Model = e.Model
		}
		if p.Groups == nil {
			p.Groups = e.Groups
		}
	}
	if err := m.VerifyReceipt(a.Release); err != nil {
		return nil, fmt.Errorf("%w: release: %w", ErrProof, err)
	}
	tx, err := ledger.DecodeTx(a.Release.Tx, 0)
	if err != nil || tx.Body.FirmwarePublish == nil {
		return nil, fmt.Errorf("%w: the release receipt is not of a firmware.publish", ErrProof)
	}
	if err := tx.Verify(vendorKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVendorSignature, err)
	}
	f := tx.Body.FirmwarePublish
	rel := ledger.Release{Model: f.Model, Version: f.Version}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	switch {
	case f.Model != p.Model:
		return nil, fmt.Errorf("%w: %s, the device is a %s", ErrWrongModel, f.Model, p.Model)
	case f.Version <= p.Installed:
		return nil, fmt.Errorf("%w: version %d, installed %d", ErrFirmwareRollback, f.Version, p.Installed)
	case p.Installed < f.MinVersion:
		return nil, fmt.Errorf("%w: version %d upgrades from %d or later, installed %d", ErrFirmwareRollback, f.Version, f.MinVersion, p.Installed)
	case now().UnixMilli() >= f.Expires:
		return nil, fmt.Errorf("%w: at %s", ErrExpired, time.UnixMilli(f.Expires).UTC().Format(time.RFC3339))
	}
	if a.Revoke != nil {
		if rv, err := provenTx(m, a.Revoke, ledger.KindFirmwareRevoke, ""); err == nil && rv.Body.FirmwareRevoke.Release == rel &&
			(rv.Body.FirmwareRevoke.Group == "" || slices.Contains(p.Groups, rv.Body.FirmwareRevoke.Group)) {
			return nil, fmt.Errorf("%w: %s", ErrReleaseRevoked, rv.Body.FirmwareRevoke.Reason)
		}
	}
	if err := allowed(m, a, rel, p); err != nil {
		return nil, err
	}
	return f, nil
}

// allowed checks the group policy the answer proves.
func allowed(m *ledger.Members, a *ledger.FirmwareAnswer, rel ledger.Release, p FirmwarePolicy) error {
	if !slices.Contains(p.Groups, a.Group) {
		return fmt.Errorf("%w: group %q is not the device's", ErrPolicy, a.Group)
	}
	pol := ledger.FirmwarePolicy{Group: a.Group, RequireApproval: true}
	if a.Policy != nil {
		tx, err := provenTx(m, a.Policy, ledger.KindFirmwarePolicy, "")
		if err != nil {
			return err
		}
		if tx.Body.FirmwarePolicy.Group != a.Group {
			return fmt.Errorf("%w: the policy is group %s's", ErrProof, tx.Body.FirmwarePolicy.Group)
		}
		pol = *tx.Body.FirmwarePolicy
	}
	if a.Approval != nil {
		tx, err := provenTx(m, a.Approval, ledger.KindFirmwareApprove, "")
		if err != nil {
			return err
		}
		if ap := tx.Body.FirmwareApprove; ap.Release == rel && ap.Group == a.Group {
			return nil
		}
		return fmt.Errorf("%w: the approval is for another release or group", ErrProof)
	}
	if pol.RequireApproval {
		return fmt.Errorf("%w: group %s requires the owner's approval", ErrPolicy, a.Group)
	}
	voters := map[string]bool{}
	for _, rc := range a.Votes {
		tx, err := provenTx(m, rc, ledger.KindFirmwareVote, "")
		if err != nil {
			return err
		}
		if v := tx.Body.FirmwareVote; v.Release == rel && v.Good {
			voters[tx.Author] = true
		}
	}
	if len(voters) < int(pol.MinGoodVotes) {
		return fmt.Errorf("%w: %d good votes, group %s wants %d", ErrPolicy, len(voters), a.Group, pol.MinGoodVotes)
	}
	return nil
}

// DownloadImage fetches an image over HTTP (a gateway's
// /api/v1/firmware/images/{sha256}, or anywhere), reading at most f.Size
// bytes: a server that sends more is cut off there (endless data). It
// resumes an interrupted download with a Range request.
func DownloadImage(ctx context.Context, client *http.Client, url string, f *ledger.FirmwarePublish) ([]byte, error) {
	var img []byte
	for attempt := 0; attempt < 3; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		if len(img) > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(img)))
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && len(img) > 0:
		case resp.StatusCode == http.StatusOK:
			img = img[:0]
		default:
			resp.Body.Close()
			return nil, fmt.Errorf("device: download %s: %s", url, resp.Status)
		}
		rest := int64(f.Size) - int64(len(img))
		buf, err := io.ReadAll(io.LimitReader(resp.Body, rest+1))
		resp.Body.Close()
		img = append(img, buf...)
		if uint64(len(img)) > f.Size {
			return nil, fmt.Errorf("%w: the server sent more than the manifest's %d bytes; stopped there", ErrImage, f.Size)
		}
		if err == nil {
			return img, nil
		}
	}
	return nil, fmt.Errorf("device: download %s: gave up after 3 attempts with %d of %d bytes", url, len(img), f.Size)
}

// SignFirmwareReport signs a firmware.report: what the device installed,
// and whether it worked. r.Seq comes from the device's counter.
func SignFirmwareReport(key crypto.Signer, chainID string, r ledger.FirmwareReport) ([]byte, error) {
	return ledger.SignTx(key, r.DeviceID, &ledger.Body{Kind: ledger.KindFirmwareReport, ChainID: chainID, FirmwareReport: &r})
}
