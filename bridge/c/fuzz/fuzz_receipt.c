/* Receipts and heads (certificates) against the vectors' genesis. */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_load_genesis();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_receipt r;
    lg_receipt_verify(data, size, &fuzz_genesis, &r);
    return 0;
}
