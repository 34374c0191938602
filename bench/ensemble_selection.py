"""Ensemble selection: the best single trial vs greedy selection from the best one vs from
the best two (Caruana's sorted initialisation, automl's default), on real searches.

For each dataset (bench/datasets.py) it runs the default search (the data-aware space,
3-minute budget) with the ensemble off, has the kept trials (the top 3) predict the
validation and test splits, saves those probabilities, and prints each rule's choice and
its test accuracy. ``--probs DIR`` re-scores saved probabilities without searching.

    PYTHONPATH=. python bench/ensemble_selection.py [--only photos textures tiny_photos]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from automl.ensemble import _rank, _scores, greedy_selection  # noqa: E402
from bench.datasets import as_source, automl_split  # noqa: E402


def search_probs(name: str, root: Path) -> Path:
    """Run the default search on ``name``; save its kept trials' val/test probabilities."""
    import keras

    import automl

    src = as_source(name, root / "data")
    b, _ = automl_split(src)
    automl.search(
        src,
        ensemble=0,
        experiment=name,
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        workdir=str(root / "work"),
        verbose=0,
    )
    out = {}
    for p in sorted((root / "work" / name / "checkpoints").glob("trial_*.keras")):
        m = keras.models.load_model(p, safe_mode=True, compile=False)
        out[f"{p.stem}__val"] = m.predict(b.x_val, verbose=0)
        out[f"{p.stem}__test"] = m.predict(b.x_test, verbose=0)
    path = root / f"{name}_probs.npz"
    np.savez(path, yv=b.y_val, yt=b.y_test, **out)
    return path


def score(path: Path, top: int = 3) -> dict[str, float]:
    """Each rule's test accuracy on the saved probabilities of one search (top ``top`` trials)."""
    z = np.load(path)
    yv, yt = z["yv"], z["yt"]
    ids = sorted({k.split("__")[0] for k in z.files if "__" in k})
    pv = [z[f"{i}__val"].astype(np.float64) for i in ids]
    pt = [z[f"{i}__test"].astype(np.float64) for i in ids]
    order = sorted(range(len(ids)), key=lambda i: _rank(_scores(pv[i], yv), "val_accuracy"))
    order = order[::-1][:top]
    pv, pt, ids = [pv[i] for i in order], [pt[i] for i in order], [ids[i] for i in order]
    single = _scores(pv[0], yv)
    acc = lambda p: float(np.mean(p.argmax(1) == yt))  # noqa: E731
    rows = {"best single trial": acc(pt[0])}
    print(
        f"{path.stem}: kept trials by val accuracy",
        [(i, round(_scores(p, yv)["val_accuracy"], 4)) for i, p in zip(ids, pv)],
    )
    for init in (1, 2):
        prefix = greedy_selection(pv, yv, init=init)
        c = Counter(prefix)
        mix_v = sum(c[i] / len(prefix) * pv[i] for i in c)
        kept = len(c) > 1 and _rank(_scores(mix_v, yv), "val_accuracy") > _rank(
            single, "val_accuracy"
        )
        test = (
            acc(sum(c[i] / len(prefix) * pt[i] for i in c)) if kept else rows["best single trial"]
        )
        label = f"greedy from the best {init}"
        rows[label] = test
        print(
            f"  {label}: members {[ids[i] for i in sorted(c)]}, val "
            f"{_scores(mix_v, yv)['val_accuracy']:.4f}, kept {kept}, test {test:.4f}"
        )
    print(f"  best single trial {ids[0]}: test {rows['best single trial']:.4f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=["photos", "textures", "tiny_photos"])
    ap.add_argument("--probs", default=None, help="a folder of saved NAME_probs.npz: no search")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-ens-") as tmp:
        root = Path(a.probs or tmp)
        table = {}
        for name in a.only:
            path = root / f"{name}_probs.npz"
            if not a.probs:
                path = search_probs(name, root)
            table[name] = score(path)
    rules = list(next(iter(table.values())))
    print("\n| rule | " + " | ".join(table) + " | mean |")
    print("|---" * (len(table) + 2) + "|")
    for r in rules:
        vals = [table[n][r] for n in table]
        print(f"| {r} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} |")


if __name__ == "__main__":
    main()
