"""The controller: a KerasTuner oracle (random, Bayesian, Hyperband) and its state on disk.

The oracle only proposes values and records results; it serves several tuner ids at once
(one per trial in flight). Its files (``tuner/oracle.json``, ``tuner/trial_*/trial.json``)
are what a resumed search continues from: trials that were running go back to its retry
queue when it reloads.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from automl.errors import SearchError
from automl.search.settings import SearchSettings
from automl.space import SearchSpace

# KerasTuner reads a seed of 0 as no seed (``seed or random.randint(1, 10000)``): every
# search with the default seed 0 proposed values drawn from Python's global random state.
# Seed 0 goes to KerasTuner as this one instead; other seeds as they are.
TUNER_SEED_FOR_ZERO = 2**31 - 1


def tuner_seed(seed: int) -> int:
    """The seed handed to KerasTuner for the search's ``seed`` (never 0, which it ignores)."""
    return seed if seed != 0 else TUNER_SEED_FOR_ZERO


def make_oracle(space: SearchSpace, settings: SearchSettings):
    import keras_tuner as kt

    from automl.metrics import direction

    objective = kt.Objective(space.objective, direction(space.objective))
    common = dict(
        objective=objective,
        hyperparameters=space.to_keras_tuner(),
        seed=tuner_seed(settings.seed),
        max_retries_per_trial=settings.max_retries,
        # Counted by the search loop instead: KerasTuner's own count spans resumed processes
        # (a resumed search would stop at its first trial end) and raises before saving.
        max_consecutive_failed_trials=None,
    )
    from automl.autospace import fidelity_rungs, seeded_oracle  # the space's seed trials run first

    if settings.tuner == "random":
        cls = seeded_oracle(kt.oracles.RandomSearchOracle, space.seed_trials, fidelity_rungs(space))
        return cls(max_trials=settings.max_trials, **common)
    if settings.tuner == "bayesian":
        cls = seeded_oracle(
            kt.oracles.BayesianOptimizationOracle, space.seed_trials, fidelity_rungs(space)
        )
        return cls(
            max_trials=settings.max_trials,
            num_initial_points=min(3 + len(space.seed_trials), settings.max_trials),
            **common,
        )
    max_epochs = space.max_epochs()  # across families
    oracle = kt.oracles.HyperbandOracle(max_epochs=max(max_epochs, 2), factor=3, **common)
    oracle.max_trials = settings.max_trials  # Hyperband has no max_trials of its own; cap it
    return oracle


def open_oracle(space: SearchSpace, settings: SearchSettings, project: Path):
    """The search's oracle, reloaded from ``project/tuner`` when a saved one is there."""
    oracle = make_oracle(space, settings)
    oracle.verbose = 0
    try:
        oracle._set_project_dir(str(project), "tuner")
        _atomic_saves(oracle)
        if Path(oracle._get_oracle_fname()).exists():
            oracle.reload()
            _retry_orphans(oracle)
        oracle.save()  # from now on a resumed process always reloads the oracle
    except (ValueError, KeyError, RuntimeError) as e:  # JSONDecodeError is a ValueError
        raise SearchError(
            f"the KerasTuner state under {str(project / 'tuner')!r} cannot be reloaded "
            f"({type(e).__name__}); pass --overwrite to start experiment {settings.experiment!r} "
            "over, or use a new --experiment name"
        ) from None
    return oracle


def _retry_orphans(oracle) -> None:
    """Queue again the trials a killed process had started but not recorded as ongoing.

    KerasTuner writes a new trial's ``trial.json`` (RUNNING) before ``oracle.json`` lists it
    as ongoing; a process stopped between the two writes leaves a trial that counts toward
    ``max_trials`` but would never run. (An ongoing one is queued again by ``reload``.)
    """
    for tid, trial in sorted(oracle.trials.items()):
        if trial.status == "RUNNING" and tid not in oracle._retry_queue:
            oracle._retry_queue.append(tid)


def save_json_atomically(path: str | Path, state: dict) -> None:
    """Write ``state`` as JSON beside ``path`` and rename it over: never half a file.

    KerasTuner writes its state in place (TensorFlow's GFile), so a full disk (the file
    truncated, then the write refused) or a kill mid-write would leave an empty or cut
    ``oracle.json``, and the search could not resume.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(state))
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _atomic_saves(oracle) -> None:
    """The oracle's ``oracle.json`` and each ``trial.json``, saved atomically."""

    def save() -> None:
        save_json_atomically(oracle._get_oracle_fname(), oracle.get_state())

    def save_trial(trial) -> None:
        folder = oracle._get_trial_dir(trial.trial_id)
        save_json_atomically(Path(folder) / "trial.json", trial.get_state())

    oracle.save = save
    oracle._save_trial = save_trial
