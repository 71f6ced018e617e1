// Package cluster is the transport between the gateways of a site: it carries
// PBFT messages between replicas, serves blocks for state transfer, and
// serves blobs (off-chain files) by the SHA-256 of their bytes.
//
// # Contract
//
//  1. Identity. Each node proves the genesis key of its node id. At Run (or
//     at the first Fetch or FetchBlob) the Transport makes a self-signed X.509
//     certificate (CN = node id) with Config.Signer, using only its Public
//     and Sign methods, so the key may live in a TPM. Connections are TLS
//     1.3 only, with mutual authentication. Certificate chains are not
//     verified; instead each side pins the other: the dialer requires the
//     leaf's public key to equal the genesis key of the peer it dialed, and
//     the listener accepts only a key of one of Config.Peers and learns the
//     peer's id from it. A peer presenting another key, no certificate, or
//     TLS below 1.3 is refused with a logged warning, and nothing it sends
//     reaches the Handler.
//  2. Connections. Each node dials every peer and uses that outbound
//     connection only to send; it reads only from inbound connections, so
//     two nodes that dial each other at once need no tie-break. A newer
//     inbound connection from a peer replaces the older one. The ALPN
//     protocol names the connection's use: "ledgergate-peer/1" for the
//     message stream, "ledgergate-fetch/1" for one state-transfer exchange,
//     "ledgergate-blob/1" for one blob exchange.
//  3. Delivery is best effort. Send enqueues on the peer's bounded queue
//     and never blocks; a full queue, a message larger than MaxFrame, or a
//     write that failed loses the message (counted in PeerStatus.Dropped).
//     The transport never duplicates or reorders messages on one
//     connection, but retransmission after a loss is the consensus layer's
//     duty. A broken outbound connection is redialled with exponential
//     backoff (50ms doubling to 2s, with jitter) and the queue is kept.
//  4. Liveness. Each outbound connection carries a status frame with
//     Config.Height() as soon as it is up and every second after; a
//     receiver that gets no byte for 10s drops the connection, and so does
//     a sender whose peer takes no byte for 10s. Deadlines apply to each
//     read and to each 64 KiB written, so a large frame on a slow link is
//     not cut off while it moves. TCP keep-alives notice a peer that
//     vanished without closing. Every node of a cluster should use the same
//     MaxFrame: a frame above the receiver's is refused.
//  5. The caller's duties: Handler.Message, Handler.Blocks, Handler.Blob
//     and Handler.Snapshot are called from the transport's goroutines, concurrently, and must be
//     safe for that and quick (hand work to a channel). Message receives a buffer it
//     owns. A slice passed to Send or Broadcast must not be modified
//     afterwards. Config.Height must be safe for concurrent use. Do not call
//     Close from a Handler method: Close waits for those goroutines.
//  6. State transfer. Fetch opens its own short-lived connection (same
//     pinning), sends one fetch request and reads one fetch response, so
//     large transfers never queue behind consensus traffic. The server
//     answers with Handler.Blocks, asking for at most 256 blocks and
//     returning as many as fit in MaxFrame (at least one if it has any).
//     Fetch honours its context and fails if the peer is silent for 10s.
//  7. Blobs. FetchBlob does the same for one blob, named by the SHA-256 of
//     its bytes: the server answers with Handler.Blob (an error if the blob
//     exceeds MaxFrame), and FetchBlob returns the blob only if it hashes to
//     that name, or ErrNoBlob if the peer does not have it.
//  8. Snapshots. FetchSnapshot asks a peer for its newest certified state
//     snapshot (ALPN ledgergate-snapshot/2), one connection per chunk: the
//     first request names height 0 and gets the height, the total size,
//     the encoded proof that the snapshot is certified, the encoded
//     membership proof of the chain's member changes and the first
//     chunk; the next ones name that height and an offset. The server
//     answers with Handler.Snapshot and cuts chunks that fit MaxFrame. The
//     client bounds the total, and refuses chunks that do not add up; it
//     verifies nothing else: the caller checks the proofs and the bytes
//     (gateway/snapshot.Accept).
//  9. The peer set. SetPeers replaces Config.Peers while the transport
//     runs (the member sets changed): a peer kept (same id and key) keeps
//     its connection, queue and counters; a new one is dialled at once; a
//     removed one is no longer dialled, its inbound connection is closed,
//     and its key is refused from then on.
//  10. Lifecycle. New validates and does no I/O. Run listens, dials every
//     peer, and blocks until its context ends or Close is called, then
//     returns nil. Ready is closed once the listener is bound, and Addr then
//     reports it. Close is idempotent, safe before or without Run, and
//     returns only after every goroutine of the transport has ended.
//
// # Frames
//
// Every connection carries frames:
//
//	length  4 bytes, big-endian: the number of payload bytes, at most MaxFrame
//	type    1 byte
//	payload length bytes
//
// A frame whose length exceeds the receiver's MaxFrame closes the connection
// before any of it is read; payload memory grows only as bytes arrive. The
// payloads, all integers big-endian (encoding/binary):
//
//	1 message         the opaque consensus message, handed to Handler.Message
//	2 status          height uint64                          (8 bytes)
//	3 fetch request   from uint64 | max uint32               (12 bytes)
//	4 fetch response  0x00 | count uint32 | count × (len uint32 | block)
//	                  or 0x01 | error text (not empty)
//	5 blob request    hash [32]byte, the SHA-256 of the blob (32 bytes)
//	6 blob response   0x00 | blob, or 0x01 | error text (not empty),
//	                  or 0x02 alone: the server does not have the blob
//	7 snapshot request   height uint64 (0: the newest certified) | offset uint64 (16 bytes)
//	8 snapshot response  0x00 | height uint64 | total uint64 | proof length uint32 | proof | chunk
//	                     (the proof only at offset 0), or 0x01 | error text (not empty),
//	                     or 0x02 alone: the server has no such snapshot
//
// Decoders accept exactly what the encoders produce: a payload of the wrong
// length, trailing bytes or an unknown type is an error, never a panic.
package cluster
