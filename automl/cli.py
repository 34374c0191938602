"""Command line: thin commands, each calling the public API.

automl search [--data SRC] [--space FILE] [--max-trials N] [--tuner T] ...
automl leaderboard [--experiment NAME]... [--all] [--run-id ID]
automl retrain --run-id ID [--full] [--data SRC] [--register NAME] [-q]
automl export [--run-id ID|models:/NAME/VERSION] --format FORMAT --output PATH [--quantize Q]
automl predict IMAGE... --model PATH [--top-k K] [--json] [--tracking-uri URI]
automl ui [--port N] [--host HOST]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter


def _common(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:  # leaderboard: several searches on one table
        p.add_argument(
            "--experiment",
            action="append",
            default=None,
            help="MLflow experiment name (default: automl); repeat it to rank the best trials "
            "of several searches on one table",
        )
    else:
        p.add_argument(
            "--experiment", default=None, help="MLflow experiment name (default: automl)"
        )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )


def _plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: a plugin that registers backbones, model families or "
        "executors (automl.backbones.register_backbone, automl.families.register_family, "
        "automl.executors.register_executor; repeatable; trial workers import it too)",
    )


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be 1 or more")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), like every other error."""

    def error(self, message: str):
        from automl.errors import one_line

        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _non_negative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} must be 0 or more")
    return v


def _bounded_int(low: int, high: int, what: str):
    """An argparse type: an integer from ``low`` to ``high``, else one line naming the range."""

    def parse(s: str) -> int:
        from automl.errors import quoted

        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quoted(s)} is not an integer") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(
                f"{quoted(s)} is out of range; {what} is an integer from {low} to {high}"
            )
        return v

    return parse


def _non_negative_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{s} must be 0 or more")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="automl", description="Keras AutoML for image transfer learning, tracked in MLflow."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (
        _search_parser,
        _retrain_parser,
        _leaderboard_parser,
        _export_parser,
        _predict_parser,
        _ui_parser,
    ):
        add(sub)
    return ap


def _search_parser(sub) -> None:
    """``automl search``: its options are :class:`automl.search.SearchSettings`' fields."""
    from automl.search.settings import search_options

    s = sub.add_parser("search", help="run (or resume) a search")
    s.add_argument(
        "--data",
        default="demo",
        help="demo | PATH (one sub-folder per class) | labels.csv (image paths + targets) | tfds:NAME",
    )
    s.add_argument(
        "--space",
        default=None,
        help="search-space YAML file or built-in name (default, gpu); without it the space is "
        "chosen from the data (logged to MLflow as search_space.yaml, reusable with --space)",
    )
    flags = [f.metadata["cli"] for f in search_options() if f.metadata["cli"] is not None]
    for flag in [f for f in flags if not f.common]:
        _add_flag(s, flag)
    _plugin_option(s)
    for flag in [f for f in flags if f.common]:
        _add_flag(s, flag)


def _add_flag(p: argparse.ArgumentParser, flag) -> None:
    """One :class:`automl.search.settings.Flag` as an argparse option."""
    from automl.search.settings import SEED_MAX

    types = {
        "positive_int": _positive_int,
        "non_negative_int": _non_negative_int,
        "non_negative_float": _non_negative_float,
        "seed": _bounded_int(0, SEED_MAX, "a seed"),
    }
    kw = flag.argparse_kwargs()
    if isinstance(kw.get("type"), str):
        kw["type"] = types[kw["type"]]
    if kw.get("action") == "bool_optional":
        kw["action"] = argparse.BooleanOptionalAction
    p.add_argument(*flag.flags, **{k: v for k, v in kw.items() if v is not None or k == "default"})


