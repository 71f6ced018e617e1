package seedstest

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server for signed test zones, listening on
// UDP and TCP on one 127.0.0.1 port.
type Server struct {
	addr    string
	zones   []*zone
	queries atomic.Int64

	mu     sync.Mutex
	tamper func(*dns.Msg)
}

// Serve starts a server for zones on 127.0.0.1 and stops it when the test ends.
// A query goes to the zone with the longest origin that contains its name.
func Serve(tb testing.TB, zones ...*Signed) *Server {
	tb.Helper()
	s := &Server{}
	seen := map[string]bool{}
	for _, z := range zones {
		if seen[z.Origin] {
			tb.Fatalf("seedstest: zone %s served twice", z.Origin)
		}
		seen[z.Origin] = true
		s.zones = append(s.zones, indexZone(tb, z))
	}

	pc, l := listen(tb)
	s.addr = pc.LocalAddr().String()
	var started sync.WaitGroup
	servers := []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serveDNS), NotifyStartedFunc: started.Done},
		{Listener: l, Handler: dns.HandlerFunc(s.serveDNS), NotifyStartedFunc: started.Done},
	}
	errc := make(chan error, len(servers))
	started.Add(len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	started.Wait()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range servers {
			if err := srv.ShutdownContext(ctx); err != nil {
				tb.Errorf("seedstest: shut down dns server: %v", err)
			}
		}
		for range servers {
			if err := <-errc; err != nil {
				tb.Errorf("seedstest: dns server: %v", err)
			}
		}
	})
	return s
}

// listen binds UDP and TCP on the same free port of 127.0.0.1.
func listen(tb testing.TB) (net.PacketConn, net.Listener) {
	tb.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("seedstest: listen udp: %v", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close() // the TCP port was taken; try another
	}
	tb.Fatal("seedstest: no port free for both udp and tcp")
	return nil, nil
}

// Addr is the server's "127.0.0.1:port", for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Tamper sets a function called on every answer before it is truncated and
// written; nil removes it.
func (s *Server) Tamper(f func(m *dns.Msg)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tamper = f
}

// Queries is the number of queries answered so far.
func (s *Server) Queries() int { return int(s.queries.Load()) }

// serveDNS answers one query.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Compress = true
	var do bool
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = dns.MaxMsgSize
	}

	if len(req.Question) != 1 || req.Question[0].Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
	} else if z := s.zoneFor(req.Question[0]); z == nil {
		m.Rcode = dns.RcodeRefused
	} else {
		z.answer(m, req.Question[0], do)
		// Copies, so that tamper functions cannot change the zone.
		m.Answer, m.Ns, m.Extra = copyRRs(m.Answer), copyRRs(m.Ns), copyRRs(m.Extra)
	}
	if req.IsEdns0() != nil {
		m.SetEdns0(1232, do)
	}

	s.mu.Lock()
	tamper := s.tamper
	s.mu.Unlock()
	if tamper != nil {
		tamper(m)
	}
	m.Truncate(size)
	s.queries.Add(1)  // before writing, so a client that has its answer sees it counted
	_ = w.WriteMsg(m) // an error means the client is gone; nothing to do
}

func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// zoneFor picks the zone with the longest origin containing the name. A DS
// query for a zone's apex goes to its parent, when that is served too.
func (s *Server) zoneFor(q dns.Question) *zone {
	name := strings.ToLower(q.Name)
	pick := func(skipApex bool) *zone {
		var best *zone
		for _, z := range s.zones {
			if dns.IsSubDomain(z.origin, name) && !(skipApex && z.origin == name) &&
				(best == nil || len(z.origin) > len(best.origin)) {
				best = z
			}
		}
		return best
	}
	if q.Qtype == dns.TypeDS {
		if z := pick(true); z != nil {
			return z
		}
	}
	return pick(false)
}

type key struct {
	name  string
	rtype uint16
}

// zone is a Signed zone indexed for answering.
type zone struct {
	origin string
	rrsets map[key][]dns.RR
	sigs   map[key][]dns.RR // RRSIGs by owner and type covered
	exists map[string]bool  // owner names and empty non-terminals
	nsec   []*dns.NSEC
	nsec3  []*dns.NSEC3
}

