/* mqtt.h: a blocking MQTT 5 client for lgdev on libmosquitto.
 *
 * One connection, one thread: every wait drives libmosquitto's loop
 * until what is awaited arrives or a deadline passes (no wait is
 * unbounded). Messages received on subscribed topics are queued until
 * taken. */
#ifndef LGDEV_MQTT_H
#define LGDEV_MQTT_H

#include <stddef.h>
#include <stdint.h>

struct mq;

/* The acknowledgement of a QoS 1 publish (protocol.md 13.1, 14). */
struct mq_ack {
    int code;           /* MQTT 5 PUBACK reason code: 0 success, >= 0x80 refused */
    char reason[64];    /* the Reason String: a protocol.md 14.1 reason ("" if none) */
    char last_seq[24];  /* a replay's User Property last_seq (14.3), decimal; "" if none */
};

struct mq_msg {
    char *topic;
    unsigned char *payload;
    size_t len;
    struct mq_msg *next;
};

/* mq_connect connects with MQTT 5, client id = user = device id and
 * password = token (protocol.md 7, 13.1). 0 connected, 1 refused by the
 * gateway (explained), -1 another error. */
int mq_connect(struct mq **out, const char *host, int port, const char *id, const char *token, int timeout_ms);
/* mq_subscribe subscribes with QoS 1 and waits for the SUBACK. */
int mq_subscribe(struct mq *m, const char *topic, int timeout_ms);
/* mq_publish sends a QoS 1 message and returns its message id in *mid
 * without waiting. */
int mq_publish(struct mq *m, const char *topic, const void *payload, size_t len, int *mid);
/* mq_wait_ack waits for the PUBACK of mid. */
int mq_wait_ack(struct mq *m, int mid, struct mq_ack *ack, int64_t deadline_ms);
/* mq_take waits for a message on topic and removes it from the queue;
 * the caller frees it with mq_msg_free. NULL on timeout or error. */
struct mq_msg *mq_take(struct mq *m, const char *topic, int64_t deadline_ms);
void mq_msg_free(struct mq_msg *msg);
void mq_close(struct mq *m);

/* mq_connack_text explains a CONNACK reason code (13.1). */
const char *mq_connack_text(int code);

#endif