def _retrain_parser(sub) -> None:
    from automl.search.settings import CACHE_DIR_HELP

    rt = sub.add_parser("retrain", help="train a logged trial's configuration again (a new run)")
    rt.add_argument(
        "--run-id", required=True, help="a trial run id (or a search run id: its best trial)"
    )
    rt.add_argument(
        "--full", action="store_true", help="train on train + validation (test scores the model)"
    )
    rt.add_argument(
        "--data", default=None, help="data source, if not the logged one (demo | PATH | tfds:NAME)"
    )
    rt.add_argument("--register", default=None, metavar="NAME", help="register the new model")
    rt.add_argument("--cache-dir", default=None, metavar="DIR", help=CACHE_DIR_HELP)
    rt.add_argument("-q", "--quiet", action="store_true", help="no progress display, warnings only")
    _plugin_option(rt)
    _common(rt)


def _leaderboard_parser(sub) -> None:
    lb = sub.add_parser("leaderboard", help="print the trials of the latest search, best first")
    lb.add_argument("--run-id", default=None, help="a search's parent run id (default: the latest)")
    lb.add_argument(
        "--all", action="store_true", help="rank the best trials of every experiment's search"
    )
    _common(lb, several=True)


def _export_parser(sub) -> None:
    ex = sub.add_parser("export", help="export the best model")
    ex.add_argument(
        "--run-id",
        default=None,
        help="a search or trial run id, or models:/NAME/VERSION (default: the latest search)",
    )
    ex.add_argument(
        "--format", default="keras", help="keras | saved_model | tflite | onnx | mlflow"
    )
    ex.add_argument("--output", required=True)
    ex.add_argument("--force", action="store_true", help="overwrite an existing output")
    ex.add_argument("--quantize", default=None, help="tflite only: none (float32) | float16 | int8")
    ex.add_argument(
        "--calibration-data",
        default=None,
        metavar="SRC",
        help="int8: images to calibrate on (default: the search's own data)",
    )
    _common(ex)


def _predict_parser(sub) -> None:
    pr = sub.add_parser("predict", help="label image files with an exported model")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument(
        "--model",
        required=True,
        help=".keras/.tflite/.onnx file, SavedModel or MLflow model folder, or models:/NAME/VERSION",
    )
    pr.add_argument("--top-k", type=_positive_int, default=5)
    pr.add_argument("--json", action="store_true", help="print JSON instead of text")
    pr.add_argument(
        "--trust-model",
        action="store_true",
        help="also load a SavedModel that your automl did not sign (loading one runs its graph)",
    )
    pr.add_argument(
        "--tracking-uri",
        default=None,
        help="the store of a models:/NAME/VERSION model (default: $MLFLOW_TRACKING_URI or "
        "sqlite:///mlruns/mlflow.db)",
    )


def _ui_parser(sub) -> None:
    ui = sub.add_parser("ui", help="start the MLflow UI on the project's store")
    ui.add_argument("--port", type=_bounded_int(1, 65535, "a port"), default=5000)
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: 127.0.0.1, this machine only)",
    )
    ui.add_argument("--workers", type=_positive_int, default=1, help="server worker processes")
    _common(ui)


def _print_board(board, first: tuple[str, ...] | list[str] = ()) -> None:
    import pandas as pd

    from automl.tracking import TASK_SCORES

    if board.empty:
        print("no trials yet")
        return
    task_cols = [c for c in TASK_SCORES if c in board.columns]
    if task_cols and board.get("val_accuracy", pd.Series(dtype=float)).isna().all():
        board = board.drop(columns=["val_accuracy"])  # a multi-label or regression search
    cols = [
        c
        for c in [
            *first,
            "trial",
            "status",
            "val_accuracy",
            "val_loss",
            *task_cols,
            "family",
            "backbone",
            "image_size",
            "learning_rate",
            "batch_size",
            "dropout",
            "fine_tune_depth",
            "head_epochs",
            "fine_tune_epochs",
            "augment",
            "blocks",
            "filters",
            "epochs",
            "members",
            "seconds",
            "run_id",
        ]
        if c in board.columns
    ]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format
    ):
        print(board[cols].to_string(index=False))


