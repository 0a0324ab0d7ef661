#!/usr/bin/env bash
# Installs what building and testing Ether Cattle needs on a fresh Debian machine. Idempotent: each step is
# skipped when its result is already there, so the test and local-cluster commands can call it every time.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# C toolchain pieces for the -sys crates: bindgen (rocksdb) needs libclang; rdkafka's bundled librdkafka
# builds with TLS (MSK) and zstd; zlib for libz-sys.
# curl: the local cluster's traffic generator and status line.
# podman, buildah, runc: CI builds and runs the replica image (replica-image/ci-image-test.sh; crun fails on
# hybrid cgroups, so runc). python3-pip: cfn-lint and pytest for the CloudFormation checks.
packages=(build-essential pkg-config cmake libclang-dev libssl-dev zlib1g-dev curl podman buildah runc python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Rust lint tools ship with the default toolchain profile; add them if this toolchain lacks them.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# tansu, an independent Kafka-protocol broker the tests start (docs/testing.md). Built once into the cache.
TANSU_ROOT="$HOME/.cache/tansu"
if ! [ -x "$TANSU_ROOT/bin/tansu" ]; then
  echo "setup: building tansu 0.6.0 from crates.io (about 8 minutes, once)"
  CARGO_TARGET_DIR="$TANSU_ROOT/target" cargo install tansu --version 0.6.0 --locked --features libsql \
    --root "$TANSU_ROOT" --quiet
  rm -rf "$TANSU_ROOT/target"
fi

# anvil, the Ethereum execution client the publisher tests follow (static binary from the npm registry).
ANVIL_ROOT="$HOME/.cache/anvil"
if ! [ -x "$ANVIL_ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ]; then
  echo "setup: installing anvil 1.7.1 from npm"
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq npm >/dev/null; }
  mkdir -p "$ANVIL_ROOT"
  npm install --silent --prefix "$ANVIL_ROOT" @foundry-rs/anvil-linux-amd64@1.7.1 >/dev/null
fi

# Python tools from PyPI, for the python3 on PATH (pip only when something is missing):
# - cfn-lint and pytest for the CloudFormation checks (infra/);
# - moto, the AWS API emulator: the functions' tests start its server, the infra deploy test uses it in process;
# - cargo-lambda (with zig) to build the Lambda functions (functions/README.md).
pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "$@"
}
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-pip >/dev/null
fi
if ! python3 -c 'import cfnlint, pytest, moto.server, flask, boto3' >/dev/null 2>&1 || ! command -v cfn-lint >/dev/null 2>&1; then
  echo "setup: installing cfn-lint, pytest, moto and boto3"
  pip_install cfn-lint pytest 'moto[server,cloudformation]==5.2.1' boto3
fi
cargo lambda --version >/dev/null 2>&1 || { echo "setup: installing cargo-lambda"; pip_install 'cargo-lambda==1.9.2'; }

# cfn-guard (the project's guard rules, infra/guard), built once into the cache (about 3 minutes).
GUARD_ROOT="$HOME/.cache/cfn-guard"
if ! [ -x "$GUARD_ROOT/bin/cfn-guard" ]; then
  echo "setup: building cfn-guard from crates.io (about 3 minutes, once)"
  CARGO_TARGET_DIR="$GUARD_ROOT/target" cargo install cfn-guard --locked --root "$GUARD_ROOT" --quiet
  rm -rf "$GUARD_ROOT/target"
fi
