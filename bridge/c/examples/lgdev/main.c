/* lgdev: a Linux example device on the ledgergate C library (liblg).
 *
 * It does what a device does (docs/protocol.md): signs records and
 * publishes them over MQTT 5 or CoAP/DTLS, verifies every receipt
 * offline against the genesis, fetches and checks its configuration and
 * firmware offers, and acts on refusals. Every check is the core
 * library's (bridge/c/include/lg.h); this program adds files and
 * transports (libmosquitto, libcoap). */
#include <stdio.h>
#include <string.h>

#include "util.h"

int cmd_publish(int argc, char **argv);
int cmd_coap(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_firmware(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} cmds[] = {
    {"publish", cmd_publish, "sign records, publish them over MQTT 5, verify their receipts"},
    {"coap", cmd_coap, "sign records, POST them over CoAP with DTLS, verify their receipts"},
    {"config", cmd_config, "fetch, check and open the device's sealed configuration"},
    {"firmware", cmd_firmware, "check a firmware offer and an image against it"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: lgdev COMMAND [options]    (lgdev COMMAND --help for its options)\n\n"
               "An example ledgergate device in C (docs/protocol.md). Commands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    errf("unknown command %s", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
