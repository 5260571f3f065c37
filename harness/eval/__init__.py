"""Evaluation stage: lm-eval runs of the spec tasks, and replay scoring of recorded generations.

Within `harness`, only this stage imports lm_eval (lazily, inside functions).
"""

from harness.errors import HarnessError


class EvalSetupError(HarnessError):
    """The run cannot start: unknown task or model, unusable output folder, missing device or backend."""
