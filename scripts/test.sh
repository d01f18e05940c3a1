#!/usr/bin/env bash
# Install what is missing, then run the whole test suite:
#  1. rustfmt and clippy (warnings denied, every target);
#  2. cargo test: unit tests (golden bytes of every persisted format, the
#     module layering of sen-node, restores and drill reports on in-memory
#     states), openraft's storage suite on our RocksDB store, the
#     linearizability checker cross-checked against stateright, an
#     in-process 3-node cluster, and the multi-process cluster tests (real
#     `sen` processes on 127.0.0.x);
#  3. the chaos smoke suite: 8 fault scenarios against real processes
#     (kill -9, SIGSTOP, partitions, one-way links, snapshot catch-up,
#     corrupted log tail, full disk), each checked for lost writes,
#     linearizability and convergence (docs/reliability.md).
# One build profile (dev); set CARGO_TARGET_DIR to reuse a build cache kept
# elsewhere. SEN_CHAOS_SEED picks the smoke suite's seed (default fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo build --locked -p sen-cli -p sen-chaos
target="${CARGO_TARGET_DIR:-target}"
"$target/debug/sen-chaos" run --suite smoke --seed "${SEN_CHAOS_SEED:-20261127}" \
  --sen "$target/debug/sen" --out "$target/chaos-smoke"
