package mqtt

import (
	"slices"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// What one device may hold of the broker: its sessions (MaxDeviceSessions)
// and, per client, its topic filters (MaxSubscriptions). Without these
// caps one enrolled device could take every connection slot (client ids
// dev/0, dev/1, ... with one token) or grow the broker's memory without
// bound (subscriptions under its own prefix).

// deviceSessions are the sessions of one device the server knows of.
// Both lists are short (about MaxDeviceSessions; most devices have one
// session), so they are slices: a Go map costs hundreds of bytes even
// with one entry, and every connected device has one of these.
type deviceSessions struct {
	// conns are the clients that passed CONNECT and have not
	// disconnected: connecting or connected. A client that failed after
	// CONNECT without a disconnect (its CONNACK could not be written) is
	// Closed and dropped when next counted.
	conns []*mochi.Client
	// ids are the client ids whose sessions the broker may keep: of
	// conns, and of sessions kept after a disconnect. An id the broker
	// no longer has is dropped when next counted.
	ids []string
}

// admit counts cl, which passed authentication as device, against the
// device's session cap. A client id the device holds already (a
// reconnect, which takes the session over) is always admitted. Else the
// device may have at most MaxDeviceSessions connections; if it is
// under that but holds as many sessions with those kept after a
// disconnect, its oldest kept sessions are discarded to make room.
func (s *Server) admit(cl *mochi.Client, device string) *connectError {
	s.mu.Lock()
	ds := s.devices[device]
	if ds == nil {
		ds = &deviceSessions{}
		s.devices[device] = ds
	}
	ds.conns = slices.DeleteFunc(ds.conns, (*mochi.Client).Closed)
	live := map[string]bool{}
	for _, c := range ds.conns {
		live[c.ID] = true
	}
	delete(live, cl.ID)
	if len(live) >= s.cfg.MaxDeviceSessions {
		s.mu.Unlock()
		return refuse(packets.ErrQuotaExceeded, "device %s has %d sessions open, at most %d: close one or reuse its client id",
			device, len(live), s.cfg.MaxDeviceSessions)
	}
	ds.conns = append(ds.conns, cl)
	if !slices.Contains(ds.ids, cl.ID) {
		ds.ids = append(ds.ids, cl.ID)
	}
	var kept []*mochi.Client // sessions kept after a disconnect, the broker's
	if broker := s.broker; broker != nil && len(ds.ids) > s.cfg.MaxDeviceSessions {
		ds.ids = slices.DeleteFunc(ds.ids, func(id string) bool {
			if id == cl.ID || live[id] {
				return false
			}
			c, ok := broker.Clients.Get(id)
			if ok && c.Closed() {
				kept = append(kept, c)
			}
			return !ok
		})
	}
	var evict []*mochi.Client
	if over := len(ds.ids) - s.cfg.MaxDeviceSessions; over > 0 && len(kept) > 0 {
		slices.SortFunc(kept, func(a, b *mochi.Client) int { return int(a.StopTime() - b.StopTime()) })
		evict = kept[:min(over, len(kept))]
		ds.ids = slices.DeleteFunc(ds.ids, func(id string) bool {
			return slices.ContainsFunc(evict, func(c *mochi.Client) bool { return c.ID == id })
		})
	}
	broker := s.broker
	s.mu.Unlock()
	for _, c := range evict {
		s.log.Info("discarding kept mqtt session", "client_id", c.ID, "why", "the device opens more sessions than max_device_sessions")
		s.discard(broker, c)
	}
	return nil
}

// discard ends a session the broker keeps after its client disconnected,
// as its expiry would.
func (s *Server) discard(broker *mochi.Server, c *mochi.Client) {
	if cur, ok := broker.Clients.Get(c.ID); !ok || cur != c || !c.Closed() {
		return // reconnected meanwhile: the new connection holds it
	}
	broker.Clients.Delete(c.ID)
	broker.UnsubscribeClient(c)
	c.ClearInflights()
}

// released forgets a connection of the device that ended; expire says
// whether its session ended with it (the broker keeps it otherwise).
func (s *Server) released(cl *mochi.Client, expire bool) {
	device, _ := deviceOf(cl.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := s.devices[device]
	if ds == nil {
		return
	}
	ds.conns = slices.DeleteFunc(ds.conns, func(c *mochi.Client) bool { return c == cl })
	if expire && !cl.IsTakenOver() {
		s.forgetIDLocked(ds, cl.ID)
	}
	if len(ds.conns) == 0 && len(ds.ids) == 0 {
		delete(s.devices, device)
	}
}

// leaving stops counting cl, which sent DISCONNECT, among the device's
// connections; its session id stays counted until released or expired.
func (s *Server) leaving(cl *mochi.Client) {
	device, _ := deviceOf(cl.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ds := s.devices[device]; ds != nil {
		ds.conns = slices.DeleteFunc(ds.conns, func(c *mochi.Client) bool { return c == cl })
	}
}

// forgetIDLocked drops id unless another connection uses it.
func (s *Server) forgetIDLocked(ds *deviceSessions, id string) {
	if slices.ContainsFunc(ds.conns, func(c *mochi.Client) bool { return c.ID == id }) {
		return
	}
	ds.ids = slices.DeleteFunc(ds.ids, func(k string) bool { return k == id })
}

// expired forgets a kept session the broker discards, and removes its
// subscriptions from the broker's topic tree: mochi v2.7.9 leaves them
// there, where they would match nothing deliverable until a new session
// with the same client id got them without subscribing (and the
// receipts count, receiptSubs, would hold them).
func (s *Server) expired(cl *mochi.Client) {
	device, _ := deviceOf(cl.ID)
	s.mu.Lock()
	if ds := s.devices[device]; ds != nil {
		s.forgetIDLocked(ds, cl.ID)
		if len(ds.conns) == 0 && len(ds.ids) == 0 {
			delete(s.devices, device)
		}
	}
	broker := s.broker
	s.mu.Unlock()
	if broker != nil {
		broker.UnsubscribeClient(cl) // OnUnsubscribed recounts its receipts subscriptions
	}
}

// capSubscriptions returns pk with the filters that would take cl over
// MaxSubscriptions made invalid (empty), so that mochi does not add
// them, and notes their positions for refused. A filter the client holds
// already, or that comes twice, counts once; one mochi refuses anyway
// (invalid, not allowed) does not count.
func (s *Server) capSubscriptions(cl *mochi.Client, h *hook, pk packets.Packet) packets.Packet {
	s.mu.Lock()
	ss := s.sessions[cl]
	s.mu.Unlock()
	if ss == nil {
		return pk // not established: cannot happen
	}
	n := cl.State.Subscriptions.Len()
	var over []int
	added := map[string]bool{}
	for i, sub := range pk.Filters {
		if _, held := cl.State.Subscriptions.Get(sub.Filter); held || added[sub.Filter] {
			continue
		}
		if !mochi.IsValidFilter(sub.Filter, false) || !h.OnACLCheck(cl, sub.Filter, false) {
			continue
		}
		if n >= s.cfg.MaxSubscriptions {
			over = append(over, i)
			continue
		}
		added[sub.Filter] = true
		n++
	}
	ss.mu.Lock()
	ss.overCap = over
	ss.mu.Unlock()
	if len(over) == 0 {
		return pk
	}
	pk.Filters = slices.Clone(pk.Filters)
	for _, i := range over {
		pk.Filters[i].Filter = "" // [MQTT-4.7.3-1]: mochi refuses it and adds nothing
	}
	return pk
}

// refused sets, in codes, the SUBACK reason of the filters
// capSubscriptions took out to 0x97 quota exceeded (3.1.1 has one
// failure code, 0x80, which mochi has set). codes is the reason code
// slice of the SUBACK mochi is about to write: mochi v2.7.9 calls
// OnSubscribed with it before writing the SUBACK (TestSubscriptionCap
// checks that it still does).
func (s *Server) refused(cl *mochi.Client, codes []byte) {
	s.mu.Lock()
	ss := s.sessions[cl]
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ss.mu.Lock()
	over := ss.overCap
	ss.overCap = nil
	ss.mu.Unlock()
	if cl.Properties.ProtocolVersion < 5 {
		return
	}
	for _, i := range over {
		if i < len(codes) {
			codes[i] = packets.ErrQuotaExceeded.Code
		}
	}
}

// watchToken disconnects cl when its token expires, at expires by
// Deps.Now (v5: DISCONNECT 0xA0 maximum connect time; 3.1.1: the
// connection is closed). The timer is rechecked against Deps.Now when
// it fires, and stopped when the connection ends.
func (s *Server) watchToken(cl *mochi.Client, ss *session, expires time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	ss.expiry = time.AfterFunc(max(expires.Sub(s.d.Now()), 0), func() {
		if s.d.Now().Before(expires) {
			s.watchToken(cl, ss, expires)
			return
		}
		s.mu.Lock()
		broker := s.broker
		s.mu.Unlock()
		if broker != nil {
			s.disconnect(broker, cl, "token expired", packets.ErrMaxConnectTime)
		}
	})
}
