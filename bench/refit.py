"""Refit on train + validation vs the trial as the search keeps it, one family's seed trial.

For each dataset (bench/datasets.py) and seed: the data-aware space's seed trial of the
family, trained as in a search (train split, best epoch by validation), then refit as
``automl.refit`` does (train + validation, the same schedules stopped after that best
epoch, no early stopping); prints the test accuracy of both and the seconds.

    PYTHONPATH=. python bench/refit.py pretrained 0,1 textures photos tiny_photos
    PYTHONPATH=. python bench/refit.py scratch 0,1 digits textures tiny_photos
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from automl.autospace import default_space_dict, describe  # noqa: E402
from automl.embeddings import EmbeddingCache  # noqa: E402
from automl.trial import TrialConfig, full_data, refit_epochs, run_trial  # noqa: E402
from bench.datasets import as_source, automl_split  # noqa: E402


def test_accuracy(model, b) -> float:
    p = np.asarray(model.predict(b.x_test.astype("float32"), batch_size=64, verbose=0))
    return float(np.mean(p.argmax(1) == b.y_test))


family, seeds, names = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], sys.argv[3:]
import tempfile  # noqa: E402

tmp = Path(tempfile.mkdtemp())
rows = []
for name in names:
    b, native = automl_split(as_source(name, tmp / "data"))
    d = default_space_dict(describe(b, native))
    seed_cfg = [s for s in d["seed_trials"] if s["family"] == family][0]
    cfg = TrialConfig.from_values(seed_cfg)
    cache = EmbeddingCache()
    for s in seeds:
        t0 = time.time()
        out = run_trial(cfg, b, embeddings=cache, seed=s)
        t1 = time.time()
        acc = test_accuracy(out.model, b)
        epochs = refit_epochs(out.metrics["best_epoch"])
        ref = run_trial(cfg, full_data(b), embeddings=cache, seed=s, stop_after=epochs)
        t2 = time.time()
        racc = test_accuracy(ref.model, b)
        rows.append((name, s, acc, racc))
        print(
            f"{name} {family} seed {s}: train only {acc:.4f} ({t1 - t0:.0f} s, best epoch "
            f"{int(out.metrics['best_epoch'])}) | refit on train + validation {racc:.4f} "
            f"({t2 - t1:.0f} s, {epochs} epochs)",
            flush=True,
        )
a, r = np.mean([x[2] for x in rows]), np.mean([x[3] for x in rows])
up = sum(x[3] > x[2] for x in rows)
down = sum(x[3] < x[2] for x in rows)
print(f"mean test accuracy: train only {a:.4f} | refit {r:.4f} ({up} better, {down} worse)")
