"""Search throughput on the demo data with the default space: trials per minute on this machine.

.venv/bin/python bench/throughput.py [--trials 6] [--tuner bayesian] [--trials-per-worker 10]

``--trials-per-worker 0`` runs the trials in this process instead of worker processes, to
see what the isolation costs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common  # noqa: F401  (path and quiet logs)

import automl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--tuner", default="bayesian")
    ap.add_argument("--trials-per-worker", type=int, default=10)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = automl.search(
            data="demo",
            space="default",
            max_trials=a.trials,
            tuner=a.tuner,
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            workdir=tmp,
            experiment="throughput",
            trials_per_worker=a.trials_per_worker,
            verbose=0,
        )
        dt = time.perf_counter() - t0
        n = int((r.leaderboard()["status"] == "FINISHED").sum())
    print(
        f"{n} trials ({a.tuner}, default space, trials per worker {a.trials_per_worker}) in "
        f"{dt:.0f}s on {os.cpu_count()} CPU cores: "
        f"{60 * n / dt:.2f} trials/minute; best test_accuracy {r.test_metrics['test_accuracy']:.3f}"
    )


if __name__ == "__main__":
    main()
