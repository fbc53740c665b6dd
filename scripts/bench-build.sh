#!/usr/bin/env bash
# Times `forge build` of a recipe, step by step, and records forge's own
# peak memory (VmHWM of the forge process, children excluded).
#
# Usage: scripts/bench-build.sh RECIPE cold|warm [OUTPUT_DIR]
#   cold: an empty package cache folder, so every package is downloaded
#   warm: the cache folder $FORGE_CACHE_DIR (default /var/cache/forge),
#         filled by an earlier build: packages, and build stages when the
#         recipe's stages are unchanged since
set -euo pipefail

recipe=$1
mode=$2
out=${3:-/tmp/forge-bench-out}
forge=${FORGE:-target/release/forge}

case "$mode" in
  cold) cache=$(mktemp -d /tmp/forge-bench-cache.XXXXXX) ;;
  warm) cache=${FORGE_CACHE_DIR:-/var/cache/forge} ;;
  *) echo "bench-build.sh: mode must be cold or warm, not $mode" >&2; exit 2 ;;
esac

rm -rf "$out"
log=$(mktemp /tmp/forge-bench-log.XXXXXX)
start=$(date +%s.%N)
"$forge" build "$recipe" --output "$out" --cache-dir "$cache" 2> "$log" > /dev/null &
pid=$!
peak=0
while kill -0 "$pid" 2> /dev/null; do
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2> /dev/null || true)
  if [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ]; then peak=$hwm; fi
  sleep 0.5
done
status=0
wait "$pid" || status=$?
end=$(date +%s.%N)

grep -E '^\[[0-9]+/[0-9]+\] .*: (done|reused|failed)' "$log" || true
printf 'exit status %s, wall time %.1f s, forge peak memory %d MiB\n' \
  "$status" "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" "$((peak / 1024))"
if [ "$mode" = cold ]; then rm -rf "$cache"; fi
rm -f "$log"
