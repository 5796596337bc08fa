#!/usr/bin/env bash
# What a user sees when paitasks builds an OpenPAI tree on an engine that cannot pull.
#
#   bench/openpai_failures.sh OPENPAI_ROOT [extra doit arguments...]
#
# Copies OPENPAI_ROOT (the folder holding src/) to a temp folder, runs
#   python -m doit -f $DODO --dir COPY -n 4 --continue build src=COPY/src variant=k8s ...
# in a network namespace of its own (`unshare -n`: hooks reach nothing; the engine is
# reached over its unix socket), builds with PAI_BUILD_NETWORK=none unless set (so no
# RUN step can reach out either), then prints a table about the output and keeps the
# output and report.json. DODO defaults to /work/main/dodo.py; PYTHONPATH is its folder.
set -euo pipefail

[[ $# -ge 1 && -d ${1:-}/src ]] || { echo "usage: $0 OPENPAI_ROOT [doit args...]" >&2; exit 2; }
root=$(cd "$1" && pwd)
shift
dodo=$(realpath "${DODO:-/work/main/dodo.py}")
python=${PYTHON:-python3}
unshare -n true || { echo "unshare -n does not work here: not running" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/openpai-failures.XXXXXX")
tree=$work/tree
out=$work/output.txt
trap 'rm -rf "$tree"' EXIT
cp -a "$root/." "$tree"
rm -rf "$tree/.paitasks"  # a cold run: none of the checkout's state

cd "$work"  # python -m puts the working folder on sys.path: not a paitasks checkout
start=$(date +%s.%N)
rc=0
PYTHONPATH=$(dirname "$dodo") PAI_BUILD_NETWORK=${PAI_BUILD_NETWORK:-none} \
    unshare -n "$python" -m doit -f "$dodo" --dir "$tree" -n 4 --continue \
    build src="$tree/src" variant=k8s "$@" >"$out" 2>&1 || rc=$?
end=$(date +%s.%N)
[[ -f $tree/.paitasks/report.json ]] && cp "$tree/.paitasks/report.json" "$work/"

summary=$(grep -nE '^[0-9]+ images:' "$out" | tail -1 | cut -d: -f1 || true)
statuses=$("$python" -c '
import collections, json, sys
try:
    images = json.load(open(sys.argv[1]))["images"]
except (OSError, ValueError, KeyError):
    sys.exit(print("(no report.json)"))
counts = collections.Counter(e.get("status", "push only") for e in images.values())
print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))' "$work/report.json")

printf '%-32s %s\n' \
    "exit code" "$rc" \
    "wall seconds" "$(awk "BEGIN { printf \"%.1f\", $end - $start }")" \
    "output lines" "$(wc -l <"$out")" \
    "images in report.json" "$statuses" \
    "lines after the summary table" "$([[ -n $summary ]] && echo $(($(wc -l <"$out") - summary)) || echo "no summary")" \
    "BuildKit preamble lines" "$(grep -cE '^[ |]*(#0 building with|#[0-9]+ \[internal\] load)' "$out" || true)" \
    "doit failure blocks (########)" "$(grep -c '^########' "$out" || true)" \
    "output" "$out"
