"""Evaluation stage: lm-eval runs of the spec tasks, and replay scoring of recorded generations.

Within `harness`, only this stage imports lm_eval (lazily, inside functions).
"""
