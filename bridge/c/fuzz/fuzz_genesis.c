/* genesis.json */
#include "lg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_genesis g;
    if (lg_genesis_parse(data, size, &g) == LG_OK && (g.n_nodes == 0 || g.quorum > g.n_nodes))
        __builtin_trap();
    return 0;
}
