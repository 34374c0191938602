"""What the regression seed trial of the default space is chosen from: a linear head on frozen
EfficientNet-Lite0 features, per image size, epochs, learning rate and loss.

On the regression sets of bench/datasets.py (TASK_DATASETS) and the split automl makes
(automl.data.splits.task_split, seed 0): the pooled features of the frozen backbone at
``--sizes`` are computed once, then ``Dropout(0.2) -> Dense(1)`` is trained on standardised
targets as a search trial's phase 1 trains it (AdamW, weight decay 1e-2, the cosine schedule
with one warm-up epoch, batch 32) or as the hand-written recipe does (bench/tasks_recipe.py:
Adam 1e-3, constant); the epoch with the best validation MAE is kept. Prints validation and
test MAE, the mean of 2 seeds (``--seeds``). The figures behind
automl.families.pretrained._regression_part.

    python -m bench.tasks_regression_head [--only rotation count] [--sizes 128 224]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import _common  # noqa: F401  (path and quiet logs)

# label: (epochs, learning rate, AdamW + cosine as a trial (else the recipe's Adam), loss)
CONFIGS = {
    "recipe: Adam 1e-3, 20 epochs, MSE": (20, 1e-3, False, "mse"),
    "trial: 10 epochs at 1e-3, MSE (classification's seed)": (10, 1e-3, True, "mse"),
    "trial: 40 epochs at 1e-3, MSE": (40, 1e-3, True, "mse"),
    "trial: 40 epochs at 1e-3, Huber": (40, 1e-3, True, "huber"),
    "trial: 40 epochs at 3e-3, MSE (regression's seed)": (40, 3e-3, True, "mse"),
    "trial: 40 epochs at 3e-3, Huber": (40, 3e-3, True, "huber"),
}


def _head(task, f, y, y_enc, tr, va, te, epochs, lr, as_trial, loss, seed):
    import keras

    from automl import metrics as m

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((f.shape[1],))
    model = keras.Model(inputs, task.head()(keras.layers.Dropout(0.2)(inputs)))
    per = int(np.ceil(len(tr) / 32))
    if as_trial:
        warm = min(per, epochs * per // 5)
        lr_at = keras.optimizers.schedules.CosineDecay(
            lr / 10, epochs * per - warm, alpha=0.01, warmup_target=lr, warmup_steps=warm
        )
        opt = keras.optimizers.AdamW(lr_at, weight_decay=1e-2)
    else:
        opt = keras.optimizers.Adam(lr)
    model.compile(opt, loss=loss)
    best = [np.inf, None]

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            score = m.mae(y[va], task.decode(self.model.predict(f[va], verbose=0)))
            if score < best[0]:
                best[:] = [score, self.model.get_weights()]

    model.fit(f[tr], y_enc[tr], epochs=epochs, batch_size=32, verbose=0, callbacks=[KeepBest()])
    model.set_weights(best[1])
    return best[0], m.mae(y[te], task.decode(model.predict(f[te], verbose=0)))


def main() -> None:
    from automl.data.splits import task_split
    from automl.tasks import resolve_task
    from bench.datasets import TASK_DATASETS
    from bench.tasks_recipe import _embed

    regression = ["rotation", "count"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=regression, choices=regression)
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 224])
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    for name in args.only:
        x, y, _, kind = TASK_DATASETS[name]()
        task = resolve_task(y, kind)
        y_enc = task.encode(y)
        tr, va, te = task_split(y_enc, kind, seed=0)
        for size in args.sizes:
            t0 = time.perf_counter()
            f = _embed(x, size)
            print(f"\n{name}, {size} px ({time.perf_counter() - t0:.0f} s of features)")
            print(f"  {'head':55s} {'val MAE':>8s} {'test MAE':>9s}")
            for label, cfg in CONFIGS.items():
                runs = [_head(task, f, y, y_enc, tr, va, te, *cfg, s) for s in range(args.seeds)]
                v, t = np.mean(runs, axis=0)
                print(f"  {label:55s} {v:8.3f} {t:9.3f}", flush=True)


if __name__ == "__main__":
    main()
