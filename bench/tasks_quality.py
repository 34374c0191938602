"""The default search on the issue-18 sets (bench/datasets.py TASK_DATASETS), as a user runs it.

Each set is written as PNGs + ``labels.csv`` (bench.datasets.write_table) and searched with the
README's command, ``automl search --data labels.csv`` (the default space and 3-minute budget;
``--task regression`` for ``count``, whose integer targets would otherwise be classes), as a
subprocess. The split is the one bench/tasks_baselines.py and bench/tasks_recipe.py score on
(automl.data.splits.task_split, seed 0, 70/15/15), so the printed test figures compare with
theirs (bench/tasks_baselines.txt, bench/tasks_recipe.txt).

    python -m bench.tasks_quality [--only rotation count mosaic_tags tiny_photos_imbalanced]
                                  [--seed 0] [--imbalance-ab]

``--imbalance-ab``: the imbalanced set is searched twice, as above and without the imbalance
handling (the same command with ``automl.imbalance.WEIGHTS_ABOVE`` set to infinity in the
search's process, so the data-aware space leaves out the ``class_weight`` hyperparameter and
its seed trials weigh no class): the issue's A/B on balanced accuracy.

The imbalanced set's own test split holds only ~5 images of the rare class (one image moves
balanced accuracy by ~2 points), so each imbalanced search is also scored on a **held-out
balanced set**: ``--held-out N`` (default 300) fresh crops per class of the same photos
(``tiny_photos(per_class=N, seed=HELD_OUT_SEED)``, a generator seed the searched set does not
use), predicted with the search's exported best model (``automl export --format keras``, then
``automl.predict.predict``). The imbalance stays in the data the search trains, validates and
selects on; only this extra scoring set is balanced, as a user's deployment data would be.
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
HELD_OUT_SEED = 1001  # tiny_photos_imbalanced is drawn with seed 1
SHOWN = {
    "regression": ("test_mae", "test_rmse", "test_r2"),
    "multilabel": ("test_macro_f1", "test_micro_f1", "test_auc"),
    "classification": ("test_accuracy", "test_balanced_accuracy"),
}


# The search's own process with the imbalance handling off (see the module docstring).
NO_IMBALANCE_HANDLING = (
    "import runpy, sys; import automl.imbalance as i; i.WEIGHTS_ABOVE = float('inf'); "
    "sys.argv = ['automl', *sys.argv[1:]]; runpy.run_module('automl', run_name='__main__')"
)


def held_out_score(where: Path, work: Path, per_class: int) -> str:
    """Balanced accuracy (and each class's recall) of the search in ``where`` on the held-out
    balanced set (see the module docstring)."""
    import numpy as np

    from automl.predict import predict
    from bench.datasets import tiny_photos, write_table

    x, y, names = tiny_photos(per_class=per_class, seed=HELD_OUT_SEED)
    root = work / f"held_out_{per_class}"
    if not (root / "labels.csv").exists():
        write_table(x, y, names, "classification", root)
    paths = [str(root / "images" / f"{i:05d}.png") for i in range(len(y))]
    model = where / "best.keras"
    if not model.exists():
        subprocess.run(
            [sys.executable, "-m", "automl", "export", "--format", "keras", "--output", str(model)],
            cwd=where, check=True, capture_output=True,
        )  # fmt: skip
    got = [r["predictions"][0]["label"] for r in predict(paths, str(model), top_k=1)]
    pred = np.asarray([names.index(g) for g in got])
    recall = [float(np.mean(pred[y == c] == c)) for c in range(len(names))]
    return (
        f"held-out balanced set ({per_class} per class): balanced accuracy "
        f"{np.mean(recall):.4f}, accuracy {np.mean(pred == y):.4f}, recall per class "
        + " ".join(f"{r:.3f}" for r in recall)
    )


def run(name: str, work: Path, seed: int = 0, handling: bool = True, held_out: int = 0) -> None:
    from mlflow.tracking import MlflowClient

    from bench.datasets import TASK_DATASETS, write_table

    x, y, names, task = TASK_DATASETS[name]()
    if not (work / name / "labels.csv").exists():
        write_table(x, y, names, task, work / name)
    csv = work / name / "labels.csv"
    cmd = (
        [sys.executable, "-m", "automl"]
        if handling
        else [sys.executable, "-c", NO_IMBALANCE_HANDLING]
    )
    cmd += ["search", "--data", str(csv), "-q", "--seed", str(seed)]
    cmd += TASK_FLAG.get(name, [])
    if name == "tiny_photos_imbalanced":
        cmd += ["--objective", "val_balanced_accuracy"]
    where = work / name / f"seed{seed}{'' if handling else '-unweighted'}"
    where.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=where, capture_output=True, text=True)
    took = time.time() - t0
    if proc.returncode:
        print(f"{name}: automl search failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        return
    client = MlflowClient(f"sqlite:///{where / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("automl")
    parent = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'search'")[0]
    m, tags = parent.data.metrics, parent.data.tags
    scores = "  ".join(f"{k} {m[k]:.4f}" for k in SHOWN[task] if k in m)
    trials = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'trial'")
    arm = "" if handling else ", imbalance handling off"
    print(
        f"{name} ({task}, seed {seed}{arm}): {scores}  | {len(trials)} trials, winner "
        f"{tags.get('automl.best_trial_id')}, {took / 60:.1f} min whole process"
    )
    objective = parent.data.params.get("objective", "")
    for t in sorted(trials, key=lambda r: r.info.start_time):
        p, tm = t.data.params, t.data.metrics
        # the best epoch's value (what the search ranks by), else the last epoch's
        best = tm.get(f"best_{objective}", tm.get(objective))
        val = f"{objective} {best:.4f}" if best is not None else ""
        what = ", ".join(
            f"{k.rpartition('.')[2]} {p[k]}"
            for k in sorted(p)
            if k.rpartition(".")[2] in ("family", "image_size", "fine_tune_depth", "augment",
                                        "class_weight", "head_epochs", "epochs")
        )  # fmt: skip
        print(f"    trial {t.data.tags.get('automl.trial_id', '?')}: {what}  {val}")
    if held_out and name == "tiny_photos_imbalanced":
        print(f"    {held_out_score(where, work, held_out)}", flush=True)


def main() -> None:
    from bench.datasets import TASK_DATASETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=list(TASK_DATASETS), choices=list(TASK_DATASETS))
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="the searches' --seed")
    ap.add_argument("--imbalance-ab", action="store_true",
                    help="the imbalanced set also without the imbalance handling")  # fmt: skip
    ap.add_argument("--held-out", type=int, default=300,
                    help="the imbalanced set's searches also scored on N per class (0: not)")  # fmt: skip
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-tasks-") as tmp:
        for name in args.only:
            for seed in args.seed:
                run(name, Path(tmp), seed, held_out=args.held_out)
                if args.imbalance_ab and name == "tiny_photos_imbalanced":
                    run(name, Path(tmp), seed, handling=False, held_out=args.held_out)


if __name__ == "__main__":
    main()
