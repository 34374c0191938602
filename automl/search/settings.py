"""What defines a search besides its space and its data, validated before anything runs.

Every search option is one field of :class:`SearchSettings`, and that field is the one place
that says its default, its type, its check, its help on the command line and its
documentation in :func:`automl.search`:

- ``field.metadata["doc"]``: the Python documentation (``search()``'s keyword);
- ``field.metadata["cli"]``: a :class:`Flag`, how ``automl search`` spells it (None: Python
  only); :mod:`automl.cli` builds the ``search`` sub-command from these;
- ``field.metadata["check"]``: ``(ok, message)``; :meth:`SearchSettings.validate` raises
  :class:`SearchError` with ``message.format(v=value, q=quoted(value))`` when ``ok`` is false;
- ``field.metadata["none"]``: ``search()`` takes ``None`` for "the default of this search":
  ``(with the data-aware space, with a given space)``.

A test checks that ``search()``'s keywords and the CLI's options are exactly these fields.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any

from automl.errors import SearchError, quoted
from automl.executors import AUTO, Executor, auto_name, make_executor
from automl.executors.base import OPTION_RULES
from automl.paths import check_experiment_name

TUNERS = ("random", "bayesian", "hyperband")
DEFAULT_EXPERIMENT = "automl"
# The default search (the data-aware space, no ``space``/``--space``): the budget, not the
# trial count, ends it. On small data the start-up, the ensemble and test scoring add under
# a minute on 2 CPU cores; on a large one (a fidelity ladder) the budget covers the ensemble
# and test scoring too (automl.search.deadline.FinishEstimate). A search with a given
# space: 6 trials, no budget.
DEFAULT_TIME_BUDGET = 3.0  # minutes
DEFAULT_MAX_TRIALS = 100
DEFAULT_ENSEMBLE = 3
SEED_MAX = 2**32 - 1  # NumPy's seeds (and so Keras's set_random_seed) stop there
# The executors' options that ``search()`` still takes as keywords (``executor="auto"``
# chooses from them); an :class:`Executor` object owns them instead.
EXECUTOR_OPTIONS = (
    "trials_per_worker",
    "workers",
    "ray_address",
    "cpus_per_trial",
    "gpus_per_trial",
)
CACHE_DIR_HELP = (
    "where image stores are kept: a folder of images is decoded once into a store there and "
    "reused while its files are unchanged (default: stores/ beside the tracking folder, "
    "mlruns/stores)"
)


@dataclass(frozen=True)
class Flag:
    """How a setting is spelled on ``automl search``'s command line (argparse's keywords).

    ``type`` is a callable, or the name of a parser in :mod:`automl.cli` (``"positive_int"``,
    ``"non_negative_int"``, ``"non_negative_float"``, ``"seed"``); ``action`` is argparse's,
    or ``"bool_optional"``; ``to_setting`` turns the parsed value into the setting's (e.g.
    ``--no-xla`` into ``xla=False``); ``common``: added after ``--plugin``, like every
    sub-command's ``--experiment`` and ``--tracking-uri``.
    """

    flags: tuple[str, ...]
    help: str | None = None
    default: Any = None
    type: Any = None
    action: str | None = None
    metavar: str | None = None
    choices: tuple | None = None
    to_setting: Callable[[Any], Any] | None = None
    common: bool = False

    @property
    def dest(self) -> str:
        """argparse's attribute name for it (the first long flag)."""
        long = next(f for f in self.flags if f.startswith("--"))
        return long[2:].replace("-", "_")

    def argparse_kwargs(self) -> dict[str, Any]:
        kw = {"help": self.help, "metavar": self.metavar, "choices": self.choices}
        kw = {k: v for k, v in kw.items() if v is not None}
        if self.action == "store_true":
            return {"action": "store_true", **kw}
        return {"default": self.default, "type": self.type, "action": self.action, **kw}


def _flag_off(v: bool) -> bool:
    return not v


def option(
    default: Any,
    doc: str,
    cli: Flag | None,
    check: tuple[Callable[[Any], bool], str] | None = None,
    none: tuple[Any, Any] | None = None,
) -> Any:
    """A :class:`SearchSettings` field with its documentation, command-line flag and check."""
    meta = {"doc": doc, "cli": cli, "check": check, "none": none}
    return field(default=default, metadata=meta)


