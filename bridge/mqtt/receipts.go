package mqtt

import (
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
)

// receiptSubs counts the subscriptions that match each device's
// receipts topic, lg/v1/<id>/receipts, over the device's client ids,
// connected or kept after a disconnect: what mochi's topic tree would
// deliver a receipt to. finish asks it whether to encode and publish a
// receipt at all, with a map lookup instead of a walk of the tree (and
// the maps mochi allocates for its answer) for every committed record;
// the publish then walks the tree once.
//
// mochi keys subscriptions by client id, and so does this. The hook
// recounts a client id from the client's own subscription list
// (Client.State.Subscriptions) whenever that list may have changed: at
// SUBACK (OnSubscribed), at UNSUBACK and when mochi drops a session's
// subscriptions (OnUnsubscribed: a session that ends at its disconnect,
// a takeover with clean start, a discarded kept session), when a session
// is established (a takeover without clean start inherits the old
// session's subscriptions) and when a kept session expires
// (OnClientExpired, which also removes its subscriptions from mochi's
// tree; mochi v2.7.9 leaves them there). A client taken over is not
// recounted: its id, and the subscriptions filed under it, belong to the
// client that took it over.
type receiptSubs struct {
	mu      sync.RWMutex
	clients map[string]int // by client id: its filters that match its device's receipts topic; no zeros
	devices map[string]int // by device id: the sum over its client ids; no zeros
}

func newReceiptSubs() *receiptSubs {
	return &receiptSubs{clients: map[string]int{}, devices: map[string]int{}}
}

// any reports whether a subscription matches device's receipts topic.
func (r *receiptSubs) any(device string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.devices[device] > 0
}

// recount sets the count of cl's client id from the subscriptions cl
// holds now.
func (r *receiptSubs) recount(cl *mochi.Client) {
	if cl.Net.Inline || cl.IsTakenOver() {
		return
	}
	device, ok := deviceOf(cl.ID)
	if !ok {
		return
	}
	topic := devicePrefix(device) + receiptsLevel
	n := 0
	for filter := range cl.State.Subscriptions.GetAll() {
		if receiptFilter(filter, topic) {
			n++
		}
	}
	r.set(cl.ID, device, n)
}

// set makes n the count of client id of device.
func (r *receiptSubs) set(id, device string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := n - r.clients[id]
	if d == 0 {
		return
	}
	if n == 0 {
		delete(r.clients, id)
	} else {
		r.clients[id] = n
	}
	if m := r.devices[device] + d; m > 0 {
		r.devices[device] = m
	} else {
		delete(r.devices, device)
	}
}

// receiptFilter reports whether filter, which may be a shared
// subscription's ($share/<group>/<filter>, [MQTT-4.8.2]), matches the
// receipts topic. (The ACL refuses shared filters, whose topic part is
// not under the device's prefix; counting them costs nothing.)
func receiptFilter(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, ok = strings.Cut(rest, "/")
		if !ok {
			return false
		}
	}
	return matches(filter, topic)
}
