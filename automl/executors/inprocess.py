"""Trials in the search's own process, one at a time (a one-trial search, ``trials_per_worker=0``)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from automl.data import DataBundle
from automl.executors import register_executor
from automl.executors.base import Executor, TrialJob, WorkerSetup, done_future
from automl.executors.runner import build_context, run_job


@register_executor("inprocess")
class InProcessExecutor(Executor):
    """Runs each job in :meth:`submit`; the result keeps the trained model in memory."""

    slots = 1
    in_process = True

    def __init__(self):
        self.ctx = None

    def bind(self, setup: WorkerSetup, data: DataBundle) -> InProcessExecutor:
        self.ctx = None
        return super().bind(setup, data)

    def start(self) -> dict[str, Any]:
        from automl.accelerator import setup_accelerator

        accel = setup_accelerator(self.setup.mixed_precision, self.setup.xla)
        # The embedding cache lives in memory here (no folder: nobody else reads it).
        self.setup.embedding_dir = None
        self.ctx = build_context(self.setup, self.data)
        return accel

    def submit(self, job: TrialJob) -> Future:
        self.ctx.on_progress = self.on_epoch
        return done_future(run_job(job, self.ctx))

    def close(self, kill: bool = False) -> None:
        if self.ctx is not None and self.ctx.embeddings is not None:
            self.ctx.embeddings.clear()
