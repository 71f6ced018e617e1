/* The reject JSON, the CoAP diagnostic and the MQTT 5 form, with and
 * without their transport codes (the first byte is the code). */
#include "lg.h"

/* A view must lie inside the input. */
static void inside(const lg_str *v, const uint8_t *data, size_t size)
{
    if (v->n != 0 && (v->p < data || v->n > size || v->p - data > (long)(size - v->n)))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_refusal r;
    if (lg_refusal_parse_json(data, size, &r) == LG_OK) {
        if (r.reason[sizeof r.reason - 1] != '\0')
            __builtin_trap();
        inside(&r.detail, data, size);
    }
    if (lg_refusal_parse_coap(data, size, &r) == LG_OK)
        inside(&r.detail, data, size);
    lg_refusal_parse_mqtt5((const char *)data, size, (const char *)data, size < 20 ? size : 20, &r);
    if (size > 0) {
        if (lg_refusal_parse_coap_code(data[0], data + 1, size - 1, &r) == LG_OK)
            inside(&r.detail, data + 1, size - 1);
        lg_refusal_parse_puback(data[0], (const char *)data + 1, size - 1, (const char *)data + 1,
                                size - 1 < 20 ? size - 1 : 20, &r);
    }
    return 0;
}
