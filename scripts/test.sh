#!/usr/bin/env bash
# The test command (README.md): set-up, formatting, lints, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ec-target}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The Lambda functions as deployed: one release build of all three (they share dependencies). `--compiler
# cargo` builds natively for x86_64; see functions/README.md for arm64 with zig.
cargo lambda build --release --locked --compiler cargo -p ec-snapshot -p ec-retention-guard -p ec-scaler

# Infrastructure: the templates lint clean, pass the project's guard rules, and pass their tests.
cfn-lint infra/shared.yaml infra/cluster.yaml
"$HOME/.cache/cfn-guard/bin/cfn-guard" validate --rules infra/guard --data infra/shared.yaml --data infra/cluster.yaml
python3 -m pytest -q infra/tests

# The replica image: built FROM scratch with podman, run against a broker, healthy, stops cleanly on SIGTERM.
./replica-image/ci-image-test.sh
