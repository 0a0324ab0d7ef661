#!/usr/bin/env bash
# The main job (README.md): a local cluster on 127.0.0.1 — an Apache Kafka broker (KRaft), anvil started
# from config/genesis-local.json mining a block every second with a small traffic generator (transfers, and
# calls of a contract that stores a value and emits a log), the publisher following it, two replicas
# following the topic, and a balancer in front of them that routes only to ready replicas (the ALB's
# stand-in), with moto's DynamoDB API holding the polling filters both replicas share. Prints a status line
# per second; Ctrl-C stops all.
#
#   scripts/local-cluster.sh [DATA_DIR]     (default: ./local-cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="$(realpath -m "${1:-./local-cluster}")"
PORT="${EC_LOCAL_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${EC_LOCAL_KAFKA_CONTROLLER_PORT:-19093}"
ANVIL_PORT="${EC_LOCAL_ANVIL_PORT:-18545}"
METRICS_PORT="${EC_LOCAL_METRICS_PORT:-19101}"
MOTO_PORT="${EC_LOCAL_MOTO_PORT:-19500}"
HEALTH_BASE="${EC_LOCAL_HEALTH_BASE:-19080}"   # replica r serves health on HEALTH_BASE + r
RPC_BASE="${EC_LOCAL_RPC_BASE:-18550}"         # and JSON-RPC on RPC_BASE + r; the balancer on RPC_BASE
TOPIC="local-cluster"

./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ec-target}"
# The release profile, as the container image: an optimised build is what a replica runs (the test profile
# compiles our crates at -O1 and RocksDB's C++ at -O1). EC_LOCAL_PROFILE=dev reuses the test build instead
# (no second compilation of the workspace, about 20 minutes on 2 cores the first time).
if [ "${EC_LOCAL_PROFILE:-release}" = dev ]; then
  cargo build --locked -p ether-cattle
  BIN="$CARGO_TARGET_DIR/debug/ether-cattle"
else
  cargo build --locked --release -p ether-cattle
  BIN="$CARGO_TARGET_DIR/release/ether-cattle"
fi
ANVIL="$HOME/.cache/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

for p in "$PORT" "$CONTROLLER_PORT" "$ANVIL_PORT" "$METRICS_PORT" "$MOTO_PORT" "$((HEALTH_BASE + 1))" \
  "$((HEALTH_BASE + 2))" "$RPC_BASE" "$((RPC_BASE + 1))" "$((RPC_BASE + 2))"; do
  if (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is taken; stop what listens there or set EC_LOCAL_*_PORT" >&2
    exit 1
  fi
done
mkdir -p "$DATA/broker" "$DATA/logs"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  # Newest first, each one gone before the next: the balancer, then the replicas (each drains its RPC
  # requests for a few seconds), the publisher, and only then the broker and anvil they talk to.
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    kill "${pids[$i]}" 2>/dev/null || continue
    for _ in $(seq 300); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
  done
  wait 2>/dev/null || true
  echo "stopped; data kept in $DATA"
  exit 0
}
trap cleanup INT TERM EXIT

./scripts/kafka-broker.sh "$DATA/broker" "$PORT" "$CONTROLLER_PORT" >"$DATA/logs/broker.log" 2>&1 &
pids+=($!)
# A JVM start: a few seconds, more on a busy machine.
for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# anvil keeps no state across runs, so each run is a new chain: a new topic name per run keeps old records
# (and old replicas) out of the way.
RUN="$(date +%s)"
TOPIC="$TOPIC-$RUN"
"$BIN" create-topics --brokers "127.0.0.1:$PORT" --topic "$TOPIC" >/dev/null
rm -rf "$DATA/replica-1" "$DATA/replica-2"

"$ANVIL" --host 127.0.0.1 --port "$ANVIL_PORT" --chain-id 31337 --init config/genesis-local.json \
  --block-time 1 --slots-in-an-epoch 4 >"$DATA/logs/anvil.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$ANVIL_PORT") 2>/dev/null && break; sleep 0.1; done

"$BIN" publisher --rpc-url "http://127.0.0.1:$ANVIL_PORT" --ws-url "ws://127.0.0.1:$ANVIL_PORT" \
  --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --cluster-id local --genesis config/genesis-local.json \
  --metrics-addr "127.0.0.1:$METRICS_PORT" >"$DATA/logs/publisher.log" 2>&1 &
pids+=($!)

