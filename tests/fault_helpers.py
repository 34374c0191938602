"""Fault injection for the reliability tests: Ctrl-C at the Nth step, a full disk at the Nth write.

:class:`Tripwire` counts calls of chosen functions and, at call number ``at``, sends this
process a real SIGINT (Python raises KeyboardInterrupt at the next bytecode, wherever that
is: inside the function, or just after it). :class:`FailingWrites` makes every file write
from the Nth on fail with ENOSPC or EACCES, as a disk that fills up (or a folder that turns
read-only) does: ``open`` for writing, ``os.replace`` / ``os.rename``, ``os.mkdir``.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import signal
from collections.abc import Iterable


class Tripwire:
    """Counts calls of ``targets`` (``(owner, attribute)`` pairs); SIGINT at call ``at``."""

    def __init__(self, monkeypatch, targets: Iterable[tuple[object, str]], at: int | None = None):
        self.count, self.at, self.names = 0, at, []
        for owner, name in targets:
            original = getattr(owner, name)
            label = f"{getattr(owner, '__name__', owner)}.{name}"
            monkeypatch.setattr(owner, name, self._wrap(original, label))

    def _wrap(self, fn, label):
        def wrapper(*args, **kwargs):
            self.count += 1
            self.names.append(label)
            if self.count == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            return fn(*args, **kwargs)

        return wrapper


class FailingWrites:
    """From the ``at``-th file write on, every write fails with ``code`` (counted always)."""

    def __init__(self, monkeypatch, at: int | None = None, code: int = errno.ENOSPC):
        self.count, self.at, self.code, self.paths = 0, at, code, []
        real_open, real_replace, real_rename, real_mkdir = (
            builtins.open,
            os.replace,
            os.rename,
            os.mkdir,
        )

        def write(path) -> None:
            self.count += 1
            self.paths.append(str(path))
            if self.at is not None and self.count >= self.at:
                raise OSError(self.code, os.strerror(self.code), str(path))

        def fake_open(file, mode="r", *args, **kwargs):
            # Opening an existing file to append (a lock file) needs no space: not a write.
            appends = "a" in mode and os.path.exists(file)
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                if not appends:
                    write(file)
            return real_open(file, mode, *args, **kwargs)

        def fake_replace(src, dst, *args, **kwargs):
            write(dst)
            return real_replace(src, dst, *args, **kwargs)

        def fake_rename(src, dst, *args, **kwargs):
            write(dst)
            return real_rename(src, dst, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            write(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)  # pathlib, zipfile
        monkeypatch.setattr(os, "replace", fake_replace)
        monkeypatch.setattr(os, "rename", fake_rename)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)


def light_reports(monkeypatch) -> None:
    """The search's and trials' reports (plots, datasets, an MLflow model: seconds each) as
    one small artifact each: a failure there is a warning by design (reports._guard), and the
    sweeps need a search that takes a fraction of a second.

    The search report (automl.search_report.refresh, after every trial and at the end) keeps
    every step and every write (the notes, report.html, the PNG file, the tags): only the
    matplotlib drawing of its figure (most of a fake search's time) is a fixed PNG's bytes."""
    import automl.executors.runner as runner
    import automl.reports as reports
    import automl.search_report as search_report

    def search_reports(tracker, parent_id, **kw):
        tracker.log_text(parent_id, "trial\n", "leaderboard.csv")
        return {}

    def trial_reports(tracker, run_id, *a, **kw):
        tracker.log_text(run_id, "config\n", "config.yaml")

    monkeypatch.setattr(reports, "log_search_reports", search_reports)
    monkeypatch.setattr(reports, "log_trial_reports", trial_reports)
    monkeypatch.setattr(search_report, "report_figure", lambda *a, **kw: None)
    monkeypatch.setattr(search_report, "_png", lambda fig: _PNG)
    no_gc = type("gc", (), {"collect": staticmethod(lambda *a: 0)})
    monkeypatch.setattr(runner, "gc", no_gc)
    # keras.backend.clear_session runs a full gc.collect: 0.7 s each with TensorFlow loaded
    import keras.src.backend.common.global_state as keras_state

    monkeypatch.setattr(keras_state, "gc", no_gc)


# A 1x1 PNG: what the search report's figure is replaced by in the sweeps.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000001010100a9d1b7b70000000049454e44ae426082"
)
