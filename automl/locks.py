"""One search per experiment at a time: an OS-level lock on the experiment's folder.

A search takes an exclusive lock (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on
Windows) on ``mlruns/automl/NAME/.automl-lock`` before it reads or writes anything in the
folder, and holds it until it returns. A second search on the same experiment is refused
at once with one line naming the holder (its PID, host and start time, read from the side
file ``.automl-lock.json``). The kernel releases the lock when its process dies, even by
SIGKILL, so a killed search never blocks the next one: its lock is simply free again (the
stale side file is overwritten).

The lock guards the local folder only: two machines that share one MLflow tracking server
but each have their own project folder are not serialised by it (see the README).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from automl.errors import ExperimentBusyError, StorageError
from automl.paths import io_error_line, is_storage_error

LOCK_FILE = ".automl-lock"
HOLDER_FILE = ".automl-lock.json"

__all__ = ["ExperimentBusyError", "ExperimentLock"]


def _holder_line(folder: Path) -> str:
    """Who holds the lock, as the holder wrote it: ``pid 123 on host, started ...``."""
    try:
        h = json.loads((folder / HOLDER_FILE).read_text())
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written who it is"


class ExperimentLock:
    """The exclusive lock of one experiment folder; a context manager.

    >>> with ExperimentLock(project, "exp"):
    ...     ...  # only this process runs a search in ``project``
    """

    def __init__(self, folder: Path, experiment: str, command: str = "search"):
        self.folder, self.experiment, self.command = Path(folder), experiment, command
        self._lock = None

    def acquire(self) -> ExperimentLock:
        """Take the lock, or raise :class:`ExperimentBusyError` naming its holder."""
        import filelock

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if not is_storage_error(e):
                raise
            raise StorageError(
                f"{io_error_line(e, self.folder)}: the experiment's folder cannot be made"
            ) from None
        lock = filelock.FileLock(str(self.folder / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ExperimentBusyError(
                f"experiment {self.experiment!r} is in use by another automl {self.command} "
                f"({_holder_line(self.folder)}; folder {str(self.folder)!r}); wait until it "
                "ends, or use another --experiment"
            ) from None
        self._lock = lock
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": self.command,
        }
        tmp = self.folder / (HOLDER_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(info))
            tmp.replace(self.folder / HOLDER_FILE)
        except OSError:  # only the refusal message of a second search needs it
            tmp.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        """Let go (the side file first, while the lock is still ours)."""
        if self._lock is None:
            return
        try:
            (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()
        self._lock = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
