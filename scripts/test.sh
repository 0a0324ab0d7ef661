#!/usr/bin/env bash
# The test command (README.md): set-up, formatting, lints, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ec-target}"

cargo fmt --all --check

# Lints and tests in one compilation: clippy-driver compiles the workspace's own crates (with every clippy lint
# as an error, as `cargo clippy --workspace --all-targets -- -D warnings` would) while building the tests, so
# the dependencies are compiled once, not a second time in check mode for a separate clippy pass.
export RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --workspace --locked
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# What the functions' binaries link: glibc only, all the Lambda runtime image is known to carry. The check
# itself must fail on a binary that links more (ether-cattle links libstdc++).
./scripts/check-links.sh "$CARGO_TARGET_DIR"/debug/{snapshot,retention-guard,scaler}
if ./scripts/check-links.sh "$CARGO_TARGET_DIR/debug/ether-cattle" >/dev/null 2>&1; then
  echo "check-links passed a binary that links libstdc++" >&2
  exit 1
fi

# The Lambda functions are compiled and tested above (unit tests, moto and Kafka integration tests). Their
# deployable zips (`cargo lambda build --release`, a cross-target release build of every dependency, ~11
# minutes from cold) are a deploy step, not a test: see functions/README.md. Set EC_TEST_LAMBDA_RELEASE=1 to
# include it here.
if [ "${EC_TEST_LAMBDA_RELEASE:-0}" = "1" ]; then
  cargo lambda build --release --locked --compiler cargo -p ec-snapshot -p ec-retention-guard -p ec-scaler
  ./scripts/check-links.sh "$CARGO_TARGET_DIR"/lambda/{snapshot,retention-guard,scaler}/bootstrap
fi

# Infrastructure: the templates lint clean, pass the project's guard rules, and pass their tests.
cfn-lint infra/shared.yaml infra/cluster.yaml
"$HOME/.cache/cfn-guard/bin/cfn-guard" validate --rules infra/guard --data infra/shared.yaml --data infra/cluster.yaml
python3 -m pytest -q infra/tests

# The replica image: built FROM scratch with podman, run against a broker, healthy, stops cleanly on SIGTERM.
# It takes the binary the tests above ran (a `cargo build -p ether-cattle` of its own would resolve features
# for that package alone and recompile part of the dependency tree).
EC_IMAGE_BIN="$CARGO_TARGET_DIR/debug/ether-cattle" ./replica-image/ci-image-test.sh
