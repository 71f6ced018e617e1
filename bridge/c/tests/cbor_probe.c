/* cbor_probe.c - the measurement behind lg_cbor.c's own reader: libcbor
 * 0.8's streaming decoder reports a text string's length without the width
 * of its head, so "hello" as 0x65... and as 0x78 0x05... (not the shortest
 * form, refused by protocol.md 2 rule 1) reach the callback the same way;
 * only the count of bytes consumed (result.read) tells them apart.
 * Exits 0 when that is still so (docs/c-library.md, "CBOR"). */
#include <cbor.h>
#include <stdio.h>
#include <string.h>

static size_t got_len;
static int calls;

static void on_string(void *ctx, cbor_data data, uint64_t len)
{
    (void)ctx, (void)data;
    got_len = (size_t)len;
    calls++;
}

static size_t decode(const unsigned char *b, size_t n, size_t *read)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    cb.string = on_string;
    got_len = 0;
    calls = 0;
    struct cbor_decoder_result r = cbor_stream_decode(b, n, &cb, NULL);
    *read = r.read;
    return r.status == CBOR_DECODER_FINISHED ? got_len : (size_t)-1;
}

int main(void)
{
    static const unsigned char shortest[] = {0x65, 'h', 'e', 'l', 'l', 'o'};
    static const unsigned char longer[] = {0x78, 0x05, 'h', 'e', 'l', 'l', 'o'};
    size_t r1, r2;
    size_t a = decode(shortest, sizeof shortest, &r1);
    int c1 = calls;
    size_t b = decode(longer, sizeof longer, &r2);
    int c2 = calls;
    printf("libcbor %d.%d.%d: 0x65 \"hello\" -> string(len %zu), read %zu; "
           "0x78 0x05 \"hello\" -> string(len %zu), read %zu: %s\n",
           CBOR_MAJOR_VERSION, CBOR_MINOR_VERSION, CBOR_PATCH_VERSION, a, r1, b, r2,
           a == b && c1 == 1 && c2 == 1 ? "same callback, the head's width is not reported"
                                        : "the callbacks differ: revisit lg_cbor.c");
    return a == b && c1 == 1 && c2 == 1 ? 0 : 1;
}
