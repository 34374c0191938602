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


class StorageError(SearchError, ExportError):
    """A file automl must write cannot be written (disk full, no permission, read-only).

    The message names the path and the cause; what was finished before is kept.
    """
