"""Top-K model files of a search: the best ``k`` trials keep a ready ``.keras`` export."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from automl.tracking import rank_key


class Checkpoints:
    """Model files of the best ``k`` trials; the others keep metrics and plots but no weights.

    One process at a time writes the index: the search's process, or its single recycled
    trial worker (which calls :meth:`reload` before each trial). With several trials at once
    (Ray) the workers ship their model file to the search, which offers it here.
    """

    def __init__(self, folder: Path, k: int, objective: str, class_names: list[str]):
        self.folder, self.k, self.objective, self.class_names = folder, k, objective, class_names
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index_file = folder / "index.json"
        self.reload()

    def reload(self) -> None:
        """Read the index again (a trial worker of the same search may have changed it)."""
        self.scores: dict[str, dict[str, float]] = (
            json.loads(self.index_file.read_text()) if self.index_file.exists() else {}
        )

    def path(self, trial_id: str) -> Path:
        return self.folder / f"trial_{trial_id}.keras"

    def rank(self, scores: dict[str, float]) -> tuple[float, float]:
        """Sort key of a trial's scores: larger is better."""
        return rank_key(scores, self.objective)

    def would_keep(self, score: dict[str, float]) -> bool:
        """Would a trial with ``score`` rank in the top k now?"""
        ranked = sorted(self.scores.values(), key=self.rank, reverse=True)
        return len(ranked) < self.k or self.rank(score) > self.rank(ranked[self.k - 1])

    def offer(self, trial_id: str, score: dict[str, float], model) -> bool:
        """Save ``model`` if it ranks in the top k; delete whatever falls out. True if kept."""
        from automl.export import export_model

        return self.offer_file(
            trial_id, score, lambda p: export_model(model, p, class_names=self.class_names)
        )

    def offer_bytes(self, trial_id: str, score: dict[str, float], data: bytes) -> bool:
        """:meth:`offer` for a model file made elsewhere (a trial on another machine)."""
        return self.offer_file(trial_id, score, lambda p: p.write_bytes(data))

    def offer_file(
        self, trial_id: str, score: dict[str, float], write: Callable[[Path], object]
    ) -> bool:
        """:meth:`offer` with ``write(path)`` making the model file."""
        if not self.would_keep(score):
            return False
        tmp = self.folder / f".trial_{trial_id}.tmp.keras"
        tmp.unlink(missing_ok=True)  # ours: left by a process killed while writing it
        try:
            write(tmp)  # a ready export (class names inside)
            tmp.replace(self.path(trial_id))
        except BaseException as e:  # disk full, Ctrl-C: no half-written file stays
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError) and not e.filename:  # name the file in the message
                raise OSError(e.errno, e.strerror or str(e), str(tmp)) from e
            raise
        self.scores[trial_id] = score
        ranked = sorted(self.scores.items(), key=lambda kv: self.rank(kv[1]), reverse=True)
        for tid, _ in ranked[self.k :]:
            self.path(tid).unlink(missing_ok=True)
            del self.scores[tid]
        tmp = self.index_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.scores))
            tmp.replace(self.index_file)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        return True
