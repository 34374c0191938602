"""How trial jobs run: one small interface (:mod:`automl.executors.base`), one module each.

- ``inprocess``: in the search's own process;
- ``process``: in one worker process, recycled every few trials;
- ``ray``: up to N at once on a Ray runtime (local, or a cluster).
"""

from __future__ import annotations

import importlib

from automl.executors.base import Executor, JobFailure, JobResult, TrialJob, WorkerSetup


def executor_class(kind: str) -> type[Executor]:
    """The executor in module ``automl.executors.<kind>`` (its ``EXECUTOR``), imported only
    now: Ray is imported only when asked for. A new executor is one new module."""
    return importlib.import_module(f"automl.executors.{kind}").EXECUTOR


__all__ = [
    "Executor",
    "JobFailure",
    "JobResult",
    "TrialJob",
    "WorkerSetup",
    "executor_class",
]
