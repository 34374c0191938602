"""Trials in one worker process, recycled every few trials, so the search's memory stays bounded.

TensorFlow keeps some memory per model it has trained (tens of MB for each fine-tuned
backbone, and ``keras.backend.clear_session()`` does not give it back), so a long search in
one process grows. :class:`TrialWorker` runs each trial in a child process
(``python -m automl.executors.process``) and replaces that process once its memory has grown 10 % over
what it held after its first trial, after ``trials_per_worker`` trials, and after any failed
trial. Trials that leak nothing (phase 1 only) keep one worker for longer. Whatever a trial does to its process, even a crash or the
system's out-of-memory killer, the search goes on.

The two processes talk in JSON lines over a pair of pipes (nothing is pickled). The data
travels once per search as index arrays: each worker opens the search's image store by its
path (read-only), or memory-maps a small in-memory array saved once as ``.npy``; the embedding cache
lives on disk next to it, so a new worker reuses the features an earlier one computed. The
worker logs per-epoch metrics to MLflow itself and saves the checkpoint; the search's process
creates and closes the runs. A worker dies with its parent (``PR_SET_PDEATHSIG``) and
ignores Ctrl-C (the parent stops it), so a killed search never leaves a trial writing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from automl.data.persist import load_bundle, save_bundle
from automl.errors import AutoMLError, SearchError
from automl.executors import register_executor
from automl.executors.base import (
    Executor,
    JobFailure,
    JobResult,
    TrialJob,
    WorkerSetup,
    check_option,
    done_future,
)

log = logging.getLogger("automl")

# A worker is replaced once its resident memory exceeds what it held after its first trial
# by this fraction (or after ``trials_per_worker`` trials, whichever comes first).
MAX_GROWTH = 0.10


def _forward_stderr(pipe) -> None:
    """Copy a worker's stderr to ours in a thread, without TensorFlow's start-up noise."""
    import threading

    from automl.progress import is_startup_noise

    def pump():
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace")
                if not is_startup_noise(line):
                    try:
                        sys.stderr.write(line)
                        sys.stderr.flush()
                    except (OSError, ValueError):  # our stderr is gone: keep draining
                        pass

    threading.Thread(target=pump, name="automl-worker-stderr", daemon=True).start()


def worker_env() -> dict[str, str]:
    """The environment of a worker process: the search's own, unchanged.

    No path of the source tree is added: the worker imports automl (and its package data)
    from wherever it is installed, exactly as the search does, so a broken install shows in
    the search instead of being hidden by the repository's files.
    """
    return dict(os.environ)


def _warm_modules(init: dict[str, Any]) -> list[str]:
    """What a new worker imports before its set-up arrives: TensorFlow and Keras, MLflow's
    client, and its SQL store when the tracking URI is a database (1-2 s of imports)."""
    from urllib.parse import urlparse

    mods = ["tensorflow", "keras", "mlflow.tracking"]
    scheme = urlparse(str(init.get("tracking_uri") or "")).scheme.split("+")[0]
    if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
        mods.append("mlflow.store.tracking.sqlalchemy_store")
    return mods


def _spawn(warm: list[str]):
    """Start a worker process: ``(process, its inbox, its outbox)``. It imports ``warm``
    at once, then waits for its set-up (:meth:`TrialWorker.start` sends it)."""
    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automl.executors.process",
                str(p2c_r),
                str(c2p_w),
                str(os.getpid()),
                *warm,
            ],
            pass_fds=(p2c_r, c2p_w),
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            # Its stderr passes through a filter: TensorFlow's start-up INFO chatter,
            # which every new worker would repeat, is dropped; warnings go through.
            stderr=subprocess.PIPE,
            # Its own session: a terminal's Ctrl-C reaches the search only, which stops
            # the worker itself (and PR_SET_PDEATHSIG covers a search that is killed).
            start_new_session=True,
        )
        _forward_stderr(proc.stderr)
    except BaseException:
        for fd in (p2c_w, c2p_r):
            os.close(fd)
        raise
    finally:
        os.close(p2c_r)
        os.close(c2p_w)
    return (
        proc,
        os.fdopen(p2c_w, "w", encoding="utf-8"),
        os.fdopen(c2p_r, "r", encoding="utf-8"),
    )


# A worker started ahead of time (:func:`prestart`): its imports (TensorFlow, MLflow: 3-8 s
# on 2 CPUs) overlap the search's own start-up (listing the files, the store, MLflow).
_spare: dict[str, Any] = {}


def prestart(tracking_uri: str | None) -> None:
    """Start the first trial worker now, for the next :meth:`TrialWorker.start` in this
    process to take; :func:`discard_spare` stops it if no search does."""
    discard_spare()
    env = worker_env()
    try:
        spawned = _spawn(_warm_modules({"tracking_uri": tracking_uri}))
    except Exception as e:  # noqa: BLE001 - only a head start: the trial starts its own
        log.debug("no worker started ahead of the search: %s", e)
        return
    _spare.update(spawned=spawned, env=env)


def _take_spare():
    """The worker :func:`prestart` started, if it is alive and its environment is still
    the search's (:func:`_same_env`)."""
    spawned, env = _spare.pop("spawned", None), _spare.pop("env", None)
    if spawned is None:
        return None
    if spawned[0].poll() is None and _same_env(env, worker_env()):
        return spawned
    _stop(*spawned)
    return None


