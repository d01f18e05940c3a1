#!/usr/bin/env bash
# Fuzz Sen's parsers with cargo-fuzz (libFuzzer, nightly Rust): the targets
# of engine/fuzz (one per parser of untrusted bytes), each until it has run
# --runs inputs or for --time seconds, whichever comes first. New inputs
# that reach new code go into engine/fuzz/corpus/<target>/, which is then
# minimised (cargo fuzz cmin); `cargo test -p sen-fuzz` replays it on
# stable. A crash stops that target and leaves its input in
# engine/fuzz/fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run
# --fuzz-dir engine/fuzz/fuzz <target> <file>).
#
#   scripts/setup.sh --fuzz                   # nightly + cargo-fuzz, once
#   scripts/fuzz.sh                           # every target, 10M runs or 30 min each
#   scripts/fuzz.sh --time 60 site_path txn   # some targets, a minute each
#   scripts/fuzz.sh --parallel 2              # two targets at a time
#
# A summary (target, executions, execs/s, seconds, coverage, corpus size,
# result) is printed and written to target/fuzz/report.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
time=1800
parallel=1
targets=()
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: needs a nightly toolchain and cargo-fuzz: run scripts/setup.sh --fuzz" >&2
  exit 1
fi
fuzz_dir=engine/fuzz/fuzz
out=target/fuzz
mkdir -p "$out/logs"
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^sen-fuzz-targets$')
fi

# One build for every target (release with debug assertions, ASan).
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" --target-dir "$out/build"

run_one() {
  local t=$1 log="$out/logs/$1.log" corpus="engine/fuzz/corpus/$1" started result
  mkdir -p "$corpus"
  started=$(date +%s)
  if cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" --target-dir "$out/build" "$t" "$corpus" -- \
      -runs="$runs" -max_total_time="$time" -max_len=8192 -rss_limit_mb=3072 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and $fuzz_dir/artifacts/$t/)"
  fi
  local secs=$(($(date +%s) - started))
  local execs eps cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1 || true)
  # Keep only the inputs that add coverage, and always the hand-written
  # seeds and the inputs that once crashed (seed-*, regression-*).
  if [ "$result" = ok ]; then
    local keep
    keep=$(mktemp -d)
    find "$corpus" -maxdepth 1 -type f \( -name 'seed-*' -o -name 'regression-*' \) -exec cp {} "$keep"/ \;
    cargo +nightly fuzz cmin --fuzz-dir "$fuzz_dir" --target-dir "$out/build" "$t" "$corpus" >>"$log" 2>&1 || true
    cp "$keep"/* "$corpus"/ 2>/dev/null || true
    rm -rf "$keep"
  fi
  local files
  files=$(find "$corpus" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "${eps:-?}" "$secs" "${cov:-?}" "$files" "$result"
}

report="$out/report.tsv"
printf 'target\texecutions\texecs/s\tseconds\tcoverage\tcorpus files\tresult\n' | tee "$report"
export -f run_one
export out fuzz_dir runs time
printf '%s\n' "${targets[@]}" | xargs -P "$parallel" -I{} bash -c 'run_one "$@"' _ {} | tee -a "$report"
if grep -q CRASH "$report"; then
  exit 1
fi
