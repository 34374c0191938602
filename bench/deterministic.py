"""Does a seeded search reproduce its trials and scores? What does --deterministic cost?

Runs the same small seeded search (random tuner, 3 trials: one pretrained, two scratch
on the LFW subset) twice without and twice with ``deterministic=True`` (TensorFlow's
deterministic ops), alternating, each in a fresh process and store, and prints every trial's
family, learning rate, val_accuracy / val_loss, whether the two runs match exactly, and the
wall time.

    PYTHONPATH=. python bench/deterministic.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHILD = """
import json, sys
import automl
from bench.datasets import lfw
x, y, _ = lfw()
space = {"seed_trials": [{"family": "pretrained"}],
         "hyperparameters": {"family": {"choice": ["pretrained", "scratch"]},
  "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "batch_size": 32,
  "augment": "light", "weight_decay": 0.01, "lr_schedule": "cosine",
  "pretrained": {"backbone": "efficientnet_lite0", "image_size": 64, "fine_tune_depth": 0.2,
                 "head_epochs": 5, "fine_tune_epochs": 2},
  "scratch": {"image_size": 32, "epochs": 8, "blocks": {"choice": [2, 3]}}}}
r = automl.search(data=(x, y), space=space, max_trials=3, tuner="random", seed=0,
                  trials_per_worker=0, ensemble=0, deterministic=sys.argv[1] == "1")
b = r.leaderboard().sort_values("trial")
print(json.dumps([[str(t), f, round(float(lr), 6), round(float(a), 6), round(float(l), 6)]
                  for t, f, lr, a, l in zip(b["trial"], b["family"], b["learning_rate"],
                                            b["val_accuracy"], b["val_loss"])]))
"""


def run(det: bool) -> tuple[list, float]:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=os.getcwd(), MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/m.db")
        if det and os.environ.get("ONEDNN_OFF"):
            env["TF_ENABLE_ONEDNN_OPTS"] = "0"
        out = subprocess.run(
            [sys.executable, "-c", CHILD, "1" if det else "0"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> None:
    # The two settings alternate (off, on, off, on) so that the other jobs' load on the CPU
    # falls on both alike.
    runs: dict[bool, list] = {False: [], True: []}
    for _ in range(2):
        for det in (False, True):
            runs[det].append(run(det))
            print(f"deterministic={det}: {runs[det][-1][1]:.1f} s, load {os.getloadavg()[0]:.1f}")
    for det in (False, True):
        (a, ta), (b, tb) = runs[det]
        print(f"deterministic={det}: run 1 {ta:.0f} s, run 2 {tb:.0f} s")
        for ra, rb in zip(a, b):
            print(f"  trial {ra[0]}: {ra[1:]} vs {rb[1:]}  {'same' if ra == rb else 'DIFFERENT'}")
        print(f"  identical: {a == b}", flush=True)


if __name__ == "__main__":
    main()
