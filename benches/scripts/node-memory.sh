#!/bin/bash
# Resident memory of a 3-node `sen demo` cluster (release, TLS, defaults)
# at start, right after and 20 s after a `sen site push` of TREE, and its
# peak during a `sen backup create` of the whole cluster to a local
# encrypted repository. Used for docs/benchmarks.md (issue 17, sixth step).
#
#   benches/scripts/node-memory.sh [SEN_BINARY] [TREE]
#
# Defaults: target/release/sen, the toolchain's documentation. Uses ports
# 7301-7303 and 8301-8303 and a scratch folder under /tmp.
set -eu
SEN=${1:-target/release/sen}
TREE=${2:-$(rustc --print sysroot)/share/doc}
D=$(mktemp -d /tmp/sen-node-memory-XXXXXX)
EPS=127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303
"$SEN" demo --dir "$D" --detach --port 7301 --http-port 8301 --endpoints "$EPS" >"$D/demo.out" 2>&1 ||
    { cat "$D/demo.out"; exit 1; }
export SEN_CA=$D/certs/ca.pem SEN_TOKEN_FILE=$D/admin.token SEN_ENDPOINTS=$EPS
pids() { cat "$D"/*.pid; }
stop() {
    local p
    for p in $(pids); do kill "$p" 2>/dev/null || true; done
    for p in $(pids); do while kill -0 "$p" 2>/dev/null; do sleep 0.5; done; done
}
trap stop EXIT
mib() { echo $(($(awk "/^$1:/{print \$2}" "/proc/$2/status") / 1024)); }
rss() { for p in $(pids); do printf "node pid %s: %s MiB (peak %s)  " "$p" "$(mib VmRSS "$p")" "$(mib VmHWM "$p")"; done; echo; }
echo "at start:          $(rss)"
"$SEN" site create docs >/dev/null
/usr/bin/time -f "push: %e s" "$SEN" site push docs "$TREE" 2>&1 | tail -2
echo "after the push:    $(rss)"
sleep 20
echo "20 s later:        $(rss)"
curl -s --cacert "$SEN_CA" -H "Authorization: Bearer $(cat "$SEN_TOKEN_FILE")" https://127.0.0.1:8301/metrics |
    grep -E '^sen_store_memory_bytes' || true
printf 'node-memory-bench' >"$D/pw"
"$SEN" backup init --repo "file://$D/backups/repo" --password-file "$D/pw" >/dev/null
for p in $(pids); do echo 5 >"/proc/$p/clear_refs"; done
/usr/bin/time -f "backup: %e s" "$SEN" backup create --repo "file://$D/backups/repo" --password-file "$D/pw" 2>&1 | tail -2
echo "peak during backup: $(rss)"
stop
trap - EXIT
rm -rf "$D"
