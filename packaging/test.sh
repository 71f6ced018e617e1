#!/bin/bash
# test.sh: the packaging tests, run by `make packaging-test` (part of `make
# test`) after `make deb`. Needs root (chroot, mount) and the packages of
# TEST_DEBS in the Makefile (lintian, systemd, debootstrap, qemu-user-static, file).
#
#  1. the packaged config equals the TOML of docs/configuration.md, commented
#  2. lintian --fail-on error on each .deb
#  3. systemd-analyze verify and security of systemd/ledgergate.service, and
#     its restart policy under a real systemd where one runs (restart-test.sh)
#  4. the arm64 and armhf binaries: ELF architecture, and they run under qemu-user
#  5. install, run as the user, upgrade, remove and purge in a throwaway
#     Debian bookworm root (debootstrap, cached in $ROOTFS_CACHE)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VERSION:?VERSION (git describe) is needed}"
ROOTFS_CACHE=${ROOTFS_CACHE:-/var/cache/ledgergate-test/rootfs}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# The exposure systemd-analyze security may report, at most.
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}
API_PORT=${API_PORT:-18480}
MQTT_PORT=${MQTT_PORT:-18483}

DEB_VERSION=$(VERSION=$VERSION packaging/build-deb.sh --print-version)
deb() { echo "dist/ledgergate_${DEB_VERSION}_$1.deb"; }

step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (chroot, mount, dpkg in a chroot)"
for a in amd64 arm64 armhf; do
	[ -f "$(deb $a)" ] || fail "$(deb $a) missing: run make deb"
done

