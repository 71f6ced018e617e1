/* lg_mbedtls_user_config.h - what a microcontroller build of mbedTLS 2.28
 * changes for this library, on top of mbedTLS's default config.h. Pass it
 * with -DMBEDTLS_USER_CONFIG_FILE='"lg_mbedtls_user_config.h"' (config.h
 * includes it last). `make cortex-m4` compiles the core against Debian's
 * config.h with this file. docs/c-library.md lists what the library needs. */
#ifndef LG_MBEDTLS_USER_CONFIG_H
#define LG_MBEDTLS_USER_CONFIG_H

/* no OS threads: the library keeps no state to share, so mbedTLS needs no
 * mutexes (Debian's config.h turns pthread mutexes on). A firmware's own
 * config would also drop MBEDTLS_FS_IO, MBEDTLS_NET_C, MBEDTLS_TIMING_C
 * and everything TLS; Debian's config.h keeps them so that its check_config
 * stays consistent, and the core does not use them. */
#undef MBEDTLS_THREADING_C
#undef MBEDTLS_THREADING_PTHREAD

/* no heap: mbedTLS's bignums come from a static arena the firmware gives
 * with mbedtls_memory_buffer_alloc_init(buf, sizeof buf) */
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C

/* what the library uses (all on in the default config.h; listed so that a
 * trimmed config keeps them) */
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_HMAC_DRBG_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_MD_C
#define MBEDTLS_HKDF_C
#define MBEDTLS_AES_C
#define MBEDTLS_GCM_C

#endif
