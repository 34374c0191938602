"""Bounded cost: embedding cache, top-k checkpoints on disk, time budget, Hyperband's resource."""

from pathlib import Path

import numpy as np
import pytest

import automl
from automl.data import load_data
from automl.embeddings import EmbeddingCache
from automl.tracking import Tracker
from automl.trial import TrialConfig


class _Features:
    """Stands in for a feature extractor: counts how often it is run."""

    def __init__(self):
        self.calls = 0

    def predict(self, x, batch_size=64, verbose=0):
        self.calls += 1
        return x.reshape(len(x), -1)[:, :8].astype(np.float32)


def _cfg(**kw):
    base = dict(
        backbone="mobilenet_v3_small",
        weights="imagenet",
        image_size=32,
        learning_rate=1e-3,
        batch_size=8,
        dropout=0.0,
        fine_tune_depth=0.0,
        head_epochs=1,
        fine_tune_epochs=0,
    )
    return TrialConfig(**{**base, **kw})


def test_embedding_cache_shares_and_evicts(tiny_arrays):
    data = load_data(tiny_arrays)
    cache, f = EmbeddingCache(max_entries=1), _Features()
    a = cache.get(f, _cfg(), data)
    b = cache.get(f, _cfg(learning_rate=0.1, dropout=0.5), data)  # same backbone + size: shared
    assert b[0] is a[0] and (cache.hits, cache.misses, f.calls) == (1, 1, 2)
    cache.get(f, _cfg(image_size=48), data)  # another size: a new entry, the old one evicted
    assert len(cache) == 1 and cache.misses == 2
    cache.get(f, _cfg(), data)
    assert cache.misses == 3
    # Random-init backbones differ per seed, so their features are not shared across seeds.
    assert EmbeddingCache.key(_cfg(weights="random"), data, 1) != EmbeddingCache.key(
        _cfg(weights="random"), data, 2
    )


def test_embedding_cache_large_entries_go_to_disk(tiny_arrays):
    data = load_data(tiny_arrays)
    cache = EmbeddingCache(disk_threshold_mb=0.0)
    train, _ = cache.get(_Features(), _cfg(), data)
    assert isinstance(train, np.memmap) and Path(train.filename).exists()
    path = Path(train.filename)
    del train
    cache.clear()
    assert not path.exists()


def test_schedule_splits_hyperband_budget_across_phases():
    cfg = _cfg(head_epochs=3, fine_tune_epochs=4, fine_tune_depth=0.2)
    assert cfg.schedule() == (3, 4)
    assert cfg.schedule(budget=2) == (2, 0)
    assert cfg.schedule(budget=5) == (3, 2)
    assert _cfg(head_epochs=3, fine_tune_epochs=4).schedule(budget=5) == (
        5,
        0,
    )  # depth 0: all phase 1


def test_keep_top_k_and_time_budget(tiny_arrays, tiny_space, tmp_path):
    tiny_space["hyperparameters"].update({"fine_tune_depth": 0.0, "head_epochs": 1})
    result = automl.search(
        data=tiny_arrays,
        space=tiny_space,
        max_trials=2,
        tuner="random",
        keep_top_k=1,
        experiment="topk",
        workdir=str(tmp_path / "work"),
    )
    board = result.leaderboard()
    assert len(board) == 2
    kept = sorted((tmp_path / "work" / "topk" / "checkpoints").glob("trial_*.keras"))
    assert [p.name for p in kept] == [f"trial_{result.best_trial['trial_id']}.keras"]
    t = Tracker(None, "topk")
    tags = {
        r.info.run_id: r.data.tags["automl.checkpoint"] for r in t.trial_runs(result.parent_run_id)
    }
    assert sum(bool(v) and Path(v).exists() for v in tags.values()) == 1

    budget = automl.search(
        data=tiny_arrays,
        space=tiny_space,
        max_trials=5,
        tuner="random",
        time_budget=0.001,
        experiment="budget",
        workdir=str(tmp_path / "work"),
    )
    assert len(budget.leaderboard()) == 1  # the budget was spent during trial 0: no new trial


@pytest.mark.slow
def test_hyperband_continues_trials_with_their_schedule(tiny_arrays, tiny_space):
    tiny_space["hyperparameters"].update(
        {"head_epochs": 2, "fine_tune_epochs": 1, "fine_tune_depth": 0.2}
    )
    result = automl.search(
        data=tiny_arrays, space=tiny_space, max_trials=4, tuner="hyperband", experiment="hb"
    )
    t = Tracker(None, "hb")
    runs = t.trial_runs(result.parent_run_id)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    budgets = [int(r.data.params["hyperband_epochs"]) for r in runs]
    assert set(budgets) <= {1, 3} and max(budgets) == 3
    for r in runs:  # each run logs exactly the epochs its budget leaves after its starting epoch
        steps = [m.step for m in t.client.get_metric_history(r.info.run_id, "val_accuracy")]
        start = int(r.data.params["hyperband_initial_epoch"])
        assert steps == list(range(start, int(r.data.params["hyperband_epochs"])))
        phases = t.client.get_metric_history(r.info.run_id, "phase")
        assert all(p.value == (1.0 if p.step < 2 else 2.0) for p in phases)
