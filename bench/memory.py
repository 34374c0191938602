"""Resident memory across a 20-trial search on the demo data: does it grow?

Prints, after every trial, the resident memory of the search's process and of its trial
worker (the child process that runs trials; it is replaced once its RSS grew 10 % over its
first trial, or after ``--trials-per-worker`` trials), their sum, the PSS sum, and the growth of that sum from trial 3 to trial 20. The figure is
taken when the trial's result arrives, before any recycling, so it includes everything the
worker accumulated. The space varies learning rate, dropout, batch size, image size and
fine-tune depth, so trials build different models, shapes and caches, as in a real search.

    .venv/bin/python bench/memory.py [--trials 20] [--trials-per-worker 10]

``--trials-per-worker 0`` runs every trial in the search's own process (the old behaviour).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import _common

import automl
from automl.search.loop import SearchLoop

SPACE = _common.fixed_space(
    image_size={"choice": [64, 96]},
    learning_rate={"min": 1e-3, "max": 1e-2, "sampling": "log"},
    batch_size={"choice": [32, 64]},
    dropout={"min": 0.0, "max": 0.3},
    fine_tune_depth={"choice": [0.0, 0.1]},
    head_epochs=3,
    fine_tune_epochs=1,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--trials-per-worker", type=int, default=10)
    a = ap.parse_args()
    rss: list[float] = []
    pss: list[float] = []
    real = SearchLoop._collect  # called once each trial has ended

    def collect(self, running):
        import psutil

        out = real(self, running)
        pid = getattr(getattr(self.executor, "worker", None), "pid", None)
        procs = [psutil.Process()] + ([psutil.Process(pid)] if pid else [])
        # RSS counts the TensorFlow libraries both processes map once per process; PSS
        # splits shared pages between them, so the PSS sum is the physical memory used.
        full = [p.memory_full_info() for p in procs]
        parent, child = full[0].rss / 2**20, (full[1].rss / 2**20 if pid else 0.0)
        rss.append(parent + child)
        pss.append(sum(f.pss for f in full) / 2**20)
        print(
            f"trial {len(rss):2d}: RSS search process {parent:7.1f} MiB + worker {child:7.1f} MiB "
            f"(pid {pid}) = {rss[-1]:7.1f} MiB; PSS sum {pss[-1]:7.1f} MiB",
            flush=True,
        )
        return out

    SearchLoop._collect = collect
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        automl.search(
            data="demo",
            space=SPACE,
            max_trials=a.trials,
            tuner="random",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            workdir=tmp,
            experiment="memory",
            trials_per_worker=a.trials_per_worker,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{len(rss)} trials in {time.perf_counter() - t0:.0f}s (trials per worker: "
        f"{a.trials_per_worker}); peak RSS of the search process {peak:.0f} MiB, of the "
        f"largest worker {peak_children:.0f} MiB"
    )
    if len(rss) >= 3:
        print(
            f"RSS (search + worker) after trial 3: {rss[2]:.1f} MiB; after trial {len(rss)}: "
            f"{rss[-1]:.1f} MiB; growth {100 * (rss[-1] / rss[2] - 1):+.1f}%; "
            f"max after trial 3..{len(rss)}: {max(rss[2:]):.1f} MiB "
            f"({100 * (max(rss[2:]) / rss[2] - 1):+.1f}%)"
        )
        print(
            f"PSS sum after trial 3: {pss[2]:.1f} MiB; after trial {len(pss)}: {pss[-1]:.1f} MiB; "
            f"growth {100 * (pss[-1] / pss[2] - 1):+.1f}%; max after trial 3..{len(pss)}: "
            f"{max(pss[2:]):.1f} MiB"
        )


if __name__ == "__main__":
    main()
