#!/usr/bin/env bash
# CI's image test (scripts/test.sh): build the replica image FROM scratch (Dockerfile.ci: the built binary, the
# shared libraries it links, CA certificates, uid 10001) and run it against a genuine Apache Kafka broker:
# it must start, pass its own HEALTHCHECK (ready: caught up, publisher records flowing), serve JSON-RPC, and on
# SIGTERM (`podman stop`) exit 0 well before the kill timeout, leaving a database the `status` command reads.
#
# No Docker engine here: rootful podman with --storage-driver vfs and --runtime runc (crun fails on this host's
# hybrid cgroups); storage under ~/.cache/ec-podman so it never mixes with another podman configuration.
# Any failure fails the test: a missing podman is an error, never a skip.
#
#   replica-image/ci-image-test.sh            (uses $CARGO_TARGET_DIR/debug/ether-cattle, building it if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ec-target}"
BIN="${EC_IMAGE_BIN:-$CARGO_TARGET_DIR/debug/ether-cattle}"
IMAGE="localhost/ether-cattle:ci"
NAME="ec-image-test-$$"
STOP_TIMEOUT=30

fail() { echo "image test: FAIL: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman is not installed (scripts/setup.sh installs podman, buildah, runc)"
command -v runc >/dev/null || fail "runc is not installed"
[ "$(id -u)" -eq 0 ] || fail "rootful podman needed (run as root)"

if [ -z "${EC_IMAGE_BIN:-}" ]; then cargo build --locked -p ether-cattle --quiet; fi
[ -x "$BIN" ] || fail "no binary at $BIN"

STORE="$HOME/.cache/ec-podman"
PODMAN=(podman --root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs --runtime runc
  --cgroup-manager cgroupfs --events-backend file)
WORK="$(mktemp -d /tmp/ec-image-test.XXXXXX)"
broker_pid=""
synth_pid=""
cleanup() {
  set +e
  "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1
  [ -n "$synth_pid" ] && kill "$synth_pid" 2>/dev/null
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free port below the kernel's ephemeral range: a port the OS hands out for port 0 can be taken by an outgoing
# connection (the broker's, the synthetic log's) before the container binds it (ec_testkit::free_port, same idea).
free_port() {
  python3 - <<'PY'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
top = lo if lo >= 12000 else 32768
for _ in range(2000):
    port = random.randrange(10000, top)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}

# ---- 1. rootfs: the binary, what it links, CA certificates, the non-root user --------------------------------
t0=$(date +%s)
ROOTFS="$WORK/ctx/rootfs"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/ssl/certs" "$ROOTFS/data" "$ROOTFS/tmp"
cp "$BIN" "$ROOTFS/usr/local/bin/ether-cattle"
strip "$ROOTFS/usr/local/bin/ether-cattle" 2>/dev/null || true
# Every library ldd resolves and the loader, as plain files at the paths ldd prints (cp -L: the host's
# symlinks, e.g. /lib64 -> /lib/x86_64-linux-gnu, would dangle in the image).
ldd "$BIN" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}' | while read -r lib; do
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
done
[ -e "$ROOTFS/lib64/ld-linux-x86-64.so.2" ] || fail "the loader was not copied (ldd output changed?)"
[ -e /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/nonexistent\nether-cattle:x:10001:10001::/data:/nonexistent\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nether-cattle:x:10001:\n' >"$ROOTFS/etc/group"
chown 10001:10001 "$ROOTFS/data"
chmod 1777 "$ROOTFS/tmp"
cp replica-image/Dockerfile.ci "$WORK/ctx/Dockerfile"

# ---- 2. build ----------------------------------------------------------------------------------------------
"${PODMAN[@]}" build --quiet --format docker --pull=never -t "$IMAGE" "$WORK/ctx" >/dev/null \
  || fail "podman build failed"
t1=$(date +%s)
size=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}')
health=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Config.Healthcheck.Test}} {{.Config.User}} {{.Config.StopSignal}}')
echo "image test: built $IMAGE in $((t1 - t0))s ($((size / 1000000)) MB): healthcheck/user/stop signal: $health"
case "$health" in *healthcheck*10001:10001*SIGTERM*) ;; *) fail "image config lost its healthcheck, user or stop signal";; esac

# ---- 3. a broker and a stand-in publisher -------------------------------------------------------------------
KPORT=$(free_port)
./scripts/kafka-broker.sh "$WORK/broker" "$KPORT" "$(free_port)" >"$WORK/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
TOPIC="image-test"
"$BIN" create-topics --brokers "127.0.0.1:$KPORT" --topic "$TOPIC" >/dev/null || fail "topics not created"
"$BIN" synth-log --brokers "127.0.0.1:$KPORT" --topic "$TOPIC" --records 50 --follow-interval-ms 500 \
  >"$WORK/synth.log" 2>&1 &
synth_pid=$!

