#!/usr/bin/env bash
# compute-sanitizer's four tools over every kernel on small shapes (tails, causal, GQA, Sq != Sk).
# Run on a GPU machine after `pip install .`:  bash benchmarks/sanitize.sh [logdir]
# Every kernel of the process is checked (torch's and cuBLAS's too); the logs name each report's kernel.
set -u
log=${1:-/tmp/attnbench-sanitize}
mkdir -p "$log"
status=0
for tool in memcheck racecheck synccheck initcheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 \
        python3 "$(dirname "$0")/sanitize_cases.py" > "$log/$tool.log" 2>&1
    rc=$?
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log/$tool.log" | tail -1)
    echo "$tool: exit $rc  ${summary:-no summary (see $log/$tool.log)}"
    [ $rc -eq 0 ] || status=1
done
exit $status
