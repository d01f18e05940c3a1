#!/usr/bin/env bash
# Run a local S3 server (SeaweedFS `weed mini`, installed by ./scripts/setup.sh)
# for trying out and benchmarking S3 backups. Loopback only.
#
#   AWS_ACCESS_KEY_ID=K AWS_SECRET_ACCESS_KEY=S ./scripts/s3-server.sh start PORT DIR
#   ./scripts/s3-server.sh stop DIR
#
# start: S3 on http://127.0.0.1:PORT, checking SigV4 signatures made with
#        those credentials (required: without them SeaweedFS would allow
#        anonymous access). Every other port is set explicitly, PORT+1 to
#        PORT+9 (gRPC included), so nothing collides with SeaweedFS's default
#        ports or its "HTTP port + 10000" gRPC rule. Data, log and pid file go
#        in DIR (created; DIR/data, DIR/weed.log, DIR/weed.pid). Telemetry is
#        off and buckets are not created on upload (as on AWS): create them
#        with any S3 client, e.g.
#          curl -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$K:$S" http://127.0.0.1:PORT/BUCKET
#        Returns once the server answers a signed ListBuckets (about 1 s).
# stop:  SIGTERM, then SIGKILL if it is still running after 20 s (a clean
#        SeaweedFS shutdown takes 3-12 s).
#
# The binary is $SEN_WEED, else ${SEN_TOOLS_DIR:-/opt/sen-tools}/seaweedfs/bin/weed,
# else `weed` on PATH. Reuse the same DIR to keep the data between runs.
set -euo pipefail

usage() {
  echo "usage: $0 start PORT DIR | stop DIR" >&2
  exit 2
}

find_weed() {
  if [ -n "${SEN_WEED:-}" ]; then echo "$SEN_WEED"; return; fi
  local w="${SEN_TOOLS_DIR:-/opt/sen-tools}/seaweedfs/bin/weed"
  if [ -x "$w" ]; then echo "$w"; return; fi
  if command -v weed >/dev/null 2>&1; then command -v weed; return; fi
  echo "s3-server: SeaweedFS is not installed: run ./scripts/setup.sh" >&2
  exit 1
}

# Whether PID is a live weed process (a zombie has an empty cmdline).
alive() {
  kill -0 "$1" 2>/dev/null && [[ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" == *weed* ]]
}

# The pid in DIR/weed.pid if that process is alive and is weed.
running_pid() {
  local pidfile="$1/weed.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && alive "$pid" || return 1
  echo "$pid"
}

port_in_use() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

start() {
  local port="$1" dir="$2"
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65526 ] || {
    echo "s3-server: PORT must be a number from 1024 to 65526 (PORT to PORT+9 are used)" >&2
    exit 2
  }
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
    echo "s3-server: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the credentials the server will accept)" >&2
    exit 2
  fi
  local weed
  weed=$(find_weed)
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  if pid=$(running_pid "$dir"); then
    echo "s3-server: already running in $dir (pid $pid); stop it first" >&2
    exit 1
  fi
  local p
  for p in $(seq "$port" $((port + 9))); do
    if port_in_use "$p"; then
      echo "s3-server: port $p is in use (PORT to PORT+9 must be free)" >&2
      exit 1
    fi
  done
  # weed puts some unix sockets in $TMPDIR: keep them in DIR when the path
  # fits a socket address (108 bytes).
  local tmp="${TMPDIR:-/tmp}"
  if [ "${#dir}" -lt 60 ]; then tmp="$dir"; fi
  TMPDIR="$tmp" nohup "$weed" mini \
    -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -s3.port.grpc=$((port + 1)) \
    -master.port=$((port + 2)) -master.port.grpc=$((port + 3)) \
    -volume.port=$((port + 4)) -volume.port.grpc=$((port + 5)) \
    -filer.port=$((port + 6)) -filer.port.grpc=$((port + 7)) \
    -admin.port=$((port + 8)) -admin.port.grpc=$((port + 9)) \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    -master.telemetry=false -s3.autoCreateBucket=false \
    -s3.localSocket="$tmp/s3-$port.sock" -filer.localSocket="$tmp/filer-$port.sock" \
    </dev/null >>"$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/weed.pid"
  # Ready when a signed ListBuckets succeeds; give up after 30 s.
  local i code
  for i in $(seq 1 300); do
    if ! alive "$pid"; then
      echo "s3-server: weed exited during start-up; the end of $dir/weed.log:" >&2
      tail -n 30 "$dir/weed.log" >&2
      rm -f "$dir/weed.pid"
      exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      "http://127.0.0.1:$port/" || true)
    if [ "$code" = 200 ]; then
      echo "s3-server: SeaweedFS ready at http://127.0.0.1:$port (pid $pid, data in $dir)" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "s3-server: no answer from http://127.0.0.1:$port after 30 s (last HTTP code ${code:-none}); stopping it" >&2
  tail -n 30 "$dir/weed.log" >&2
  stop "$dir"
  exit 1
}

stop() {
  local dir="$1" pid i
  if ! pid=$(running_pid "$dir"); then
    echo "s3-server: not running in $dir" >&2
    rm -f "$dir/weed.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 200); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "s3-server: still running 20 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$dir/weed.pid"
  echo "s3-server: stopped (pid $pid)" >&2
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
