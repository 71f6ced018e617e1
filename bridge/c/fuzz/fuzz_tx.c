/* Envelopes and bodies of every kind, and tokens (the same envelope). */
#include "fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_tx tx;
    if (lg_tx_decode(data, size, 65536, &tx) == LG_OK) {
        /* a decoded tx's views must lie inside the input */
        if (tx.payload.p < data || tx.payload.p + tx.payload.n > data + size)
            abort();
    }
    lg_pubkey k = {LG_ALG_ES256, {4}};
    char tok[LG_TOKEN_MAX];
    if (size <= sizeof tok) {
        memcpy(tok, data, size);
        lg_token_check(tok, size, "vectors-1", 1767226060, &k);
    }
    return 0;
}
