"""One-trial searches of one family at several image sizes (the data-aware space's seed).

``automl.search`` with the default space for the dataset, narrowed to one family, its seed
trial at each size, plus ``key=value`` overrides (seed and space); prints val/test accuracy
and the seconds of each search.

    PYTHONPATH=. python bench/one_trial.py textures pretrained 64,96,128
    PYTHONPATH=. python bench/one_trial.py photos pretrained 128 augment=flip
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path

import yaml

import automl
from automl.autospace import default_space_dict, describe
from bench.datasets import as_source, automl_split

name = sys.argv[1]
family = sys.argv[2]
sizes = [int(s) for s in sys.argv[3].split(",")]
extra = dict(a.split("=") for a in sys.argv[4:])
tmp = Path(tempfile.mkdtemp())
src = as_source(name, tmp)
b, native = automl_split(src)
info = describe(b, native)
for size in sizes:
    d = default_space_dict(info)
    seed = [s for s in d["seed_trials"] if s["family"] == family][0]
    seed = dict(seed, image_size=size)
    for k, v in extra.items():
        v = yaml.safe_load(v)
        seed[k] = v
        hp = d["hyperparameters"]
        if k in hp:
            hp[k] = v
        elif k in hp.get(family, {}):
            hp[family][k] = v
        else:
            hp[k] = v
    d["seed_trials"] = [seed]
    d["hyperparameters"]["family"] = family
    d["hyperparameters"][family]["image_size"] = size
    if family == "pretrained":
        d["hyperparameters"].pop("scratch", None)
    else:
        d["hyperparameters"].pop("pretrained", None)
    t0 = time.time()
    r = automl.search(
        src,
        d,
        max_trials=1,
        experiment=f"e{size}",
        tracking_uri=f"sqlite:///{tmp}/m.db",
        workdir=str(tmp / f"w{size}"),
        verbose=0,
    )
    print(
        name,
        family,
        size,
        extra,
        "val",
        r.best_trial["metrics"].get("val_accuracy"),
        r.test_metrics,
        f"{time.time() - t0:.0f}s",
        flush=True,
    )
