package mqtt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawPair returns the two ends of a loopback TCP connection, the
// accepted one through rawIO as the listener serves a device.
func rawPair(t *testing.T) (served, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	served = rawIO(c)
	t.Cleanup(func() { served.Close() })
	return served, client
}

// TestRawIOCopies: bytes pass both ways unchanged, larger than the
// sockets' buffers, so that reads wait for bytes to come and writes for
// the peer to read (the poller's wait after EAGAIN).
func TestRawIOCopies(t *testing.T) {
	served, client := rawPair(t)
	up := make([]byte, 8<<20)
	down := make([]byte, 8<<20)
	rand.Read(up)
	rand.Read(down)

	errs := make(chan error, 2)
	go func() { // the client writes, then reads, slowly enough to fill the served end's send buffer
		if _, err := client.Write(up); err != nil {
			errs <- err
			return
		}
		time.Sleep(100 * time.Millisecond)
		got, err := io.ReadAll(io.LimitReader(client, int64(len(down))))
		if err == nil && !bytes.Equal(got, down) {
			err = errors.New("the client read other bytes than the served end wrote")
		}
		errs <- err
	}()
	got := make([]byte, len(up))
	if _, err := io.ReadFull(served, got); err != nil {
		t.Fatalf("served end read: %v", err)
	}
	if !bytes.Equal(got, up) {
		t.Fatal("the served end read other bytes than the client wrote")
	}
	if n, err := served.Write(down); err != nil || n != len(down) {
		t.Fatalf("served end wrote %d of %d bytes: %v", n, len(down), err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestRawIOEnds: a deadline, the peer's close and the connection's own
// close end a read with the errors net.TCPConn gives.
func TestRawIOEnds(t *testing.T) {
	served, client := rawPair(t)

	served.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 16)
	_, err := served.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	served.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if n, err := served.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("read after the deadline was lifted: %q, %v", buf[:n], err)
	}
	if n, err := served.Read(buf[:0]); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}

	client.Close()
	if _, err := served.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	var werr error
	for range 100 { // the first writes may still be buffered before the peer's reset comes back
		if _, werr = served.Write([]byte("x")); werr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if werr == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}

	served.Close()
	if _, err := served.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	if _, err := served.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// TestRawIOCloseWakesReader: closing the connection ends a read that
// waits for bytes, as mochi's Stop relies on.
func TestRawIOCloseWakesReader(t *testing.T) {
	served, _ := rawPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := served.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	served.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting read did not end when the connection was closed")
	}
}
