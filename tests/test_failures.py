"""Failing trials are isolated: diverged / out-of-memory fail for good, crashes are retried,
too many failures in a row stop the search with the finished trials intact."""

from __future__ import annotations

import os

import pytest

from automl.checkpoints import Checkpoints
from automl.data import load_data
from automl.errors import SearchError
from automl.search import project_dir as _project_dir
from automl.search import run_search
from automl.space import load_space
from automl.trial import DivergedError
from tests.robust_helpers import FakeTrials, fast_search, runs_by_trial, settings, tuner_state


@pytest.fixture
def uri():
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def data(tiny_arrays):
    return load_data(tiny_arrays)


@pytest.fixture
def fast(monkeypatch, tmp_path):
    return lambda fake: fast_search(monkeypatch, tmp_path, fake)


def _run(fast, fake, space, data, **kw):
    fast(fake)
    s = settings(**kw)
    return s, run_search(load_space(space), data, s)


def test_nan_loss_stops_the_trial_at_once(tiny_arrays):
    """The NaN guard itself, on a real fit: lr=1e38 makes the loss inf in the first epoch.

    (lr=1e4 does not do it here: Keras computes the cross-entropy from the softmax's logits,
    so the loss grows to ~1e3-1e4 but stays finite.)
    """
    from automl.embeddings import EmbeddingCache
    from automl.trial import RunOptions, TrialConfig, run_trial

    cfg = TrialConfig(
        backbone="mobilenet_v3_small",
        weights="random",
        image_size=32,
        learning_rate=1e38,
        batch_size=8,
        dropout=0.1,
        fine_tune_depth=0.2,
        head_epochs=3,
        fine_tune_epochs=1,
    )
    epochs = []
    with pytest.raises(DivergedError, match="loss became NaN or inf in phase1"):
        run_trial(
            cfg,
            load_data(tiny_arrays),
            options=RunOptions(jit_compile=False),
            embeddings=EmbeddingCache(),
            on_epoch=epochs.append,
        )
    assert len(epochs) == 1  # stopped in the first epoch, phase 2 never ran


def test_diverged_and_oom_fail_for_good_and_the_search_goes_on(fast, tiny_space, data, uri):
    import tensorflow as tf

    fake = FakeTrials(
        {
            "1": lambda: DivergedError("diverged: loss became NaN or inf in phase1"),
            "2": lambda: tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"),
        }
    )
    s, result = _run(fast, fake, tiny_space, data, max_trials=4, max_retries=2, experiment="f1")
    assert fake.calls == ["0", "1", "2", "3"]  # neither failure was retried
    _, runs = runs_by_trial(uri, "f1")
    assert runs == {"0": ["FINISHED"], "1": ["FAILED"], "2": ["FAILED"], "3": ["FINISHED"]}
    board = result.leaderboard().set_index("trial")
    assert board.loc["1", "reason"] == "diverged"
    assert board.loc["2", "reason"] == "out of memory"
    _, trials = tuner_state(_project_dir(s, uri))
    assert trials == {"0": "COMPLETED", "1": "FAILED", "2": "FAILED", "3": "COMPLETED"}
    assert result.best_trial["trial_id"] == "3"


def test_a_crash_is_logged_with_its_traceback_and_retried(fast, tiny_space, data, uri):
    fake = FakeTrials({("1", 1): lambda: RuntimeError("flaky disk")})
    s, result = _run(fast, fake, tiny_space, data, max_trials=2, max_retries=1)
    assert fake.calls == ["0", "1", "1"]
    _, runs = runs_by_trial(uri, "exp")
    assert runs == {"0": ["FINISHED"], "1": ["FAILED", "FINISHED"]}
    board = result.leaderboard()
    failed = board[board["status"] == "FAILED"].iloc[0]
    assert failed["reason"] == "RuntimeError: flaky disk"
    tb = result.tracker.download(failed["run_id"], "error/traceback.txt").read_text()
    assert "Traceback (most recent call last)" in tb and "RuntimeError: flaky disk" in tb
    _, trials = tuner_state(_project_dir(s, uri))
    assert trials == {"0": "COMPLETED", "1": "COMPLETED"}


