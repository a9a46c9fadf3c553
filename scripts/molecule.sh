#!/usr/bin/env bash
# Runs every Molecule scenario on the simulated cluster, one after another (they
# share the bridge and the machine names), and tears the cluster down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
scenarios=("$@")
if ((${#scenarios[@]} == 0)); then
    for dir in molecule/*/; do scenarios+=("$(basename "$dir")"); done
fi
trap '.venv/bin/python sim/simctl down >/dev/null 2>&1 || true' EXIT
failed=()
for scenario in "${scenarios[@]}"; do
    echo "=== molecule test -s $scenario"
    start=$SECONDS
    if molecule test -s "$scenario"; then
        echo "=== $scenario passed in $((SECONDS - start)) s"
    else
        echo "=== $scenario FAILED after $((SECONDS - start)) s"
        failed+=("$scenario")
    fi
done
echo "molecule: $(( ${#scenarios[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
