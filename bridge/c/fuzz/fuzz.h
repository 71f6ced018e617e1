/* fuzz.h - what the libFuzzer targets share: the vectors' genesis, read
 * once from $LG_FUZZ_GENESIS (make fuzz writes it from the vectors). */
#ifndef LG_FUZZ_H
#define LG_FUZZ_H

#include "lg.h"

#include <stdio.h>
#include <stdlib.h>

static lg_genesis fuzz_genesis;

static void fuzz_load_genesis(void)
{
    static uint8_t buf[65536];
    const char *path = getenv("LG_FUZZ_GENESIS");
    FILE *f = path ? fopen(path, "rb") : NULL;
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    if (lg_genesis_parse(buf, n, &fuzz_genesis) != LG_OK) {
        fprintf(stderr, "fuzz: set LG_FUZZ_GENESIS to a genesis.json\n");
        exit(2);
    }
}

#endif
