#!/usr/bin/env bash
# Install what is missing, build Sen, and run a local 3-node cluster with
# embedded defaults: data and logs under ./sen-demo, gRPC on
# 127.0.0.1:7101-7103, HTTP (health, metrics) on 127.0.0.1:8101-8103.
# Ctrl-C stops every node cleanly; running it again resumes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p sen-cli
exec ./target/release/sen demo --dir "${SEN_DEMO_DIR:-sen-demo}" "$@"
