#!/usr/bin/env bash
# Install what building and testing Sen needs on Debian 12, idempotently:
# only missing packages are installed, and apt's index is refreshed only
# when something is missing. Needs root (or sudo) for apt.
#
#   libclang-dev       RocksDB's Rust bindings are generated with bindgen
#   protobuf-compiler  protoc, for the gRPC code in proto/
#   build-essential    C/C++ compiler for RocksDB
#   pkg-config, curl   build helpers
#   faketime           libfaketime, for the chaos clock-skew scenarios
#
# With --bench, also what the benchmarks compare against:
#   wrk, nginx-light   HTTP load generator and the web server Sen is
#                      measured against (sen-benches content)
#
# The Rust toolchain itself (cargo >= 1.88) must already be installed:
# Debian's own rustc is too old, and rustup's servers may be unreachable.
set -euo pipefail

need_pkgs=(libclang-dev protobuf-compiler build-essential pkg-config curl faketime)
for arg in "$@"; do
  case "$arg" in
    --bench) need_pkgs+=(wrk nginx-light) ;;
    *) echo "setup: unknown option $arg (only --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${need_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust 1.88 or newer (https://rustup.rs) and retry" >&2
  exit 1
fi
ver=$(rustc --version | awk '{print $2}')
major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 88 ]; }; then
  echo "setup: rustc $ver is too old; Sen needs 1.88 or newer" >&2
  exit 1
fi
