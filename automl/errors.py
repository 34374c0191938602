"""Exceptions a user can cause. Each message names the bad value and the fix.

The CLI prints ``str(error)`` on one line to stderr and exits with code 2.
"""

from __future__ import annotations


class AutoMLError(Exception):
    """Base class of every error a user can cause (bad input, missing weights...)."""


class SpaceError(AutoMLError):
    """The search space is invalid: unknown key, bad range, bad value."""


class DataError(AutoMLError):
    """The data source cannot be used as given."""


class UnknownBackboneError(AutoMLError):
    """A backbone name is not in the registry."""


class PluginError(UnknownBackboneError):
    """A backbone plugin (``--plugin``, ``AUTOML_PLUGINS`` or an entry point) cannot be imported."""


class WeightsUnavailableError(AutoMLError):
    """Pretrained weights cannot be fetched or do not fit the backbone."""


class TrackingError(AutoMLError):
    """The MLflow store cannot be reached or does not hold what was asked."""


class ExportError(AutoMLError):
    """A model cannot be exported or loaded as asked."""


class SearchError(AutoMLError):
    """The search cannot start or continue as asked (budget, resume, failures)."""


class ExperimentBusyError(SearchError):
    """Another process is running a search on the same experiment (its folder is locked)."""


class NoCompletedSearchError(SearchError, ExportError):
    """There is no (completed) search to export or rank; run ``automl search`` first."""


class RegistrationError(AutoMLError):
    """The search (or retrain) finished, but registering its model failed.

    ``result`` is the finished search's :class:`automl.search.SearchResult` (its runs,
    leaderboard and best model are all kept), or the retrain's
    :class:`automl.retrain.RetrainResult` (its run and model are kept).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


# The longest user value an error message quotes in full (a path, a YAML value...).
QUOTE_LIMIT = 120


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters for an error message.

    Every message that quotes a value a user gave goes through this, so a huge value (a
    multi-MB YAML string, a path of 10,000 characters) still makes a one-line message:
    ``'aaaa'... (40000000 characters)``. Nested values are shortened as they are
    written (``reprlib``), so quoting one never builds the whole text.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 6, 6, 6, 6
    r.maxstring, r.maxother, r.maxlong = limit, limit, limit
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def one_line(message: object, limit: int = 1000) -> str:
    """``message`` on one line of at most ``limit`` characters (what the CLI prints)."""
    text = str(message).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StorageError(SearchError, ExportError):
    """A file automl must write cannot be written (disk full, no permission, read-only).

    The message names the path and the cause; what was finished before is kept.
    """