func indexZone(tb testing.TB, s *Signed) *zone {
	tb.Helper()
	z := &zone{origin: s.Origin, rrsets: map[key][]dns.RR{}, sigs: map[key][]dns.RR{}, exists: map[string]bool{}}
	nsec3Owner := map[string]bool{}
	for _, rr := range s.RRs {
		if n3, ok := rr.(*dns.NSEC3); ok {
			z.nsec3 = append(z.nsec3, n3)
			nsec3Owner[strings.ToLower(n3.Hdr.Name)] = true
		}
	}
	for _, rr := range s.RRs {
		name := strings.ToLower(rr.Header().Name)
		if strings.HasPrefix(name, "*.") {
			tb.Fatalf("seedstest: zone %s: wildcard %s is not supported", s.Origin, name)
		}
		switch rr := rr.(type) {
		case *dns.RRSIG:
			k := key{name, rr.TypeCovered}
			z.sigs[k] = append(z.sigs[k], rr)
			continue
		case *dns.NSEC:
			z.nsec = append(z.nsec, rr)
		}
		if nsec3Owner[name] {
			continue // NSEC3 chains live apart from the zone's names (RFC 5155 7.2.9)
		}
		k := key{name, rr.Header().Rrtype}
		z.rrsets[k] = append(z.rrsets[k], rr)
		for n := name; !z.exists[n] && dns.IsSubDomain(z.origin, n); n = parent(n) {
			z.exists[n] = true
		}
	}
	if len(z.rrsets[key{z.origin, dns.TypeSOA}]) == 0 {
		tb.Fatalf("seedstest: zone %s has no SOA", s.Origin)
	}
	return z
}

// answer fills m with the answer to q, as an authoritative server of z.
func (z *zone) answer(m *dns.Msg, q dns.Question, do bool) {
	name := strings.ToLower(q.Name)
	if cut := z.cut(name, q.Qtype); cut != "" {
		z.referral(m, cut, do)
		return
	}
	m.Authoritative = true
	switch {
	case len(z.rrsets[key{name, q.Qtype}]) > 0:
		m.Answer = z.signed(name, q.Qtype, do)
	case len(z.rrsets[key{name, dns.TypeCNAME}]) > 0:
		m.Answer = z.signed(name, dns.TypeCNAME, do)
	case z.exists[name]: // NODATA, RFC 4035 3.1.3.1
		m.Ns = z.signed(z.origin, dns.TypeSOA, do)
		if do {
			m.Ns = append(m.Ns, z.denyType(name)...)
		}
	default: // NXDOMAIN, RFC 4035 3.1.3.2
		m.Rcode = dns.RcodeNameError
		m.Ns = z.signed(z.origin, dns.TypeSOA, do)
		if do {
			m.Ns = append(m.Ns, z.denyName(name)...)
		}
	}
}

// cut is the topmost delegation point at or above name (but below the apex),
// or "". A DS query at a cut is answered by the parent, so it does not count.
func (z *zone) cut(name string, qtype uint16) string {
	var cut string
	for n := name; n != z.origin && dns.IsSubDomain(z.origin, n); n = parent(n) {
		if len(z.rrsets[key{n, dns.TypeNS}]) > 0 && (n != name || qtype != dns.TypeDS) {
			cut = n
		}
	}
	return cut
}

// referral is the NS RRset at cut, with the DS RRset or the proof that there
// is none (RFC 4035 3.1.4), and glue.
func (z *zone) referral(m *dns.Msg, cut string, do bool) {
	m.Ns = z.rrsets[key{cut, dns.TypeNS}]
	if do {
		if len(z.rrsets[key{cut, dns.TypeDS}]) > 0 {
			m.Ns = append(m.Ns, z.signed(cut, dns.TypeDS, do)...)
		} else {
			m.Ns = append(m.Ns, z.denyType(cut)...)
		}
	}
	for _, rr := range z.rrsets[key{cut, dns.TypeNS}] {
		target := strings.ToLower(rr.(*dns.NS).Ns)
		m.Extra = append(m.Extra, z.rrsets[key{target, dns.TypeA}]...)
		m.Extra = append(m.Extra, z.rrsets[key{target, dns.TypeAAAA}]...)
	}
}

