#!/usr/bin/env bash
# Install what is missing, then run the whole test suite: unit tests,
# openraft's storage suite on our RocksDB store, and the multi-process
# cluster tests (real `sen` processes on 127.0.0.x). One build profile
# (dev); set CARGO_TARGET_DIR to reuse a build cache kept elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo test --workspace --locked