def _shown(run, show) -> int:
    """Run, show its result, exit 0; a registry failure still shows the result, then exit 1."""
    from automl.errors import RegistrationError

    try:
        result = run()
    except RegistrationError as e:  # the work itself finished: show it, then fail
        show(e.result)
        print(f"automl: error: {e}", file=sys.stderr)
        return 1
    show(result)
    return 0


def cmd_search(a) -> int:
    import automl
    from automl.search.settings import search_options

    options = {}
    for f in search_options():  # every setting the command line has, as search() takes it
        flag = f.metadata["cli"]
        if flag is not None:
            value = getattr(a, flag.dest)
            options[f.name] = flag.to_setting(value) if flag.to_setting else value
    return _shown(
        lambda: automl.search(data=a.data, space=a.space, **options),
        lambda result: _print_search(a, result),
    )


def _print_search(a, result) -> None:
    from automl.refit import REFIT_ID

    _print_board(result.leaderboard())
    best = result.best_trial
    tm = result.test_metrics
    key = "accuracy" if "test_accuracy" in tm or not tm else result.objective.removeprefix("val_")
    val = best["metrics"].get(f"val_{key}")
    print(
        f"\nbest trial {best['trial_id']}: val_{key}={float('nan') if val is None else val:.4f} "
        f"test_{key}={tm.get(f'test_{key}', float('nan')):.4f} "
        f"(val-to-test gap {tm.get('val_test_gap', float('nan')):+.4f}; MLflow run {best['run_id']})"
    )
    parent_tags = result.tracker.run_tags(result.parent_run_id)
    if best["trial_id"] == REFIT_ID:
        print(f"refit:       {parent_tags['automl.refit']}")
    ckpt = result.tracker.run_tags(best["run_id"]).get("automl.checkpoint")
    print(
        f"best model:  {ckpt} (and MLflow run {result.parent_run_id}, artifact best_model/model.keras)"
    )
    print(
        f"export it:   automl export --experiment {result.experiment} --format keras --output best.keras"
    )
    if a.register and "automl.registered_model" in parent_tags:
        print(f"registered:  {parent_tags['automl.registered_model']} (Model Registry)")
    print(f"see the runs: automl ui   (or: mlflow ui --backend-store-uri {result.tracking_uri})")
    print(f"then open:    {result.ui_url}")
    from automl.compare import describe, search_compare_link
    from automl.tracking import ui_base

    link = search_compare_link(
        result.tracker, result.parent_run_id, ui_base(result.tracking_uri), result.objective
    )
    print(f"or {describe(*link)}")


def cmd_retrain(a) -> int:
    from automl.retrain import retrain

    return _shown(
        lambda: retrain(
            a.run_id,
            full=a.full,
            data=a.data,
            tracking_uri=a.tracking_uri,
            experiment=a.experiment,
            register=a.register,
            verbose=0 if a.quiet else 1,
            cache_dir=a.cache_dir,
        ),
        _print_retrain,
    )


def _print_retrain(r) -> None:
    print(
        f"retrained run {r.retrained_from} as run {r.run_id}: "
        f"val_accuracy={r.metrics.get('val_accuracy', float('nan')):.4f} "
        f"test_accuracy={r.test_metrics['test_accuracy']:.4f}; model {r.model_uri}"
    )
    if r.registered_model:
        print(f"registered: {r.registered_model} (Model Registry)")


