/* Membership proofs (protocol.md 10.2) followed from the vectors'
 * genesis, and a receipt and a head verified with the sets they leave. */
#include "fuzz.h"

#include <string.h>

static lg_members members;

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
    size_t followed;
    if (lg_members_init_genesis(&members, &fuzz_genesis) != LG_OK)
        abort();
    lg_err e = lg_members_follow_proof(&members, data, size, &followed);
    if (e == LG_OK && followed > 0 && members.n_sets < 2)
        abort(); /* a change followed keeps a set */
    lg_receipt_verify_members(data, size, &members, &r);
    lg_head_verify_members(&members, data, size, &h);
    return 0;
}
