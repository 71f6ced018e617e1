/* FirmwareAnswer, model and groups from the enrollment. */
#include "fuzz.h"

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_load_genesis();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_pubkey vendor = {LG_ALG_ES256, {0}};
    lg_fw_check chk = {"sensor-1", NULL, NULL, 0, 1, &vendor, 1767225990000, 600000};
    lg_fw_release rel;
    /* a P-256 vendor key that is a valid point: the genesis' first node */
    memcpy(vendor.key, fuzz_genesis.nodes[0].pub, 65);
    lg_firmware_answer_verify(data, size, &fuzz_genesis, &chk, &rel);
    return 0;
}