# ---- 4. run the image: data on a mounted volume, configuration from EC_* variables --------------------------
HPORT=$(free_port)
RPORT=$(free_port)
mkdir -p "$WORK/data"
chown 10001:10001 "$WORK/data"
# --health-interval disable: no systemd here to run the timer; the loop below runs the HEALTHCHECK itself.
"${PODMAN[@]}" run -d --name "$NAME" --network host \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --health-interval disable \
  -v "$WORK/data:/data" \
  -e EC_KAFKA_BROKERS="127.0.0.1:$KPORT" -e EC_TOPIC="$TOPIC" \
  -e EC_HEALTH_ADDR="127.0.0.1:$HPORT" -e EC_RPC_ADDR="127.0.0.1:$RPORT" \
  -e EC_HEALTHCHECK_URL="http://127.0.0.1:$HPORT/health/ready" -e EC_DRAIN_SECS=2 \
  "$IMAGE" replica >/dev/null 2>"$WORK/run.err" || { cat "$WORK/run.err" >&2; fail "podman run failed"; }
t2=$(date +%s)

healthy=""
for _ in $(seq 120); do
  state=$("${PODMAN[@]}" inspect "$NAME" --format '{{.State.Status}}')
  [ "$state" = running ] || { "${PODMAN[@]}" logs "$NAME" | tail -20 >&2; fail "container is $state"; }
  # The image's own HEALTHCHECK command, run inside the container.
  if "${PODMAN[@]}" healthcheck run "$NAME" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.5
done
[ -n "$healthy" ] || { "${PODMAN[@]}" logs "$NAME" | tail -20 >&2; fail "never healthy (ready) within 60s"; }
t3=$(date +%s)
echo "image test: container healthy (caught up, ready) $((t3 - t2))s after start"

# The JSON-RPC port answers from inside the container's network namespace (host network).
answer=$("$BIN" healthcheck --url "http://127.0.0.1:$HPORT/admin/position") || fail "no position"
echo "image test: position $answer"
for _ in $(seq 40); do
  rpc=$(python3 - "$RPORT" <<'EOF' 2>/dev/null || true
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}", data=json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode(),
    headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=3))["result"])
EOF
)
  [ -n "$rpc" ] && break
  sleep 0.5
done
[ -n "$rpc" ] || fail "JSON-RPC did not answer eth_blockNumber"
echo "image test: eth_blockNumber $rpc"

# ---- 5. SIGTERM: podman stop sends the image's STOPSIGNAL, then SIGKILL after $STOP_TIMEOUT s ----------------
# A request is in flight when the signal arrives (its body half sent): it must still be answered. Readiness
# turns 503 at once; RPC keeps serving for EC_DRAIN_SECS (2 s here) while the load balancer moves away, then
# new connections are refused, and the process exits 0.
t4=$(date +%s%N)
python3 - "$RPORT" "$HPORT" "$WORK/stop.err" "$STOP_TIMEOUT" "$NAME" "${PODMAN[@]}" <<'PY' || fail "SIGTERM was not graceful"
import socket, subprocess, sys, time, urllib.error, urllib.request
port, hport, err, timeout, name, podman = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
body = b'{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber","params":[]}'
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST / HTTP/1.1\r\nHost: replica\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
          % len(body) + body[:12])
time.sleep(0.3)
with open(err, "w") as e:
    stop = subprocess.Popen(podman + ["stop", "-t", timeout, name], stdout=subprocess.DEVNULL, stderr=e)
# podman delivers the signal once its own start-up is done: poll until readiness says 503 (draining).
deadline = time.time() + 10
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{hport}/health/ready", timeout=2)
    except urllib.error.HTTPError as e:
        if e.code != 503:
            sys.exit(f"readiness answered {e.code} after SIGTERM, not 503")
        print("image test: readiness 503 while draining")
        break
    if time.time() > deadline:
        sys.exit("readiness still answers 200 10 s after SIGTERM")
    time.sleep(0.1)
s.sendall(body[12:])
s.settimeout(10)
answer = b""
while b'"id":7' not in answer:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
if b'"result"' not in answer:
    sys.exit(f"the in-flight request was not answered: {answer[-200:]!r}")
print("image test: the request in flight at SIGTERM was answered")
deadline = time.time() + 15
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        print("image test: new connections refused once drained")
        break
    if time.time() > deadline:
        sys.exit("new connections still accepted 15 s after SIGTERM")
    time.sleep(0.2)
if stop.wait() != 0:
    sys.exit(open(err).read() + "podman stop failed")
PY
t5=$(date +%s%N)
code=$("${PODMAN[@]}" inspect "$NAME" --format '{{.State.ExitCode}}')
stop_ms=$(( (t5 - t4) / 1000000 ))
"${PODMAN[@]}" logs "$NAME" 2>&1 | tail -3
[ "$code" = 0 ] || fail "exit code $code after SIGTERM (137 = killed after the timeout)"
[ "$stop_ms" -lt $((STOP_TIMEOUT * 1000)) ] || fail "took ${stop_ms}ms to stop"
echo "image test: SIGTERM -> exit 0 in ${stop_ms}ms"

# The database on the volume was closed cleanly: the host's binary opens it and reads the applied position.
status=$("$BIN" status --data-dir "$WORK/data") || fail "status cannot read the volume's database"
case "$status" in "position sequence"*) ;; *) fail "unexpected status: $status";; esac
echo "image test: volume after stop: $status"

"${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1
"${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
echo "image test: PASS (build $((t1 - t0))s, total $(( $(date +%s) - t0 ))s)"
