"""A fourth executor, in one file outside automl: trials on one background thread of the
search's process. Importing this module registers it as ``"thread"``."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from automl.executors import Executor, TrialJob, register_executor


@register_executor("thread")
class ThreadExecutor(Executor):
    """Runs each job on a background thread, one at a time."""

    in_process = True

    def __init__(self, label: str = "contract"):
        self.label = label
        self.pool: ThreadPoolExecutor | None = None
        self.ctx = None

    def start(self) -> dict[str, Any]:
        from automl.accelerator import setup_accelerator
        from automl.executors.runner import build_context

        accel = setup_accelerator(self.setup.mixed_precision, self.setup.xla)
        self.setup.embedding_dir = None  # in memory: nobody else reads it
        self.ctx = build_context(self.setup, self.data, where={"automl.executor": self.label})
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="automl-trial")
        return accel

    def submit(self, job: TrialJob) -> Future:
        from automl.executors.runner import run_job

        self.ctx.on_progress = self.on_epoch
        return self.pool.submit(run_job, job, self.ctx)

    def close(self, kill: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=not kill, cancel_futures=True)
            self.pool = None
