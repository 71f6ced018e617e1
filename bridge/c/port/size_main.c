/* size_main.c - a representative device firmware, for measuring what of the
 * library a device carries (make cortex-m4). Not a program to run: it is
 * linked with -ffunction-sections -fdata-sections -Wl,--gc-sections and
 * mbedTLS left unresolved, and the Makefile sums the sections the link
 * kept from the library's objects (docs/c-library.md, Sizes).
 *
 * It makes the calls a device makes: parse its genesis, sign records, make
 * its MQTT token, verify receipts, check configuration and firmware answers,
 * open a sealed configuration, check a downloaded image and read a PUBACK
 * refusal. Inputs come from fw_input() so that nothing is constant-folded. */
#include <stddef.h>
#include <stdint.h>

#include "lg.h"

/* Bytes from the transport; in a firmware, the MQTT/CoAP client's buffers. */
static volatile uint8_t rx[2048];
static volatile size_t rx_len;
volatile int sink;

static const uint8_t *fw_input(size_t *len)
{
    *len = rx_len;
    return (const uint8_t *)rx;
}

static lg_err seq_load(void *ctx, uint64_t *last)
{
    (void)ctx;
    *last = rx[0];
    return LG_OK;
}

static lg_err seq_persist(void *ctx, uint64_t seq)
{
    (void)ctx;
    sink = (int)seq;
    return LG_OK;
}

int main(void)
{
    static lg_genesis g;
    static lg_config_state last;
    static const lg_seq_hook seq = {seq_load, seq_persist, NULL};
    static uint8_t out[1024];
    size_t n, m;
    const uint8_t *in = fw_input(&n);
    lg_err e;

    e = lg_genesis_parse(in, n, &g);

    const lg_device dev = {"sensor-1", "site-1", LG_ALG_ES256, in, &seq, NULL, NULL};
    const lg_record rec = {"temp", 1700000000000, "application/cbor", in, 8};
    lg_signed s;
    e |= lg_sign_record(&dev, &rec, out, sizeof out, &s);

    char tok[LG_TOKEN_MAX + 1];
    e |= lg_token_make(&dev, 1700000000, 1700003600, tok, sizeof tok, &m);

    lg_receipt rc;
    e |= lg_receipt_verify(in, n, &g, &rc);

    static lg_members members; /* kept by the device across changes */
    e |= lg_members_init_genesis(&members, &g);
    e |= lg_members_follow_proof(&members, in, n, &m);
    e |= lg_receipt_verify_members(in, n, &members, &rc);

    const lg_config_check cc = {"sensor-1", NULL, 0, &last, in, 1700000000000, 600000};
    lg_config_set cs;
    lg_config_state accepted;
    e |= lg_config_answer_verify(in, n, &g, &cc, &cs, &accepted);
    e |= lg_sealed_open(in, n, in + 32, &cs, out, sizeof out, &m);

    const lg_pubkey *vendor = (const lg_pubkey *)(const void *)(in + 64);
    const lg_fw_check fc = {"sensor-1", NULL, NULL, 0, 3, vendor, 1700000000000, 600000};
    lg_fw_release rel;
    e |= lg_firmware_answer_verify(in, n, &g, &fc, &rel);
    lg_image im;
    e |= lg_image_init(&im, &rel);
    e |= lg_image_update(&im, in, n);
    e |= lg_image_final(&im);

    lg_refusal r;
    e |= lg_refusal_parse_puback(in[0], (const char *)in + 1, 16, (const char *)in + 17, 4, &r);

    sink = (int)e + (int)m + (int)r.action;
    return 0;
}
