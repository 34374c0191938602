"""End to end in a real headless browser: `automl ui` on a store made by a tiny search.

Needs Debian's chromium (``apt-get install chromium``) and the ``playwright`` package (no
``playwright install``: the system browser is used). Skipped when either is missing.
Screenshots go to a temp folder whose path the test prints (``pytest -s`` shows it).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import automl
from tests.conftest import TINY_SPACE

CHROMIUM = os.environ.get("AUTOML_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Phase 1 only: the UI is under test here, not fine-tuning.
SPACE = {
    **TINY_SPACE,
    "hyperparameters": {
        **TINY_SPACE["hyperparameters"],
        "fine_tune_depth": 0.0,
        "fine_tune_epochs": 0,
    },
}
COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "learning_rate")
ROOT = Path(__file__).resolve().parents[1]


def _need_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"`automl ui` exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    _need_browser()
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = rng.integers(0, 60, size=(48, 32, 32, 3)).astype(np.uint8)
    for c in range(3):
        x[y == c, :, :, c] += 150
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("AUTOML_CACHE", str(root / "cache"))
        result = automl.search(
            data=(x, y),
            space=copy.deepcopy(SPACE),
            max_trials=3,
            tuner="random",
            experiment="ui-demo",
            tracking_uri=uri,
        )
    return result, uri, root


@pytest.fixture(scope="module")
def ui(store):
    """`automl ui` (the CLI) as a subprocess on a free localhost port."""
    _, uri, root = store
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    log = open(root / "ui.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl", "ui", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the MLflow server children stop with it
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        printed = (root / "ui.log").read_text()
        # the link `automl ui` prints to the experiment just searched
        link = next(
            w for w in printed.split() if w.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        )
        yield f"http://127.0.0.1:{port}", link
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        log.close()
    printed = (root / "ui.log").read_text()
    assert f"MLflow UI on http://127.0.0.1:{port}" in printed


def browse(link: str, parent, trial, shots: Path) -> dict[str, str]:
    """Drive the UI like a user; returns the page texts seen. Raises on anything missing."""
    from playwright.sync_api import expect, sync_playwright

    seen = {}
    profile = tempfile.mkdtemp(prefix="automl-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 2200, "height": 1100},
            )
            ctx.set_default_timeout(60_000)
            page = ctx.new_page()
            # The printed link: MLflow 3 would open the GenAI overview (traces, latency, token
            # usage); the link opens the model-training view with the runs table.
            page.goto(link, wait_until="domcontentloaded")
            parent_link = page.get_by_role("link", name=parent.info.run_name, exact=True)
            parent_link.wait_for()
            page.locator(".ag-row").first.wait_for()  # the runs table
            page.screenshot(path=str(shots / "landing.png"))
            seen["landing"] = page.inner_text("body")
            close = page.get_by_role("button", name="Close")  # the assistant side panel
            if close.count():
                close.first.click()
            # nested runs are folded under their parent: unfold them
            trial_link = page.get_by_role("link", name=trial.info.run_name, exact=True)
            if not trial_link.count():
                page.locator(".ag-row").filter(has=parent_link).locator("button").first.click()
            trial_link.wait_for()
            # metric and parameter columns are picked in the "Columns" menu
            page.get_by_role("button", name="Columns", exact=True).click()
            for column in COLUMNS:
                page.get_by_role("dialog").get_by_text(column, exact=True).first.click()
            page.keyboard.press("Escape")
            header = page.locator(".ag-header")
            for column in COLUMNS:
                expect(header).to_contain_text(column)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "runs.png"))
            seen["runs"] = page.inner_text("body")
            # one trial run: overview, then its artifacts
            trial_link.click()
            page.get_by_text("val_accuracy").first.wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "trial_overview.png"))
            seen["trial"] = page.inner_text("body")
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("config.yaml", exact=True).wait_for()
            page.get_by_text("plots", exact=True).click()
            page.get_by_text("learning_curve.png", exact=True).click()
            page.locator("img[src^='blob:'], img[src*='get-artifact']").first.wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "trial_artifacts.png"))
            seen["artifacts"] = page.inner_text("body")
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return seen


@pytest.mark.slow
def test_mlflow_ui_shows_search_trials_metrics_and_artifacts(store, ui, capsys):
    result, _, _ = store
    tracker = result.tracker
    parent = tracker.client.get_run(result.parent_run_id)
    trials = tracker.trial_runs(result.parent_run_id)
    assert len(trials) == 3
    trial = trials[0]
    shots = Path(tempfile.mkdtemp(prefix="automl-ui-screenshots-"))
    base, link = ui
    assert link == (
        f"{base}/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
    )
    assert result.ui_url.endswith(link[len(base) :])  # the search printed the same page
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    seen = browse(link, parent, trial, shots)
    landing = seen["landing"]
    assert parent.info.run_name in landing  # the runs table, where the link lands
    assert "4 matching runs" in landing  # the parent and its three trials
    for word in ("Token usage", "Latency"):  # not the GenAI overview ("Traces" is in the menu)
        assert word.lower() not in landing.lower(), word
    runs = seen["runs"]
    assert parent.info.run_name in runs
    for t in trials:
        assert t.info.run_name in runs
    assert "val_accuracy" in runs
    assert "images-train" in runs or "arrays-train" in runs  # the dataset column
    assert "learning_rate" in seen["trial"] and "val_accuracy" in seen["trial"]
    for name in ("config.yaml", "model_summary.txt", "per_class_validation.json", "plots"):
        assert name in seen["artifacts"]
    assert "learning_curve.png" in seen["artifacts"]
    for png in ("landing.png", "runs.png", "trial_overview.png", "trial_artifacts.png"):
        assert (shots / png).stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nMLflow UI screenshots: {shots}")


def browse_compare(compare: str, base: str, exp_id: str, parent_id: str, names, shots: Path):
    """The printed compare link, then the parent run's note and report; returns page texts."""
    from playwright.sync_api import sync_playwright

    seen = {}
    profile = tempfile.mkdtemp(prefix="automl-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1500, "height": 1000},
            )
            ctx.set_default_timeout(60_000)
            page = ctx.new_page()
            page.goto(compare, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Parallel Coordinates Plot").wait_for()
            page.locator(".js-plotly-plot .parcoords").first.wait_for()  # the plot itself
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for()
            close = page.get_by_role("button", name="Close")  # the assistant side panel
            if close.count():
                close.first.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "mlflow-compare.png"))
            seen["compare"] = page.inner_text("body")
            page.goto(
                f"{base}/#/experiments/{exp_id}/runs/{parent_id}", wait_until="domcontentloaded"
            )
            page.get_by_text("Winner", exact=False).first.wait_for()  # the run's description
            seen["parent"] = page.inner_text("body")
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("search_report.html", exact=True).first.click()
            report = page.frame_locator("iframe").first
            report.get_by_text("Search report", exact=True).wait_for()
            report.locator("img[alt='search report']").wait_for()
            close = page.get_by_role("button", name="Close")
            if close.count():
                close.first.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "mlflow-report.png"))
            seen["report"] = report.locator("body").inner_text()
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return seen


