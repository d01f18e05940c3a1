#!/usr/bin/env bash
# Install what is missing, build Sen, and run a local 3-node cluster with
# embedded defaults: data, logs, TLS certificates and the first admin's
# token under ./sen-demo, gRPC on 127.0.0.1:7101-7103, HTTPS (sites,
# health, metrics) on 127.0.0.1:8101-8103. It prints the SEN_CA and
# SEN_TOKEN_FILE lines that let `sen` commands use them.
# Ctrl-C stops every node cleanly; running it again resumes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p sen-cli
exec ./target/release/sen demo --dir "${SEN_DEMO_DIR:-sen-demo}" "$@"
