"""How trial jobs run: one small interface (:mod:`automl.executors.base`), one module each.

- ``inprocess``: in the search's own process;
- ``process``: in one worker process, recycled every few trials;
- ``ray``: up to N at once on a Ray runtime (local, or a cluster).

An executor is an object that owns its options: ``search(executor=RayExecutor(workers=4))``,
or a registered name (``search(executor="process")``, ``automl search --executor process``),
or ``"auto"`` (the default: chosen from the old ``workers`` / ``trials_per_worker`` /
``ray_address`` keywords). A new executor is one module with a class decorated with
:func:`register_executor` (a ``--plugin`` module can hold it).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from automl.errors import SearchError
from automl.executors.base import (
    Executor,
    JobFailure,
    JobResult,
    TrialJob,
    WorkerSetup,
    check_option,
)

AUTO = "auto"
# The built-in executors, imported only when asked for (Ray is imported only when used).
_BUILTIN = {
    "inprocess": ("automl.executors.inprocess", "InProcessExecutor"),
    "process": ("automl.executors.process", "ProcessExecutor"),
    "ray": ("automl.executors.ray", "RayExecutor"),
}
_REGISTRY: dict[str, type[Executor]] = {}


def register_executor(name: str):
    """Class decorator: make an :class:`Executor` subclass known by ``name`` (``--executor``)."""

    def add(cls: type[Executor]) -> type[Executor]:
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise TypeError(f"register_executor({name!r}) needs an Executor subclass, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def executor_names() -> list[str]:
    """The names ``executor=`` and ``--executor`` accept, ``"auto"`` first."""
    return [AUTO, *dict.fromkeys([*_BUILTIN, *_REGISTRY])]


def executor_class(name: str) -> type[Executor]:
    """The executor registered as ``name``."""
    if name not in _REGISTRY and name in _BUILTIN:
        module, attr = _BUILTIN[name]
        _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    if name not in _REGISTRY:
        raise SearchError(
            f"unknown executor {name!r}; choose one of: {', '.join(executor_names())} "
            "(or register one with automl.executors.register_executor)"
        )
    return _REGISTRY[name]


def auto_name(max_trials: int, options: dict[str, Any]) -> str:
    """``"auto"``: Ray for several workers or a cluster; a recycled worker process for a
    search of several trials; else the search's own process."""
    if options.get("workers", 1) > 1 or options.get("ray_address"):
        return "ray"
    if options.get("trials_per_worker", 10) > 0 and max_trials > 1:
        return "process"
    return "inprocess"


def make_executor(
    spec: str | Executor, options: dict[str, Any], defaults: dict[str, Any], max_trials: int
) -> Executor:
    """The executor ``spec`` names (or ``spec`` itself), given only its own ``options``.

    ``options`` are the old ``search()`` keywords (``workers``, ``trials_per_worker``...),
    ``defaults`` their defaults: one set to something else must be an option of the chosen
    executor (an :class:`Executor` object owns its options: then none may be set).
    """
    changed = {k: v for k, v in options.items() if v != defaults[k]}
    if isinstance(spec, Executor):
        if changed:
            k, v = next(iter(changed.items()))
            raise SearchError(
                f"{k}={v!r} is an option of the executor; pass it to "
                f"{type(spec).__name__}({k}=...) instead of to the search"
            )
        return spec
    if not isinstance(spec, str):
        raise SearchError(
            f"executor={spec!r} must be a name ({', '.join(executor_names())}) or an Executor"
        )
    name = auto_name(max_trials, options) if spec == AUTO else spec
    cls = executor_class(name)
    own = inspect.signature(cls).parameters
    stray = [k for k in changed if k not in own]
    if stray and spec != AUTO:  # "auto" keeps the old rule: options of other executors wait
        raise SearchError(
            f"{stray[0]}={changed[stray[0]]!r} is not an option of the {name!r} executor; "
            f"its options: {', '.join(own) or 'none'}"
        )
    return cls(**{k: v for k, v in options.items() if k in own})


def __getattr__(name: str):  # the built-in classes, imported when first used
    for module, attr in _BUILTIN.values():
        if name == attr:
            return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTO",
    "Executor",
    "InProcessExecutor",
    "JobFailure",
    "JobResult",
    "ProcessExecutor",
    "RayExecutor",
    "TrialJob",
    "WorkerSetup",
    "auto_name",
    "check_option",
    "executor_class",
    "executor_names",
    "make_executor",
    "register_executor",
]
