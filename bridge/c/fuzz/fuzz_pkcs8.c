/* PKCS#8 private keys (lg_key_from_pkcs8): strict DER, never a read past
 * the input, and a key only of the three kinds. */
#include "lg.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t zero[32];
    lg_key_type t;
    uint8_t k[32];
    lg_err e = lg_key_from_pkcs8(data, size, &t, k);
    if (e == LG_OK && t != LG_KEY_P256 && t != LG_KEY_ED25519 && t != LG_KEY_X25519)
        __builtin_trap();
    if (e != LG_OK && memcmp(k, zero, sizeof k) != 0)
        __builtin_trap(); /* on an error out is zeroed */
    return 0;
}
