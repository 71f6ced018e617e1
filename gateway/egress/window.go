package egress

import "context"

// published is a message on its way: wait returns once the sink
// acknowledged it (nil) or failed to, bounded by Config.Timeout.
type published func(ctx context.Context) error

// pipeline sends msgs in their order with up to window of them
// unacknowledged, and returns how many of them, from the first, the sink
// acknowledged: the cursor may pass only a message whose every
// predecessor was acknowledged. publish sends one message after those it
// sent before (on one connection, so the sink receives them in order) and
// does not wait for its acknowledgement.
//
// Acknowledgements are awaited in order: one that comes before those of
// earlier messages waits for them. After a failure the messages after the
// failed one may have arrived; the connector sends them again from its
// cursor (at least once).
func pipeline(ctx context.Context, msgs []*Message, window int, publish func(*Message) (published, error)) (int, error) {
	waits := make([]published, 0, len(msgs))
	acked := 0
	for _, m := range msgs {
		if len(waits)-acked >= window {
			if err := waits[acked](ctx); err != nil {
				return acked, err
			}
			acked++
		}
		w, err := publish(m)
		if err != nil {
			return acked, err
		}
		waits = append(waits, w)
	}
	for ; acked < len(waits); acked++ {
		if err := waits[acked](ctx); err != nil {
			return acked, err
		}
	}
	return acked, nil
}