def _known_task(name: Any) -> bool:
    from automl.tasks import get_task

    try:
        get_task(name)
    except Exception:  # noqa: BLE001 - the check's message names the fix
        return False
    return True


def _all_objectives() -> tuple[str, ...]:
    from automl.tasks import TASKS

    seen: dict[str, None] = {}
    for cls in TASKS.values():
        seen.update(dict.fromkeys(cls.objectives))
    return tuple(seen)


TASK_NAMES = ("classification", "multilabel", "regression")
_ALL_OBJECTIVES = _all_objectives()


def _int_from(low: int):
    return lambda v: isinstance(v, int) and v >= low


@dataclass
class SearchSettings:
    """Everything that defines a search besides the space and the data.

    The fields are in the order ``automl search --help`` lists them.
    """

    max_trials: int = option(
        6,
        "trials to run in all (a resumed search counts those already done); None: 100 with "
        "the data-aware space (the time budget ends the search), 6 with ``space``.",
        Flag(
            ("--max-trials",),
            f"at most this many trials (default: {DEFAULT_MAX_TRIALS} without --space, so the "
            "time budget stops the search; 6 with --space)",
            type="positive_int",
        ),
        (
            _int_from(1),
            "max_trials={v!r} must be a positive integer; pass --max-trials 1 or more",
        ),
        none=(DEFAULT_MAX_TRIALS, 6),
    )
    tuner: str = option(
        "bayesian",
        '``"random"``, ``"bayesian"`` or ``"hyperband"`` (KerasTuner oracles).',
        Flag(("--tuner",), default="bayesian", choices=TUNERS),
        (lambda v: v in TUNERS, "unknown tuner {v!r}; choose one of: " + ", ".join(TUNERS)),
    )
    seed: int = option(
        0,
        "seeds the split, the oracle and every trial.",
        Flag(("--seed",), f"0 to {SEED_MAX}", default=0, type="seed"),
        (
            lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SEED_MAX,
            f"seed={{q}} is out of range; pass --seed from 0 to {SEED_MAX}",
        ),
    )
    time_budget: float | None = option(
        None,
        "minutes; no new trial starts after it, a running one stops at its epoch end. None: "
        "3 with the data-aware space (the ``automl search`` default), none with ``space``.",
        Flag(
            ("--time-budget",),
            "no new trial after this many minutes, a running one stops at its epoch end; "
            "with --refit the trials stop at 85 %% of it and the refit has the rest "
            f"(default without --space: {DEFAULT_TIME_BUDGET:g}; with --space: none). On a large "
            "data set (a fidelity ladder: more than 4,000 training images) the trials also leave the ensemble and test "
            "scoring their estimated time, so the search returns within it; on small data "
            "those take seconds and come on top; the first decode into the image store comes "
            "before the budget's clock starts",
            type=float,
            metavar="MINUTES",
        ),
        (
            lambda v: v is None or v > 0,
            "time_budget={v!r} minutes must be positive; omit it for no budget",
        ),
        none=(DEFAULT_TIME_BUDGET, None),
    )
    ensemble: int = option(
        0,
        "after the search, a greedy ensemble of up to this many kept trials (their best "
        "epochs), kept only if it beats the best trial on validation; 0 = off. None: 3 with "
        "the data-aware space, 0 with ``space`` (the CLI's ``--ensemble``: 3).",
        Flag(
            ("--ensemble",),
            "after the search, a greedy ensemble of up to K kept trials, kept only if it beats "
            f"the best trial on validation (default {DEFAULT_ENSEMBLE}; 0 = off)",
            default=DEFAULT_ENSEMBLE,
            type="non_negative_int",
            metavar="K",
        ),
        (
            _int_from(0),
            "ensemble={v!r} must be 0 (off) or more; pass --ensemble 0 to turn it off",
        ),
        none=(DEFAULT_ENSEMBLE, 0),
    )
    refit: bool = option(
        False,
        "once the search has chosen, train the winning trial again on train + validation "
        "for its epochs up to its best one (see :mod:`automl.refit`; not when the ensemble "
        "wins); it leaves the trials 85 % of a time budget. None: on with the data-aware "
        "space, off with ``space``.",
        Flag(
            ("--refit",),
            "once the search has chosen, train the winning trial again on train + validation "
            "(not when the ensemble wins; default: on without --space, off with it)",
            action="bool_optional",
        ),
        (lambda v: isinstance(v, bool), "refit={v!r} must be True or False"),
        none=(True, False),
    )
    deterministic: bool = option(
        False,
        "TensorFlow's deterministic ops, so a seeded search reproduces its trials (slower).",
        Flag(
            ("--deterministic",),
            "TensorFlow deterministic ops: a seeded search reproduces its trials and scores "
            "(slower)",
            action="store_true",
        ),
    )
    embedding_cache: bool = option(
        True,
        "train phase 1 on cached backbone features.",
        Flag(
            ("--no-embedding-cache",),
            "phase 1 runs the frozen backbone every epoch",
            action="store_true",
            to_setting=_flag_off,
        ),
    )
    keep_top_k: int = option(
        3,
        "model files kept for the best k trials only.",
        Flag(
            ("--keep-top-k",),
            "keep model files of the best K trials only",
            default=3,
            type="positive_int",
        ),
        (
            lambda v: not v < 1,
            "keep_top_k={v!r} must be at least 1 (the best model is always kept)",
        ),
    )
    overwrite: bool = option(
        False,
        "start over even if the experiment holds a search with another space or data.",
        Flag(("--overwrite",), "start the experiment's search over", action="store_true"),
    )
    strict_images: bool = option(
        False,
        "refuse unreadable files in an image folder instead of skipping them.",
        Flag(
            ("--strict-images",),
            "refuse corrupt or non-image files in the data folder (default: skip them "
            "with a warning that counts and names them)",
            action="store_true",
        ),
    )
    task: str | None = option(
        None,
        '``"classification"``, ``"multilabel"`` or ``"regression"``; None: inferred from the '
        "targets (numbers: regression; labels separated by ``;``/``|``, 0/1 columns or label "
        "lists: multilabel; otherwise classification) and printed at the start, e.g. "
        "``task: regression (1 target, range 0.0-97.0)``.",
        Flag(
            ("--task",),
            "classification | multilabel | regression (default: inferred from the targets "
            "and printed at the start)",
            choices=TASK_NAMES,
        ),
        (
            lambda v: v is None or _known_task(v),
            "unknown task {q}; use one of: " + ", ".join(TASK_NAMES) + " (or leave it out to "
            "infer it from the targets)",
        ),
    )
    objective: str | None = option(
        None,
        "what the search maximises or minimises, one of the task's objectives: classification "
        "``val_accuracy`` (default), ``val_loss``, ``val_balanced_accuracy``, ``val_macro_f1``, "
        "``val_auc``; multilabel ``val_macro_f1`` (default), ``val_micro_f1``, ``val_auc``, "
        "``val_loss``; regression ``val_mae`` (default), ``val_rmse``, ``val_r2``, "
        "``val_loss``. None: the space's objective when the task has it, else the task's "
        "default. Checked against the task once the data is loaded.",
        Flag(
            ("--objective",),
            "the metric the search ranks trials by (default: the task's, val_accuracy | "
            "val_macro_f1 | val_mae); e.g. val_balanced_accuracy, val_rmse, val_r2",
            metavar="METRIC",
        ),
        (
            lambda v: v is None or (isinstance(v, str) and v in _ALL_OBJECTIVES),
            "unknown objective {q}; use one of: " + ", ".join(_ALL_OBJECTIVES),
        ),
    )
    label_column: str | list[str] | None = option(
        None,
        "the target column(s) of a CSV or DataFrame when they cannot be guessed (a name, a "
        'list of names, or ``"a,b,c"``: one 0/1 column per label, or one per target).',
        Flag(
            ("--label-column",),
            "the CSV's target column, or several separated by commas (one 0/1 column per "
            "label, or one number column per target); default: guessed",
            metavar="COLUMN",
        ),
        (
            lambda v: v is None or isinstance(v, (str, list, tuple)) and bool(v),
            "label_column={q} must be a column name or a list of names",
        ),
    )
    path_column: str | None = option(
        None,
        "the image-path column of a CSV or DataFrame when it cannot be guessed.",
        Flag(
            ("--path-column",),
            "the CSV's column of image paths (relative to the CSV's folder, or absolute); "
            "default: guessed",
            metavar="COLUMN",
        ),
        (
            lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
            "path_column={q} must be a column name",
        ),
    )
    cache_dir: str | None = option(
        None,
        "where image stores are kept (a folder or DataFrame of files is decoded once into a "
        "store there and reused while its files are unchanged); default ``stores/`` beside "
        "the tracking folder (``mlruns/stores``).",
        Flag(("--cache-dir",), CACHE_DIR_HELP, metavar="DIR"),
    )
    max_retries: int = option(
        1,
        "times a crashed trial runs again (diverged and out-of-memory: never).",
        Flag(
            ("--max-retries",),
            "times a crashed trial is run again (default 1); diverged (NaN/inf loss) and "
            "out-of-memory trials are never retried",
            default=1,
            type="non_negative_int",
        ),
        (
            _int_from(0),
            "max_retries={v!r} must be 0 or more; pass --max-retries 0 to never retry",
        ),
    )
    max_consecutive_failures: int = option(
        3,
        "stop the search after this many failed trials in a row.",
        Flag(
            ("--max-consecutive-failures",),
            "stop the search after this many failed trials in a row (default 3); "
            "finished trials are kept",
            default=3,
            type="positive_int",
        ),
        (
            _int_from(1),
            "max_consecutive_failures={v!r} must be 1 or more; "
            "pass --max-consecutive-failures 1 or more",
        ),
    )
    executor: str | Executor = option(
        AUTO,
        'how trials run: ``"auto"`` (chosen from ``workers``, ``trials_per_worker`` and '
        '``ray_address``), a registered name (``"inprocess"``, ``"process"``, ``"ray"``, or '
        "one registered with :func:`automl.executors.register_executor`), or an executor "
        "object that owns its options, e.g. ``RayExecutor(workers=4, gpus_per_trial=0.25)`` "
        "or ``ProcessExecutor(trials_per_worker=5)``.",
        Flag(
            ("--executor",),
            "how trials run: auto (default: chosen from --workers and --trials-per-worker), "
            "inprocess, process, ray, or one a --plugin registers",
            default=AUTO,
            metavar="NAME",
        ),
    )
    trials_per_worker: int = option(
        10,
        "trials run in a worker process that is replaced after this many (or once its "
        "memory grew 10 %), so memory stays bounded; 0 runs them in this process (a "
        "one-trial search always does). With Ray: trials per Ray worker process.",
        Flag(
            ("--trials-per-worker",),
            "run trials in a worker process that is replaced after N trials (default 10) "
            "or once its memory grew 10%% over its first trial, so memory stays bounded; "
            "0 runs them in the search's own process",
            default=10,
            type="non_negative_int",
            metavar="N",
        ),
        OPTION_RULES["trials_per_worker"],
    )
    workers: int = option(
        1,
        'up to this many trials at once, on Ray (needs ``pip install -e ".[distributed]"``); '
        "1, the default, runs one at a time without Ray.",
        Flag(
            ("--workers",),
            "run up to N trials at once on Ray (default 1: one at a time, no Ray); "
            'needs pip install -e ".[distributed]"',
            default=1,
            type="positive_int",
            metavar="N",
        ),
        OPTION_RULES["workers"],
    )
    ray_address: str | None = option(
        None,
        "the Ray cluster to join (``HEAD:6379``, or ``$RAY_ADDRESS``); without it a search "
        "with ``workers > 1`` starts a local Ray runtime and stops it at the end.",
        Flag(
            ("--ray-address",),
            "join the Ray cluster at ADDR (HEAD:6379; default $RAY_ADDRESS); without it "
            "--workers N starts a local Ray runtime for the search",
            metavar="ADDR",
        ),
        OPTION_RULES["ray_address"],
    )
    cpus_per_trial: float = option(
        1.0,
        "CPUs each trial asks Ray for.",
        Flag(
            ("--cpus-per-trial",),
            "CPUs each trial asks Ray for (default 1)",
            default=1.0,
            type="non_negative_float",
            metavar="N",
        ),
        OPTION_RULES["cpus_per_trial"],
    )
    gpus_per_trial: float = option(
        0.0,
        "GPUs each trial asks Ray for (fractions allowed, e.g. 0.25).",
        Flag(
            ("--gpus-per-trial",),
            "GPUs each trial asks Ray for; fractions allowed, e.g. 0.25 (default 0)",
            default=0.0,
            type="non_negative_float",
            metavar="F",
        ),
        OPTION_RULES["gpus_per_trial"],
    )
    mixed_precision: bool = option(
        True,
        "float16 compute on a GPU (ignored on a CPU).",
        Flag(
            ("--no-mixed-precision",),
            "float32 on a GPU (mixed precision is on by default there)",
            action="store_true",
            to_setting=_flag_off,
        ),
    )
    xla: bool = option(
        True,
        "XLA compilation on a GPU (ignored on a CPU).",
        Flag(
            ("--no-xla",),
            "no XLA compilation on a GPU",
            action="store_true",
            to_setting=_flag_off,
        ),
    )
    register: str | None = option(
        None,
        "register the best model in the MLflow Model Registry under this name; a failure "
        "raises :class:`automl.errors.RegistrationError` (its ``result`` is kept).",
        Flag(
            ("--register",),
            "register the best model in the MLflow Model Registry under NAME (a new version)",
            metavar="NAME",
        ),
        (
            lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
            "register={v!r} must be a non-empty model name",
        ),
    )
    verbose: int = option(
        1,
        "1 shows progress on stderr (bars in a terminal, lines otherwise); 0 nothing.",
        Flag(
            ("-q", "--quiet"),
            "no progress display, warnings only",
            action="store_true",
            to_setting=lambda quiet: 0 if quiet else 1,
        ),
    )
    experiment: str = option(
        DEFAULT_EXPERIMENT,
        "MLflow experiment name; the same name resumes the search.",
        Flag(("--experiment",), "MLflow experiment name (default: automl)", common=True),
        none=(DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT),
    )
    tracking_uri: str | None = option(
        None,
        "MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``. "
        "Several workers on several machines need a tracking server (``http://HOST:5000``).",
        Flag(
            ("--tracking-uri",),
            "MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
            common=True,
        ),
    )
    workdir: str | None = option(
        None,
        "where the search keeps its resume state and model files (default: next to the "
        "MLflow store, ``mlruns/automl/EXPERIMENT``).",
        None,
    )

    @classmethod
    def for_search(cls, data_aware: bool, **options: Any) -> SearchSettings:
        """The settings of ``search(**options)``: its ``None`` s replaced by this search's
        defaults (``data_aware``: no space given, the space is chosen from the data)."""
        for f in fields(cls):
            none = f.metadata["none"]
            if none is not None and options.get(f.name) is None:
                options[f.name] = none[0] if data_aware else none[1]
        return cls(**options)

    def validate(self) -> None:
        """Raise :class:`SearchError` (one line naming the value and the fix) for a bad one."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["check"] is not None:
                ok, message = f.metadata["check"]
                if not ok(value):
                    raise SearchError(message.format(v=value, q=quoted(value)))
        check_experiment_name(self.experiment, SearchError)
        self.make_executor()  # an unknown name, or an option its executor does not take

    def make_executor(self) -> Executor:
        """The executor that runs the trials (not yet bound to the set-up and the data)."""
        return make_executor(self.executor, self._executor_options(), _DEFAULTS, self.max_trials)

    def executor_name(self) -> str | None:
        """The name of the executor :meth:`make_executor` makes (None: an Executor object)."""
        if not isinstance(self.executor, str):
            return None
        if self.executor == AUTO:
            return auto_name(self.max_trials, self._executor_options())
        return self.executor

    def _executor_options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in EXECUTOR_OPTIONS}

    @property
    def cluster_address(self) -> str | None:
        """The Ray cluster to join: ``ray_address``, else ``$RAY_ADDRESS``, else None (local)."""
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None


def search_options() -> list[Field]:
    """The fields of :class:`SearchSettings`, in ``automl search --help`` order."""
    return list(fields(SearchSettings))


def options_doc(indent: str = "        ") -> str:
    """Google-style ``Args:`` lines for every search option (``search()``'s docstring)."""
    import textwrap

    out = []
    for f in fields(SearchSettings):
        text = f"{f.name}: {f.metadata['doc']}"
        out.append(
            textwrap.fill(text, 92, initial_indent=indent, subsequent_indent=indent + "    ")
        )
    return "\n".join(out)


_DEFAULTS = {f.name: f.default for f in fields(SearchSettings) if f.name in EXECUTOR_OPTIONS}
