"""scikit-learn baselines on raw pixels for the issue-18 sets (bench/datasets.py TASK_DATASETS).

The figures the default search must beat, on the split automl makes of the same targets
(automl.data.splits.task_split, seed 0, 70/15/15; the score is on the test split):

* regression (``rotation``, ``count``): predict-the-mean, ``Ridge`` (alpha picked on
  validation) and ``SVR`` (RBF, C picked on validation) on standardised pixels; MAE, RMSE, R2;
* multi-label (``mosaic_tags``): all-positive, one-vs-rest ``LogisticRegression`` (C picked on
  validation) at 0.5 and with per-label thresholds tuned on validation; macro-F1, micro-F1, AUC;
* imbalanced classification (``tiny_photos_imbalanced``): ``LogisticRegression`` without and
  with ``class_weight="balanced"``; accuracy, balanced accuracy, the minority's recall.

    python -m bench.tasks_baselines                  # every set
    python -m bench.tasks_baselines --only count     # one set

Pixels are downscaled to 16 px (768 features); the imbalanced set's LogisticRegression stops
at 300 lbfgs iterations (near convergence) so that the whole run takes a few minutes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import _common  # noqa: F401  (path and quiet logs)


def _features(x: np.ndarray, size: int = 16) -> np.ndarray:
    from PIL import Image

    small = [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in x]
    return np.stack(small).reshape(len(x), -1).astype(np.float64) / 255.0


def _scaled(f, tr):
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(f[tr])
    return sc.transform(f)


def regression(name, x, y):
    from sklearn.linear_model import Ridge
    from sklearn.svm import SVR

    from automl import metrics as m
    from automl.data.splits import task_split

    tr, va, te = task_split(y, "regression", seed=0)
    f = _scaled(_features(x), tr)
    rows = [("predict the mean", np.full(len(te), y[tr].mean()))]
    best = min(
        (m.mae(y[va], Ridge(alpha=a).fit(f[tr], y[tr]).predict(f[va])), a)
        for a in (1, 10, 100, 1000, 10000)
    )
    rows.append((f"Ridge (alpha={best[1]})", Ridge(alpha=best[1]).fit(f[tr], y[tr]).predict(f[te])))
    best = min((m.mae(y[va], SVR(C=c).fit(f[tr], y[tr]).predict(f[va])), c) for c in (1, 10, 100))
    rows.append((f"SVR rbf (C={best[1]})", SVR(C=best[1]).fit(f[tr], y[tr]).predict(f[te])))
    print(f"\n{name} (regression, {len(tr)}/{len(va)}/{len(te)} images, test split)")
    print(f"  {'method':28s} {'MAE':>8s} {'RMSE':>8s} {'R2':>7s}")
    for label, pred in rows:
        print(
            f"  {label:28s} {m.mae(y[te], pred):8.3f} {m.rmse(y[te], pred):8.3f} "
            f"{m.r2(y[te], pred):7.3f}"
        )


def multilabel(name, x, y, names):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from automl import metrics as m
    from automl.data.splits import task_split

    tr, va, te = task_split(y, "multilabel", seed=0)
    f = _scaled(_features(x), tr)

    def fit(c):
        return OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)).fit(f[tr], y[tr])

    best = max((m.macro_f1(y[va], fit(c).predict_proba(f[va]) >= 0.5), c) for c in (0.01, 0.1, 1))
    model = fit(best[1])
    p_va, p_te = model.predict_proba(f[va]), model.predict_proba(f[te])
    t = m.tune_thresholds(y[va], p_va)
    rows = [
        ("all positive", np.ones_like(y[te]), None),
        (f"OvR LogisticRegression (C={best[1]}), 0.5", p_te >= 0.5, p_te),
        ("  + thresholds tuned on val", p_te >= t, p_te),
    ]
    print(f"\n{name} (multi-label, {len(names)} labels, {len(tr)}/{len(va)}/{len(te)} images)")
    print(f"  {'method':40s} {'macro-F1':>9s} {'micro-F1':>9s} {'AUC':>6s}")
    for label, pred, probs in rows:
        auc = f"{m.auc(y[te], probs):6.3f}" if probs is not None else f"{'-':>6s}"
        print(f"  {label:40s} {m.macro_f1(y[te], pred):9.3f} {m.micro_f1(y[te], pred):9.3f} {auc}")


def imbalanced(name, x, y, names):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from automl import metrics as m
    from automl.data.splits import task_split
    from automl.imbalance import imbalance_ratio

    tr, va, te = task_split(y, "classification", seed=0)
    f = _scaled(_features(x), tr)
    minority = int(np.argmin(np.bincount(y)))
    print(
        f"\n{name} (classification, imbalance {imbalance_ratio(y):.0f}:1, minority "
        f"{names[minority]!r}: {int((y[tr] == minority).sum())}/{int((y[va] == minority).sum())}/"
        f"{int((y[te] == minority).sum())} train/val/test)"
    )
    print(f"  {'method':44s} {'accuracy':>9s} {'bal. acc.':>9s} {'minority recall':>16s}")
    for label, weight in (("LogisticRegression", None), ("  class_weight='balanced'", "balanced")):
        with warnings.catch_warnings():  # 300 lbfgs iterations: near, not at, convergence
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=0.1, max_iter=300, class_weight=weight).fit(f[tr], y[tr])
        pred = model.predict(f[te])
        recall = m.per_class_precision_recall(y[te], pred, len(names))[1][minority]
        print(
            f"  {label:44s} {m.accuracy(y[te], pred):9.3f} "
            f"{m.balanced_accuracy(y[te], pred):9.3f} {recall:16.3f}"
        )


def main() -> None:
    from bench.datasets import TASK_DATASETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=list(TASK_DATASETS), choices=list(TASK_DATASETS))
    args = ap.parse_args()
    for name in args.only:
        start = time.perf_counter()
        x, y, names, task = TASK_DATASETS[name]()
        if task == "regression":
            regression(name, x, y)
        elif task == "multilabel":
            multilabel(name, x, y, names)
        else:
            imbalanced(name, x, y, names)
        print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
