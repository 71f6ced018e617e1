/* ConfigAnswer and KeysAnswer (the same receipts and head). */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_load_genesis();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t hash[32];
    lg_config_check chk = {"sensor-1", NULL, 0, NULL, hash, 1767225990000, 600000};
    lg_config_set cs;
    lg_config_state st;
    lg_keys k;
    lg_config_answer_verify(data, size, &fuzz_genesis, &chk, &cs, &st);
    lg_keys_answer_verify(data, size, &fuzz_genesis, "sensor-1", 1767225990000, 600000, &k);
    return 0;
}
