"""Ray nodes that do not share the search's store folder each copy the store once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from automl.data import store as store_mod
from tests.distributed_helpers import SPACE, trial_runs
from tests.test_store import make_folder

ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[distributed]"')


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_each_node_copies_the_store_once_into_its_own_folder(tmp_path):
    from ray.cluster_utils import Cluster

    import automl

    caches = {"head": tmp_path / "node_head", "worker": tmp_path / "node_worker"}
    env = {store_mod.COPY_ENV: "always"}  # one machine: make both nodes copy, as remote ones
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "env_vars": {**env, store_mod.NODE_CACHE_ENV: str(caches["head"])},
        },
    )
    c.add_node(num_cpus=1, env_vars={**env, store_mod.NODE_CACHE_ENV: str(caches["worker"])})
    try:
        ray.init(address=c.address, log_to_driver=False)
        folder = make_folder(tmp_path / "imgs", 48)
        uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
        automl.search(
            data=str(folder),
            space=SPACE,
            max_trials=2,
            workers=2,
            ray_address=c.address,
            tracking_uri=uri,
            experiment="nodes",
            cache_dir=tmp_path / "stores",
            verbose=0,
            refit=False,
            ensemble=0,
        )
    finally:
        ray.shutdown()
        c.shutdown()
    (original,) = [p for p in (tmp_path / "stores").iterdir() if not p.name.startswith(".")]
    _, by_trial = trial_runs(uri, "nodes")
    runs = [r for rs in by_trial.values() for r in rs if r.info.status == "FINISHED"]
    nodes = {r.data.tags.get("automl.node") for r in runs}
    assert len(nodes) == 2, nodes  # both nodes trained
    for cache in caches.values():  # each node: one complete copy, nothing half-written
        (copy,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
        assert copy.name == original.name
        assert list(cache.glob(".building-*-*")) == []
        assert _md5(copy / "images.u8") == _md5(original / "images.u8")
        assert store_mod.open_store(copy).count == 48