@pytest.mark.slow
def test_compare_link_opens_trials_side_by_side_and_parent_shows_report(store, ui, capsys):
    from tests.test_search_report import _link_runs

    result, _, root = store
    tracker = result.tracker
    base, _ = ui
    printed = (root / "ui.log").read_text()
    # `automl ui` prints the compare view of the search's finished trials
    compare = next(w for w in printed.split() if w.startswith(f"{base}/#/compare-runs?"))
    assert "compare the 3 finished trials:" in printed
    trials = tracker.trial_runs(result.parent_run_id)
    runs, exps = _link_runs(compare)
    assert sorted(runs) == sorted(t.info.run_id for t in trials)
    assert exps == [tracker.experiment_id]
    assert result.compare_url.endswith(compare[len(base) :])  # the search's own link
    names = [t.info.run_name for t in trials]
    assert all(n.startswith(("trial-000 ", "trial-001 ", "trial-002 ")) for n in names)
    shots = Path(tempfile.mkdtemp(prefix="automl-ui-screenshots-"))
    seen = browse_compare(compare, base, tracker.experiment_id, result.parent_run_id, names, shots)
    assert "Comparing 3 Runs" in seen["compare"]
    for name in names:
        assert name in seen["compare"]
    assert "Winner" in seen["parent"] and "test accuracy" in seen["parent"]
    report = seen["report"]
    assert "Search report" in report and "Best trials" in report
    for name in names:
        assert name in report
    for png in ("mlflow-compare.png", "mlflow-report.png"):
        assert (shots / png).stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nMLflow compare and report screenshots: {shots}")
