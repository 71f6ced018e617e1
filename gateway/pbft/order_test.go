package pbft

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestOrderQueue: requests proposed here that the primary queues again
// out of turn (their proposal was dropped) go back in the order they were
// proposed in, in the positions such requests hold; forwarded requests
// keep their places. Otherwise a device's earlier record would be ordered
// after a later one and refused as a replay (issue 19).
func TestOrderQueue(t *testing.T) {
	c := &Core{waiting: map[[32]byte]*wait{}}
	req := func(name string) Request {
		return Request{ID: sha256.Sum256([]byte(name)), Data: []byte(name)}
	}
	for i, name := range []string{"own-1", "own-2", "own-3", "own-4"} {
		c.waiting[req(name).ID] = &wait{data: []byte(name), order: uint64(i + 1)}
	}
	// own-1 and own-2 were queued again behind own-3 and own-4.
	for _, q := range []struct{ name, from string }{
		{"own-3", ""}, {"fwd-a", "n2"}, {"own-4", ""}, {"fwd-b", "n3"}, {"own-1", ""}, {"own-2", ""},
	} {
		c.queue = append(c.queue, queued{req: req(q.name), from: q.from})
	}
	c.orderQueue()
	var got []string
	for _, q := range c.queue {
		got = append(got, string(q.req.Data))
	}
	if want := "[own-1 fwd-a own-2 fwd-b own-3 own-4]"; fmt.Sprint(got) != want {
		t.Fatalf("queue %v, want %s", got, want)
	}
}
