"""Resident memory across a 20-trial search on the demo data: does it grow?

Prints the process RSS after every trial and the growth from trial 3 to trial 20. The space
varies learning rate, dropout, batch size, image size and fine-tune depth, so trials build
different models, shapes and caches, as in a real search.

    .venv/bin/python bench/memory.py [--trials 20]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import _common

import automl
from automl.search import _Session

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
    a = ap.parse_args()
    rss: list[float] = []
    real = _Session.run_one

    def run_one(self, trial):
        out = real(self, trial)
        rss.append(_common.rss_mb())
        print(f"trial {len(rss):2d}: rss {rss[-1]:7.1f} MiB", flush=True)
        return out

    _Session.run_one = run_one
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
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{len(rss)} trials in {time.perf_counter() - t0:.0f}s; peak RSS of the process {peak:.0f} MiB"
    )
    if len(rss) >= 3:
        print(
            f"RSS after trial 3: {rss[2]:.1f} MiB; after trial {len(rss)}: {rss[-1]:.1f} MiB; "
            f"growth {100 * (rss[-1] / rss[2] - 1):+.1f}%; max after trial 3..{len(rss)}: {max(rss[2:]):.1f} MiB"
        )


if __name__ == "__main__":
    main()
