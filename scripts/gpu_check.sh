#!/usr/bin/env bash
# Every GPU number in one run, on a bare, offline GPU machine (reports/kernels/README.md, "Docs"):
#   GPU_CHECK_COMMIT=<sha> bash scripts/gpu_check.sh            # all parts, <= 8 min on one H100, into $OUT or runs/gpu_check/<UTC>
#   bash scripts/gpu_check.sh --dry-run                         # the plumbing on CPU (what CI runs)
# Uses the system python3 and this checkout (PYTHONPATH=.); no network, no install. Pure-Python
# wheels carried in .whl/ (liger-kernel) are unpacked into the output folder and put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m scripts.gpu_check "$@"
