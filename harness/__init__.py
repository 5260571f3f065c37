"""Reference harness for specializing small language models towards multi-step reasoning.

Stages (data → teacher → align → formats → train → eval → report) hand off through files
on disk; the core modules here (config, records, answers, manifest) import no stage.
"""

__version__ = "0.1.0"
