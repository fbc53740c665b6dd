#!/usr/bin/env bash
# Times `forge update` of a recipe whose lock file holds one package at an
# older version, as after a security advisory, and prints the change list.
#
# Usage: scripts/bench-update.sh RECIPE PACKAGE [OUTPUT_DIR]
#
# The recipe must have been built once, so that its lock file exists. The
# script edits the lock's version of PACKAGE, so forge update reports that
# one package as changed. The mirror itself is unchanged, so the stage cache
# still has the bootstrap. A real update on the mirror changes its package
# indexes, so the bootstrap then runs again.
set -euo pipefail

recipe=$1
package=$2
out=${3:-/tmp/forge-bench-update}
forge=${FORGE:-target/release/forge}
name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$recipe" | head -n 1)
lock="$(dirname "$recipe")/$name.lock"
if [ ! -f "$lock" ]; then
  echo "bench-update.sh: no lock file $lock; build the recipe first" >&2
  exit 2
fi

# Give PACKAGE an older version in the lock: the line after its name.
awk -v pkg="$package" '
  $0 == "name = \"" pkg "\"" { found = 1; print; next }
  found && /^version = / { print "version = \"0.0.0-0\""; found = 0; next }
  { print }
' "$lock" > "$lock.edited"
mv "$lock.edited" "$lock"

rm -rf "$out"
start=$(date +%s.%N)
"$forge" update "$recipe" --output "$out" 2> /dev/null | sed -n '/^packages:/,$p'
end=$(date +%s.%N)
printf 'wall time %.1f s\n' "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')"
