#!/usr/bin/env bash
# Installs what building and testing Ether Cattle needs on a fresh Debian machine. Idempotent: each step is
# skipped when its result is already there, so the test and local-cluster commands can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# C toolchain pieces for the -sys crates: bindgen (rocksdb) needs libclang; rdkafka's bundled librdkafka
# builds with TLS (MSK) and zstd; zlib for libz-sys.
# curl: the local cluster's traffic generator and status line.
# podman, buildah, runc: CI builds and runs the replica image (replica-image/ci-image-test.sh; crun fails on
# hybrid cgroups, so runc). python3-pip: cfn-lint and pytest for the CloudFormation checks. jq: the instances'
# user data, which the template tests run in bash.
packages=(build-essential pkg-config cmake libclang-dev libssl-dev zlib1g-dev curl podman buildah runc python3-pip jq)
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

# Apache Kafka 4.x (KRaft), the tests' and the local cluster's broker (docs/testing.md): its jars resolved from
# Maven Central by scripts/kafka/pom.xml into the cache, run with the machine's JDK by scripts/kafka-broker.sh.
KAFKA_VERSION="4.1.1"
KAFKA_LIBS="$HOME/.cache/kafka/$KAFKA_VERSION/libs"
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "setup: installing a JDK and Maven"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi
if ! [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  echo "setup: resolving Apache Kafka $KAFKA_VERSION from Maven Central (about a minute, once)"
  rm -rf "$KAFKA_LIBS.partial"
  mvn -q -B -f scripts/kafka/pom.xml -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.partial"
  rm -rf "$KAFKA_LIBS" && mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
fi

# geth, the most deployed execution client: the publisher and conformance tests follow it. Built once with
# the Go toolchain from the Go module proxy into the cache (about 5 minutes on 2 cores).
GETH_VERSION="v1.17.10"
GETH_ROOT="$HOME/.cache/geth/$GETH_VERSION"
if ! [ -x "$GETH_ROOT/bin/geth" ]; then
  command -v go >/dev/null 2>&1 || { echo "setup: Go is needed to build geth (https://go.dev/dl)" >&2; exit 1; }
  echo "setup: building geth $GETH_VERSION with go install (about 5 minutes, once)"
  GOBIN="$GETH_ROOT/bin" go install "github.com/ethereum/go-ethereum/cmd/geth@$GETH_VERSION"
fi
mkdir -p "$HOME/.cache/geth/bin"
ln -sf "$GETH_ROOT/bin/geth" "$HOME/.cache/geth/bin/geth"

# anvil, the Ethereum execution client the publisher tests follow (static binary from the npm registry).
ANVIL_ROOT="$HOME/.cache/anvil"
if ! [ -x "$ANVIL_ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ]; then
  echo "setup: installing anvil 1.7.1 from npm"
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq npm >/dev/null; }
  mkdir -p "$ANVIL_ROOT"
  npm install --silent --prefix "$ANVIL_ROOT" @foundry-rs/anvil-linux-amd64@1.7.1 >/dev/null
fi

# Python tools from PyPI, for the python3 on PATH (pip only when something is missing):
# - cfn-lint, pytest and parliament (IAM policy linter) for the CloudFormation checks (infra/);
# - confluent-kafka (librdkafka's Python client): tests/kafka_grants.rs creates the template's ACLs with it;
# - moto, the AWS API emulator: the functions' tests start its server, the infra deploy test uses it in process;
# - cargo-lambda (with zig) to build the Lambda functions (functions/README.md).
# The RPC clients the tests drive against the balancer (ethers v6, viem), pinned by the lock file.
if ! [ -d tests/clients/node_modules/ethers ] || ! [ -d tests/clients/node_modules/viem ] \
    || [ tests/clients/package-lock.json -nt tests/clients/node_modules/.package-lock.json ]; then
  echo "setup: installing the test clients (ethers, viem) from npm"
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq npm >/dev/null; }
  npm ci --silent --no-audit --no-fund --prefix tests/clients >/dev/null
fi

pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "$@"
}
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-pip >/dev/null
fi
if ! python3 -c 'import cfnlint, pytest, moto.server, flask, boto3, parliament, confluent_kafka' >/dev/null 2>&1 || ! command -v cfn-lint >/dev/null 2>&1; then
  echo "setup: installing cfn-lint, pytest, moto, boto3, parliament (the IAM policy linter) and confluent-kafka"
  pip_install cfn-lint pytest 'moto[server,cloudformation]==5.2.1' boto3 'parliament==1.6.4' 'confluent-kafka==2.6.1'
fi
cargo lambda --version >/dev/null 2>&1 || { echo "setup: installing cargo-lambda"; pip_install 'cargo-lambda==1.9.2'; }

# cfn-guard (the project's guard rules, infra/guard): the static Linux binary that AWS's own npm package
# @cdklabs/cdk-validator-cfnguard ships, unpacked into the cache (a download, where building it from crates.io
# took 3 minutes).
GUARD_ROOT="$HOME/.cache/cfn-guard"
if ! [ -x "$GUARD_ROOT/bin/cfn-guard" ]; then
  echo "setup: installing cfn-guard from the npm registry"
  rm -rf "$GUARD_ROOT/pack" && mkdir -p "$GUARD_ROOT/pack" "$GUARD_ROOT/bin"
  (cd "$GUARD_ROOT/pack" && npm pack --silent @cdklabs/cdk-validator-cfnguard@0.0.62 >/dev/null \
    && tar xzf ./*.tgz package/bin/ubuntu/x86_64/cfn-guard)
  install -m 0755 "$GUARD_ROOT/pack/package/bin/ubuntu/x86_64/cfn-guard" "$GUARD_ROOT/bin/cfn-guard"
  rm -rf "$GUARD_ROOT/pack"
fi
