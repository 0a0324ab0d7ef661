#!/usr/bin/env bash
# The main job (README.md): a local cluster on 127.0.0.1 — a Kafka-protocol broker (tansu), a stand-in
# publisher writing a synthetic log (synth-log; the real publisher follows an execution client, see the
# README's status), and two replicas following the topic. Prints a status line per second; Ctrl-C stops all.
#
#   scripts/local-cluster.sh [DATA_DIR]     (default: ./local-cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="$(realpath -m "${1:-./local-cluster}")"
PORT="${EC_LOCAL_KAFKA_PORT:-19092}"
TOPIC="local-cluster"

./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ec-target}"
cargo build --locked -p ether-cattle
BIN="$CARGO_TARGET_DIR/debug/ether-cattle"
TANSU="$HOME/.cache/tansu/bin/tansu"

if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT on 127.0.0.1 is taken; stop what listens there or set EC_LOCAL_KAFKA_PORT" >&2
  exit 1
fi
mkdir -p "$DATA/broker" "$DATA/logs"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; data kept in $DATA"
  exit 0
}
trap cleanup INT TERM EXIT

(cd "$DATA/broker" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PORT" --storage-engine sqlite://tansu.db) \
  >"$DATA/logs/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$TANSU" topic create --broker "tcp://127.0.0.1:$PORT" --partitions 1 "$TOPIC" >/dev/null 2>&1 || true

fresh_topic=true
[ -d "$DATA/replica-1" ] && fresh_topic=false
if $fresh_topic; then
  "$BIN" synth-log --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --records 2000 --follow-interval-ms 1000 \
    >"$DATA/logs/publisher.log" 2>&1 &
  pids+=($!)
else
  echo "reusing $DATA: replicas resume from their stored offsets (no new synthetic records)"
fi
for r in 1 2; do
  "$BIN" replica --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --data-dir "$DATA/replica-$r" \
    >"$DATA/logs/replica-$r.log" 2>&1 &
  pids+=($!)
done

echo "broker     127.0.0.1:$PORT (topic $TOPIC)"
echo "replicas   $DATA/replica-1, $DATA/replica-2 (logs in $DATA/logs)"
echo "compare    $BIN checksum --data-dir $DATA/replica-1"
echo "Ctrl-C stops everything."
while true; do
  line=""
  for r in 1 2; do
    s=$("$BIN" status --data-dir "$DATA/replica-$r" 2>/dev/null | sed 's/position //' || echo "starting")
    line="$line | replica-$r: ${s:0:60}"
  done
  printf '\r%s ' "${line:3}"
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo; echo "a process exited; see $DATA/logs"; exit 1; }
  done
  sleep 1
done
