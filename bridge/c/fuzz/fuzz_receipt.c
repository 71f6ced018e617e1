/* Receipts, and heads (a header and its certificate), against the vectors'
 * genesis. */
#include "fuzz.h"
#include "lg_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_load_genesis();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_receipt r;
    lg_header h;
    lg_str head = {data, size};
    lg_receipt_verify(data, size, &fuzz_genesis, &r);
    lg_head_verify(&fuzz_genesis, head, &h);
    return 0;
}
