#!/usr/bin/env bash
# Runs every Molecule scenario on the simulated cluster, one after another (they
# share the bridge and the machine names), and tears the cluster down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# CI runs the scenarios proven green end to end with `molecule test`; the others
# run by name: scripts/molecule.sh network ... (see docs/testing.md for their status).
scenarios=("$@")
if ((${#scenarios[@]} == 0)); then
    scenarios=(sim_dp single_node multi_node_dp network pd_1p1d proxy_failover weights upgrade host_tuning)
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
