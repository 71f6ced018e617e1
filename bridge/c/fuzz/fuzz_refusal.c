/* The reject JSON, the CoAP diagnostic and the MQTT 5 form. */
#include "lg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_refusal r;
    if (lg_refusal_parse_json(data, size, &r) == LG_OK && r.reason[sizeof r.reason - 1] != '\0')
        __builtin_trap();
    lg_refusal_parse_coap(data, size, &r);
    lg_refusal_parse_mqtt5((const char *)data, size, (const char *)data, size < 20 ? size : 20, &r);
    return 0;
}
