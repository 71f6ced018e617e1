#!/bin/sh
# check_core.sh OBJ... - the core's promises, read off its objects:
#  1. no heap: no reference to malloc, calloc, realloc or free;
#  2. no OS or stdio call: every symbol the core uses and does not define is
#     mbedTLS, libsodium's Ed25519 (LG_WITH_ED25519) or one of a few
#     <string.h> functions;
#  3. no global mutable state: no .data or .bss section with bytes in it
#     (.data.rel.ro holds the const tables of pointers: read-only after load).
set -eu
fail=0
defined=$(nm --defined-only "$@" | awk 'NF == 3 { print $3 }' | sort -u)
for s in $(nm -u "$@" | awk 'NF == 2 { print $2 }' | sort -u); do
    if echo "$defined" | grep -qx "$s"; then continue; fi
    case "$s" in
    mbedtls_* | crypto_sign_detached | crypto_sign_verify_detached | crypto_sign_seed_keypair | sodium_memzero) ;;
    memcpy | memmove | memset | memcmp | strlen | strcmp | strchr | __stack_chk_fail | _GLOBAL_OFFSET_TABLE_) ;;
    *) echo "check_core: the core calls $s" >&2; fail=1 ;;
    esac
done
for o in "$@"; do
    size -A "$o" | awk -v o="$o" '$1 ~ /^\.(data|bss)/ && $1 !~ /^\.data\.rel\.ro/ && $2 > 0 {
        print "check_core: " o ": writable section " $1 " of " $2 " bytes"; bad = 1 } END { exit bad }' >&2 || fail=1
done
[ $fail = 0 ] && echo "core objects: no heap, no OS calls, no global mutable state ($# objects)"
exit $fail
