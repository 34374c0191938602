"""Where automl may write and what it may delete: the rules that keep a user's files safe.

- An experiment name becomes a folder name, so it is checked: no path separators, not
  ``.`` or ``..``, a sane character set (:func:`check_experiment_name`).
- Every derived path is resolved and must stay inside the folder it belongs to
  (:func:`inside`).
- A command deletes only what it created: a search's folder holds a marker, and only the
  entries a search writes are removed on ``--overwrite`` (:func:`remove_owned`).
"""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from automl.errors import AutoMLError, quoted

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=@ -]{0,127}")
NAME_RULE = (
    "use 1-128 letters, digits, spaces or _ . - + = @, starting with a letter or digit "
    "(no '/', '\\', '.' or '..')"
)


def check_experiment_name(name: object, error: type[AutoMLError] = AutoMLError) -> str:
    """Return ``name`` if it is a safe experiment (and folder) name, else raise ``error``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.strip() != name:
        raise error(f"experiment name {quoted(name)} is not valid; {NAME_RULE}")
    return name


def inside(base: Path, path: Path, error: type[AutoMLError] = AutoMLError) -> Path:
    """``path`` resolved, if it lies strictly inside ``base`` (resolved); else raise ``error``."""
    b, p = Path(base).resolve(), Path(path).resolve()
    if p == b or b not in p.parents:
        raise error(f"path {str(path)!r} leaves the folder {str(base)!r} it belongs to; refusing")
    return p


def remove_owned(folder: Path, markers: Iterable[str], entries: Iterable[str]) -> list[str]:
    """Remove the named ``entries`` of ``folder`` if it carries one of ``markers``.

    Returns the names removed. A folder without a marker was not made by automl: nothing in
    it is touched. Anything not named stays, and so does the folder itself (it may hold the
    user's own files). A symbolic link is removed as a link, never followed.
    """
    folder = Path(folder)
    markers = list(markers)
    if not any((folder / m).is_file() and not (folder / m).is_symlink() for m in markers):
        return []
    removed = []
    for name in [*entries, *markers]:
        p = folder / name
        if p.is_symlink():
            p.unlink()
        elif p.is_file():
            inside(folder, p).unlink()
        elif p.is_dir():
            shutil.rmtree(inside(folder, p))
        else:
            continue
        removed.append(name)
    return removed


_IO_FIX = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some disk space (your quota is used up)",
    errno.EACCES: "make it writable",
    errno.EPERM: "make it writable (it may be immutable: lsattr)",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.EFBIG: "the file is larger than the file system allows; use another folder",
    errno.EIO: "the disk reported an I/O error; check it",
}


def is_storage_error(e: BaseException) -> bool:
    """Whether ``e`` is the disk or the folder refusing a write (full, no permission, read-only),
    as opposed to a bug: those are answered in one line, the others keep their traceback."""
    return isinstance(e, OSError) and e.errno in _IO_FIX


def io_error_line(e: OSError, where: str | Path | None = None) -> str:
    """One line for a failed write: the path, the cause and what to do.

    ``where`` is named when the error carries no file name (a ``write()`` that ran out of
    space has none).
    """
    path = e.filename or where
    cause = e.strerror or str(e) or type(e).__name__
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    fix = _IO_FIX.get(e.errno, "check the disk and the folder's permissions")
    target = f"{str(path)!r}" if path is not None else "a file"
    return f"cannot write {target}: {cause}{f' ({code})' if code else ''}; {fix}"
