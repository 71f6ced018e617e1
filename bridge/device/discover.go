package device

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/miekg/dns"

	"github.com/ledgergate/ledgergate/seeds"
)

// DiscoverBrokers finds a site's gateways for a device: the MQTT brokers
// named by the _mqtt._tcp SRV records of the seed zones, with their A and
// AAAA records, each answer validated up to the trust anchor in cfg with
// the validator the gateways use (package seeds). It returns host:port
// addresses in SRV priority order; a bogus answer is an error that names
// the reason, and no address from it is returned.
func DiscoverBrokers(ctx context.Context, cfg seeds.Config) ([]string, error) {
	d, err := seeds.New(cfg)
	if err != nil {
		return nil, err
	}
	var srvs []*dns.SRV
	var errs []error
	for _, zone := range cfg.Zones {
		rrs, err := d.Lookup(ctx, "_mqtt._tcp."+dns.Fqdn(zone), dns.TypeSRV)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", zone, err))
			continue
		}
		for _, rr := range rrs {
			if s, ok := rr.(*dns.SRV); ok {
				srvs = append(srvs, s)
			}
		}
	}
	slices.SortStableFunc(srvs, func(a, b *dns.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight))
	})
	var out []string
	for _, s := range srvs {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			rrs, err := d.Lookup(ctx, s.Target, qt)
			if errors.Is(err, seeds.ErrNoData) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Target, err))
				continue
			}
			for _, rr := range rrs {
				var ip net.IP
				switch a := rr.(type) {
				case *dns.A:
					ip = a.A
				case *dns.AAAA:
					ip = a.AAAA
				}
				if addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(s.Port))); ip != nil && !slices.Contains(out, addr) {
					out = append(out, addr)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("device: no gateway found in seed zones %v: %w", cfg.Zones, errors.Join(append(errs, seeds.ErrNoPeers)...))
	}
	return out, nil
}