rpc() { curl -s -H 'content-type: application/json' "http://127.0.0.1:$ANVIL_PORT" \
  --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"; }
ACCOUNTS=(0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 \
  0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC 0x90F79bf6EB2c4f870365E785982E1f101E93b906)
# A contract for the traffic to call: it stores the first word of its calldata in slot 0 and emits it as a
# log with topic 0x00..0c4771e (init code, then runtime: CALLDATALOAD, SSTORE, MSTORE, LOG1).
TOPIC0="$(printf '%064x' 0xc4771e)"
CODE="0x603180600b6000396000f3600035806000556000527f${TOPIC0}60206000a100"
DEPLOY=$(rpc eth_sendTransaction "[{\"from\":\"${ACCOUNTS[0]}\",\"data\":\"$CODE\"}]" | sed -n 's/.*"result":"\(0x[0-9a-f]*\)".*/\1/p')
CONTRACT=""
for _ in $(seq 50); do
  CONTRACT=$(rpc eth_getTransactionReceipt "[\"$DEPLOY\"]" | sed -n 's/.*"contractAddress":"\(0x[0-9a-fA-F]*\)".*/\1/p')
  [ -n "$CONTRACT" ] && break
  sleep 0.2
done
[ -n "$CONTRACT" ] || { echo "deploying the traffic contract failed; see $DATA/logs/anvil.log" >&2; exit 1; }

# Traffic: a transfer every 0.7 s from anvil's unlocked dev accounts, and every other time a contract call.
(
  i=0
  while true; do
    from=${ACCOUNTS[$(( i % 4 ))]}
    to=$(printf '0x%040x' $(( 0xbeef00 + i % 16 )))
    rpc eth_sendTransaction "[{\"from\":\"$from\",\"to\":\"$to\",\"value\":\"0x$((i + 1))\"}]" || true
    if (( i % 2 == 0 )); then
      rpc eth_sendTransaction "[{\"from\":\"$from\",\"to\":\"$CONTRACT\",\"data\":\"0x$(printf '%064x' "$i")\"}]" || true
    fi
    i=$(( i + 1 ))
    sleep 0.7
  done
) >/dev/null 2>&1 &
pids+=($!)

# The replicas' polling-filter table (eth_newFilter): DynamoDB's API from moto, as the stacks give them
# DynamoDB, so that a filter polled through the balancer continues on either replica.
python3 scripts/moto-server.py "$MOTO_PORT" >"$DATA/logs/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break; sleep 0.1; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local

# Replica 2 also checks every block's prior values against its own state (--verify-priors).
for r in 1 2; do
  verify=(); [ "$r" = 2 ] && verify=(--verify-priors)
  "$BIN" replica "${verify[@]}" --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --data-dir "$DATA/replica-$r" \
    --health-addr "127.0.0.1:$(( HEALTH_BASE + r ))" --rpc-addr "127.0.0.1:$(( RPC_BASE + r ))" \
    --filter-store dynamodb --filter-table "filters-$RUN" --filter-create-table \
    --snapshot-dir "$DATA/snapshots" >"$DATA/logs/replica-$r.log" 2>&1 &
  pids+=($!)
done

"$BIN" balancer --listen "127.0.0.1:$RPC_BASE" \
  --backend "http://127.0.0.1:$((RPC_BASE + 1)),http://127.0.0.1:$((HEALTH_BASE + 1))/health/ready" \
  --backend "http://127.0.0.1:$((RPC_BASE + 2)),http://127.0.0.1:$((HEALTH_BASE + 2))/health/ready" \
  >"$DATA/logs/balancer.log" 2>&1 &
pids+=($!)

echo "RPC        http://127.0.0.1:$RPC_BASE   <- use this: the balancer, routing to ready replicas only"
echo "           (status http://127.0.0.1:$RPC_BASE/balancer/status, metrics /balancer/metrics)"
echo "replicas   rpc http://127.0.0.1:$((RPC_BASE + 1)), http://127.0.0.1:$((RPC_BASE + 2)) (HTTP + websocket)"
echo "health     http://127.0.0.1:$((HEALTH_BASE + 1))/health/ready, http://127.0.0.1:$((HEALTH_BASE + 2))/health/ready"
echo "metrics    http://127.0.0.1:$((HEALTH_BASE + 1))/metrics, http://127.0.0.1:$((HEALTH_BASE + 2))/metrics, publisher http://127.0.0.1:$METRICS_PORT/metrics"
echo "anvil      http://127.0.0.1:$ANVIL_PORT (the execution client; traffic contract $CONTRACT)"
echo "broker     127.0.0.1:$PORT (topic $TOPIC)"
echo "data       $DATA (logs in $DATA/logs)"
echo "snapshot   $BIN snapshot --admin-url http://127.0.0.1:$((HEALTH_BASE + 1))   (into $DATA/snapshots)"
echo "new replica from it: $BIN replica --brokers 127.0.0.1:$PORT --topic $TOPIC --data-dir $DATA/replica-3 \\"
echo "             --from-snapshot $DATA/snapshots/<name> --rpc-addr 127.0.0.1:$((RPC_BASE + 3)) --health-addr 127.0.0.1:$((HEALTH_BASE + 3))"
echo "Ctrl-C stops everything."
while true; do
  line=""
  for r in 1 2; do
    body=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$(( HEALTH_BASE + r ))/health/ready" || true)
    code=${body##* }
    head=$(sed -n 's/.*"head_block":\([0-9]*\).*/\1/p' <<<"$body")
    lag=$(sed -n 's/.*"lag_records":\([0-9]*\).*/\1/p' <<<"$body")
    case "$code" in 200) state=ready ;; 503) state="not ready" ;; *) state=starting ;; esac
    line="$line | replica-$r: $state, head ${head:--}, lag ${lag:--} records"
  done
  printf '\r%s   ' "${line:3}"
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo; echo "a process exited; see $DATA/logs"; exit 1; }
  done
  sleep 1
done
