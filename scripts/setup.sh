#!/usr/bin/env bash
# Create .venv with the pinned stack (CPU build of torch 2.13.0) and install this repo editable.
# Uses uv when available (installs it with pip if not); honours pip's configured --find-links,
# which is where a local CPU torch wheel lives on machines that have one.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install --quiet uv
fi
UV=$(command -v uv || echo "$PY -m uv")

links=()
for fl in $("$PY" -m pip config get global.find-links 2>/dev/null || true); do
  links+=(--find-links "$fl")
done

[ -x .venv/bin/python ] || $UV venv --quiet --python "${VENV_PYTHON:-3.11}" .venv
$UV pip install --quiet --python .venv/bin/python "${links[@]}" -r containers/requirements-cpu.lock
$UV pip install --quiet --python .venv/bin/python --no-deps -e .
# Let the plain `lm_eval --tasks gsm8k_cot_spec …` command find this repo's tasks (reversible:
# `.venv/bin/python -m harness tasks uninstall`).
.venv/bin/python -m harness tasks install
.venv/bin/python -c "import torch, transformers, lm_eval, triton; print('setup ok: torch', torch.__version__, '| transformers', transformers.__version__, '| triton', triton.__version__)"
