#!/usr/bin/env bash
# A cluster started at block N of a synced node, as one path: the runbook's "Starting at block N"
# (docs/operations.md, 1.2a) in the local cluster's terms.
#
#   1. import-state: the node's state at N into a new database, checked against block N's state root
#      (from a `geth snapshot dump` file, or from the node itself over debug_accountRange);
#   2. the lineage's first snapshot: a copy of that database (in AWS: the EBS snapshot of the import volume);
#   3. the cluster's topics, then the publisher with --start-block N: the checkpoint record, then N+1 on;
#   4. replicas, each from a copy of the snapshot: they apply the checkpoint onto the imported state and
#      follow the topic; the script returns once every replica is ready.
#
# The publisher and replicas keep running; their pids are in DATA/pids (stop them: kill $(cat DATA/pids)), their
# logs in DATA/logs.
#
#   scripts/start-at-block.sh --rpc-url URL --block N --brokers HOST:PORT --topic T --cluster-id C --data DIR \
#     (--from-rpc | --geth-dump FILE) --replica RPC_PORT:HEALTH_PORT [--replica ...] [--genesis FILE]
#     [--allow-unfinalized-start]
# BIN (default: ether-cattle on PATH) names the binary; READY_SECS (default 300) how long replicas may take.
set -euo pipefail

BIN=${BIN:-ether-cattle}
READY_SECS=${READY_SECS:-300}
SOURCE=() REPLICAS=() PUBLISHER_EXTRA=()
RPC_URL="" BLOCK="" BROKERS="" TOPIC="" CLUSTER="" DATA=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --rpc-url) RPC_URL=$2; shift 2 ;;
    --block) BLOCK=$2; shift 2 ;;
    --brokers) BROKERS=$2; shift 2 ;;
    --topic) TOPIC=$2; shift 2 ;;
    --cluster-id) CLUSTER=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --from-rpc) SOURCE=(--from-rpc); shift ;;
    --geth-dump) SOURCE=(--geth-dump "$2"); shift 2 ;;
    --replica) REPLICAS+=("$2"); shift 2 ;;
    --genesis) PUBLISHER_EXTRA+=(--genesis "$2"); shift 2 ;;
    --allow-unfinalized-start) PUBLISHER_EXTRA+=(--allow-unfinalized-start); shift ;;
    *) echo "start-at-block: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for v in RPC_URL BLOCK BROKERS TOPIC CLUSTER DATA; do
  [ -n "${!v}" ] || { echo "start-at-block: --$(echo "$v" | tr 'A-Z_' 'a-z-') is required" >&2; exit 2; }
done
[ "${#SOURCE[@]}" -gt 0 ] || { echo "start-at-block: name the state: --from-rpc or --geth-dump FILE" >&2; exit 2; }
[ "${#REPLICAS[@]}" -gt 0 ] || { echo "start-at-block: at least one --replica RPC_PORT:HEALTH_PORT" >&2; exit 2; }
[ ! -e "$DATA/seed" ] || { echo "start-at-block: $DATA already holds a start (remove it to begin again)" >&2; exit 2; }
mkdir -p "$DATA/logs" "$DATA/snapshots"
step() { echo "start-at-block: $*"; }

step "1/4 importing the state of block $BLOCK from $RPC_URL"
"$BIN" import-state --data-dir "$DATA/seed" --block "$BLOCK" --rpc-url "$RPC_URL" "${SOURCE[@]}" \
  >"$DATA/logs/import.log" 2>&1 || { cat "$DATA/logs/import.log" >&2; exit 1; }
tail -1 "$DATA/logs/import.log"

step "2/4 the first snapshot: $DATA/snapshots/block-$BLOCK"
cp -a "$DATA/seed" "$DATA/snapshots/block-$BLOCK"

step "3/4 topics $TOPIC and $TOPIC-tx, and the publisher from block $BLOCK"
"$BIN" create-topics --brokers "$BROKERS" --topic "$TOPIC" >"$DATA/logs/topics.log" 2>&1 \
  || { cat "$DATA/logs/topics.log" >&2; exit 1; }
"$BIN" publisher --brokers "$BROKERS" --topic "$TOPIC" --cluster-id "$CLUSTER" --rpc-url "$RPC_URL" \
  --start-block "$BLOCK" --standby "${PUBLISHER_EXTRA[@]}" >"$DATA/logs/publisher.log" 2>&1 &
echo $! >>"$DATA/pids"

step "4/4 ${#REPLICAS[@]} replica(s) from the snapshot"
i=0
for ports in "${REPLICAS[@]}"; do
  i=$((i + 1))
  rpc=${ports%%:*} health=${ports##*:}
  cp -a "$DATA/snapshots/block-$BLOCK" "$DATA/replica-$i"
  "$BIN" replica --data-dir "$DATA/replica-$i" --brokers "$BROKERS" --topic "$TOPIC" \
    --rpc-addr "127.0.0.1:$rpc" --health-addr "127.0.0.1:$health" >"$DATA/logs/replica-$i.log" 2>&1 &
  echo $! >>"$DATA/pids"
done
deadline=$((SECONDS + READY_SECS))
for ports in "${REPLICAS[@]}"; do
  health=${ports##*:}
  until "$BIN" healthcheck --url "http://127.0.0.1:$health/health/ready" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "start-at-block: the replica on $health was not ready in ${READY_SECS}s; logs in $DATA/logs" >&2
      exit 1
    fi
    sleep 1
  done
done
step "ready: ${#REPLICAS[@]} replica(s) serving from block $BLOCK on (pids in $DATA/pids)"
