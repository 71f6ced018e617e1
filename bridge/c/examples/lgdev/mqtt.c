/* mqtt.c: see mqtt.h. */
#include "mqtt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "util.h"

/* A PUBACK that arrived before anyone asked for it. */
struct ack_node {
    int mid;
    struct mq_ack ack;
    struct ack_node *next;
};

struct mq {
    struct mosquitto *mosq;
    int connected; /* 0 waiting, 1 connected, -1 refused or closed */
    int connack;
    int disconnect_code;
    int suback_mid, suback_qos; /* the last SUBACK */
    struct ack_node *acks;
    struct mq_msg *head, *tail;
    char err[160]; /* why step failed */
};

const char *mq_connack_text(int code)
{
    switch (code) {
    case 0x86:
        return "bad user name or password: the device is unknown, its token is bad or expired, or the "
               "client id is not the device id (protocol.md 13.1); check --id, --key and the clock";
    case 0x87:
        return "not authorized: the device is revoked (give up)";
    case 0x88:
        return "server unavailable: the gateway is catching up with its peers; connect again after a pause";
    case 0x97:
        return "quota exceeded: the device has too many sessions; close one";
    default:
        return mosquitto_reason_string(code);
    }
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)mosq, (void)flags, (void)props;
    struct mq *m = obj;
    m->connack = rc;
    m->connected = rc == 0 ? 1 : -1;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
    (void)mosq, (void)props;
    struct mq *m = obj;
    m->disconnect_code = rc;
    m->connected = -1;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int rc, const mosquitto_property *props)
{
    (void)mosq;
    struct mq *m = obj;
    struct ack_node *n = calloc(1, sizeof *n);
    if (!n)
        return; /* the waiter times out and says so */
    n->mid = mid;
    n->ack.code = rc;
    char *s = NULL;
    if (mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &s, false) && s) {
        snprintf(n->ack.reason, sizeof n->ack.reason, "%s", s);
        free(s);
    }
    /* protocol.md 14.3: a replay's PUBACK carries last_seq as a User Property. */
    char *name = NULL, *value = NULL;
    const mosquitto_property *p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    while (p) {
        if (strcmp(name, "last_seq") == 0)
            snprintf(n->ack.last_seq, sizeof n->ack.last_seq, "%s", value);
        free(name);
        free(value);
        name = value = NULL;
        p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
    }
    n->next = m->acks;
    m->acks = n;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg, const mosquitto_property *props)
{
    (void)mosq, (void)props;
    struct mq *m = obj;
    struct mq_msg *q = calloc(1, sizeof *q);
    if (!q)
        return;
    q->topic = strdup(msg->topic);
    q->payload = malloc((size_t)msg->payloadlen + 1); /* NUL after it: JSON can be printed */
    if (!q->topic || !q->payload) {
        mq_msg_free(q);
        return;
    }
    memcpy(q->payload, msg->payload, (size_t)msg->payloadlen);
    q->payload[msg->payloadlen] = 0;
    q->len = (size_t)msg->payloadlen;
    if (m->tail)
        m->tail->next = q;
    else
        m->head = q;
    m->tail = q;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted, const mosquitto_property *props)
{
    (void)mosq, (void)props;
    struct mq *m = obj;
    m->suback_mid = mid;
    m->suback_qos = count > 0 ? granted[0] : 0x80;
}

/* step runs the network loop once for at most 50 ms. On a broken
 * connection it returns -1 and leaves the reason in m->err. */
static int step(struct mq *m)
{
    int rc = mosquitto_loop(m->mosq, 50, 1);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
        if (m->connected == 1)
            m->connected = -1;
        snprintf(m->err, sizeof m->err, "%s", mosquitto_strerror(rc));
        return -1;
    }
    if (m->connected < 0 && m->disconnect_code) {
        snprintf(m->err, sizeof m->err, "disconnected by the gateway: %s (0x%02x)",
                 mosquitto_reason_string(m->disconnect_code), m->disconnect_code);
        return -1;
    }
    return 0;
}