def _tracker(a):
    """The store of a command that only reads it: never creates a store or an experiment."""
    from automl.search import DEFAULT_EXPERIMENT
    from automl.tracking import (
        Tracker,
        check_store_exists,
        check_tracking_uri,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(a.tracking_uri)
    check_store_exists(uri)
    check_tracking_uri(uri)
    return Tracker(uri, a.experiment or DEFAULT_EXPERIMENT, create=False)


def cmd_leaderboard(a) -> int:
    from automl.compare import describe, experiment_ids, leaderboard_across, search_compare_link
    from automl.errors import AutoMLError
    from automl.export import resolve_search
    from automl.search_report import COMPARE_MAX
    from automl.tracking import (
        check_store_exists,
        check_tracking_uri,
        resolve_tracking_uri,
        ui_base,
    )

    uri = resolve_tracking_uri(a.tracking_uri)
    names = a.experiment or []
    if a.all or len(names) > 1:
        if a.run_id:
            raise AutoMLError(
                "--run-id names one search: leave out --all or the extra --experiment"
            )
        check_store_exists(uri)
        check_tracking_uri(uri)
        board, link = leaderboard_across(uri, None if a.all else names, ui_base(uri))
        _print_board(board, first=["experiment"])
        if link:
            shown = min(len(board), COMPARE_MAX)
            print(f"\ncompare the {'best ' if len(board) > shown else ''}{shown} in MLflow: {link}")
        return 0
    if names:
        check_store_exists(uri)
        check_tracking_uri(uri)
        experiment_ids(uri, names)  # an unknown experiment is an error, not a new one
    a.experiment = names[0] if names else None
    t = _tracker(a)
    if a.run_id:
        from automl.tracking import check_search_run

        check_search_run(t, a.run_id)
    run_id = resolve_search(t, a.run_id)
    _print_board(t.leaderboard(run_id))
    print("\n" + describe(*search_compare_link(t, run_id, ui_base(uri))))
    return 0


def cmd_export(a) -> int:
    from automl import export as ex

    quantize = ex.check_export_args(a.output, format=a.format, force=a.force, quantize=a.quantize)
    t = _tracker(a)
    run_id = ex.resolve_search(t, a.run_id)
    model = ex.load_run_model(t, run_id)
    calibration = None
    if quantize == "int8":
        calibration = ex.calibration_images_for(
            t, run_id, a.calibration_data, ex.image_size_of(model)
        )
    path = ex.export_model(
        model,
        a.output,
        format=a.format,
        class_names=ex.class_names_of(t, run_id),
        task=ex.task_of_run(t, run_id),
        force=a.force,
        quantize=quantize,
        calibration_images=calibration,
    )
    print(f"exported {a.format} model of {run_id} to {path}")
    return 0


def cmd_predict(a) -> int:
    import json

    from automl.predict import format_results, predict

    results = predict(
        a.images, a.model, top_k=a.top_k, trust_model=a.trust_model, tracking_uri=a.tracking_uri
    )
    print(json.dumps(results, indent=2) if a.json else format_results(results))
    return 0


def cmd_ui(a) -> int:
    import subprocess

    from automl.tracking import check_tracking_uri, resolve_tracking_uri

    _check_port_free(a.host, a.port)  # before the store's folder is made
    uri = resolve_tracking_uri(a.tracking_uri)
    check_tracking_uri(uri)
    _print_ui_links(a, uri)
    return _serve(subprocess.Popen(_server_command(a, uri)))


def _print_ui_links(a, uri: str) -> None:
    """Where the UI serves, the search's runs and compare pages, and the no-auth warning."""
    from automl.tracking import latest_search_experiment, ui_link

    everywhere = a.host in ("0.0.0.0", "::", "")
    shown = _network_address() if everywhere else a.host
    print(f"MLflow UI on http://{shown}:{a.port}  (store: {uri}); Ctrl-C stops it", flush=True)
    exp_id = _ui_experiment(a, uri) if a.experiment else latest_search_experiment(uri)
    if exp_id is not None:
        print(f"the search's runs: {ui_link(exp_id, f'http://{shown}:{a.port}')}", flush=True)
        _print_compare_link(uri, exp_id, f"http://{shown}:{a.port}")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"automl: warning: the MLflow server has no authentication: anyone who can reach "
            f"{'this machine' if everywhere else a.host} on port {a.port} can read, change and "
            "delete every run; use --host 127.0.0.1 unless the network is trusted",
            file=sys.stderr,
            flush=True,
        )


