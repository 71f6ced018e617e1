//go:build linux

package mqtt

import (
	"bufio"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

var (
	idleSessions = flag.Int("mqtt.sessions", 2000, "idle devices BenchmarkIdleSessions connects")
	sessionsHeap = flag.String("mqtt.heapprofile", "", "file prefix BenchmarkIdleSessions writes heap profiles to (.connected, .subscribed, .pinged, .published, .left)")
)

// BenchmarkIdleSessions connects -mqtt.sessions enrolled devices over TCP
// with a token, as the SDK does, and measures what each session holds in
// the gateway (Go heap in use, goroutine stacks, goroutines, RSS of the
// process) in four states, each once every device is parked (parker,
// after ParkAfter of silence) and after a few GCs:
//
//   - connected: CONNECT with a token, CONNACK;
//   - subscribed: then SUBSCRIBE to the receipts, rejects and answers/#
//     topics at QoS 1, as the SDK's Dial does, SUBACK;
//   - pinged: then PINGREQ, PINGRESP, as an idle device does once per
//     keepalive (30 s in the SDK): the state an idle device stays in;
//   - published: then one QoS 1 publish that the gateway refuses: a
//     PUBACK, and a reject message at QoS 1 on the rejects topic that the
//     device acknowledges (a receipt takes the same way): the state a
//     device that sends now and then stays in between its messages;
//   - left: all disconnected; and how long the runtime takes to hand
//     the memory back to the OS.
//
// Each state is also measured before those GCs: the goroutine stacks the
// phase grew, and the peak RSS during the phase; and after them, once
// the freed pages are handed back to the OS (debug.FreeOSMemory, which
// the runtime's scavenger does by itself within minutes), the RSS that
// stays: what a gateway with that many devices in that state converges to.
//
// The devices run in a second process (TestIdleDevices), as bare
// sockets driven by blocking syscalls, so what is measured is the
// gateway's, and each process holds one file descriptor per device
// (10,000 devices fit the usual hard limit of 20,000; the soft limit is
// raised if it is too low).
// With -mqtt.heapprofile P it writes heap profiles to P.connected,
// P.subscribed, P.pinged, P.published and P.left, of every allocation.
func BenchmarkIdleSessions(b *testing.B) {
	n := *idleSessions
	if *sessionsHeap != "" {
		// Every allocation in the profiles, not a sample.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	raiseFileLimit(b, n+256)
	node := nodetest.Start(b, nodetest.Options{})
	s := startServer(b, node, Config{MaxDeviceSessions: 1, MaxClients: int64(n)}, nil)
	addr, err := netip.ParseAddrPort(tcpAddr(s))
	if err != nil {
		b.Fatal(err)
	}

	// Enroll the devices, many at a time, and sign their tokens.
	ids := make([]string, n)
	pass := make([]string, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				ids[i] = fmt.Sprintf("dev-%05d", i)
				key := node.Enroll(b, ids[i], ledger.EdDSA)
				pass[i] = token(b, crypto.Signer(key), ids[i], node.Genesis.ChainID)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()

	devs := startDevices(b, addr.String(), ids, pass)
	baseCPU := cpuPerSecond(b, 5*time.Second)
	before := settle(b)
	// Each phase ends once every device, silent since, is parked: within
	// twice the server's ParkAfter.
	parked := func() bool { return parkedDevices(s) == n }
	devs.do(b, "connect")
	pollUntil(b, func() bool { return len(s.Connected()) == n })
	pollUntil(b, parked)
	connected := phaseEnd(b, ".connected")
	devs.do(b, "subscribe")
	pollUntil(b, parked)
	subscribed := phaseEnd(b, ".subscribed")
	devs.do(b, "ping")
	pollUntil(b, parked)
	pinged := phaseEnd(b, ".pinged")
	// What the parked devices cost while none sends, beside what the
	// process costs without devices (baseCPU): the node's and the
	// runtime's timers.
	idleCPU := cpuPerSecond(b, 5*time.Second)
	devs.do(b, "publish")
	pollUntil(b, parked)
	published := phaseEnd(b, ".published")
	devs.do(b, "close")
	pollUntil(b, func() bool { return len(s.Connected()) == 0 && runtime.NumGoroutine() <= before.goroutines+10 })
	left := settle(b)
	writeHeapProfile(b, *sessionsHeap, ".left")
	// The runtime hands freed pages back to the OS in the background:
	// wait up to a minute for the RSS to come within 1 KB a session of
	// what it was before.
	gone := time.Now()
	var returned memory
	for range 60 {
		time.Sleep(time.Second)
		if returned = measure(b); returned.rss < before.rss+uint64(n)*1024 {
			break
		}
	}
	b.ReportMetric(time.Since(gone).Seconds(), "s-to-return")
	b.ReportMetric(float64(idleCPU)/float64(time.Millisecond), "idle-cpu-ms/s")
	b.ReportMetric(float64(baseCPU)/float64(time.Millisecond), "base-cpu-ms/s")

	per := func(v, base uint64) float64 { return (float64(v) - float64(base)) / float64(n) }
	for _, m := range []struct {
		name string
		m    memory
	}{{"connected", connected}, {"subscribed", subscribed}, {"pinged", pinged}, {"published", published}} {
		b.ReportMetric(per(m.m.heap, before.heap), m.name+"-heap-B/session")
		b.ReportMetric(per(m.m.stack, before.stack), m.name+"-stack-B/session")
		b.ReportMetric(per(m.m.rss, before.rss), m.name+"-rss-B/session")
		b.ReportMetric(per(m.m.peak, before.rss), m.name+"-peak-rss-B/session")
		b.ReportMetric(per(m.m.grown, before.stack), m.name+"-grown-stack-B/session")
		b.ReportMetric(per(m.m.returned, before.rss), m.name+"-returned-rss-B/session")
	}
	b.ReportMetric(float64(published.goroutines-before.goroutines)/float64(n), "goroutines/session")
	b.ReportMetric(per(left.heap, before.heap), "left-heap-B/session")
	b.ReportMetric(per(left.rss, before.rss), "left-rss-B/session")
	b.ReportMetric(per(returned.rss, before.rss), "later-rss-B/session")
	mb := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.Logf("%d sessions, MB (heap in use / stacks / RSS after GCs / peak RSS during the phase / stacks before the GCs / RSS once freed pages are returned / goroutines):", n)
	for _, m := range []struct {
		name string
		m    memory
	}{{"before", before}, {"connected", connected}, {"subscribed", subscribed}, {"pinged", pinged}, {"published", published}, {"left", left}} {
		b.Logf("%-10s %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6d", m.name, mb(m.m.heap), mb(m.m.stack), mb(m.m.rss), mb(m.m.peak), mb(m.m.grown), mb(m.m.returned), m.m.goroutines)
	}
	b.Logf("RSS %.1f MB %.0f s after they left", mb(returned.rss), time.Since(gone).Seconds())
	b.Logf("CPU a second while nothing is sent: %.2f ms with the devices parked, %.2f ms before they came", float64(idleCPU)/float64(time.Millisecond), float64(baseCPU)/float64(time.Millisecond))
}

// cpuPerSecond is the CPU time the process uses a second over d.
func cpuPerSecond(tb testing.TB, d time.Duration) time.Duration {
	tb.Helper()
	start, cpu := time.Now(), cpuTime(tb)
	time.Sleep(d)
	return time.Duration(float64(cpuTime(tb)-cpu) / time.Since(start).Seconds())
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phaseEnd measures at the end of a phase: the goroutine stacks in use
// before any GC (grown by the phase), then what stays after a few GCs,
// then the RSS once the freed pages are returned to the OS, and writes
// the heap profile -mqtt.heapprofile+suffix.
func phaseEnd(tb testing.TB, suffix string) memory {
	tb.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := settle(tb)
	m.grown = ms.StackInuse
	// What stays resident once the runtime has handed the freed pages
	// back, as its scavenger does in the background within minutes.
	debug.FreeOSMemory()
	m.returned = procStatus(tb, "VmRSS")
	resetPeak(tb)
	writeHeapProfile(tb, *sessionsHeap, suffix)
	return m
}

// settle runs a few GCs, as a gateway that runs for a while would (the
// runtime halves a goroutine's stack at a GC when it uses less than a
// quarter of it), measures, and resets the peak RSS, so that the next
// measure's peak is that of the next phase.
func settle(tb testing.TB) memory {
	tb.Helper()
	for range 3 {
		runtime.GC()
	}
	m := measure(tb)
	resetPeak(tb)
	return m
}

// devices is the process that runs BenchmarkIdleSessions' devices
// (TestIdleDevices): their sockets are not the gateway's, and the two
// processes' open files stay under a hard limit of 20,000 with 10,000
// devices.
type devices struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startDevices starts the devices' process for devices ids with tokens
// pass, which connect to the gateway at addr.
func startDevices(tb testing.TB, addr string, ids, pass []string) *devices {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleDevices$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), "LEDGERGATE_IDLE_DEVICES=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	d := &devices{cmd: cmd, in: in, out: bufio.NewReader(out)}
	tb.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	if err := json.NewEncoder(in).Encode(devicesSetup{Addr: addr, IDs: ids, Pass: pass}); err != nil {
		tb.Fatal(err)
	}
	return d
}

type devicesSetup struct {
	Addr string
	IDs  []string
	Pass []string
}

// do runs one step on every device (TestIdleDevices) and waits for it.
func (d *devices) do(tb testing.TB, step string) {
	tb.Helper()
	if _, err := io.WriteString(d.in, step+"\n"); err != nil {
		tb.Fatal(err)
	}
	line, err := d.out.ReadString('\n')
	if err != nil || line != "ok "+step+"\n" {
		rest, _ := io.ReadAll(io.LimitReader(d.out, 4096)) // the failure's log
		tb.Fatalf("devices %s: %v: %s%s", step, err, line, rest)
	}
}

// TestIdleDevices is the devices' process of BenchmarkIdleSessions: it
// reads its setup, then steps (connect, subscribe, ping, publish, close)
// from stdin, runs each on every device in turn, and answers "ok <step>"
// on stdout. Run without LEDGERGATE_IDLE_DEVICES it does nothing.
func TestIdleDevices(t *testing.T) {
	if os.Getenv("LEDGERGATE_IDLE_DEVICES") == "" {
		t.Skip("the devices' process of BenchmarkIdleSessions")
	}
	in := bufio.NewReader(os.Stdin)
	var setup devicesSetup
	line, err := in.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(line, &setup); err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddrPort(setup.Addr)
	if err != nil {
		t.Fatal(err)
	}
	raiseFileLimit(t, len(setup.IDs)+256)
	ids := setup.IDs
	devs := make([]fdConn, len(ids))
	for {
		step, err := in.ReadString('\n')
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		step = strings.TrimSuffix(step, "\n")
		for i := range devs {
			d := &devs[i]
			switch step {
			case "connect":
				*d = dialFD(t, addr)
				d.send(t, 0x10, connectBody(5, ids[i], ids[i], setup.Pass[i]))
				if first, body := d.read(t); first != 0x20 || len(body) < 2 || body[1] != 0 {
					t.Fatalf("connect %s: CONNACK %x %x", ids[i], first, body)
				}
			case "subscribe":
				d.send(t, 0x82, subscribeBody(1, "lg/v1/"+ids[i]+"/receipts", "lg/v1/"+ids[i]+"/rejects", "lg/v1/"+ids[i]+"/answers/#"))
				if first, body := d.read(t); first != 0x90 || len(body) != 6 || body[3] != 1 || body[4] != 1 || body[5] != 1 {
					t.Fatalf("subscribe %s: SUBACK %x %x", ids[i], first, body)
				}
			case "ping":
				d.send(t, 0xc0, nil)
				if first, body := d.read(t); first != 0xd0 || len(body) != 0 {
					t.Fatalf("ping %s: PINGRESP %x %x", ids[i], first, body)
				}
			case "publish":
				// A publish the gateway refuses: its PUBACK comes from the
				// client's read goroutine, the reject message on the
				// rejects topic from its write goroutine, as a receipt
				// would.
				d.send(t, 0x32, publishBody(1, "lg/v1/"+ids[i]+"/data/s", []byte("not a tx")))
				var puback, reject bool
				for !puback || !reject {
					switch first, body := d.read(t); {
					case first == 0x40 && len(body) >= 2 && body[0] == 0 && body[1] == 1:
						puback = true
					case first>>4 == 3 && first&0x06 == 0x02 && len(body) >= 2:
						reject = true
						topic := int(body[0])<<8 | int(body[1])
						d.send(t, 0x40, body[2+topic:2+topic+2]) // PUBACK its packet id
					default:
						t.Fatalf("publish %s: got %x %x", ids[i], first, body)
					}
				}
			case "close":
				d.close()
			default:
				t.Fatalf("unknown step %q", step)
			}
		}
		fmt.Printf("ok %s\n", step)
	}
}

// raiseFileLimit raises the soft and, if need be, the hard limit of open
// files to at least want, or skips.
func raiseFileLimit(tb testing.TB, want int) {
	tb.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
	if l.Cur >= uint64(want) {
		return
	}
	l.Cur = uint64(want)
	l.Max = max(l.Max, l.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Skipf("open files: need %d: %v", want, err)
	}
}

// subscribeBody is a v5 SUBSCRIBE with packet id id for filters at QoS 1.
func subscribeBody(id uint16, filters ...string) []byte {
	b := []byte{byte(id >> 8), byte(id), 0} // packet id, no properties
	for _, f := range filters {
		b = append(append(b, str(f)...), 1)
	}
	return b
}

// publishBody is a v5 PUBLISH at QoS 1 with packet id id.
func publishBody(id uint16, topic string, payload []byte) []byte {
	b := append(str(topic), byte(id>>8), byte(id), 0) // packet id, no properties
	return append(b, payload...)
}

// fdConn is a device's TCP connection as a bare blocking socket: no
// goroutine, buffer or poller entry in this process.
type fdConn int

func dialFD(tb testing.TB, addr netip.AddrPort) fdConn {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(wait))
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			tb.Fatal(err)
		}
	}
	sa := &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	// A signal (the Go runtime's preemption) interrupts connect(2), and
	// the connection goes on being made: connect again until it is made.
	for err := syscall.Connect(fd, sa); err != nil && !errors.Is(err, syscall.EISCONN); err = syscall.Connect(fd, sa) {
		if !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.EALREADY) {
			tb.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	return fdConn(fd)
}

func (c fdConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(c), p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// send writes a packet: the first byte, the remaining length, body.
func (c fdConn) send(tb testing.TB, first byte, body []byte) {
	tb.Helper()
	p := append(append([]byte{first}, vbi(len(body))...), body...)
	for len(p) > 0 {
		n, err := syscall.Write(int(c), p)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		p = p[n:]
	}
}

// read reads one packet.
func (c fdConn) read(tb testing.TB) (first byte, body []byte) {
	tb.Helper()
	var b [1]byte
	next := func() byte {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			tb.Fatal(err)
		}
		return b[0]
	}
	first = next()
	n := 0
	for i := 0; i < 4; i++ {
		d := next()
		n |= int(d&0x7f) << (7 * i)
		if d&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		tb.Fatal(err)
	}
	return first, body
}

func (c fdConn) close() { syscall.Close(int(c)) }