// signed is the RRset at name and type, with its RRSIGs when do is set.
func (z *zone) signed(name string, rtype uint16, do bool) []dns.RR {
	out := append([]dns.RR(nil), z.rrsets[key{name, rtype}]...)
	if do {
		out = append(out, z.sigs[key{name, rtype}]...)
	}
	return out
}

// denyType proves that name exists but has no RRset of the asked type: the
// NSEC at name (or covering it, for an empty non-terminal), or the NSEC3
// matching it.
func (z *zone) denyType(name string) []dns.RR {
	if len(z.nsec3) > 0 {
		return z.withSigs(z.nsec3Matching(name))
	}
	if nsec := z.rrsets[key{name, dns.TypeNSEC}]; len(nsec) > 0 {
		return z.signed(name, dns.TypeNSEC, true)
	}
	return z.withSigs(z.nsecCovering(name))
}

// denyName proves that name does not exist. With NSEC: the records covering
// name and the wildcard at its closest encloser (RFC 4035 3.1.3.2). With
// NSEC3: the closest encloser proof, the records matching the closest
// encloser and covering the next closer name and the wildcard (RFC 5155 7.2.2).
func (z *zone) denyName(name string) []dns.RR {
	ce, next := name, name
	for !z.exists[ce] {
		ce, next = parent(ce), ce
	}
	wildcard := "*." + ce
	if len(z.nsec3) > 0 {
		return z.withSigs(append(append(z.nsec3Matching(ce), z.nsec3Covering(next)...), z.nsec3Covering(wildcard)...))
	}
	return z.withSigs(append(z.nsecCovering(name), z.nsecCovering(wildcard)...))
}

// withSigs returns records without duplicates, each followed by its RRSIGs.
func (z *zone) withSigs(records []dns.RR) []dns.RR {
	var out []dns.RR
	seen := map[string]bool{}
	for _, rr := range records {
		name := strings.ToLower(rr.Header().Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, rr)
		out = append(out, z.sigs[key{name, rr.Header().Rrtype}]...)
	}
	return out
}

func (z *zone) nsecCovering(name string) []dns.RR {
	for _, n := range z.nsec {
		owner, next := n.Hdr.Name, n.NextDomain
		if canonicalLess(owner, name) && (canonicalLess(name, next) || !canonicalLess(owner, next)) {
			return []dns.RR{n}
		}
	}
	return nil
}

func (z *zone) nsec3Matching(name string) []dns.RR {
	h := z.hash(name)
	for _, n := range z.nsec3 {
		if ownerHash(n) == h {
			return []dns.RR{n}
		}
	}
	return nil
}

func (z *zone) nsec3Covering(name string) []dns.RR {
	h := z.hash(name)
	for _, n := range z.nsec3 {
		owner, next := ownerHash(n), n.NextDomain
		// Base32hex keeps the order of the hashes. The last record wraps.
		if owner < h && (h < next || next <= owner) || h < next && next <= owner {
			return []dns.RR{n}
		}
	}
	return nil
}

// hash is name hashed with the zone's NSEC3 parameters (RFC 5155 5).
func (z *zone) hash(name string) string {
	p := z.nsec3[0]
	return dns.HashName(name, p.Hash, p.Iterations, p.Salt)
}

func ownerHash(n *dns.NSEC3) string {
	label, _, _ := strings.Cut(n.Hdr.Name, ".")
	return strings.ToUpper(label)
}

// parent is name without its first label; the parent of the root is the root.
func parent(name string) string {
	i := dns.Split(name)
	if len(i) < 2 {
		return "."
	}
	return name[i[1]:]
}

// canonicalLess orders names as RFC 4034 6.1 does: label by label from the
// right, each compared as lower-case bytes. Escapes in labels are not decoded,
// which is fine for the letters, digits, '-' and '_' of test zones.
func canonicalLess(a, b string) bool {
	la := dns.SplitDomainName(strings.ToLower(a))
	lb := dns.SplitDomainName(strings.ToLower(b))
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if la[i] != lb[j] {
			return la[i] < lb[j]
		}
	}
	return len(la) < len(lb)
}
