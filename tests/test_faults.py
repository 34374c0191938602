"""Faults as the most trusted storage systems test them: Ctrl-C at every step of a search, of
an export and of a retrain, a full disk or a read-only folder at every write, two searches at
once, and a forged model. The counts of the sweeps are recorded in docs/reliability.md."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from automl import cli as automl_cli
from tests.fault_helpers import FailingWrites, Tripwire
from tests.fault_helpers import light_reports as _light_reports
from tests.robust_helpers import (
    FAST_SPACE_YAML,
    FakeTrials,
    cli,
    cli_env,
    fast_search,
    runs_by_trial,
    searched_trial,
    tiny_model,
)

# Each sweep runs as this many tests (every SWEEP_PARTS-th step), so pytest-xdist spreads them.
SWEEP_PARTS = 3


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The test's folder, in memory where the machine has /dev/shm: the sweeps run a hundred
    searches, and each MLflow commit waits for the disk (fsync) otherwise."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="automl-faults-", dir=shm))
    monkeypatch.chdir(d)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d}/mlruns/mlflow.db")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def uri(work):
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text(FAST_SPACE_YAML)
    return p


def _search_argv(folder, space_file, experiment):
    return [
        "search",
        "--data",
        str(folder),
        "--space",
        str(space_file),
        "--max-trials",
        "2",
        "--tuner",
        "random",
        "--experiment",
        experiment,
        "--trials-per-worker",
        "0",  # the fake trials are patched into this process
        "--ensemble",
        "0",
    ]


def _no_run_running(uri: str, experiment: str) -> None:
    parents, runs = runs_by_trial(uri, experiment)
    assert all(p.info.status != "RUNNING" for p in parents), [p.info.status for p in parents]
    assert all("RUNNING" not in s for s in runs.values()), runs


def _finished_once(uri: str, experiment: str, trials=("0", "1")) -> None:
    parents, runs = runs_by_trial(uri, experiment)
    latest = max(parents, key=lambda p: p.info.start_time)
    assert latest.info.status == "FINISHED"
    assert {t: s.count("FINISHED") for t, s in runs.items()} == {t: 1 for t in trials}, runs


def _search_events():
    """Every step of a search a Ctrl-C can fall on: each MLflow write, each progress line,
    the trial's checkpoint, KerasTuner's and automl's state files, closing the executor,
    the closing step."""
    import importlib

    from automl.checkpoints import Checkpoints
    from automl.executors.inprocess import InProcessExecutor
    from automl.progress import Progress
    from automl.tracking import Tracker

    search_session = importlib.import_module("automl.search.session")  # the session's body
    search_oracle = importlib.import_module("automl.search.oracle")
    targets = [
        (Tracker, name)
        for name in (
            "start_search",
            "start_trial",
            "log_params",
            "log_metrics",
            "set_tags",
            "log_dict",
            "log_text",
            "log_artifact",
            "end_run",
            "fail_trial",
        )
    ]
    targets += [
        (Progress, "_line"),
        (Checkpoints, "offer_file"),
        (search_oracle, "save_json_atomically"),  # KerasTuner's oracle.json and trial.json
        (InProcessExecutor, "close"),
        (search_session, "save_state"),
        (search_session, "finish"),
    ]
    return targets


@pytest.fixture(autouse=True)
def _python_ctrl_c():
    """Python's own SIGINT handler (KeyboardInterrupt), as a user's process has: the sweeps
    send a real SIGINT, and in CI a test run earlier in the same pytest worker had left
    another handler installed (the sweeps then ran to the end: exit 0, not 130)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("part", range(SWEEP_PARTS))