def _server_command(a, uri: str) -> list[str]:
    from automl.tracking import sqlite_path

    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",  # `mlflow ui` is an alias of `mlflow server` in MLflow 3
        "--backend-store-uri",
        uri,
        "--host",
        a.host,
        "--port",
        str(a.port),
        "--workers",
        str(a.workers),
    ]
    db = sqlite_path(uri)
    if db is not None:  # artifacts of experiments created in the UI go next to the others
        cmd += ["--artifacts-destination", str(db.resolve().parent / "artifacts")]
    return cmd


def _serve(proc) -> int:
    """Wait for the server; SIGTERM and Ctrl-C stop it too."""
    import signal

    stopping = []

    def stop(*_):
        stopping.append(True)
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)  # stop the server too
    try:
        rc = proc.wait()
        if stopping or rc == 0:
            return rc
        # The server died (a broken store, a bad option...): one line of ours after its own.
        print(
            f"automl: error: the MLflow server stopped (exit code {rc}); see its messages above",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something else listens on, before the server starts (and fails at length)."""
    import socket

    from automl.errors import AutoMLError, quoted

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise AutoMLError(
            f"--host {quoted(host)} is not an address of this machine ({e.strerror}); "
            "pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            import errno

            fix = (
                "pass another --port (or stop what uses it)"
                if e.errno == errno.EADDRINUSE
                else "pass another --host (127.0.0.1: this machine only) or --port"
            )
            raise AutoMLError(
                f"cannot serve on {quoted(host)[1:-1]}:{port} ({e.strerror}); {fix}"
            ) from None


def _print_compare_link(uri: str, exp_id: str, base: str) -> None:
    """The latest search of experiment ``exp_id``: its compare link, if it can be read."""
    from automl.compare import describe, search_compare_link
    from automl.tracking import Tracker, experiment_name

    try:
        t = Tracker(uri, experiment_name(uri, exp_id))
        parent = t.latest_search()
        if parent is None:
            return
        print(describe(*search_compare_link(t, parent.info.run_id, base)), flush=True)
    except Exception:  # noqa: BLE001 - the UI starts anyway; the runs page link is printed
        return


def _ui_experiment(a, uri: str) -> str | None:
    """The id of ``--experiment`` in the store, or None."""
    from automl.tracking import experiment_id

    return experiment_id(uri, a.experiment)


def _network_address() -> str:
    """This machine's address on its network (what others open when the UI binds 0.0.0.0)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP: picks the outgoing interface, sends nothing
            return s.getsockname()[0]
    except OSError:
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return socket.gethostname()


# What an interrupted command leaves, in its own words (after "automl: interrupted; ").
_INTERRUPTED = {
    "search": "finished trials are kept, run the same command to resume",
    "export": "no partial export was written: --output holds the earlier export if there "
    "was one (or the new one, if it was complete); run the same command again",
    "retrain": "a run the retrain started is closed as KILLED, the trial it retrains is "
    "unchanged; run the same command again",
    "ui": "the MLflow UI is stopped",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the current runs close as KILLED, the search can resume."""


@contextlib.contextmanager
def _stop_on_sigterm():
    """While a command runs, SIGTERM raises :class:`Terminated` (the previous handler after)."""
    import signal
    import threading

    def handler(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    from automl.errors import AutoMLError

    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(a, "quiet", False) else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("absl", "tensorflow", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no "generated new fontManager"
    commands = {
        "search": cmd_search,
        "leaderboard": cmd_leaderboard,
        "export": cmd_export,
        "retrain": cmd_retrain,
        "predict": cmd_predict,
        "ui": cmd_ui,
    }
    try:
        with _stop_on_sigterm():
            if getattr(a, "plugin", None):
                from automl.backbones.registry import load_plugins

                load_plugins(a.plugin)
            return commands[a.command](a)
    except AutoMLError as e:
        from automl.errors import one_line

        print(f"automl: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(
            f"automl: interrupted; {_INTERRUPTED.get(a.command, 'nothing was changed')}",
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
