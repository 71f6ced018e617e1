package seeds

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// ednsSize is the EDNS0 UDP buffer size we advertise: 1232 bytes avoids IP
// fragmentation (DNS Flag Day 2020); larger answers come over TCP.
const ednsSize = 1232

// session is one Discover or Lookup call: the validation state and the keys
// of the zones validated so far, so that each DNSKEY RRset is fetched and
// checked once per call.
type session struct {
	d    *Discoverer
	ctx  context.Context
	v    *validation
	keys map[string]keysEntry
}

type keysEntry struct {
	zk  *zoneKeys
	err error
}

func (d *Discoverer) newSession(ctx context.Context) *session {
	return &session{d: d, ctx: ctx, v: newValidation(d.cfg.Now()), keys: map[string]keysEntry{}}
}

// lookup is one validated lookup with a fresh validation budget.
func (s *session) lookup(name dname, qtype uint16) ([]dns.RR, error) {
	s.v.reset()
	return s.resolve(name, qtype)
}

// resolve asks for (name, qtype) and validates the answer, building the
// chain of trust to the signer's zone as needed.
func (s *session) resolve(name dname, qtype uint16) ([]dns.RR, error) {
	resp, err := s.exchange(name, qtype)
	if err != nil {
		return nil, err
	}
	return s.v.answer(resp, name, qtype, s.zoneKeys)
}

// zoneKeys returns the validated keys of zone, from this session's cache or
// by walking down from the trust anchor. Failures are cached too: a zone that
// failed once in a call is not tried again in that call.
func (s *session) zoneKeys(zone dname) (*zoneKeys, error) {
	k := string(zone.wire())
	if e, ok := s.keys[k]; ok {
		return e.zk, e.err
	}
	zk, err := s.fetchKeys(zone)
	s.keys[k] = keysEntry{zk, err}
	return zk, err
}

// fetchKeys validates the DNSKEY RRset of zone: against the anchor if zone
// is the anchor's owner; otherwise against the zone's DS RRset, validated in
// the parent, whose keys come the same way. Each step goes up at least one
// label (the DS signer must be a proper ancestor), so this ends at the anchor.
func (s *session) fetchKeys(zone dname) (*zoneKeys, error) {
	a := anchorFor(s.d.anchors, zone)
	if a == nil {
		return nil, fmt.Errorf("%w: for zone %s, which signs an answer", ErrNoTrustAnchor, zone)
	}
	var (
		ds      []*dns.DS
		trusted []*dns.DNSKEY
	)
	if zone.equal(a.owner) {
		ds, trusted = a.ds, a.keys
		for _, d := range ds {
			s.v.link(Link{Step: "anchor", Name: zone.String(), Type: "DS", KeyTag: d.KeyTag, Algorithm: d.Algorithm})
		}
		for _, k := range trusted {
			s.v.link(Link{Step: "anchor", Name: zone.String(), Type: "DNSKEY", KeyTag: k.KeyTag(), Algorithm: k.Algorithm})
		}
	} else {
		rrs, err := s.resolve(zone, dns.TypeDS)
		switch {
		case errors.Is(err, ErrNoData) || errors.Is(err, ErrNXDomain):
			return nil, fmt.Errorf("%w: %s signs answers but its parent proves it has no DS: %w", ErrInsecureDelegation, zone, err)
		case err != nil:
			return nil, err
		}
		for _, rr := range rrs {
			if d, ok := rr.(*dns.DS); ok {
				ds = append(ds, d)
			}
		}
	}
	resp, err := s.exchange(zone, dns.TypeDNSKEY)
	if err != nil {
		return nil, err
	}
	return s.v.keysFrom(resp, zone, ds, trusted)
}

// exchange asks the servers in turn for (name, qtype) and returns the first
// usable answer: for this question, NOERROR or NXDOMAIN. Queries set DO (to
// get the signatures) and CD (RFC 4035 3.2.2: we validate ourselves, so a
// validating resolver should hand over what it has), over UDP with a 1232
// byte buffer, again over TCP when the answer is truncated.
func (s *session) exchange(name dname, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name.String(), qtype)
	q.RecursionDesired = true
	q.CheckingDisabled = true
	q.SetEdns0(ednsSize, true)
	var errs []error
	for _, server := range s.d.cfg.Servers {
		if err := s.ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrNoAnswer, dns.TypeToString[qtype], name, err)
		}
		resp, err := s.d.ask(s.ctx, q, server)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		s.d.log.Debug("dns answer", "name", name.String(), "type", dns.TypeToString[qtype], "server", server,
			"rcode", dns.RcodeToString[resp.Rcode], "answer", len(resp.Answer), "authority", len(resp.Ns))
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %s %s: %w", ErrNoAnswer, dns.TypeToString[qtype], name, errors.Join(errs...))
}

// ask sends q to one server.
func (d *Discoverer) ask(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	resp, _, err := d.udp.ExchangeContext(ctx, q, server)
	if err == nil && resp.Truncated {
		resp, _, err = d.tcp.ExchangeContext(ctx, q, server)
	}
	switch {
	case err != nil:
		return nil, err
	case resp.Truncated:
		return nil, errors.New("truncated answer over TCP")
	case len(resp.Question) != 1 || resp.Question[0].Qtype != q.Question[0].Qtype ||
		resp.Question[0].Qclass != dns.ClassINET || !mustName(resp.Question[0].Name).equal(mustName(q.Question[0].Name)):
		return nil, errors.New("answer to another question")
	case resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
	}
	return resp, nil
}
