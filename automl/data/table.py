"""A table of image paths and targets (a CSV file or a pandas DataFrame) as a :class:`Table`.

Most labelled image sets come as a table: Kaggle's ``train.csv``, Label Studio and CVAT
exports. :func:`read_table` finds the path column and the target columns, resolves the
paths, skips (or, with ``strict=True``, refuses) rows whose file is missing, and infers the
task from the targets (:mod:`automl.tasks`):

    path,age                    path,tags                 path,cat,dog,car
    img/001.jpg,23              a.jpg,cat;dog             a.jpg,1,1,0
    img/002.jpg,71.5            b.jpg,car                 b.jpg,0,0,1
    -> regression               -> multilabel (one        -> multilabel (one 0/1
                                   column, ``;`` or ``|``)   column per label)

* **Path column**: ``path_column=``, else the one column named like a path (``path``,
  ``image``, ``file``, ``filename``, ...), else the one column whose values end in an image
  extension. Relative paths are read from the CSV's folder (a DataFrame's: ``root=``, by
  default the working directory); absolute paths are kept.
* **Target columns**: ``label_column=`` (a name or a list of names), else the one column named
  like a target (``label``, ``labels``, ``class``, ``target``, ``tags``, ``y``...), else every
  other column but id-like ones (``id``, ``index``, ``Unnamed: 0``). Several columns are
  either all 0/1 (one per label: multilabel) or all numbers (one per target: regression).
* Every error is one line that names the table, the bad value (or lists the columns) and the
  fix; nothing is read beyond the table itself (the images are decoded later, by the store).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import AutoMLError, DataError, quoted
from automl.tasks import Task, get_task, infer_task, split_labels

log = logging.getLogger("automl")

__all__ = ["Table", "is_table_path", "read_table", "sample_paths"]

PATH_COLUMNS = ("path", "image", "image_path", "imagepath", "img", "filepath", "file_path",
                "file", "filename", "file_name", "image_id", "img_path")  # fmt: skip
TARGET_COLUMNS = ("label", "labels", "class", "target", "targets", "tags", "tag", "category",
                  "y")  # fmt: skip
ID_COLUMNS = ("id", "index", "idx", "")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")  # fmt: skip
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
SHOWN = 3  # how many missing files an error or warning names


@dataclass(frozen=True)
class Table:
    """The readable rows of a table of images.

    Attributes:
        paths: absolute path of each kept image (rows whose file is missing are left out).
        targets: the kept rows' targets, in the form the task takes: class labels (N,) for
            classification, a 0/1 matrix (N, labels) uint8 for multilabel, float64 values
            (N,) or (N, targets) for regression.
        task: the task, inferred or forced, fitted to ``targets`` (``task.describe()``).
        label_names: the classes, the labels, or the target names (column order).
        path_column: the column the paths came from.
        target_columns: the column(s) the targets came from.
        rows: the kept rows' positions in the table (0 = first data row).
        skipped: the path values (as written in the table) of rows whose file is missing.
        source: the table's name in messages (the CSV's path, or "the DataFrame").
    """

    paths: list[str]
    targets: np.ndarray
    task: Task
    label_names: list[str]
    path_column: str
    target_columns: list[str]
    rows: np.ndarray
    skipped: list[str] = field(default_factory=list)
    source: str = "the DataFrame"

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.paths)


def is_table_path(data: Any) -> bool:
    """Whether ``--data`` names a table file (``.csv``, ``.tsv``, ``.txt``) rather than a folder."""
    return isinstance(data, (str, os.PathLike)) and str(data).lower().endswith(TABLE_SUFFIXES)


def read_table(
    source: Any,
    *,
    path_column: str | None = None,
    label_column: str | list[str] | None = None,
    task: str | Task | None = None,
    strict: bool = False,
    root: str | os.PathLike | None = None,
) -> Table:
    """Read a CSV file (path) or a pandas DataFrame of image paths and targets.

    Args:
        source: a ``.csv``/``.tsv`` path, or a DataFrame.
        path_column: the column of image paths, when it cannot be guessed.
        label_column: the target column, or several (one per label or per target);
            a comma-separated string is split.
        task: force ``"classification"``, ``"multilabel"`` or ``"regression"``.
        strict: refuse the table when a file is missing, instead of skipping the row.
        root: the folder relative paths start from (default: the CSV's folder; for a
            DataFrame, the working directory).

    Raises:
        DataError: the table cannot be read, a column cannot be found or guessed (the message
            lists the columns), a target is bad (the message names it and its row), or a file
            is missing with ``strict=True`` (or every file is missing).
    """
    df, name, base = _load(source, root)
    if len(df) == 0:
        raise DataError(f"{name} has no rows; it needs one row per image")
    pcol = _path_column(df, name, path_column)
    tcols = _target_columns(df, name, pcol, label_column)
    forced = get_task(task) if task is not None else None
    targets, kind, names = _targets(df, name, tcols, forced)
    keep, paths, skipped = _resolve_paths(df[pcol].tolist(), base)
    _check_files(df, name, pcol, base, keep, skipped, strict)
    rows = np.asarray(keep, np.int64)
    kept = targets[rows] if not isinstance(targets, list) else [targets[i] for i in keep]
    fitted, kept, label_names = _fit_task(forced, kind, names, kept, name, tcols)
    return Table(
        paths=paths,
        targets=kept,
        task=fitted,
        label_names=label_names,
        path_column=str(pcol),
        target_columns=[str(c) for c in tcols],
        rows=rows,
        skipped=skipped,
        source=name,
    )


def _check_files(df, name: str, pcol, base, keep: list, skipped: list, strict: bool) -> None:
    """Refuse a table whose files are missing (some with ``strict``, or all); warn otherwise."""
    if skipped and strict:
        raise DataError(
            f"{len(skipped)} of the {len(df)} files in {name}'s {pcol!r} column are missing: "
            f"{_shown(skipped)}; fix the paths (relative ones start at {base}) or run without "
            "--strict-images (strict=False) to skip them"
        )
    if not keep:
        raise DataError(
            f"none of the {len(df)} files in {name}'s {pcol!r} column exists (first: "
            f"{quoted(paths_first(df[pcol].tolist(), base))}); relative paths start at {base}: "
            "fix them, or pass root= / move the table next to the images"
        )
    if skipped:
        log.warning(
            "%s: skipped %d row(s) whose file is missing: %s", name, len(skipped), _shown(skipped)
        )


def _fit_task(forced, kind: str, names, kept, name: str, tcols):
    """The task (``forced`` or the one the targets look like) fitted on the kept rows' targets;
    returns it, the targets as the Table holds them, and the label (or target) names."""
    chosen = forced if forced is not None else get_task(kind)
    if chosen.name == "multilabel":
        from automl.tasks import MultiLabel

        chosen = MultiLabel(labels=names)
    elif chosen.name == "regression":
        from automl.tasks import Regression

        chosen = Regression(target_names=names)
    try:
        fitted = chosen.fit(kept)
    except AutoMLError as e:
        raise DataError(f"{name}, column {', '.join(map(repr, tcols))}: {e}") from None
    if fitted.name == "multilabel":
        return fitted, fitted.encode(kept).astype(np.uint8), list(fitted.labels_)
    if fitted.name == "regression":
        return fitted, np.asarray(kept, np.float64), list(fitted.target_names_)
    return fitted, np.asarray(kept), list(fitted.classes_)


def table_task(
    source: Any, *, path_column: str | None = None, label_column: str | list[str] | None = None
) -> str:
    """The name of the task a table's targets look like, read from the table alone (no file
    is checked and nothing is logged: :func:`read_table` does both when the data loads).
    Raises :class:`DataError` as :func:`read_table` would for the table itself."""
    df, name, _ = _load(source, None)
    if len(df) == 0:
        raise DataError(f"{name} has no rows; it needs one row per image")
    pcol = _path_column(df, name, path_column)
    return _targets(df, name, _target_columns(df, name, pcol, label_column), None)[1]


def sample_paths(source: Any, *, path_column: str | None = None, n: int = 64) -> list[str]:
    """The first ``n`` existing image paths of a table (its targets are not read), e.g. to
    probe the images' size; raises :class:`DataError` as :func:`read_table` does for a table
    or path column it cannot find."""
    df, name, base = _load(source, None)
    pcol = _path_column(df, name, path_column)
    out = []
    for v in df[pcol].tolist():
        p = _resolve(v, base)
        if p is not None and p.is_file():
            out.append(str(p))
            if len(out) >= n:
                break
    return out


# --- reading ---------------------------------------------------------------------------------


def _load(source: Any, root):
    import pandas as pd

    if hasattr(source, "columns") and hasattr(source, "iloc"):
        base = Path(root) if root is not None else Path.cwd()
        return source.reset_index(drop=True), "the DataFrame", base.resolve()
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(
            f"a table must be a CSV path or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(
            f"the table {quoted(str(source))} does not exist or is not a file; check the path"
        )
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; it needs a header line and one row per image") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(
            f"{path} cannot be read as a CSV table ({first}); save it as comma-separated "
            "text with a header line"
        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    base = Path(root).expanduser() if root is not None else path.parent
    return df, str(path), base.resolve()


def _columns(df) -> str:
    cols = [str(c) for c in df.columns]
    text = ", ".join(repr(c) for c in cols[:20])
    return text + (f", ... ({len(cols)} columns)" if len(cols) > 20 else "")


def _find(df, wanted: str, name: str, flag: str) -> str:
    if wanted in df.columns:
        return wanted
    lower = {str(c).lower(): c for c in df.columns}
    if str(wanted).lower() in lower:
        return lower[str(wanted).lower()]
    raise DataError(
        f"{name} has no column {quoted(wanted)} (columns: {_columns(df)}); pass one of them "
        f"as {flag}"
    )


def _looks_like_paths(values) -> bool:
    vals = [v for v in values if isinstance(v, str) and v.strip()]
    if not vals:
        return False
    hits = sum(v.strip().lower().endswith(IMAGE_SUFFIXES) for v in vals)
    return hits >= 0.9 * len(vals)


def _path_column(df, name: str, wanted: str | None) -> str:
    if wanted is not None:
        return _find(df, wanted, name, "--path-column (path_column=)")
    named = [c for c in df.columns if str(c).lower() in PATH_COLUMNS]
    if len(named) == 1:
        return named[0]
    sample = df.head(200)
    looks = [c for c in df.columns if _is_text(sample[c]) and _looks_like_paths(sample[c])]
    if len(looks) == 1:
        return looks[0]
    if len(named) > 1 or len(looks) > 1:
        several = named if len(named) > 1 else looks
        raise DataError(
            f"{name} has several columns that could hold the image paths "
            f"({', '.join(map(repr, several))}); pick one with --path-column (path_column=)"
        )
    raise DataError(
        f"{name} has no column of image paths (columns: {_columns(df)}); name it with "
        "--path-column (path_column=), e.g. --path-column file"
    )


def _target_columns(df, name: str, pcol: str, wanted) -> list[str]:
    if wanted is not None:
        items = [wanted] if isinstance(wanted, str) else list(wanted)
        if len(items) == 1 and isinstance(items[0], str) and "," in items[0]:
            items = [s.strip() for s in items[0].split(",") if s.strip()]
        cols = [_find(df, w, name, "--label-column (label_column=)") for w in items]
        if pcol in cols:
            raise DataError(
                f"{name}'s column {pcol!r} is the path column; it cannot be a target too: "
                "pick another --label-column"
            )
        return cols
    named = [c for c in df.columns if str(c).lower() in TARGET_COLUMNS and c != pcol]
    if len(named) == 1:
        return named
    rest = [
        c
        for c in df.columns
        if c != pcol
        and str(c).strip().lower() not in ID_COLUMNS
        and not str(c).lower().startswith("unnamed:")
    ]
    if not rest:
        raise DataError(
            f"{name} has no target column besides the path column {pcol!r} (columns: "
            f"{_columns(df)}); add one, or name it with --label-column (label_column=)"
        )
    return rest


def _is_text(series) -> bool:
    """Whether a column holds text (object, or pandas 3's string dtype)."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    return is_object_dtype(series.dtype) or is_string_dtype(series.dtype)


def _numeric(series):
    """``(numbers, bad index)``: the column as floats; ``bad`` the first row whose value is
    text that is not a number (None when there is none)."""
    import pandas as pd

    nums = pd.to_numeric(series, errors="coerce")
    bad = nums.isna() & series.notna() & (series.astype(str).str.strip() != "")
    return nums.to_numpy(np.float64), (
        int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else None
    )


def _where(name: str, i: int) -> str:
    return f"line {i + 2}" if name != "the DataFrame" else f"row {i}"


def _targets(df, name: str, cols: list[str], forced: Task | None):
    """``(targets for every row, task name, names)``; targets a 1-D array, a 2-D array or a
    list of label lists; names the label or target names (None: the task finds them)."""
    want = forced.name if forced is not None else None
    if len(cols) > 1:
        return _several(df, name, cols, want)
    col = cols[0]
    series = df[col]
    missing = series.isna() | (series.astype(str).str.strip() == "")
    if _is_text(series):
        text = series[~missing].astype(str)
        has_sep = text.str.contains(r"[;|]", regex=True).any()
        if want == "multilabel" or (want is None and has_sep):
            return [split_labels(v) for v in series.tolist()], "multilabel", None
        nums, bad = _numeric(series)
        n_num = int(np.isfinite(nums).sum())
        if want == "regression" or (want is None and bad is not None and n_num > len(df) / 2):
            if bad is not None:
                raise DataError(
                    f"{name}'s target column {col!r} mixes numbers and text ({_where(name, bad)}:"
                    f" {quoted(series.iloc[bad])}); fix the value, or pass --task classification"
                    " to read every value as a class"
                )
            _no_missing(name, col, missing)
            return nums, "regression", [str(col)]
        _no_missing(name, col, missing)
        values = np.asarray([str(v).strip() for v in series.tolist()])
        return values, want or "classification", None
    if want == "multilabel":
        return [split_labels(v) for v in series.tolist()], "multilabel", None
    _no_missing(name, col, missing)
    values = series.to_numpy()
    kind = want or infer_task(values)
    return values, kind, ([str(col)] if kind == "regression" else None)


def _no_missing(name: str, col: str, missing) -> None:
    if missing.any():
        i = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(
            f"{name} has no value in target column {col!r} at {_where(name, i)} "
            f"({int(missing.sum())} empty in all); fill those cells or drop the rows"
        )


def _several(df, name: str, cols: list[str], want: str | None):
    if want == "classification":
        raise DataError(
            f"{name}: classification takes one target column, got {len(cols)} "
            f"({', '.join(map(repr, cols))}); pick one with --label-column (label_column=)"
        )
    text = [c for c in cols if _is_text(df[c]) and _numeric(df[c])[1] is not None]
    if text:
        numbers = [c for c in cols if c not in text]
        what = (
            f"text ({', '.join(map(repr, text))}) and numbers ({', '.join(map(repr, numbers))})"
            if numbers
            else f"several text columns ({', '.join(map(repr, text))})"
        )
        raise DataError(
            f"{name}'s target columns mix {what}; pick the target with --label-column "
            "(label_column=), e.g. --label-column " + str(text[0])
        )
    values = np.column_stack([_numeric(df[c])[0] for c in cols])
    missing = ~np.isfinite(values)
    if missing.any():
        i, j = (int(v) for v in np.argwhere(missing)[0])
        raise DataError(
            f"{name} has no value in target column {cols[j]!r} at {_where(name, i)}; fill "
            "those cells or drop the rows"
        )
    binary = bool(np.isin(values, (0, 1)).all())
    kind = want or ("multilabel" if binary else "regression")
    return values, kind, [str(c) for c in cols]


# --- paths -----------------------------------------------------------------------------------


def _resolve(value: Any, base: Path) -> Path | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def paths_first(values: list, base: Path) -> str:
    for v in values:
        p = _resolve(v, base)
        if p is not None:
            return str(p)
    return ""


def _resolve_paths(values: list, base: Path) -> tuple[list[int], list[str], list[str]]:
    """(kept row positions, their absolute paths, the values of rows whose file is missing)."""
    keep, paths, skipped = [], [], []
    for i, v in enumerate(values):
        p = _resolve(v, base)
        if p is not None and p.is_file():
            keep.append(i)
            paths.append(str(p.resolve()))
        else:
            skipped.append("" if p is None else str(v).strip())
    return keep, paths, skipped


def _shown(items: list[str]) -> str:
    shown = ", ".join(quoted(s, 80) for s in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
