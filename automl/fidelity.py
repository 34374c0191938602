"""Multi-fidelity over data size: on a large data set, early trials train on fewer images.

A trial that sees every image of a 100,000-image folder for its epochs does not fit a
3-minute CPU budget. So the data-aware default space (:mod:`automl.autospace`) gives a large
data set a *fidelity ladder*: the ``train_images`` hyperparameter is a choice of
``[base, 2 base, 4 base, ..., all]`` training images, and trial ``i`` of the search takes rung
``i // families`` (each round of trials, one per model family, trains on twice the images of
the round before; the last rung is the whole training split). The validation split is capped
too (``val_images``): epochs are scored and early-stopped on a stratified subset of it. The
test split is scored in full at the end unless the validation was capped: then on a
stratified sample of :data:`TEST_PER_VAL` times the validation cap (:func:`test_sample`; at
100,000 images, 2,000 of the 15,000 test images), so that scoring fits the budget.

Both subsets are stratified (each class keeps its share) and nested (a rung's images include
the smaller rung's), picked with a fixed seed, so trials on the same rung share their cached
embeddings. They are index views of the split (no image is copied); an epoch is one pass over
the subset, so its steps are ``ceil(train_images / batch_size)``.

Small data is never capped: no ladder is made when the training split has at most
:data:`SMALL_TRAIN` images, or without a time budget. ``train_images: 0`` (the default)
means all of them.
"""

from __future__ import annotations

import numpy as np

# Images a trial starts on per 3 minutes of CPU budget (a GPU: GPU_FACTOR times as many).
BASE_IMAGES = 1000
VAL_IMAGES = 1000  # validation images per 3 minutes of budget (scoring every epoch)
SMALL_TRAIN = 4000  # at or below this many training images, no cap: trials see them all
GPU_FACTOR = 8
TEST_PER_VAL = 2  # a capped search's test score: on a sample of this many times val_images


def _scale(budget_minutes: float | None, gpu: bool) -> float:
    return max(1.0, (budget_minutes or 0) / 3.0) * (GPU_FACTOR if gpu else 1)


def ladder(n_train: int, budget_minutes: float | None, *, gpu: bool = False) -> list[int]:
    """The ``train_images`` rungs for ``n_train`` training images; [] for no cap."""
    if not budget_minutes or n_train <= SMALL_TRAIN:
        return []
    base = int(BASE_IMAGES * _scale(budget_minutes, gpu))
    if n_train <= 2 * base:
        return []
    rungs = []
    c = base
    while c < n_train:
        rungs.append(c)
        c *= 2
    return [*rungs, int(n_train)]


def val_cap(n_train: int, n_val: int, budget_minutes: float | None, *, gpu: bool = False) -> int:
    """The ``val_images`` cap, 0 for none (small data, or a small validation split)."""
    if not ladder(n_train, budget_minutes, gpu=gpu):
        return 0
    cap = int(VAL_IMAGES * _scale(budget_minutes, gpu))
    return cap if n_val > cap else 0


def rung(rungs, trial_index: int, per_round: int) -> int:
    """Trial ``trial_index``'s training images: each round of ``per_round`` trials doubles."""
    return int(rungs[min(trial_index // max(per_round, 1), len(rungs) - 1)])


def stratified(y, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``n`` of the labels ``y``, each class in its share; nested in
    ``n`` (the first ``n`` of one fixed order)."""
    y = np.asarray(y)
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    key = np.empty(len(y))
    for c in np.unique(y):
        members = order[y[order] == c]  # this class, in random order
        # Quantile within the class (jittered): interleaves the classes by their shares.
        key[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.sort(np.argsort(key, kind="stable")[:n])


def subset(data, train_images: int = 0, val_images: int = 0, seed: int = 0):
    """``data`` with its training and validation splits cut to stratified index subsets of
    at most ``train_images`` / ``val_images`` images (0: all); ``data`` itself if neither
    cuts anything. The test split is kept whole."""
    from automl.data import DataBundle
    from automl.data.images import as_view

    cut_train = 0 < train_images < len(data.y_train)
    cut_val = 0 < val_images < len(data.y_val)
    if not (cut_train or cut_val):
        return data
    key = _strata_of(data)
    tr = stratified(key(data.y_train), train_images, seed) if cut_train else None
    va = stratified(key(data.y_val), val_images, seed) if cut_val else None
    return DataBundle(
        name=data.name,
        source=data.source,
        class_names=data.class_names,
        x_train=as_view(data.x_train).take(tr) if cut_train else data.x_train,
        y_train=np.asarray(data.y_train)[tr] if cut_train else data.y_train,
        x_val=as_view(data.x_val).take(va) if cut_val else data.x_val,
        y_val=np.asarray(data.y_val)[va] if cut_val else data.y_val,
        x_test=data.x_test,
        y_test=data.y_test,
        task=data.task,
    )


def _strata_of(data):
    """What :func:`stratified` keeps in proportion: the classes, or another task's strata
    (:func:`automl.data.splits.strata`: rarest label, target quantile bin)."""
    if data.task.name == "classification":
        return lambda y: y
    from automl.data.splits import strata

    return lambda y: strata(y, data.task.name)


def test_images(n_test: int, val_images: int) -> int:
    """How many test images a search whose trials were validated on ``val_images`` (0: all)
    scores: all of them, or :data:`TEST_PER_VAL` times the validation cap when fewer."""
    if val_images <= 0:
        return int(n_test)
    return int(min(n_test, TEST_PER_VAL * val_images))


def test_sample(data, val_images: int, seed: int = 0):
    """``data`` with its test split cut to a stratified sample of :func:`test_images` images
    (an index view, nested like the other subsets); ``data`` itself when nothing is cut."""
    import dataclasses

    from automl.data.images import as_view

    n = test_images(len(data.y_test), val_images)
    if n >= len(data.y_test):
        return data
    te = stratified(_strata_of(data)(data.y_test), n, seed)
    return dataclasses.replace(
        data, x_test=as_view(data.x_test).take(te), y_test=np.asarray(data.y_test)[te]
    )
