#!/usr/bin/env bash
# How much a node logs while its peers are unreachable (issue 14: "logs
# that cannot flood"). Starts a 3-node `sen demo` on ports 7401-7403, then
#   --mode kill       kill -9 nodes 2 and 3 (node 1 sees refused connects)
#   --mode partition  drop every packet to the three gRPC ports with
#                     iptables (root; every node alone, connects time out)
# for SECS seconds, counts each surviving node's log lines and bytes,
# heals (partition mode) and counts the minute after.
#
#   benches/scripts/log-volume.sh target/release/sen --mode partition --secs 600
#
# Needs iptables for --mode partition (scripts/setup.sh --bench installs it).
set -euo pipefail
SEN=${1:?usage: log-volume.sh SEN_BINARY [--mode kill|partition] [--secs N]}
shift
mode=partition secs=600
while (($#)); do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    *) echo "log-volume: unknown option $1" >&2; exit 2 ;;
  esac
done
dir=$(mktemp -d /tmp/sen-log-volume.XXXX)
rule=(INPUT -i lo -p tcp --dport 7401:7403 -j DROP)
cleanup() {
  [ "$mode" = partition ] && iptables -D "${rule[@]}" 2>/dev/null || true
  for p in "$dir"/d/node*.pid; do kill "$(cat "$p")" 2>/dev/null || true; done
  sleep 1
  rm -rf "$dir"
}
trap cleanup EXIT
"$SEN" demo --dir "$dir/d" --port 7401 --http-port 8401 --detach >/dev/null
sleep 8
declare -A lines bytes
count() { for n in $1; do lines[$n]=$(wc -l <"$dir/d/node$n.log"); bytes[$n]=$(wc -c <"$dir/d/node$n.log"); done; }
report() { # phase secs nodes
  for n in $3; do
    local l b
    l=$(wc -l <"$dir/d/node$n.log"); b=$(wc -c <"$dir/d/node$n.log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$1" "$2" "$n" "$((l - lines[$n]))" "$((b - bytes[$n]))"
    lines[$n]=$l; bytes[$n]=$b
  done
}
printf 'mode\tphase\tseconds\tnode\tlines\tbytes\n'
if [ "$mode" = kill ]; then
  kill -9 "$(cat "$dir/d/node2.pid")" "$(cat "$dir/d/node3.pid")"
  count 1
  sleep "$secs"
  report down "$secs" 1
else
  count "1 2 3"
  iptables -I "${rule[@]}"
  sleep "$secs"
  report partitioned "$secs" "1 2 3"
  iptables -D "${rule[@]}"
  sleep 60
  report healed 60 "1 2 3"
fi
