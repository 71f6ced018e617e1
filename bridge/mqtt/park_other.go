//go:build !linux

package mqtt

import (
	"errors"
	"syscall"
	"time"
)

// parker parks the waits of silent devices on Linux (park_linux.go).
// Elsewhere a silent device keeps its goroutine.
type parker struct{}

var errNoParking = errors.New("mqtt: parking idle devices needs Linux's epoll")

func newParker(time.Duration) (*parker, error)                 { return nil, errNoParking }
func (p *parker) close()                                       {}
func (p *parker) serve(*sizeGuard)                             {}
func (p *parker) forget(*sizeGuard)                            {}
func (p *parker) park(*sizeGuard, time.Time, func(error)) bool { return false }
func (p *parker) closing(*sizeGuard)                           {}
func parkFD(syscall.RawConn) (int32, error)                    { return 0, errNoParking }