WORK=$(mktemp -d /var/tmp/ledgergate-test.XXXXXX)
ROOT=$WORK/root
GW_PID=
cleanup() {
	if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
	if mountpoint -q "$ROOT/proc" 2>/dev/null; then umount "$ROOT/proc"; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

step "config: packaging/ledgergate.toml is docs/configuration.md, commented"
packaging/gen-config.sh | diff -u packaging/ledgergate.toml - ||
	fail "packaging/ledgergate.toml is stale: packaging/gen-config.sh > packaging/ledgergate.toml"
if grep -Ev '^(#.*)?$' packaging/ledgergate.toml; then fail "ledgergate.toml has a setting not commented out"; fi
grep -q '^#data_dir = "/var/lib/ledgergate"$' packaging/ledgergate.toml || fail "data_dir default is not /var/lib/ledgergate"
grep -q '^#kind = "tpm"$' packaging/ledgergate.toml || fail "signer kind default is not tpm"
ok "config"

step "lintian --fail-on error"
# One run for the three packages; warnings are printed, and each is justified
# (or overridden) in packaging/README.md.
lintian --fail-on error --allow-root "$(deb amd64)" "$(deb arm64)" "$(deb armhf)" || fail "lintian"
ok "lintian"

step "systemd-analyze verify"
# verify checks that ExecStart's binary exists and that man:ledgergate(1) of
# Documentation= opens. Neither is installed on the build machine, so verify a
# copy whose ExecStart points at the binary of `make cross` (same arguments),
# with MANPATH at the man page.
mkdir -p "$WORK/verify" "$WORK/man/man1"
gzip -9n <packaging/ledgergate.1 >"$WORK/man/man1/ledgergate.1.gz"
sed "s|^ExecStart=/usr/bin/ledgergate |ExecStart=$PWD/dist/ledgergate-linux-amd64 |" \
	systemd/ledgergate.service >"$WORK/verify/ledgergate.service"
grep -q "^ExecStart=$PWD/dist/" "$WORK/verify/ledgergate.service" || fail "ExecStart not rewritten"
out=$(MANPATH=$WORK/man systemd-analyze verify "$WORK/verify/ledgergate.service" 2>&1) || {
	echo "$out"
	fail "systemd-analyze verify"
}
# verify prints problems of other units on this machine too; ours must be clean.
if grep -i 'ledgergate' <<<"$out"; then fail "systemd-analyze verify complained about ledgergate.service"; fi
ok "systemd-analyze verify"

step "systemd-analyze security (at most $MAX_EXPOSURE)"
exposure=$(systemd-analyze security --offline=yes systemd/ledgergate.service 2>&1 |
	sed -n 's/.*Overall exposure level for ledgergate.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security"
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' || fail "exposure $exposure > $MAX_EXPOSURE"
ok "exposure $exposure"

step "restart policy under systemd (packaging/restart-test.sh)"
BIN=dist/ledgergate-linux-amd64 packaging/restart-test.sh || fail "restart-test.sh"

step "cross binaries: ELF architecture and qemu-user"
check_elf() { # binary, expected `file` words
	local d
	d=$(file -b "$1")
	grep -q "$2" <<<"$d" || fail "$1: want $2, file says: $d"
}
check_elf dist/ledgergate-linux-amd64 'ELF 64-bit LSB.*x86-64'
check_elf dist/ledgergate-linux-arm64 'ELF 64-bit LSB.*ARM aarch64'
check_elf dist/ledgergate-linux-armv6 'ELF 32-bit LSB.*ARM, EABI5'
check_elf dist/ledgergate-linux-armv7 'ELF 32-bit LSB.*ARM, EABI5'
for a in arm64 armhf; do
	mkdir -p "$WORK/x-$a"
	dpkg-deb -x "$(deb $a)" "$WORK/x-$a"
	[ "$(dpkg-deb -f "$(deb $a)" Architecture)" = "$a" ] || fail "$(deb $a): Architecture is not $a"
done
check_elf "$WORK/x-arm64/usr/bin/ledgergate" 'ARM aarch64'
check_elf "$WORK/x-armhf/usr/bin/ledgergate" 'ELF 32-bit LSB.*ARM, EABI5'
want="ledgergate $VERSION"
got=$(qemu-aarch64-static "$WORK/x-arm64/usr/bin/ledgergate" version)
[ "$got" = "$want" ] || fail "arm64 under qemu: got '$got', want '$want'"
got=$(qemu-arm-static -cpu arm1176 "$WORK/x-armhf/usr/bin/ledgergate" version)
[ "$got" = "$want" ] || fail "armhf (armv6, arm1176) under qemu: got '$got', want '$want'"
got=$(qemu-arm-static dist/ledgergate-linux-armv7 version)
[ "$got" = "$want" ] || fail "armv7 under qemu: got '$got', want '$want'"
ok "arm64, armhf (on an ARMv6 CPU) and armv7 print '$want'"

step "Debian bookworm root (cache: $ROOTFS_CACHE)"
if [ ! -x "$ROOTFS_CACHE/usr/sbin/adduser" ]; then
	echo "no cached root: debootstrap --variant=minbase bookworm (once; a few minutes)"
	rm -rf "$ROOTFS_CACHE.tmp"
	mkdir -p "$(dirname "$ROOTFS_CACHE")"
	timeout 900 debootstrap --variant=minbase --include=adduser bookworm "$ROOTFS_CACHE.tmp" "$MIRROR" |
		grep -E '^I: (Retrieving Release|Validating Packages|Extracting|Installing core|Configuring|Base system)' || true
	[ -x "$ROOTFS_CACHE.tmp/usr/sbin/adduser" ] || fail "debootstrap did not finish"
	mv "$ROOTFS_CACHE.tmp" "$ROOTFS_CACHE"
fi
cp -a "$ROOTFS_CACHE" "$ROOT"
mount -t proc proc "$ROOT/proc"
[ ! -d "$ROOT/run/systemd/system" ] || fail "the root has /run/systemd/system"
ok "root copied to $ROOT"

in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "$@"; }
as_user() {
	chroot --userspec=ledgergate:ledgergate "$ROOT" \
		env -i PATH=/usr/bin:/bin HOME=/var/lib/ledgergate "$@"
}
install_deb() { # file
	cp "$1" "$ROOT/tmp/"
	in_root dpkg -i "/tmp/$(basename "$1")" || fail "dpkg -i $(basename "$1")"
}
check_user() {
	local pw
	pw=$(in_root getent passwd ledgergate) || fail "no user ledgergate"
	[ "$(cut -d: -f6 <<<"$pw")" = /var/lib/ledgergate ] || fail "home of ledgergate: $pw"
	[ "$(cut -d: -f3 <<<"$pw")" -lt 1000 ] || fail "ledgergate is not a system user: $pw"
	in_root getent group tss >/dev/null || fail "no group tss"
	in_root id -nG ledgergate | tr ' ' '\n' | grep -qx ledgergate || fail "ledgergate not in group ledgergate"
	in_root id -nG ledgergate | tr ' ' '\n' | grep -qx tss || fail "ledgergate not in group tss"
	[ "$(in_root stat -c '%U:%G %a' /var/lib/ledgergate)" = "ledgergate:ledgergate 750" ] ||
		fail "/var/lib/ledgergate: $(in_root stat -c '%U:%G %a' /var/lib/ledgergate)"
	ok "user ledgergate (groups $(in_root id -nG ledgergate)), /var/lib/ledgergate ledgergate:ledgergate 0750"
}
run_gateway() { # start it as the user, wait for /readyz, stop it
	# Not through as_user: $! must be the gateway itself (chroot and env exec it),
	# not a subshell, so that kill stops the gateway.
	if curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null; then
		fail "something already answers on 127.0.0.1:$API_PORT"
	fi
	chroot --userspec=ledgergate:ledgergate "$ROOT" env -i PATH=/usr/bin:/bin HOME=/var/lib/ledgergate \
		/usr/bin/ledgergate run --config /etc/ledgergate/ledgergate.toml >"$WORK/gateway.log" 2>&1 &
	GW_PID=$!
	local deadline=$((SECONDS + 30))
	until curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null; do
		if ! kill -0 "$GW_PID" 2>/dev/null; then cat "$WORK/gateway.log"; fail "the gateway exited"; fi
		if [ $SECONDS -ge $deadline ]; then cat "$WORK/gateway.log"; fail "no /readyz within 30s"; fi
		sleep 0.2
	done
	kill "$GW_PID"
	wait "$GW_PID" || true
	GW_PID=
	if curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null; then
		fail "the gateway still answers after kill"
	fi
	ok "the gateway ran as ledgergate and answered /readyz on 127.0.0.1:$API_PORT"
}

step "install $(deb amd64) (no systemd in the root)"
install_deb "$(deb amd64)"
check_user
[ "$(in_root dpkg-query -W -f '${Version}' ledgergate)" = "$DEB_VERSION" ] || fail "installed version"
in_root dpkg-query -W -f '${Conffiles}\n' ledgergate | grep -q '^ /etc/ledgergate/ledgergate.toml ' ||
	fail "/etc/ledgergate/ledgergate.toml is not a conffile"
cmp -s packaging/ledgergate.toml "$ROOT/etc/ledgergate/ledgergate.toml" || fail "installed config differs"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/ledgergate.service" ] || fail "service not enabled by deb-systemd-helper"
[ "$(in_root ledgergate version)" = "ledgergate $VERSION" ] || fail "ledgergate version in the root"
in_root man -w ledgergate >/dev/null 2>&1 || [ -f "$ROOT/usr/share/man/man1/ledgergate.1.gz" ] || fail "no man page"
gzip -t "$ROOT/usr/share/doc/ledgergate/changelog.gz" || fail "changelog.gz"
ok "installed $DEB_VERSION; conffile; service enabled; systemd start skipped"

step "run as ledgergate with a software key"
# The admin edits the conffile: kept by upgrades, checked below.
cat >>"$ROOT/etc/ledgergate/ledgergate.toml" <<EOF

# packaging/test.sh: a software key and test ports.
data_dir = "/var/lib/ledgergate"
[api]
listen = "127.0.0.1:$API_PORT"
[mqtt]
listen = "127.0.0.1:$MQTT_PORT"
[coap]
listen = ""
dtls_listen = ""
[signer]
kind = "software"
EOF
as_user /usr/bin/ledgergate init --software-key --config /etc/ledgergate/ledgergate.toml || fail "ledgergate init as ledgergate"
[ "$(in_root stat -c %U /var/lib/ledgergate/genesis.json)" = ledgergate ] || fail "genesis.json not owned by ledgergate"
genesis=$(sha256sum <"$ROOT/var/lib/ledgergate/genesis.json")
run_gateway

step "upgrade to a newer build"
NEW_VERSION=${DEB_VERSION}+test1
mkdir -p "$WORK/new"
VERSION=$VERSION DEB_VERSION=$NEW_VERSION ARCHES=amd64 OUT=$WORK/new packaging/build-deb.sh
install_deb "$WORK/new/ledgergate_${NEW_VERSION}_amd64.deb"
[ "$(in_root dpkg-query -W -f '${Version}' ledgergate)" = "$NEW_VERSION" ] || fail "not upgraded to $NEW_VERSION"
grep -q "^listen = \"127.0.0.1:$API_PORT\"" "$ROOT/etc/ledgergate/ledgergate.toml" || fail "upgrade lost the edited config"
[ "$(sha256sum <"$ROOT/var/lib/ledgergate/genesis.json")" = "$genesis" ] || fail "upgrade changed the data"
check_user
run_gateway
ok "upgraded $DEB_VERSION -> $NEW_VERSION; /etc and /var/lib kept"

step "remove keeps the data"
in_root dpkg -r ledgergate || fail "dpkg -r"
[ ! -e "$ROOT/usr/bin/ledgergate" ] || fail "binary left after remove"
[ -f "$ROOT/var/lib/ledgergate/genesis.json" ] || fail "remove deleted the data"
[ -f "$ROOT/etc/ledgergate/ledgergate.toml" ] || fail "remove deleted the conffile"
in_root getent passwd ledgergate >/dev/null || fail "remove deleted the user"
ok "removed; data, config and user kept"

step "purge removes data, config and user"
# userdel refuses while a process of the user's uid runs; with the host's /proc
# mounted it sees host processes whose uid is the chroot user's (e.g. messagebus).
umount "$ROOT/proc"
in_root dpkg -P ledgergate || fail "dpkg -P"
[ ! -e "$ROOT/var/lib/ledgergate" ] || fail "/var/lib/ledgergate left after purge"
[ ! -e "$ROOT/etc/ledgergate" ] || fail "/etc/ledgergate left after purge"
! in_root getent passwd ledgergate >/dev/null || fail "user ledgergate left after purge"
! in_root getent group ledgergate >/dev/null || fail "group ledgergate left after purge"
[ ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/ledgergate.service" ] || fail "enable symlink left after purge"
ok "purged"

step "packaging tests passed in ${SECONDS}s"
