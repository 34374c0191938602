"""The default search on the issue-18 sets (bench/datasets.py TASK_DATASETS), as a user runs it.

Each set is written as PNGs + ``labels.csv`` (bench.datasets.write_table) and searched with the
README's command, ``automl search --data labels.csv`` (the default space and 3-minute budget;
``--task regression`` for ``count``, whose integer targets would otherwise be classes), as a
subprocess. The split is the one bench/tasks_baselines.py and bench/tasks_recipe.py score on
(automl.data.splits.task_split, seed 0, 70/15/15), so the printed test figures compare with
theirs (bench/tasks_baselines.txt, bench/tasks_recipe.txt).

    python -m bench.tasks_quality [--only rotation count mosaic_tags tiny_photos_imbalanced]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _common  # noqa: F401  (path and quiet logs)

TASK_FLAG = {"count": ["--task", "regression"]}
SHOWN = {
    "regression": ("test_mae", "test_rmse", "test_r2"),
    "multilabel": ("test_macro_f1", "test_micro_f1", "test_auc"),
    "classification": ("test_accuracy", "test_balanced_accuracy"),
}


def run(name: str, work: Path) -> None:
    from mlflow.tracking import MlflowClient

    from bench.datasets import TASK_DATASETS, write_table

    x, y, names, task = TASK_DATASETS[name]()
    csv = write_table(x, y, names, task, work / name)
    cmd = [sys.executable, "-m", "automl", "search", "--data", str(csv), "-q"]
    cmd += TASK_FLAG.get(name, [])
    if name == "tiny_photos_imbalanced":
        cmd += ["--objective", "val_balanced_accuracy"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=work / name, capture_output=True, text=True)
    took = time.time() - t0
    if proc.returncode:
        print(f"{name}: automl search failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        return
    client = MlflowClient(f"sqlite:///{work / name / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("automl")
    parent = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'search'")[0]
    m, tags = parent.data.metrics, parent.data.tags
    scores = "  ".join(f"{k} {m[k]:.4f}" for k in SHOWN[task] if k in m)
    trials = len(client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'trial'"))
    print(
        f"{name} ({task}): {scores}  | {trials} trials, winner {tags.get('automl.best_trial_id')}, "
        f"{took / 60:.1f} min whole process"
    )


def main() -> None:
    from bench.datasets import TASK_DATASETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=list(TASK_DATASETS), choices=list(TASK_DATASETS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-tasks-") as tmp:
        for name in args.only:
            run(name, Path(tmp))


if __name__ == "__main__":
    main()
