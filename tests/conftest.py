"""Shared fixtures: every test gets its own MLflow store and cache dir; tiny seeded data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

# automl's SavedModel signing key (automl/signing.py): one per test session, never the
# user's own (module-scoped fixtures export before a test's own fixtures run).
if "AUTOML_SIGNING_KEY_FILE" not in os.environ:
    import atexit
    import shutil

    _key_dir = tempfile.mkdtemp(prefix="automl-test-key-")
    atexit.register(shutil.rmtree, _key_dir, ignore_errors=True)
    os.environ["AUTOML_SIGNING_KEY_FILE"] = str(Path(_key_dir) / "signing_key")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY_SPACE = {
    "name": "tiny",
    "hyperparameters": {
        "backbone": "mobilenet_v3_small",
        "weights": "random",
        "image_size": 32,
        "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"},
        "batch_size": {"choice": [8, 16]},
        "dropout": 0.1,
        "fine_tune_depth": 0.2,
        "head_epochs": 2,
        "fine_tune_epochs": 1,
        "augment": "light",
    },
}


_TEMPLATE: dict[str, Path] = {}


def _copy_migrated_tables(real_initialize):
    """MLflow gives a new SQLite store its tables by running all its migrations: 0.7-1.0 s a
    store on 2 cores, and most tests make one (a full run: 1,873 -> 1,816 s of worker time). In
    this test process a new store gets them copied instead (SQLite's backup API) from one
    store migrated once per process by that same function: the same tables; what automl
    runs is unchanged. Other databases (PostgreSQL) and other processes migrate as ever."""
    import atexit
    import shutil
    import sqlite3

    def initialize(engine):
        if engine.dialect.name != "sqlite" or not engine.url.database:
            return real_initialize(engine)
        if "db" not in _TEMPLATE:
            import sqlalchemy

            folder = tempfile.mkdtemp(prefix="automl-test-mlflow-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = Path(folder) / "migrated.db"
            made = sqlalchemy.create_engine(f"sqlite:///{path}")
            try:
                real_initialize(made)
            finally:
                made.dispose()
            _TEMPLATE["db"] = path
        src = sqlite3.connect(_TEMPLATE["db"])
        raw = engine.raw_connection()
        try:
            src.backup(raw.driver_connection)
        finally:
            raw.close()
            src.close()

    return initialize


@pytest.fixture(autouse=True, scope="session")
def _fast_new_stores():
    from mlflow.store.db import utils

    real = utils._initialize_tables
    utils._initialize_tables = _copy_migrated_tables(real)
    yield
    utils._initialize_tables = real


@pytest.fixture(autouse=True)
def _no_serving_check(request, monkeypatch):
    """Logging the best model as an MLflow model ends with MLflow's own check: the saved
    model loaded again and scored on its input example (~2.5 s a search on 2 cores, and it
    only ever warns). A test's own search skips it, unless marked ``serving_check``; the
    module-scoped searches (test_mlflow_reports, test_search, ...) run before this fixture
    and keep it, and test_mlflow_reports loads and scores the logged models itself."""
    if request.node.get_closest_marker("serving_check") is None:
        from automl import tracking

        monkeypatch.setattr(tracking, "_check_serving_input", lambda spec, local: None)


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """MLflow store, work dir and weight cache inside the test's temp dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    monkeypatch.setenv("AUTOML_CACHE", str(tmp_path / "cache"))
    yield


def make_tiny_arrays():
    """48 seeded 32x32 RGB images in 3 classes that differ in colour (learnable quickly)."""
    rng = np.random.default_rng(0)
    n, classes = 48, 3
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, 32, 32, 3)).astype(np.uint8)
    for c in range(classes):
        x[y == c, :, :, c] += 150
    return x, y


@pytest.fixture
def tiny_arrays():
    return make_tiny_arrays()


@pytest.fixture
def tiny_space():
    import copy

    return copy.deepcopy(TINY_SPACE)


@pytest.fixture
def image_folder(tmp_path, tiny_arrays):
    """A folder of class sub-folders with PNG files made from ``tiny_arrays``."""
    from PIL import Image

    x, y = tiny_arrays
    root = tmp_path / "images"
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / f"class_{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    return root


# The slowest test files (seconds of one worker, measured on 2 cores), handed out first:
# with ``--dist loadfile`` a file runs on one worker, and xdist hands files out in this
# order (``--no-loadscope-reorder``), so a long file no longer starts last while the other
# worker sits idle. The rest keep their collection order.
SLOW_FILES_FIRST = (
    "test_refit.py",
    "test_faults.py",
    "test_deterministic.py",
    "test_distributed.py",
    "test_budget.py",
    "test_ray_resume.py",
    "test_worker.py",
    "test_resume.py",
    "test_search.py",
    "test_mlflow_ui_browser.py",
    "test_mlflow_reports.py",
    "test_ray_cluster.py",
    "test_plugins.py",
    "test_task_search.py",
    "test_executors.py",
    "test_concurrency.py",
    "test_store_ray.py",
    "test_data_loss.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep order