def test_ctrl_c_at_every_step_of_a_search(monkeypatch, work, image_folder, space_file, uri, part):
    """SIGINT at each step in turn: exit 130, no run left RUNNING, and the same command
    then finishes with every trial run to the end once."""
    fake = FakeTrials()
    fast_search(monkeypatch, work, fake)
    _light_reports(monkeypatch)
    events = _search_events()
    with pytest.MonkeyPatch.context() as mp:  # a clean run: how many steps there are
        wire = Tripwire(mp, events)
        assert automl_cli.main(_search_argv(image_folder, space_file, "clean")) == 0
    total = wire.count
    assert total > 20, wire.names
    _finished_once(uri, "clean")
    t0 = time.time()
    for at in range(1 + part, total + 1, SWEEP_PARTS):
        name = f"int{at}"
        argv = _search_argv(image_folder, space_file, name)
        with pytest.MonkeyPatch.context() as mp:
            wire = Tripwire(mp, events, at)
            rc = automl_cli.main(argv)
        assert rc == 130, (at, wire.names[at - 1])
        _no_run_running(uri, name)
        assert not (work / "mlruns" / "automl" / name / "worker_data").exists()
        done_before = {t for t, s in runs_by_trial(uri, name)[1].items() if "FINISHED" in s}
        fake.calls.clear()
        assert automl_cli.main(argv) == 0, at
        assert not set(fake.calls) & done_before, (at, fake.calls)  # finished: not run again
        _finished_once(uri, name)
    print(f"interrupt points: {total}; sweep {time.time() - t0:.0f}s")


@pytest.mark.parametrize("part", range(SWEEP_PARTS))
def test_a_full_disk_or_a_read_only_folder_at_every_write(
    monkeypatch, work, image_folder, space_file, uri, capsys, part
):
    """From the Nth file write on, every write fails (ENOSPC, or EACCES for even N), for every
    N up to the last write of a search: the CLI answers in one line (exit 0 if the search got
    around it, 2 naming the path and the cause), no run stays RUNNING, no partial checkpoint
    is left, and the same command then finishes without losing a finished trial."""
    fake = FakeTrials()
    fast_search(monkeypatch, work, fake)
    _light_reports(monkeypatch)
    with pytest.MonkeyPatch.context() as mp:  # a clean run: how many writes there are
        writes = FailingWrites(mp)
        assert automl_cli.main(_search_argv(image_folder, space_file, "clean")) == 0
    total = writes.count
    assert total > 10, writes.paths
    capsys.readouterr()
    outcomes = {0: 0, 2: 0}
    for at in range(1 + part, total + 1, SWEEP_PARTS):
        name = f"io{at}"
        argv = _search_argv(image_folder, space_file, name)
        code = errno.EACCES if at % 2 == 0 else errno.ENOSPC
        with pytest.MonkeyPatch.context() as mp:
            writes = FailingWrites(mp, at, code)
            rc = automl_cli.main(argv)  # anything but an AutoMLError propagates: a traceback
        err = capsys.readouterr().err
        outcomes[rc] += 1
        if rc == 2:
            line = err.strip().splitlines()[-1]
            assert line.startswith("automl: error: "), (at, err)
            assert "Traceback" not in err, (at, err)
            assert os.strerror(code) in line and "cannot write '" in line, (at, line)
        _no_run_running(uri, name)
        project = work / "mlruns" / "automl" / name
        assert not list(project.glob("checkpoints/.*tmp*")), at  # no partial model file
        done_before = {t for t, s in runs_by_trial(uri, name)[1].items() if "FINISHED" in s}
        fake.calls.clear()
        assert automl_cli.main(argv) == 0, (at, capsys.readouterr().err)
        assert not set(fake.calls) & done_before, (at, fake.calls)  # finished: kept
        _finished_once(uri, name)
    print(f"failed writes: {total}; {outcomes}")


