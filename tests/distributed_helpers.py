"""Helpers of the distributed tests: a real PostgreSQL behind a real ``mlflow server``, run
checks shared by the Ray tests."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.robust_helpers import FAST_SPACE_YAML

SPACE = yaml.safe_load(FAST_SPACE_YAML)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl`` (Debian puts them outside PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


@contextmanager
def postgres():
    """A fresh PostgreSQL cluster on 127.0.0.1 in a temp folder; yields its URI."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="automl-pg-"))
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = free_port()
    data = root / "data"
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ]
    )
    try:
        _as_postgres(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "mlflow",
            ]
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path):
    """``mlflow server`` on 127.0.0.1 serving artifacts from ``artifacts``; yields its URL."""
    port = free_port()
    log = open(artifacts.parent / "mlflow-server.log", "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
         "--serve-artifacts", "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(
                    "mlflow server did not start:\n"
                    + (artifacts.parent / "mlflow-server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        log.close()


def trial_runs(uri: str, experiment: str):
    """(parent runs, {trial id: [runs oldest first]}) of an experiment."""
    from automl.tracking import Tracker

    t = Tracker(uri, experiment)
    parents = t.client.search_runs([t.experiment_id], "tags.`automl.kind` = 'search'")
    out: dict[str, list] = {}
    for p in parents:
        for r in t.trial_runs(p.info.run_id):
            out.setdefault(r.data.tags["automl.trial_id"], []).append(r)
    return list(parents), out


def assert_each_trial_once(runs: dict[str, list]) -> None:
    """No trial finished twice, none left RUNNING; a trial's last run is FINISHED or FAILED."""
    for tid, rs in runs.items():
        statuses = [r.info.status for r in rs]
        assert "RUNNING" not in statuses, (tid, statuses)
        assert statuses.count("FINISHED") <= 1, (tid, statuses)
        assert statuses[-1] in ("FINISHED", "FAILED"), (tid, statuses)
