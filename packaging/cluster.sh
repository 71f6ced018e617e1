#!/usr/bin/env bash
# Four ledgergate gateways on this machine, as one chain of four nodes
# (n = 4, f = 1): `make cluster`. See docs/cluster.md.
#
# The keys, the genesis and the ledgers live in ./cluster-data, which the
# next start reuses; `make cluster-clean` (rm -rf cluster-data) starts over.
# Ctrl-C or SIGTERM stops all four.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=cluster-data
CHAIN=cluster-dev
L=bin/ledgergate
NODES=(1 2 3 4)

# Node i: API 127.0.0.1:808i, MQTT 127.0.0.1:188i, peers 127.0.0.1:700i.
api() { echo "127.0.0.1:808$1"; }
mqtt() { echo "127.0.0.1:188$1"; }
peer() { echo "127.0.0.1:700$1"; }

# setup makes the four data directories the way docs/cluster.md does on
# four machines. It works in a scratch directory and renames it into place
# at the end, so an interrupted set-up leaves nothing half made.
setup() {
	local tmp="$DATA.new"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	local nodes=()
	for i in "${NODES[@]}"; do
		"$L" init --software-key --data "$tmp/node-$i" --node-id "node-$i" >/dev/null
		nodes+=(--node "node-$i,$(peer "$i"),$tmp/node-$i/node.pub")
	done
	"$L" device keygen --alg es256 --out "$tmp/admin.key" >/dev/null
	"$L" genesis new --chain-id "$CHAIN" "${nodes[@]}" \
		--admin "$tmp/admin.key.pub" --admin-id admin --out "$tmp/genesis.json" >/dev/null
	for i in "${NODES[@]}"; do
		"$L" init --software-key --data "$tmp/node-$i" --genesis "$tmp/genesis.json" >/dev/null
	done
	mv "$tmp" "$DATA"
}

# prefix copies its input to standard output, each line led by $1.
prefix() {
	local line
	while IFS= read -r line; do
		printf '%s %s\n' "$1" "$line"
	done
}

make --no-print-directory build

if [[ ! -e "$DATA" ]]; then
	setup
	echo "created $DATA"
else
	for i in "${NODES[@]}"; do
		if [[ ! -f "$DATA/node-$i/genesis.json" ]]; then
			echo "$DATA/node-$i has no genesis.json; start over with: make cluster-clean" >&2
			exit 1
		fi
	done
	echo "reusing $DATA (make cluster-clean starts over)"
fi

pids=()
stop() {
	trap - INT TERM EXIT
	if ((${#pids[@]} == 0)); then
		return
	fi
	echo "stopping the gateways"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	# Give them 30s to shut down cleanly, then kill what is left.
	for _ in $(seq 300); do
		local alive=0
		for p in "${pids[@]}"; do
			if kill -0 "$p" 2>/dev/null; then
				alive=1
			fi
		done
		((alive)) || break
		sleep 0.1
	done
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for i in "${NODES[@]}"; do
	# Peers dial the genesis address; this node listens on it too.
	cat >"$DATA/node-$i/ledgergate.toml" <<EOF
# Written by packaging/cluster.sh on each start.
# A machine for trying things out: a software node key, said so at start.
[signer]
kind = "software"

[cluster]
listen = "$(peer "$i")"
EOF
	"$L" run --config "$DATA/node-$i/ledgergate.toml" --data "$DATA/node-$i" \
		--listen "$(api "$i")" --mqtt "$(mqtt "$i")" > >(prefix "[node-$i]") 2>&1 &
	pids+=("$!")
done

cat <<EOF

Four gateways of chain $CHAIN (genesis $DATA/genesis.json; $L genesis show $DATA/genesis.json):
$(for i in "${NODES[@]}"; do printf '  node-%s  API http://%s  MQTT tcp://%s  peers %s\n' "$i" "$(api "$i")" "$(mqtt "$i")" "$(peer "$i")"; done)

In another terminal, enroll a device through one gateway and publish through another:
  L=$L
  \$L device keygen --alg es256 --out sensor-1
  \$L device enroll --id sensor-1 --pubkey sensor-1.pub --api http://$(api 1) --admin-key $DATA/admin.key
  echo '{"temp": 21.5}' | \$L device publish --key sensor-1 --id sensor-1 --broker tcp://$(mqtt 3) --genesis $DATA/genesis.json
  curl -s http://$(api 4)/api/v1/status

Ctrl-C stops all four; the ledgers stay in $DATA.

EOF

# Until all four have ended: stopping one (kill PID) leaves the other three running.
wait "${pids[@]}" || true