int mq_connect(struct mq **out, const char *host, int port, const char *id, const char *token, int timeout_ms)
{
    mosquitto_lib_init();
    struct mq *m = calloc(1, sizeof *m);
    if (!m)
        return errf("out of memory");
    m->mosq = mosquitto_new(id, true, m);
    if (!m->mosq) {
        free(m);
        return errf("mqtt: cannot make a client");
    }
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(m->mosq, on_publish);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    /* protocol.md 13.1: user name = device id, password = token. */
    if (mosquitto_username_pw_set(m->mosq, id, token) != MOSQ_ERR_SUCCESS) {
        mq_close(m);
        return errf("mqtt: cannot set the credentials");
    }
    int rc = mosquitto_connect_bind_v5(m->mosq, host, port, 60, NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        mq_close(m);
        return errf("mqtt: connect to %s:%d: %s", host, port, mosquitto_strerror(rc));
    }
    int64_t deadline = now_ms() + timeout_ms;
    while (m->connected == 0 && now_ms() < deadline)
        if (step(m) != 0)
            break;
    if (m->connected != 1) {
        int refused = m->connack != 0;
        if (refused)
            errf("mqtt: CONNECT refused with 0x%02x: %s", m->connack, mq_connack_text(m->connack));
        else if (m->err[0])
            errf("mqtt: connect to %s:%d: %s", host, port, m->err);
        else
            errf("mqtt: no CONNACK from %s:%d within %d ms", host, port, timeout_ms);
        mq_close(m);
        return refused ? 1 : -1;
    }
    *out = m;
    return 0;
}

int mq_subscribe(struct mq *m, const char *topic, int timeout_ms)
{
    /* The broker may answer 0x91 (packet id in use) to a fresh SUBACK id
     * (device-protocol.md, Topics): subscribe again, a few times. */
    for (int attempt = 0; attempt < 5; attempt++) {
        int mid;
        m->suback_mid = -1;
        int rc = mosquitto_subscribe_v5(m->mosq, &mid, topic, 1, 0, NULL);
        if (rc != MOSQ_ERR_SUCCESS)
            return errf("mqtt: subscribe %s: %s", topic, mosquitto_strerror(rc));
        int64_t deadline = now_ms() + timeout_ms;
        while (m->suback_mid != mid && now_ms() < deadline)
            if (step(m) != 0)
                return errf("mqtt: subscribe %s: %s", topic, m->err);
        if (m->suback_mid != mid)
            return errf("mqtt: no SUBACK for %s within %d ms", topic, timeout_ms);
        if (m->suback_qos < 0x80)
            return 0;
        if (m->suback_qos != 0x91)
            return errf("mqtt: subscribe %s refused: %s (0x%02x)", topic, mosquitto_reason_string(m->suback_qos),
                        m->suback_qos);
    }
    return errf("mqtt: subscribe %s: packet identifier in use, five times", topic);
}

int mq_publish(struct mq *m, const char *topic, const void *payload, size_t len, int *mid)
{
    int rc = mosquitto_publish_v5(m->mosq, mid, topic, (int)len, payload, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        return errf("mqtt: publish on %s: %s", topic, mosquitto_strerror(rc));
    return 0;
}

static int take_ack(struct mq *m, int mid, struct mq_ack *ack)
{
    for (struct ack_node **p = &m->acks; *p; p = &(*p)->next) {
        if ((*p)->mid == mid) {
            struct ack_node *n = *p;
            *ack = n->ack;
            *p = n->next;
            free(n);
            return 1;
        }
    }
    return 0;
}

int mq_wait_ack(struct mq *m, int mid, struct mq_ack *ack, int64_t deadline_ms)
{
    while (!take_ack(m, mid, ack)) {
        if (now_ms() >= deadline_ms)
            return errf("mqtt: no PUBACK before the deadline (the gateway acknowledges after commit)");
        if (step(m) != 0)
            return errf("mqtt: waiting for a PUBACK: %s", m->err);
    }
    return 0;
}

struct mq_msg *mq_take(struct mq *m, const char *topic, int64_t deadline_ms)
{
    for (;;) {
        struct mq_msg *prev = NULL;
        for (struct mq_msg *q = m->head; q; prev = q, q = q->next) {
            if (strcmp(q->topic, topic) != 0)
                continue;
            if (prev)
                prev->next = q->next;
            else
                m->head = q->next;
            if (m->tail == q)
                m->tail = prev;
            q->next = NULL;
            return q;
        }
        if (now_ms() >= deadline_ms)
            return NULL;
        if (step(m) != 0) {
            errf("mqtt: waiting for a message on %s: %s", topic, m->err);
            return NULL;
        }
    }
}

void mq_msg_free(struct mq_msg *msg)
{
    if (!msg)
        return;
    free(msg->topic);
    free(msg->payload);
    free(msg);
}

void mq_close(struct mq *m)
{
    if (!m)
        return;
    if (m->connected == 1) {
        mosquitto_disconnect_v5(m->mosq, 0, NULL);
        mosquitto_loop(m->mosq, 50, 1); /* flush the DISCONNECT */
    }
    mosquitto_destroy(m->mosq);
    while (m->acks) {
        struct ack_node *n = m->acks;
        m->acks = n->next;
        free(n);
    }
    while (m->head) {
        struct mq_msg *q = m->head;
        m->head = q->next;
        mq_msg_free(q);
    }
    free(m);
    mosquitto_lib_cleanup();
}
