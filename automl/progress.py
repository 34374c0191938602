"""What a search shows while it runs: one reporter for Python and the command line.

In a terminal, two tqdm bars: the trials of the search (with the best score so far and the
time left in the budget) and the epochs of the current trial. When the output is not a
terminal (a log file, CI, a notebook's captured stream), plain lines instead: one per trial
start and end, one per epoch. Everything goes to stderr, so stdout keeps the results.
``verbose=0`` shows nothing.

The search calls :meth:`Progress.search_started`, :meth:`trial_started`, :meth:`epoch`,
:meth:`trial_finished` and :meth:`close`; trial workers send their epochs to the search,
which hands them here (one reporter, whichever process trains). A training outside a search
(``automl retrain``) calls :meth:`run_started`, :meth:`epoch` and :meth:`close`: one epoch bar,
or its start line and one line per epoch.

Also here: :func:`import_tensorflow_quietly` and :func:`is_startup_noise`, which drop
TensorFlow's C++ start-up chatter (oneDNN, "could not find cuda drivers", absl's preamble)
that ``TF_CPP_MIN_LOG_LEVEL`` no longer silences, and that every trial worker would repeat.
Real warnings (absl ``W``/``E`` lines, Python warnings) are kept.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, TextIO

# absl INFO lines ("I0000 00:00:1795619785.287941   20450 port.cc:153] oneDNN ...") and the
# preamble absl writes before them; W (warning), E and F lines are real and stay.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR|I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] )"
)


def is_startup_noise(line: str) -> bool:
    """Whether a stderr line is TensorFlow start-up chatter (absl INFO), not a warning."""
    return bool(_NOISE.match(line))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up INFO lines dropped (warnings are kept).

    They are written to file descriptor 2 while the library loads and its runtime starts,
    before Python can configure anything, so the descriptor is pointed at a temporary file for the import and
    what is not noise is written back to stderr.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreter)
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow as tf

            tf.constant(0)  # the runtime's own start-up lines come with its first use
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [
                line
                for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_startup_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """The search's progress display (tqdm bars in a terminal, plain lines otherwise).

    Args:
        verbose: 0 shows nothing; 1 (default) shows the progress.
        stream: where to write (default ``sys.stderr``).
        bars: tqdm bars (True) or plain lines (False); default: bars when ``stream`` is a
            terminal.
    """

    def __init__(self, verbose: int | bool = 1, stream: TextIO | None = None, bars=None):
        self.verbose = int(verbose)
        self.stream = stream or sys.stderr
        if bars is None:
            isatty = getattr(self.stream, "isatty", None)
            bars = bool(isatty and isatty())
        self.bars = bars
        self.objective = "val_accuracy"
        self.max_trials = 0
        self.deadline: float | None = None
        self.best: float | None = None
        self.started = time.time()
        self.current: str | None = None
        self.label = ""  # what an epoch line is of: "trial 3", "retrain of trial 3"
        self.epochs = 0
        self._trials_bar = self._epochs_bar = None

    # --- what the search calls --------------------------------------------------------------
    def search_started(
        self, max_trials: int, objective: str, deadline: float | None = None, done: int = 0
    ) -> None:
        self.max_trials, self.objective, self.deadline = max_trials, objective, deadline
        self.started = time.time()
        if not self.verbose:
            return
        if self.bars:
            from tqdm.auto import tqdm

            self._trials_bar = tqdm(
                total=max_trials,
                initial=done,
                desc="trials",
                unit="trial",
                file=self.stream,
                position=0,
                dynamic_ncols=True,
            )
            self._trials_bar.set_postfix_str(self._status(), refresh=True)
        else:
            self._line(
                f"search: up to {max_trials} trials ({done} done), objective {objective}"
                + (f", {_clock(deadline - time.time())} budget" if deadline else "")
            )

    def trial_started(self, trial_id: str, number: int, epochs: int, summary: str = "") -> None:
        self.current, self.label, self.epochs = trial_id, f"trial {trial_id}", int(epochs)
        if not self.verbose:
            return
        if self.bars:
            self._epochs_bar_for(position=1)
        else:
            self._line(
                f"trial {trial_id} started ({number} of at most {self.max_trials})"
                + (f": {summary}" if summary else "")
            )

    def run_started(self, label: str, epochs: int, summary: str = "") -> None:
        """A training outside a search (``label``: "retrain of trial 3") of ``epochs`` epochs."""
        self.label, self.epochs = label, int(epochs)
        if not self.verbose:
            return
        if self.bars:
            self._epochs_bar_for(position=0)
        else:
            self._line(
                f"{label} started ({self.epochs} epochs)" + (f": {summary}" if summary else "")
            )

    def epoch(self, entry: dict[str, Any]) -> None:
        """One finished epoch of the current trial: ``{"step", "phase", "loss", ...}``."""
        if not self.verbose:
            return
        keys = dict.fromkeys(("loss", "accuracy", "val_loss", "val_accuracy", self.objective))
        scores = " ".join(
            f"{k}={entry[k]:.4f}" for k in keys if isinstance(entry.get(k), (int, float))
        )
        step = int(entry.get("step", 0)) + 1
        if self.bars and self._epochs_bar is not None:
            self._epochs_bar.n = min(step, self._epochs_bar.total or step)
            self._epochs_bar.set_postfix_str(scores, refresh=True)
        else:
            self._line(
                f"{self.label} epoch {step}/{self.epochs} ({entry.get('phase', '')}): " + scores
            )

    def trial_finished(
        self, trial_id: str, score: dict[str, float] | None = None, failed: str | None = None
    ) -> None:
        value = None if score is None else score.get(self.objective)
        if value is not None:
            from automl.metrics import direction

            lower = direction(self.objective) == "min"  # val_loss, val_mae, val_rmse
            better = self.best is None or (value < self.best if lower else value > self.best)
            if better:
                self.best = value
        if not self.verbose:
            return
        if self.bars and self._trials_bar is not None:
            if failed is None:  # a failed trial may run again: it does not count yet
                self._trials_bar.update(1)
            self._trials_bar.set_postfix_str(self._status(), refresh=True)
            if failed is not None:
                self._trials_bar.write(f"trial {trial_id} failed: {failed}", file=self.stream)
        elif failed is not None:
            self._line(f"trial {trial_id} failed: {failed} | {self._status()}")
        else:
            self._line(f"trial {trial_id} done: {self.objective}={value:.4f} | {self._status()}")

    def message(self, text: str) -> None:
        """A line of its own (between the bars in a terminal)."""
        if not self.verbose:
            return
        if self.bars and self._trials_bar is not None:
            self._trials_bar.write(text, file=self.stream)
        else:
            self._line(text)

    def close(self) -> None:
        for bar in (self._epochs_bar, self._trials_bar):
            if bar is not None:
                bar.close()
        self._epochs_bar = self._trials_bar = None

    # --- helpers ----------------------------------------------------------------------------
    def _epochs_bar_for(self, position: int) -> None:
        """The epoch bar (one, reused from trial to trial), reset for :attr:`label`."""
        if self._epochs_bar is None:
            from tqdm.auto import tqdm

            self._epochs_bar = tqdm(
                total=self.epochs,
                desc=self.label,
                unit="epoch",
                file=self.stream,
                position=position,
                leave=False,
                dynamic_ncols=True,
            )
        else:
            self._epochs_bar.reset(total=self.epochs)
            self._epochs_bar.set_description(self.label)

    def _status(self) -> str:
        best = f"best {self.objective}={self.best:.4f}" if self.best is not None else "no best yet"
        if self.deadline is not None:
            return f"{best}, {_clock(self.deadline - time.time())} left in the budget"
        return best

    def _line(self, text: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()
