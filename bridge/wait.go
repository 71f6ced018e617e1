package bridge

import (
	"sync"
	"time"
)

// WaitTimeout waits for wg up to d and reports whether it finished: a
// front end's Close drains the work in flight, but not forever.
func WaitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