# --- one search per experiment --------------------------------------------------------------
HOLDER = """
import sys, time
from pathlib import Path
from automl.locks import ExperimentLock
lock = ExperimentLock(Path(sys.argv[1]), sys.argv[2]).acquire()  # held while referenced
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_search_on_the_same_experiment_is_refused_while_the_first_runs(
    monkeypatch, work, image_folder, space_file, uri
):
    """While a search runs, the same command in another process exits 2 with one line that
    names the running search; nothing of the running one is touched, and it finishes."""
    import socket

    seen = {}

    class SecondSearchDuringTrial0(FakeTrials):
        def __call__(self, cfg, data, *, seed, **kw):
            if not seen:
                seen["proc"] = subprocess.run(
                    cli(*_search_argv(image_folder, space_file, "same"), "--seed", "0"),
                    cwd=work,
                    env=cli_env(work),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            return super().__call__(cfg, data, seed=seed, **kw)

    fake = SecondSearchDuringTrial0()
    fast_search(monkeypatch, work, fake)
    _light_reports(monkeypatch)
    assert automl_cli.main(_search_argv(image_folder, space_file, "same")) == 0
    second = seen["proc"]
    assert second.returncode == 2, second.stderr
    errors = [line for line in second.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr
    assert errors[0].startswith(
        f"automl: error: experiment 'same' is in use by another automl search (pid "
        f"{os.getpid()} on {socket.gethostname()}, started "
    ), errors[0]
    assert "wait until it ends, or use another --experiment" in errors[0]
    parents, runs = runs_by_trial(uri, "same")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # no second parent run
    assert runs == {"0": ["FINISHED"], "1": ["FINISHED"]} and fake.calls == ["0", "1"]
    project = work / "mlruns" / "automl" / "same"
    assert not (project / ".automl-lock.json").exists()  # released: the holder's note is gone


def test_the_lock_of_a_killed_search_is_taken_over(
    monkeypatch, work, image_folder, space_file, capsys
):
    from automl.data import load_data
    from automl.errors import ExperimentBusyError, SearchError
    from automl.search import run_search
    from automl.space import load_space
    from tests.conftest import make_tiny_arrays
    from tests.robust_helpers import settings

    project = work / "mlruns" / "automl" / "exp"
    argv = _search_argv(image_folder, space_file, "exp")
    fast_search(monkeypatch, work, FakeTrials())
    _light_reports(monkeypatch)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(project), "exp"],
        env=cli_env(work),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert automl_cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert f"in use by another automl search (pid {holder.pid} on " in err[-1]
        assert issubclass(ExperimentBusyError, SearchError)
        with pytest.raises(
            ExperimentBusyError, match=rf"in use by another automl search \(pid {holder.pid} on "
        ):
            data = load_data(make_tiny_arrays())
            run_search(load_space(str(space_file)), data, settings())
        assert not (project / "automl_search.json").exists()  # refused before any write
    finally:
        holder.kill()  # SIGKILL: no chance to let go of anything
        holder.wait(timeout=30)
    assert (project / ".automl-lock.json").exists()  # the dead holder's note is still there
    assert automl_cli.main(argv) == 0  # the kernel released its lock: taken over
    assert not (project / ".automl-lock.json").exists()


# --- signed SavedModels -------------------------------------------------------------------
def _forged_saved_model(path: Path, marker: Path) -> Path:
    """A SavedModel whose serving_default writes ``marker``, with automl's metadata by hand."""
    import tensorflow as tf

    class Forged(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return {"probabilities": tf.fill([tf.shape(x)[0], 2], 0.5)}

    m = Forged()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "automl.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    return path


def test_a_forged_saved_model_does_not_run_without_trust_model(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from automl.errors import ExportError
    from automl.export import export_model
    from automl.predict import predict
    from automl.signing import SIGNATURE_FILE, key_path

    img = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(img)
    marker = tmp_path / "ran.txt"
    forged = _forged_saved_model(tmp_path / "evil_sm", marker)

    assert automl_cli.main(["predict", str(img), "--model", str(forged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"automl: error: SavedModel '{forged}' is not signed by automl with your key"
    ) and err.endswith("pass --trust-model (trust_model=True) only if you trust where it came from")
    assert len(err.splitlines()) == 1 and not marker.exists()

    # automl's own export: signed with this user's key (made 0600 on first use), loads.
    own = export_model(
        tiny_model(2), tmp_path / "own_sm", format="saved_model", class_names=["a", "b"]
    )
    assert (own / SIGNATURE_FILE).is_file()
    assert key_path() == Path(os.environ["AUTOML_SIGNING_KEY_FILE"])  # the tests' own key
    assert key_path().stat().st_mode & 0o777 == 0o600
    assert automl_cli.main(["predict", str(img), "--model", str(own)]) == 0
    assert capsys.readouterr().out.startswith(f"{img}: ")

    # A signature copied from a genuine export, or an export changed after signing: refused.
    (forged / SIGNATURE_FILE).write_bytes((own / SIGNATURE_FILE).read_bytes())
    with pytest.raises(ExportError, match="is not signed by automl with your key"):
        predict([str(img)], forged)
    (own / "assets" / "automl.json").write_text(json.dumps({"class_names": ["b", "a"]}))
    with pytest.raises(ExportError, match="is not signed by automl with your key"):
        predict([str(img)], own)
    assert not marker.exists()
    # Trusted on purpose, it runs (so the refusals above are what kept the marker away).
    assert automl_cli.main(["predict", str(img), "--model", str(forged), "--trust-model"]) == 0
    assert marker.read_text() == "ran"


# --- atomic exports -------------------------------------------------------------------------
def _resizing_model(seed: int):
    """A tiny model with a ``resize`` layer (TFLite needs it), weights drawn from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Resizing(16, 16, name="resize"),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p.parent)).encode() + f.read_bytes())
    return h.hexdigest()


OUTPUTS = {"keras": "m.keras", "saved_model": "m", "tflite": "m.tflite", "onnx": "m.onnx"}


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "tflite", "onnx", "mlflow"])
def test_ctrl_c_at_every_step_of_an_export_keeps_the_earlier_one(tmp_path, fmt):
    """`export --force` over a good export, SIGINT at each of its steps in turn: the output
    holds the earlier export or the complete new one (never nothing, never a part), and the
    same export then finishes, leaving nothing beside the output."""
    import numpy as np

    import automl.export as ex
    import automl.signing as signing
    from automl.predict import load_predictor

    out = tmp_path / "out" / OUTPUTS.get(fmt, "m")
    files = ex._with_sidecar(out, fmt)
    old, new = _resizing_model(1), _resizing_model(2)
    image = np.full((1, 16, 16, 3), 120, np.uint8)
    wants = {m: np.asarray(m.predict(image.astype(np.float32), verbose=0)) for m in (old, new)}
    assert not np.allclose(wants[old], wants[new], atol=1e-3)  # the two exports tell apart

    def holds(model) -> bool:
        got = load_predictor(out).predict_batch(image)
        return np.allclose(np.asarray(got, np.float32), wants[model], atol=1e-3)

    steps = [
        (ex, f"_export_{fmt}"),
        (ex, "_write_sidecar"),
        (ex, "_commit"),
        (ex, "_remove"),
        (os, "replace"),
        (os, "rename"),
        (signing, "sign"),
    ]
    ex.export_model(old, out, format=fmt, class_names=["a", "b"])
    before = _digest(files)
    with pytest.MonkeyPatch.context() as mp:  # a clean run: how many steps there are
        wire = Tripwire(mp, steps)
        ex.export_model(new, tmp_path / "probe" / out.name, format=fmt, class_names=["a", "b"])
    total = wire.count
    assert total >= 3, wire.names
    for at in range(1, total + 1):
        with pytest.MonkeyPatch.context() as mp:
            wire = Tripwire(mp, steps, at)
            with pytest.raises(KeyboardInterrupt):
                ex.export_model(new, out, format=fmt, class_names=["a", "b"], force=True)
        assert out.exists(), (at, wire.names[at - 1])
        assert _digest(files) == before or holds(new), (at, wire.names[at - 1])
        ex.export_model(new, out, format=fmt, class_names=["a", "b"], force=True)  # again
        assert holds(new)
        assert sorted(p.name for p in out.parent.iterdir()) == sorted(f.name for f in files)
        # The complete export now there is the earlier one of the next step, which exports
        # the other model over it (one export less per step than putting `old` back).
        old, new, before = new, old, _digest(files)
    print(f"{fmt}: {total} interrupt points")


def test_an_interrupted_export_is_reclaimed_and_says_so(
    tmp_path, monkeypatch, image_folder, capsys
):
    """The CLI's own words on Ctrl-C during an export; a partial export and an earlier one
    left aside by a cut swap are reclaimed by the next run (no folder to delete by hand)."""
    import automl.export as ex
    from tests.robust_helpers import searched_trial

    searched_trial(monkeypatch, tmp_path, image_folder)
    argv = ["export", "--experiment", "retrain", "--format", "saved_model", "--output", "m"]
    assert automl_cli.main(argv) == 0
    before = _digest([tmp_path / "m"])
    with pytest.MonkeyPatch.context() as mp:
        Tripwire(mp, [(ex, "_export_saved_model")], at=1)
        assert automl_cli.main([*argv, "--force"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "automl: interrupted; no partial export was written: --output holds the earlier export "
        "if there was one (or the new one, if it was complete); run the same command again"
    )
    assert _digest([tmp_path / "m"]) == before
    # What a SIGKILL leaves at the worst moments: a partial new export, and the swap cut
    # after the earlier export moved aside.
    (tmp_path / ".m.automl-new" / "variables").mkdir(parents=True)
    (tmp_path / "m").rename(tmp_path / ".m.automl-old")
    assert automl_cli.main(argv) == 2  # the earlier export is back: --force is needed
    assert "already exists; pass --force" in capsys.readouterr().err
    assert _digest([tmp_path / "m"]) == before
    assert automl_cli.main([*argv, "--force"]) == 0
    assert not list(tmp_path.glob(".m.automl-*"))


def test_ctrl_c_just_after_the_last_trial_of_a_real_search(
    monkeypatch, tmp_path, image_folder, space_file
):
    """The issue's reproduction: a real `automl search` (trials in a worker process), SIGINT
    0.1 s after the last "trial N done" line, while the workers close. Exit 130, no run
    RUNNING, worker_data/ removed; the same command then finishes without running a trial
    (run in this process: a second start-up of TensorFlow would prove nothing more)."""
    from tests.robust_helpers import wait_for_text

    uri, env = f"sqlite:///{tmp_path}/mlruns/mlflow.db", cli_env(tmp_path)
    argv = _search_argv(image_folder, space_file, "last")
    argv[argv.index("--trials-per-worker") + 1] = "10"  # the default: a worker process
    log = tmp_path / "search.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cli(*argv),
            cwd=tmp_path,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        wait_for_text(proc, log, "trial 1 done")
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    project = tmp_path / "mlruns" / "automl" / "last"
    if rc == 0:  # the search had already finished (a slow machine): nothing to check here
        pytest.skip("the search finished before the signal arrived")
    assert rc == 130, text
    assert "Traceback" not in text, text
    _no_run_running(uri, "last")
    assert not (project / "worker_data").exists()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert automl_cli.main(argv) == 0  # the same command, in this process
    _finished_once(uri, "last")


def test_a_full_mlflow_database_is_one_line(
    monkeypatch, work, image_folder, space_file, uri, capsys
):
    """SQLite's own writes fail inside MLflow (not as an OSError): the same one line, exit 2,
    and the search's run closed FAILED with the reason (the store is readable again here)."""
    from mlflow.exceptions import MlflowException

    from automl.tracking import Tracker

    fast_search(monkeypatch, work, FakeTrials())
    _light_reports(monkeypatch)

    def full(self, run_id, *a, **k):
        raise MlflowException("(sqlite3.OperationalError) database or disk is full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Tracker, "log_artifact", full)  # the best model, at the end of the search
        assert automl_cli.main(_search_argv(image_folder, space_file, "full")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"automl: error: cannot write the MLflow store {uri!r}: database or disk is full; free "
        "some disk space or make it writable; finished trials are kept, run the same command "
        "to resume"
    )
    parents, runs = runs_by_trial(uri, "full")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert "database or disk is full" in parents[0].data.tags["automl.stopped"]
    assert runs == {"0": ["FINISHED"], "1": ["FINISHED"]}
    assert automl_cli.main(_search_argv(image_folder, space_file, "full")) == 0
    _finished_once(uri, "full")


def _light_retrain_reports(monkeypatch):
    """A retrain's reports (plots, an MLflow model: seconds each) as one small MLflow write
    each, so the sweep's retrains take a fraction of a second; its steps stay the same."""
    import automl.reports as reports

    def trial_reports(tracker, run_id, outcome, data, cfg, **kw):
        tracker.log_dict(run_id, {"hyperparameters": cfg.to_dict()}, reports.CONFIG_FILE)

    def evaluation(tracker, run_id, model, x, y, class_names, split="validation", task=None):
        tracker.log_dict(run_id, {"split": split}, f"per_class_{split}.json")
        return {}

    def mlflow_model(tracker, run_id, model, example, name="model", **kw):
        tracker.log_text(run_id, "flavors: {}\n", f"{name}/MLmodel")
        return {"model_uri": f"runs:/{run_id}/{name}"}

    monkeypatch.setattr(reports, "log_trial_reports", trial_reports)
    monkeypatch.setattr(reports, "evaluation_reports", evaluation)
    monkeypatch.setattr(reports, "log_mlflow_model", mlflow_model)


def _retrain_events():
    """Every step of a retrain a Ctrl-C can fall on: reading the trial's config, loading the
    data, creating the new run and the progress display, each MLflow write, each progress
    line, the training, the test predictions, each report, the closing step."""
    from mlflow.tracking import MlflowClient

    import automl.data as data
    import automl.data.images as images
    import automl.reports as reports
    import automl.trial as trial
    from automl.progress import Progress
    from automl.tracking import Tracker

    targets = [
        (Tracker, name)
        for name in (
            "download",
            "log_params",
            "log_metrics",
            "log_epoch",
            "set_tags",
            "log_dict",
            "log_text",
            "log_artifact",
            "end_run",
        )
    ]
    targets += [
        (MlflowClient, "create_run"),
        (MlflowClient, "log_inputs"),
        (Progress, "__init__"),  # just after the new run is created
        (Progress, "_line"),
        (data, "load_data"),
        (trial, "run_trial"),
        (images, "predict_images"),
        (reports, "log_trial_reports"),
        (reports, "evaluation_reports"),
        (reports, "log_datasets"),
        (reports, "log_mlflow_model"),
    ]
    return targets


def _runs_of(uri: str, experiment: str) -> list:
    from automl.tracking import Tracker

    t = Tracker(uri, experiment)
    return t.client.search_runs([t.experiment_id], max_results=1000)


def _snapshot(run) -> tuple:
    return (
        run.info.status,
        run.info.end_time,
        run.data.tags,
        run.data.metrics,
        run.data.params,
    )


@pytest.mark.parametrize("part", range(SWEEP_PARTS))
def test_ctrl_c_at_every_step_of_a_retrain(monkeypatch, work, image_folder, uri, capsys, part):
    """`automl retrain --run-id TRIAL` with a real SIGINT at each of its steps in turn: exit
    130 with retrain's own message, no run RUNNING, the search's runs untouched; then the same
    command exits 0 with a FINISHED retrain run."""
    trial_run = searched_trial(monkeypatch, work, image_folder)  # retrains on FakeTrials
    _light_retrain_reports(monkeypatch)
    search_runs = {r.info.run_id: _snapshot(r) for r in _runs_of(uri, "retrain")}
    assert trial_run in search_runs
    argv = ["retrain", "--run-id", trial_run]
    events = _retrain_events()

    def retrains(step=None) -> list[str]:
        runs = _runs_of(uri, "retrain")
        assert all(r.info.status != "RUNNING" for r in runs), (step, [r.info.status for r in runs])
        now = {r.info.run_id: _snapshot(r) for r in runs if r.info.run_id in search_runs}
        assert now == search_runs  # the search's runs, trial included, untouched
        return [r.info.status for r in runs if r.data.tags.get("automl.kind") == "retrain"]

    with pytest.MonkeyPatch.context() as mp:  # a clean run: how many steps there are
        wire = Tripwire(mp, events)
        assert automl_cli.main(argv) == 0
    total, steps = wire.count, list(wire.names)
    assert total > 15, steps
    assert retrains() == ["FINISHED"]
    t0 = time.time()
    for at in range(1 + part, total + 1, SWEEP_PARTS):
        before = retrains()
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            wire = Tripwire(mp, events, at)
            rc = automl_cli.main(argv)
        err = capsys.readouterr().err
        step = (at, wire.names[at - 1])
        assert rc == 130, step
        assert err.strip().splitlines()[-1] == (
            "automl: interrupted; a run the retrain started is closed as KILLED, the trial it "
            "retrains is unchanged; run the same command again"
        ), (step, err)
        assert "Traceback" not in err, (step, err)
        after = retrains(step)
        new = len(after) - len(before)  # at most the one run it started (newest first)
        assert after[new:] == before and after[:new] in ([], ["KILLED"]), (step, after)
        assert automl_cli.main(argv) == 0, step
        assert retrains()[0] == "FINISHED", step  # newest first
        assert len(retrains()) == len(after) + 1, step
    print(f"interrupt points: {total}; sweep {time.time() - t0:.0f}s; steps: {steps}")
