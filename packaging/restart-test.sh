#!/bin/bash
# restart-test.sh: the restart policy of systemd/ledgergate.service under a
# real systemd (issue 20, defect 11). Run by packaging/test.sh; standalone:
#   BIN=dist/ledgergate-linux-amd64 packaging/restart-test.sh
# Needs root, swtpm, and systemd as PID 1: where systemd does not run (a
# container), it says so and exits 0 without testing anything.
#
# A gateway whose node key is in a TPM that is not there fails to start.
# A unit with the shipped unit's start-limit and restart settings, verbatim
# (no User= or sandboxing: those are systemd-analyze's part), starts it
# while the TPM is away, and is told `systemctl start` three more times, 1s
# apart, as an operator or a config-management run would. After 20s it
# must not be "failed"; once the TPM is back it must become active by
# itself within 30s.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-dist/ledgergate-linux-amd64}
UNIT=ledgergate-restart-test.service
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ ! -d /run/systemd/system ]; then
	echo "skipped: systemd is not running here (no /run/systemd/system); TestSystemdUnitRestarts and systemd-analyze verify check the unit"
	exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root"
[ -x "$BIN" ] || fail "$BIN missing: run make cross"
command -v swtpm >/dev/null || fail "swtpm missing: make deps"
BIN=$(realpath "$BIN")

W=$(mktemp -d /tmp/lg-restart.XXXXXX) # short: a Unix socket path fits in 108 bytes
SOCK=$W/tpm/sock
SWTPM_PID=
swtpm_start() {
	swtpm socket --tpm2 --tpmstate "dir=$W/tpm" --server "type=unixio,path=$SOCK" \
		--ctrl "type=unixio,path=$SOCK.ctrl" --flags startup-clear,not-need-init &
	SWTPM_PID=$!
	for _ in $(seq 200); do [ -S "$SOCK" ] && return; sleep 0.05; done
	fail "swtpm did not listen on $SOCK"
}
swtpm_stop() {
	[ -n "$SWTPM_PID" ] || return 0
	kill "$SWTPM_PID" 2>/dev/null || true
	wait "$SWTPM_PID" 2>/dev/null || true
	SWTPM_PID=
	rm -f "$SOCK" "$SOCK.ctrl"
}
cleanup() {
	systemctl stop "$UNIT" 2>/dev/null || true
	systemctl reset-failed "$UNIT" 2>/dev/null || true
	rm -f "/run/systemd/system/$UNIT"
	systemctl daemon-reload || true
	swtpm_stop
	rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/tpm"
printf '[signer]\nkind = "tpm"\ntpm_socket = "%s"\n' "$SOCK" >"$W/ledgergate.toml"
swtpm_start
"$BIN" init --config "$W/ledgergate.toml" --data "$W/data" >/dev/null 2>&1 || fail "ledgergate init with swtpm"
swtpm_stop

{
	echo "[Unit]"
	sed -n '/^\[Unit\]/,/^\[Service\]/p' systemd/ledgergate.service | grep -E '^StartLimit' || true
	echo "[Service]"
	sed -n '/^\[Service\]/,/^\[Install\]/p' systemd/ledgergate.service |
		grep -E '^(Type|NotifyAccess|WatchdogSec|Restart|RestartSec|TimeoutStopSec|StartLimit[A-Za-z]*)='
	echo "ExecStart=$BIN run --config $W/ledgergate.toml --data $W/data --listen 127.0.0.1:0 --mqtt off --coap off --coap-dtls off"
} >"/run/systemd/system/$UNIT"
echo "unit (the restart settings of systemd/ledgergate.service):"
sed 's/^/  /' "/run/systemd/system/$UNIT"
systemctl daemon-reload

state() { printf '%s/%s NRestarts=%s' "$(systemctl show -P ActiveState "$UNIT")" \
	"$(systemctl show -P SubState "$UNIT")" "$(systemctl show -P NRestarts "$UNIT")"; }
systemctl start --no-block "$UNIT"
for _ in 1 2 3; do
	sleep 1 # spacing the operator's starts, not waiting for a state
	systemctl start --no-block "$UNIT"
done
end=$((SECONDS + 20))
while [ $SECONDS -lt $end ]; do
	[ "$(systemctl show -P ActiveState "$UNIT")" != failed ] || fail "the unit gave up while the TPM was away: $(state)"
	sleep 1
done
echo "ok: without the TPM for 20s: $(state)"
[ "$(systemctl show -P NRestarts "$UNIT")" -gt 0 ] || fail "no restarts while the TPM was away: $(state)"

swtpm_start
end=$((SECONDS + 30))
until [ "$(systemctl show -P ActiveState "$UNIT")" = active ]; do
	[ $SECONDS -lt $end ] || fail "not active 30s after the TPM came back: $(state)"
	sleep 1
done
echo "ok: active again once the TPM came back: $(state)"
