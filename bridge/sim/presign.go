package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Load is a pre-signed load: for each device, the encoded MQTT 5 QoS 1
// PUBLISH packets of its records, in sequence order. Signing and encoding
// happen in Presign, before any timed phase, so a run measures the
// broker and not the devices' signatures. The same Load can be sent to
// several brokers (a ledgergate gateway and, for comparison, any MQTT
// broker): the bytes on the wire are the same.
type Load struct {
	ChainID string
	Devices []Device
	packets [][][]byte // [device][i]: PUBLISH of the device's i-th record
}

// maxPacketID bounds packet ids: Presign numbers a device's packets
// 1, 2, ..., maxPacketID, 1, ...; with fewer than maxPacketID in flight an
// id is never in use twice [MQTT-2.2.1-3].
const maxPacketID = 65535

// Presign signs count records for each device, with sequence numbers
// firstSeq, firstSeq+1, ... and payload bytes each, on every core, and
// encodes each as a QoS 1 PUBLISH to the device's data topic (stream
// "sim").
func Presign(devs []Device, chainID string, count int, firstSeq uint64, payload int) (*Load, error) {
	if len(devs) == 0 || count < 1 {
		return nil, errors.New("sim: presign: need devices and a positive count")
	}
	l := &Load{ChainID: chainID, Devices: devs, packets: make([][][]byte, len(devs))}
	body := make([]byte, payload)
	now := time.Now().UnixMilli()
	var grp errgroup.Group
	grp.SetLimit(runtime.GOMAXPROCS(0))
	for i, d := range devs {
		grp.Go(func() error {
			topic := device.DataTopic(d.ID, "sim")
			pks := make([][]byte, count)
			for j := range pks {
				env, err := device.SignRecord(d.Key, chainID, ledger.Record{DeviceID: d.ID, Stream: "sim",
					Seq: firstSeq + uint64(j), Time: now, Payload: body})
				if err != nil {
					return fmt.Errorf("sim: presign %s: %w", d.ID, err)
				}
				pub := &packets.Publish{QoS: 1, Topic: topic, PacketID: packetID(j), Payload: env,
					Properties: &packets.Properties{}}
				var b bytes.Buffer
				if _, err := pub.WriteTo(&b); err != nil {
					return fmt.Errorf("sim: encode publish: %w", err)
				}
				pks[j] = b.Bytes()
			}
			l.packets[i] = pks
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		return nil, err
	}
	return l, nil
}

// Messages is the number of messages in the load.
func (l *Load) Messages() int {
	n := 0
	for _, p := range l.packets {
		n += len(p)
	}
	return n
}

// PresignConfig is one run of a pre-signed load.
type PresignConfig struct {
	// Brokers are MQTT addresses, tcp://host:port: device i connects to
	// Brokers[i mod len(Brokers)].
	Brokers []string
	Load    *Load
	// Inflight is how many PUBLISHes each device keeps unacknowledged
	// (K); the broker's receive maximum must allow it.
	Inflight int
	// Rate, if positive, paces the load: messages per second, all devices
	// together, each device sending at its share while under Inflight.
	// 0 sends as fast as the window allows (a closed loop).
	Rate float64
	// Anonymous connects without credentials (any broker that allows
	// it); otherwise each device signs in with username = its id and
	// password = a token signed by its key, as a ledgergate gateway wants.
	Anonymous bool
	// PID, if positive, is the broker's process on this machine: its CPU
	// time over the timed phase is read from /proc (ProcessCPU).
	PID int
	// Timeout bounds the timed phase; messages not acknowledged by then
	// count as Unacked. Default 1 minute.
	Timeout  time.Duration
	Progress func(Stats) // if not nil, called about once a second
}

// PresignResult is a finished pre-signed run.
type PresignResult struct {
	Result
	Inflight int
	// Unacked are messages sent or not that had no PUBACK when the run
	// ended (its timeout, or their device's connection broke).
	Unacked uint64
	// CPU is the broker process's user and system CPU time over the timed
	// phase, and CPUPerMsg that divided by the acknowledged messages;
	// both 0 without PresignConfig.PID.
	CPU, CPUPerMsg time.Duration
	// SwitchesPerMsg is the broker process's context switches over the
	// timed phase per acknowledged message (ProcessSwitches); 0 without
	// PresignConfig.PID.
	SwitchesPerMsg float64
	// ClientCPU is this process's CPU time over the timed phase per
	// acknowledged message: what the load generator itself costs.
	ClientCPU time.Duration
	// Reasons counts the refused messages by the reason string of their
	// PUBACKs (a gateway's refusal reason, such as "overloaded").
	Reasons map[string]uint64
}

// RunPresigned connects every device of cfg.Load, then sends all its
// messages, each device keeping up to cfg.Inflight QoS 1 PUBLISHes
// unacknowledged, and reports the rate (acknowledged messages per second,
// from the start to the last PUBACK), the PUBACK latency and, with
// cfg.PID, the broker's CPU time per acknowledged message. It fails when a
// device cannot connect.
func RunPresigned(ctx context.Context, cfg PresignConfig) (PresignResult, error) {
	l := cfg.Load
	if l == nil || len(cfg.Brokers) == 0 || cfg.Inflight < 1 || cfg.Inflight >= maxPacketID || cfg.Rate < 0 {
		return PresignResult{}, errors.New("sim: need a load, a broker, and 1 to 65534 messages in flight")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	sessions := make([]*session, len(l.Devices))
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	var grp errgroup.Group
	grp.SetLimit(32)
	for i, d := range l.Devices {
		grp.Go(func() error {
			s, err := dialSession(ctx, cfg.Brokers[i%len(cfg.Brokers)], d, l.ChainID, cfg.Anonymous)
			if err != nil {
				return err
			}
			if s.recvMax < cfg.Inflight {
				s.conn.Close()
				return fmt.Errorf("sim: %s allows %d messages in flight (receive maximum), fewer than %d", s.broker, s.recvMax, cfg.Inflight)
			}
			sessions[i] = s
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		return PresignResult{}, err
	}

	var cpu0 time.Duration
	var switches0 uint64
	if cfg.PID > 0 {
		var err error
		if cpu0, err = ProcessCPU(cfg.PID); err != nil {
			return PresignResult{}, err
		}
		if switches0, err = ProcessSwitches(cfg.PID); err != nil {
			return PresignResult{}, err
		}
	}
	self0 := selfCPU()
	var acked, refused, failures atomic.Uint64
	var lastAck atomic.Int64 // since start
	var mu sync.Mutex
	var lat []time.Duration
	reasons := map[string]uint64{}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(l.Devices)) / cfg.Rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := start.Add(interval * time.Duration(i) / time.Duration(len(sessions)))
			mine, a, why, err := s.run(runCtx, l.packets[i], cfg.Inflight, first, interval, start, &lastAck)
			acked.Add(a)
			if err != nil && runCtx.Err() == nil {
				failures.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			for r, n := range why {
				reasons[r] += n
				refused.Add(n)
			}
			mu.Unlock()
		}()
	}
	stats := func() Stats {
		return Stats{Elapsed: time.Since(start), Acked: acked.Load(), Refused: refused.Load(), Failures: failures.Load()}
	}
	waitReporting(&wg, cfg.Progress, stats)
	res := PresignResult{Result: Result{Stats: stats(), Devices: len(l.Devices)}, Inflight: cfg.Inflight, Reasons: reasons}
	if cfg.PID > 0 {
		cpu1, err := ProcessCPU(cfg.PID)
		if err != nil {
			return PresignResult{}, err
		}
		switches1, err := ProcessSwitches(cfg.PID)
		if err != nil {
			return PresignResult{}, err
		}
		res.CPU = cpu1 - cpu0
		if res.Acked > 0 {
			res.CPUPerMsg = res.CPU / time.Duration(res.Acked)
			res.SwitchesPerMsg = float64(switches1-switches0) / float64(res.Acked)
		}
	}
	if res.Acked > 0 {
		res.ClientCPU = (selfCPU() - self0) / time.Duration(res.Acked)
	}
	res.Unacked = uint64(l.Messages()) - res.Acked - res.Refused
	if res.Acked > 0 {
		res.Rate = float64(res.Acked) / time.Duration(lastAck.Load()).Seconds()
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		at := func(p float64) time.Duration { return lat[int(p*float64(n-1))] }
		res.P50, res.P90, res.P99, res.Max = at(0.50), at(0.90), at(0.99), lat[n-1]
	}
	for _, s := range sessions {
		s.disconnect()
	}
	return res, nil
}

// session is one device's MQTT 5 connection, written and read directly
// so the messages of a device leave in sequence order with many in
// flight (a client that publishes from several goroutines could reorder
// them, and the gateway refuses a seq below one it has queued).
type session struct {
	broker  string
	conn    net.Conn
	r       *bufio.Reader
	recvMax int // the broker's receive maximum
}

// dialSession connects device d to broker with MQTT 5, a clean start and
// no keep-alive, signing in with a device token unless anonymous.
func dialSession(ctx context.Context, broker string, d Device, chainID string, anonymous bool) (*session, error) {
	u, err := url.Parse(broker)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "mqtt") || u.Host == "" {
		return nil, fmt.Errorf("sim: broker %q: want tcp://host:port", broker)
	}
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("sim: dial %s: %w", broker, err)
	}
	s := &session{broker: broker, conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.CleanStart = d.ID, true
	if !anonymous {
		token, err := ledger.SignToken(d.Key, d.ID, chainID, time.Now(), time.Hour)
		if err != nil {
			conn.Close()
			return nil, err
		}
		c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, d.ID, true, []byte(token)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := cp.WriteTo(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sim: connect %s to %s: %w", d.ID, broker, err)
	}
	p, err := packets.ReadPacket(s.r)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sim: connect %s to %s: %w", d.ID, broker, err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sim: connect %s to %s: got %s, not CONNACK", d.ID, broker, p.PacketType())
	}
	if ca.ReasonCode >= 0x80 {
		conn.Close()
		return nil, fmt.Errorf("sim: connect %s to %s: refused: 0x%02x %s", d.ID, broker, ca.ReasonCode, ca.Reason())
	}
	conn.SetDeadline(time.Time{})
	s.recvMax = 65535 // [MQTT-3.2.2.3.3]: absent means 65,535
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil {
		s.recvMax = int(*ca.Properties.ReceiveMaximum)
	}
	return s, nil
}

// run sends pks, keeping up to k unacknowledged, the first at first and,
// with a positive interval, one per interval after it. It returns the
// PUBACK latencies of the acknowledged ones, their count, and the refused
// ones (reason code 0x80 or above) counted by reason string; err is why
// it stopped early.
func (s *session) run(ctx context.Context, pks [][]byte, k int, first time.Time, interval time.Duration,
	start time.Time, lastAck *atomic.Int64) (lat []time.Duration, acked uint64, why map[string]uint64, err error) {
	var refused uint64
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	sentAt := make([]atomic.Int64, min(len(pks), maxPacketID)+1) // by packet id: since start
	slots := make(chan struct{}, k)
	quit := make(chan struct{}) // the reader stopped
	werr := make(chan error, 1)
	go func() { werr <- s.write(ctx, quit, pks, slots, first, interval, start, sentAt) }()
	lat = make([]time.Duration, 0, len(pks))
	for int(acked+refused) < len(pks) {
		p, rerr := packets.ReadPacket(s.r)
		if rerr != nil {
			err = fmt.Errorf("sim: read from %s: %w", s.broker, rerr)
			break
		}
		ack, ok := p.Content.(*packets.Puback)
		if !ok {
			continue // the device subscribed to nothing: only PUBACKs are expected
		}
		if ack.PacketID == 0 || int(ack.PacketID) >= len(sentAt) {
			err = fmt.Errorf("sim: %s acknowledged packet id %d, which was never sent", s.broker, ack.PacketID)
			break
		}
		since := time.Since(start)
		if ack.ReasonCode >= 0x80 {
			refused++
			r := fmt.Sprintf("0x%02x", ack.ReasonCode)
			if ack.Properties != nil && ack.Properties.ReasonString != "" {
				r = ack.Properties.ReasonString
			}
			if why == nil {
				why = map[string]uint64{}
			}
			why[r]++
		} else {
			acked++
			lat = append(lat, since-time.Duration(sentAt[ack.PacketID].Load()))
			for {
				last := lastAck.Load()
				if int64(since) <= last || lastAck.CompareAndSwap(last, int64(since)) {
					break
				}
			}
		}
		select {
		case <-slots:
		default:
		}
	}
	close(quit)
	if err != nil {
		s.conn.SetDeadline(time.Now()) // ends a write that still waits
	}
	if werr := <-werr; err == nil && werr != nil {
		err = werr
	}
	return lat, acked, why, err
}

// write is run's writer: it sends pks in order while the window (slots)
// has room.
func (s *session) write(ctx context.Context, quit <-chan struct{}, pks [][]byte, slots chan struct{},
	first time.Time, interval time.Duration, start time.Time, sentAt []atomic.Int64) error {
	next := first
	var bufs net.Buffers
	for n := 0; n < len(pks); {
		if interval > 0 {
			if wait := time.Until(next); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-quit:
					t.Stop()
					return nil
				}
			}
			next = next.Add(interval)
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-quit:
			return nil
		}
		// Unpaced, send at once all that the window has room for.
		m := 1
	more:
		for interval == 0 && n+m < len(pks) {
			select {
			case slots <- struct{}{}:
				m++
			default:
				break more
			}
		}
		now := int64(time.Since(start))
		for j := n; j < n+m; j++ {
			sentAt[packetID(j)].Store(now)
		}
		bufs = append(bufs[:0], pks[n:n+m]...)
		if _, err := bufs.WriteTo(s.conn); err != nil {
			return fmt.Errorf("sim: write to %s: %w", s.broker, err)
		}
		n += m
	}
	return nil
}

// packetID is the packet id of a device's i-th message.
func packetID(i int) uint16 { return uint16(i%maxPacketID) + 1 }

// disconnect ends the session with a DISCONNECT (normal disconnection).
func (s *session) disconnect() {
	s.conn.SetDeadline(time.Now().Add(time.Second))
	packets.NewControlPacket(packets.DISCONNECT).WriteTo(s.conn)
	s.conn.Close()
}
