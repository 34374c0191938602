"""The wheel is self-contained: built-in spaces ship as package data, workers add no repo path.

(.ci/run goes further: it installs the wheel into a fresh virtual environment and runs a
search from a folder outside the repository.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import automl.executors.process as worker_mod

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_builtin_spaces_and_finds_them_outside_the_repo(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("automl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"automl/spaces/default.yaml", "automl/spaces/gpu.yaml"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install` puts in site-packages
    probe = (
        "import automl.space as s, sys; "
        "assert s.__file__.startswith(sys.argv[1]), s.__file__; "
        "print(s.builtin_spaces(), s.load_space('default').name, s.load_space('gpu').name)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the wheel's files only, not the repository's
    r = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["['default',", "'gpu']", "default", "gpu"]


def test_search_spaces_folder_is_a_link_to_the_package_data():
    link = REPO / "search_spaces"
    assert link.is_symlink() and link.resolve() == (REPO / "automl" / "spaces").resolve()
    assert (link / "default.yaml").read_text() == (REPO / "automl/spaces/default.yaml").read_text()


def test_worker_environment_adds_no_repository_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    assert worker_mod.worker_env()["PYTHONPATH"] == "/somewhere/else"
    monkeypatch.delenv("PYTHONPATH")
    assert "PYTHONPATH" not in worker_mod.worker_env()