def test_max_retries_zero_does_not_retry(fast, tiny_space, data, uri):
    fake = FakeTrials({"0": lambda: RuntimeError("boom")})
    _run(fast, fake, tiny_space, data, max_trials=2, max_retries=0)
    assert fake.calls == ["0", "1"]
    assert runs_by_trial(uri, "exp")[1] == {"0": ["FAILED"], "1": ["FINISHED"]}


def test_consecutive_failures_stop_the_search_and_a_rerun_resumes_it(fast, tiny_space, data, uri):
    boom = {t: (lambda: RuntimeError("CUDA driver crashed")) for t in ("1", "2")}
    fast(FakeTrials(boom))
    s = settings(max_trials=4, max_retries=0, max_consecutive_failures=2)
    with pytest.raises(
        SearchError,
        match=r"search stopped after 2 consecutive failed trials \(last: .*CUDA driver crashed\); "
        "finished trials are kept",
    ):
        run_search(load_space(tiny_space), data, s)
    parents, runs = runs_by_trial(uri, "exp")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert runs == {"0": ["FINISHED"], "1": ["FAILED"], "2": ["FAILED"]}
    project = _project_dir(s, uri)
    assert (project / "checkpoints" / "trial_0.keras").exists()  # the finished trial is intact
    oracle, trials = tuner_state(project)
    assert trials == {"0": "COMPLETED", "1": "FAILED", "2": "FAILED"}
    assert oracle["ongoing_trials"] == {} and oracle["end_order"] == ["0", "1", "2"]

    # The cause fixed, the same search goes on (KerasTuner's own count would stop it again).
    fake = FakeTrials()
    fast(fake)
    result = run_search(load_space(tiny_space), data, s)
    assert fake.calls == ["3"]
    parents, runs = runs_by_trial(uri, "exp")
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    assert parents[0].info.status == "FINISHED"
    assert runs == {"0": ["FINISHED"], "1": ["FAILED"], "2": ["FAILED"], "3": ["FINISHED"]}


def test_cli_passes_retry_settings(monkeypatch):
    import automl
    from automl import cli

    seen = {}

    def fake_search(**kw):
        seen.update(kw)
        raise SearchError("stop here")

    monkeypatch.setattr(automl, "search", fake_search)
    rc = cli.main(["search", "--max-retries", "0", "--max-consecutive-failures", "5"])
    assert rc == 2
    assert seen["max_retries"] == 0 and seen["max_consecutive_failures"] == 5


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"max_retries": -1}, r"max_retries=-1 must be 0 or more; pass --max-retries 0"),
        (
            {"max_consecutive_failures": 0},
            r"max_consecutive_failures=0 must be 1 or more; pass --max-consecutive-failures",
        ),
    ],
)
def test_bad_failure_settings_are_refused(kw, message):
    with pytest.raises(SearchError, match=message):
        settings(**kw).validate()


def test_a_failure_while_saving_a_trained_trial_is_a_crash_too(
    fast, monkeypatch, tiny_space, data, uri
):
    """Not only training: saving the checkpoint can fail (disk full); the run does not stay
    RUNNING, it is FAILED with its traceback and the trial is retried."""
    fast(FakeTrials())
    offer = Checkpoints.offer
    failed = []

    def flaky_offer(self, trial_id, score, model):
        if not failed:
            failed.append(trial_id)
            raise OSError(28, "No space left on device")
        return offer(self, trial_id, score, model)

    monkeypatch.setattr(Checkpoints, "offer", flaky_offer)
    result = run_search(load_space(tiny_space), data, settings(max_trials=1, max_retries=1))
    assert runs_by_trial(uri, "exp")[1] == {"0": ["FAILED", "FINISHED"]}
    board = result.leaderboard()
    assert board[board["status"] == "FAILED"]["reason"].tolist() == [
        "OSError while saving the trial: [Errno 28] No space left on device"
    ]