def _same_env(then: dict[str, str], now: dict[str, str]) -> bool:
    """Is ``now`` the environment a worker started with ``then`` would get? Variables set
    since do not count (importing TensorFlow sets a few, which the worker's own import sets
    the same way), except automl's own (a plugin registered since: ``AUTOML_PLUGINS``)."""
    if any(now.get(k) != v for k, v in then.items()):
        return False
    return not any(k.startswith("AUTOML") for k in now.keys() - then.keys())


def discard_spare() -> None:
    """Stop the worker :func:`prestart` started if nothing took it (no-op otherwise)."""
    spawned = _spare.pop("spawned", None)
    _spare.clear()
    if spawned is not None:
        _stop(*spawned)


def _stop(proc, to, frm) -> None:
    for f in (to, frm):
        try:
            f.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
    proc.kill()
    proc.wait()


class WorkerDied(Exception):
    """The worker process ended without answering; ``final``: do not retry the trial."""

    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason)
        self.reason, self.final = reason, final


class TrialWorker:
    """The search's side: start a worker, hand it trials, recycle it.

    ``init`` is the JSON-able set-up every worker receives (data folder, tracking URI,
    experiment, checkpoint settings, embedding cache folder, accelerator settings).
    """

    def __init__(
        self, init: dict[str, Any], trials_per_worker: int, max_growth: float | None = None
    ):
        self.init = init
        self.trials_per_worker = max(1, int(trials_per_worker))
        self.max_growth = MAX_GROWTH if max_growth is None else max_growth
        self.first_rss: float | None = None  # the current worker's RSS after its first trial
        self.proc: subprocess.Popen | None = None
        self._to = self._from = None
        self.trials_done = 0  # by the current process
        self.info: dict[str, Any] = {}  # what the worker reported when ready (accelerator)
        self.on_epoch = None  # called with each epoch a worker reports (the progress display)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> dict[str, Any]:
        """Start a worker and wait until it is ready; returns its report (accelerator)."""
        self.close()
        self.proc, self._to, self._from = _take_spare() or _spawn(_warm_modules(self.init))
        self.trials_done, self.first_rss = 0, None
        try:
            self._send({"init": self.init})
            reply = self._receive()
        except WorkerDied as e:
            self.close()
            raise SearchError(f"the trial worker could not start: {e.reason}") from None
        except BaseException:  # Ctrl-C while it starts
            self.close(kill=True)
            raise
        if not reply.get("ok"):
            err = reply.get("error", "?")
            self.close()
            raise SearchError(f"the trial worker could not start: {err}")
        self.info = reply.get("info", {})
        return self.info

    def run(self, job: dict[str, Any]) -> JobResult | JobFailure:
        """Run one trial in the worker: its result, or why it failed."""
        if self.proc is not None and self.proc.poll() is not None:  # died while idle
            self.close()
        if self.proc is None or self._spent():
            try:
                self.start()
            except AutoMLError as e:  # the next trial tries a new worker again
                return JobFailure(str(e))
        try:
            self._send({"job": job})
            reply = self._receive()
            while "epoch" in reply:  # progress of the running trial, then its result
                if self.on_epoch is not None:
                    self.on_epoch(reply["epoch"])
                reply = self._receive()
        except WorkerDied as e:
            self.close()
            return JobFailure(e.reason, final=e.final)
        except BaseException:  # Ctrl-C / SIGTERM: stop the trial before its run is closed
            self.close(kill=True)
            raise
        self.trials_done += 1
        if reply.get("ok") and self.first_rss is None:
            self.first_rss = reply["result"].get("rss_mb")
        if not reply.get("ok"):
            self.close()  # a failed trial may leave its process in a bad state: start afresh
            f = reply["failure"]
            return JobFailure(f["reason"], f.get("details", ""), bool(f.get("final")))
        return JobResult(**reply["result"])

    def _spent(self) -> bool:
        """Replace the worker? After ``trials_per_worker`` trials, or once its memory has
        grown by more than ``max_growth`` over what it held after its first trial."""
        if self.trials_done >= self.trials_per_worker:
            return True
        if self.first_rss and self.proc is not None:
            try:
                import psutil

                rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20
            except Exception:  # gone, or no permission: the next send will tell
                return False
            if rss > self.first_rss * (1 + self.max_growth):
                log.info(
                    "trial worker grew from %.0f to %.0f MiB: starting a new one",
                    self.first_rss,
                    rss,
                )
                return True
        return False

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self._to.write(json.dumps(msg) + "\n")
            self._to.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._died() from None

    def _receive(self) -> dict[str, Any]:
        line = self._from.readline()
        if not line:
            raise self._died()
        return json.loads(line)

    def _died(self) -> WorkerDied:
        rc = self.proc.wait() if self.proc is not None else None
        if rc == -signal.SIGKILL:
            return WorkerDied(
                "trial worker was killed (SIGKILL; most likely the system ran out of memory)",
                True,
            )
        if rc is not None and rc < 0:
            try:
                how = f"signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"signal {-rc}"
        else:
            how = f"code {rc}"
        return WorkerDied(f"trial worker process died (exit {how})", False)

    def close(self, kill: bool = False) -> None:
        """Stop the worker: politely (it exits between trials), or at once with ``kill``."""
        if self.proc is None:
            return
        if not kill and self.proc.poll() is None:
            try:
                self._to.write(json.dumps({"exit": True}) + "\n")
                self._to.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
        for f in (self._to, self._from):
            try:
                f.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        try:
            if kill:
                self.proc.kill()
            self.proc.wait(timeout=None if kill else 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@register_executor("process")
class ProcessExecutor(Executor):
    """One trial at a time in a :class:`TrialWorker`, replaced after ``trials_per_worker``
    trials (or once its memory grew 10 %); the data travels once, as index files."""

    slots = 1

    def __init__(self, trials_per_worker: int = 10):
        check_option("trials_per_worker", trials_per_worker)
        self.trials_per_worker = trials_per_worker
        self.worker = TrialWorker({}, trials_per_worker)

    def bind(self, setup: WorkerSetup, data) -> ProcessExecutor:
        self.worker = TrialWorker({}, self.trials_per_worker)
        return super().bind(setup, data)

    def start(self) -> dict[str, Any]:
        data_dir = Path(self.setup.data_dir)
        meta = data_dir / "meta.json"
        if not (meta.exists() and json.loads(meta.read_text()).get("digest") == self.data.digest()):
            save_bundle(self.data, data_dir)
        self.worker.init = self.setup.to_dict()
        return self.worker.start()["accelerator"]

    def submit(self, job: TrialJob) -> Future:
        self.worker.on_epoch = self.on_epoch  # the worker sends each epoch back
        return done_future(self.worker.run(job.to_dict()))

    def close(self, kill: bool = False) -> None:
        self.worker.close(kill=kill)


# ----------------------------------------------------------------------------- worker side


def _die_with_parent(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _quiet_libraries() -> None:
    for noisy in ("absl", "tensorflow", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _warm_up(modules: list[str]) -> None:
    """Import ``modules`` while the search is still starting (before its set-up arrives);
    one that cannot be imported is left to the set-up or the trial to report."""
    import importlib

    _quiet_libraries()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - e.g. no TensorFlow (JAX): said where it is used
            pass


def _setup(init: dict[str, Any]):
    setup = WorkerSetup(**init)
    logging.basicConfig(
        level=setup.log_level,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    _quiet_libraries()
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no "generated new fontManager"
    from automl.accelerator import setup_accelerator
    from automl.executors.runner import build_context

    accel = setup_accelerator(setup.mixed_precision, setup.xla)
    return build_context(setup, load_bundle(Path(setup.data_dir))), accel


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    in_fd, out_fd, parent_pid = (int(a) for a in argv[:3])
    _die_with_parent(parent_pid)
    inbox = os.fdopen(in_fd, "r", encoding="utf-8")
    outbox = os.fdopen(out_fd, "w", encoding="utf-8")

    def reply(msg: dict[str, Any]) -> None:
        outbox.write(json.dumps(msg) + "\n")
        outbox.flush()

    _warm_up(argv[3:])
    from automl.executors.runner import run_job

    def send_epoch(entry: dict[str, Any]) -> None:
        clean: dict[str, Any] = {}
        for k, v in entry.items():
            if v is None or isinstance(v, (str, bool)):
                clean[k] = v
            else:
                try:
                    clean[k] = float(v)  # Python or NumPy scalars
                except (TypeError, ValueError):
                    pass
        reply({"epoch": clean})

    ctx = None
    for line in inbox:
        msg = json.loads(line)
        if "init" in msg:
            try:
                ctx, accel = _setup(msg["init"])
                ctx.on_progress = send_epoch
            except Exception as e:
                reply({"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
                return 1
            reply({"ok": True, "info": {"accelerator": accel, "pid": os.getpid()}})
        elif "job" in msg:
            # Re-read the top-k index: another worker may have changed it since.
            ctx.checkpoints.reload()
            out = run_job(TrialJob(**msg["job"]), ctx)
            if isinstance(out, JobFailure):
                failure = {"reason": out.reason, "details": out.details, "final": out.final}
                reply({"ok": False, "failure": failure})
            else:
                result = {
                    k: getattr(out, k)
                    for k in ("metrics", "kept", "stopped", "rss_mb", "predict_per_s")
                }
                reply({"ok": True, "result": {**result, "where": out.where}})
        elif msg.get("exit"):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
