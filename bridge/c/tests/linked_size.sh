#!/bin/sh
# linked_size.sh MAP - what of each object a firmware's link kept: the sizes
# of the .text* and .rodata* input sections that a GNU ld map file (-Map)
# lists under "Linker script and memory map" (discarded sections are listed
# before it and not counted). Prints one line per object, "size object",
# the library's objects (build/arm/lg_*.o) first, then "size lg-total".
set -eu
awk '
function hex(s,   i, c, v) {
    v = 0; s = tolower(substr(s, 3))
    for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
    return v
}
/^Linker script and memory map/ { m = 1; next }
!m { next }
/^ \.[^ ]+$/ { sec = $1; next }                     # a long name, the numbers on the next line
/^ \.[^ ]+ +0x/ { sec = $1 }
/^ *(\.[^ ]+ +)?0x[0-9a-f]+ +0x[0-9a-f]+ +[^ ]/ && sec ~ /^\.(text|rodata)/ {
    n = NF; if ($n ~ /^\(/) n--                           # archive members: lib.a(member.o)
    obj = $NF; sz = hex($(NF - 1)); if (sz > 0) size[obj] += sz
}
END {
    for (o in size) if (o ~ /build\/arm\/lg_/) { print size[o], o; t += size[o] }
    for (o in size) if (o !~ /build\/arm\/lg_/) print size[o], o
    print t, "lg-total"
}' "$1"
