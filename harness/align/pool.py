"""The worker pool both alignment front ends run on: one Aligner per process, work in order.

    init_worker(config)                        # in this process (workers=1), or
    run_pool(jobs, config, workers, write, work)   # `work(job)` in `workers` spawned processes,
                                               # results handed to `write` in job order
Workers parse, validate and align; the driver only reads input and writes output. Results cross
process boundaries as plain values (no exception objects).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable

from harness.align.api import AlignConfig, Aligner

_ALIGNER: Aligner | None = None
_CONTEXT: Any = None


def init_worker(config: AlignConfig, context: Any = None, long_lived: bool = False) -> None:
    """Build this process's Aligner (the student tokenizer loads once per process) and keep
    `context` (read-only data every job needs, sent once per worker, not once per job)."""
    global _ALIGNER, _CONTEXT
    _ALIGNER, _CONTEXT = Aligner(config), context
    if long_lived:  # a pool worker: keep the tokenizer/vocabulary out of every cyclic-GC pass
        import gc
        import signal

        gc.freeze()
        # Ctrl-C goes to the whole process group: the driver stops the pool and reports once;
        # workers must not each print a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def aligner() -> Aligner:
    if _ALIGNER is None:
        raise RuntimeError("align.pool.init_worker() was not called in this process")
    return _ALIGNER


def context() -> Any:
    return _CONTEXT


def run_pool(jobs: Iterable[Any], config: AlignConfig, workers: int, write: Callable[[Any], None], work: Callable[[Any], Any],
             context: Any = None) -> None:
    """`work` each job in `workers` processes (a bounded window in flight); `write` results in job order.
    One worker: in this process, no pool."""
    if workers <= 1:
        init_worker(config, context)
        for job in jobs:
            write(work(job))
        return
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(config, context, True))
    pending: collections.deque = collections.deque()
    try:
        for job in jobs:
            pending.append(pool.apply_async(work, (job,)))
            if len(pending) >= 4 * workers:
                write(pending.popleft().get())
        while pending:
            write(pending.popleft().get())
    finally:
        pool.terminate()
        pool.join()
