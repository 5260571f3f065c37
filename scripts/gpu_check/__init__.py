"""Every GPU number in one run: `bash scripts/gpu_check.sh` on a bare, offline GPU machine.

Parts (`parts.py`) run one after another, each in its own process with a hard time limit, writing
under one output folder; `promote` turns that folder into reports/ pages and the kernel baseline.
Docs: reports/kernels/README.md ("Docs").
"""
