// Package egress delivers committed records onward: to an upstream MQTT
// broker, to NATS JetStream, or to an HTTP webhook (docs/egress.md).
//
// Each connector follows the committed chain by height, reading blocks
// from the block log and nothing from the commit path: the chain only
// calls Manager.Committed, which never blocks. A connector:
//
//  1. keeps a durable cursor, the last (block, index) it handled, in
//     data_dir/egress/NAME.cursor, moved only after the sink acknowledged
//     every message up to it (MQTT PUBACK, JetStream PubAck, HTTP 2xx),
//     written atomically with fsync at most once a second and at stop;
//  2. delivers every data.record tx that passes its filters, at least
//     once and in commit order: MQTT and NATS messages leave in order on
//     one connection, up to a window of them unacknowledged, the cursor
//     moves only over an acknowledged prefix, and after a failure it
//     sends again from the cursor, so a consumer de-duplicates by tx id;
//  3. retries a failing sink for ever, with exponential backoff and
//     jitter, and never skips a record: a dead sink makes it fall behind
//     (its lag is in /metrics and /api/v1/status), never slows commits.
package egress
