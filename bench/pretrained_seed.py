"""One pretrained trial, the data-aware space's seed configuration and variants of it.

Trains ``automl.trial.run_trial`` directly (no search) on one dataset of bench/datasets.py
with the default space's pretrained seed (plus label smoothing 0.1, weight decay 0.01,
cosine schedule, phase-2 LR factor 0.1, as the default space fixes them), then each variant
(``LABEL:key=value,key=value``), for each seed; prints validation and test accuracy, the
seconds, the phase-2 guard's tag and the per-epoch validation accuracy.

    PYTHONPATH=. python bench/pretrained_seed.py textures 0,1 "seed:" "noaug:augment=none" \
        "noaug_ft5:augment=none,fine_tune_epochs=5"
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from automl.autospace import default_space_dict, describe  # noqa: E402
from automl.embeddings import EmbeddingCache  # noqa: E402
from automl.trial import TrialConfig, run_trial  # noqa: E402
from bench.datasets import as_source, automl_split  # noqa: E402

name = sys.argv[1]
seeds = [int(s) for s in sys.argv[2].split(",")]
variants = {}
for a in sys.argv[3:]:
    label, _, kv = a.partition(":")
    variants[label] = {k: yaml.safe_load(v) for k, v in (p.split("=") for p in kv.split(",") if p)}
tmp = Path(tempfile.mkdtemp())
src = as_source(name, tmp)
b, native = automl_split(src)
d = default_space_dict(describe(b, native))
base = dict(d["seed_trials"][[s["family"] for s in d["seed_trials"]].index("pretrained")])
base.update(label_smoothing=0.1, weight_decay=0.01, lr_schedule="cosine", fine_tune_lr_factor=0.1)
cache = EmbeddingCache()  # phase 1 on cached features, as in a search
for label, ch in variants.items():
    for s in seeds:
        cfg = TrialConfig.from_values({**base, **ch})
        t0 = time.time()
        out = run_trial(cfg, b, embeddings=cache, seed=s)
        p = np.asarray(out.model.predict(b.x_test, verbose=0))
        acc = float(np.mean(p.argmax(1) == b.y_test))
        vals = [(h.get("phase"), round(h.get("val_accuracy", 0), 3)) for h in out.history]
        print(
            f"{name} {label} seed{s}: val {out.metrics.get('val_accuracy'):.4f} test {acc:.4f} "
            f"{time.time() - t0:.0f}s tags={out.tags} hist={vals}",
            flush=True,
        )
