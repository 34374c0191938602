"""Parallel trials and the figures behind the 64-GPU estimate in docs/distributed.md.

.venv/bin/python bench/parallel.py [--trials 8] [--parts throughput,oracle,mlflow,artifacts]

- throughput: trials per hour with 1 worker (today's recycled worker process, TensorFlow on
  every core) and with 2 Ray workers (``--workers 2 --cpus-per-trial 1``: TensorFlow limited
  to one intra-op and one inter-op thread per trial), same space, same data, same trials.
- oracle: KerasTuner's proposal latency (``create_trial``, state saved as in a search) with
  1,000 finished trials, Bayesian and random.
- mlflow: requests per second a local ``mlflow server`` (PostgreSQL when installed, else
  SQLite) takes from 16 concurrent client processes logging epochs (bounded loop, loopback).
- artifacts: bytes a trial moves: MLflow artifacts per trial run, the model file a Ray
  worker sends back, and the data put into the object store once.

The CPU is shared: run it on a quiet machine, and read the figures as this machine's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (path and quiet logs)

# A space whose trials fit one core each: phase 1 of a small random-init CNN on 32 px images.
SPACE = {
    "name": "parallel",
    "hyperparameters": {
        "backbone": "mobilenet_v3_small",
        "weights": "random",
        "image_size": 32,
        "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"},
        "batch_size": {"choice": [16, 32]},
        "dropout": 0.1,
        "fine_tune_depth": 0.0,
        "head_epochs": 3,
        "fine_tune_epochs": 0,
    },
}


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    n, classes = 600, 3
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, 32, 32, 3)).astype(np.uint8)
    for c in range(classes):
        x[y == c, :, :, c] += 150
    return x, y


def throughput(trials: int, out: dict, order: tuple[int, ...] = (1, 2)) -> None:
    import automl

    for workers in order:
        with tempfile.TemporaryDirectory() as tmp:
            uri = f"sqlite:///{tmp}/mlflow.db"
            t0 = time.perf_counter()
            r = automl.search(
                data=_data(),
                space=SPACE,
                max_trials=trials,
                tuner="random",
                tracking_uri=uri,
                workdir=tmp,
                experiment=f"w{workers}",
                workers=workers,
                cpus_per_trial=1,
                embedding_cache=False,
            )
            wall = time.perf_counter() - t0
            runs = [x for x in r.tracker.trial_runs(r.parent_run_id) if x.info.status == "FINISHED"]
            first = min(x.info.start_time for x in runs) / 1000
            last = max(x.info.end_time for x in runs) / 1000
            per = statistics.median((x.info.end_time - x.info.start_time) / 1000 for x in runs)
            row = {
                "workers": workers,
                "trials": len(runs),
                "wall_s": round(wall, 1),
                "trials_per_hour_wall": round(3600 * len(runs) / wall, 1),
                "trials_per_hour_trials": round(3600 * len(runs) / (last - first), 1),
                "median_trial_s": round(per, 1),
            }
            out.setdefault("throughput", []).append(row)
            print(
                f"workers={workers}: {row['trials']} trials in {wall:.0f} s (search start to end) = "
                f"{row['trials_per_hour_wall']} trials/h; first trial start to last trial end "
                f"{last - first:.0f} s = {row['trials_per_hour_trials']} trials/h; median trial "
                f"{per:.1f} s",
                flush=True,
            )
            if workers == 2:
                artifacts(r, out, Path(tmp))
    a, b = sorted(out["throughput"], key=lambda row: row["workers"])
    print(
        f"2 workers / 1 worker: {b['trials_per_hour_wall'] / a['trials_per_hour_wall']:.2f}x "
        f"(wall), {b['trials_per_hour_trials'] / a['trials_per_hour_trials']:.2f}x (trials only)"
    )


def artifacts(result, out: dict, workdir: Path) -> None:
    """Bytes per trial: its MLflow artifacts, its model file, and the data (once per search)."""
    client = result.tracker.client

    def size(run_id: str, path: str | None = None) -> int:
        total = 0
        for a in client.list_artifacts(run_id, path):
            total += size(run_id, a.path) if a.is_dir else (a.file_size or 0)
        return total

    runs = [x for x in result.tracker.trial_runs(result.parent_run_id)]
    per_run = [size(x.info.run_id) for x in runs]
    ckpt = [p.stat().st_size for p in workdir.glob("**/checkpoints/*.keras")]
    data = result.data
    data_bytes = sum(
        getattr(data, k).nbytes
        for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    )
    row = {
        "mlflow_artifacts_per_trial_bytes": int(statistics.median(per_run)),
        "model_file_bytes": int(statistics.median(ckpt)) if ckpt else None,
        "data_bytes_once": int(data_bytes),
        "metrics_per_trial": int(statistics.median(len(x.data.metrics) for x in runs)),
    }
    out["artifacts"] = row
    print(
        f"artifacts per trial: MLflow {row['mlflow_artifacts_per_trial_bytes'] / 1e3:.0f} kB "
        f"(plots, reports), model file sent back {((row['model_file_bytes'] or 0) / 1e6):.2f} MB; "
        f"data put into the object store once: {data_bytes / 1e6:.1f} MB",
        flush=True,
    )


def oracle(out: dict, n: int = 1000) -> None:
    """create_trial latency with n finished trials (state saved to disk, as in a search)."""
    import keras_tuner as kt
    import numpy as np

    from automl.space import load_space

    hp = load_space("default").to_keras_tuner()
    obj = kt.Objective("val_accuracy", "max")
    rng = np.random.default_rng(0)

    def fill(o) -> None:
        for i in range(n):
            t = o.create_trial(f"tuner{i % 64}")
            lr = t.hyperparameters.values.get("learning_rate", 1e-3)
            o.update_trial(
                t.trial_id,
                {"val_accuracy": float(-((np.log10(lr) + 2.5) ** 2) + rng.normal(0, 0.05))},
            )
            t.status = "COMPLETED"
            o.end_trial(t)

    with tempfile.TemporaryDirectory() as tmp:
        ro = kt.oracles.RandomSearchOracle(
            objective=obj, hyperparameters=hp, max_trials=n + 100, seed=0
        )
        ro._set_project_dir(tmp, "random")
        ro.verbose = 0
        t0 = time.perf_counter()
        fill(ro)
        fill_s = time.perf_counter() - t0
        for name, o in (
            ("random", ro),
            ("bayesian", kt.oracles.BayesianOptimizationOracle(
                objective=obj, hyperparameters=hp, max_trials=n + 100, seed=0, num_initial_points=3)),
        ):  # fmt: skip
            if name == "bayesian":  # the same 1,000 finished trials
                o._set_project_dir(tmp, "bayesian")
                o.verbose = 0
                o.trials, o.start_order, o.end_order = (
                    dict(ro.trials),
                    list(ro.start_order),
                    list(ro.end_order),
                )
                o._tried_so_far, o._id_to_hash = set(ro._tried_so_far), ro._id_to_hash
            lat = []
            for i in range(5):
                t0 = time.perf_counter()
                t = o.create_trial(f"bench{i}")
                lat.append(time.perf_counter() - t0)
                o.update_trial(t.trial_id, {"val_accuracy": 0.0})
                t.status = "COMPLETED"
                o.end_trial(t)
            row = {"median_s": round(statistics.median(lat), 3), "max_s": round(max(lat), 3)}
            out.setdefault("oracle", {})[name] = row
            print(
                f"oracle {name}: create_trial with {n} finished trials: median {row['median_s']} s, "
                f"max {row['max_s']} s (5 proposals, state saved each time)",
                flush=True,
            )
        out["oracle"]["fill_1000_random_s"] = round(fill_s, 1)
        print(f"(1,000 random trials proposed, told and saved in {fill_s:.1f} s)")


def _client(url: str, seconds: float, q) -> None:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # its thread races os.environ reads
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    c = MlflowClient(url)
    exp = c.get_experiment_by_name("bench") or c.get_experiment_by_name("bench")
    run = c.create_run(exp.experiment_id).info.run_id
    n, lat, end, step, errors = 0, [], time.time() + seconds, 0, 0
    while time.time() < end:  # one epoch: 5 metrics in one request, as a trial logs it
        ts = int(time.time() * 1000)
        t0 = time.perf_counter()
        try:
            c.log_batch(
                run,
                metrics=[
                    Metric(k, 0.5, ts, step)
                    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "phase")
                ],
            )
        except Exception:  # counted, not fatal: the rate is what we measure
            errors += 1
            continue
        lat.append(time.perf_counter() - t0)
        n, step = n + 1, step + 1
    c.set_terminated(run)
    q.put((n, lat, errors))


def mlflow_rate(out: dict, clients: int = 16, seconds: float = 20.0) -> None:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    from tests.distributed_helpers import mlflow_server, postgres, postgres_bin

    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "artifacts"
        art.mkdir()
        if postgres_bin() is not None:
            store, backend = postgres(), "PostgreSQL"
        else:
            from contextlib import nullcontext

            store, backend = nullcontext(f"sqlite:///{tmp}/mlflow.db"), "SQLite"
        with store as db, mlflow_server(db, art) as url:
            MlflowClient(url).create_experiment("bench")
            q = mp.get_context("spawn").Queue()
            procs = [
                mp.get_context("spawn").Process(target=_client, args=(url, seconds, q))
                for _ in range(clients)
            ]
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            results = [q.get(timeout=seconds + 300) for _ in procs]
            for p in procs:
                p.join()
            wall = time.perf_counter() - t0
    n = sum(r[0] for r in results)
    errors = sum(r[2] for r in results)
    lat = sorted(x for r in results for x in r[1])
    row = {
        "backend": backend,
        "clients": clients,
        "requests": n,
        "errors": errors,
        "requests_per_s": round(n / seconds, 1),
        "metrics_per_s": round(5 * n / seconds, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p95_ms": round(1000 * lat[int(len(lat) * 0.95)], 1),
    }
    out["mlflow"] = row
    print(
        f"mlflow server ({backend} backend, 2 server workers): {clients} clients logging epochs "
        f"for {seconds:.0f} s: {row['requests_per_s']} log_batch requests/s = "
        f"{row['metrics_per_s']} metrics/s ({errors} failed); latency p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms "
        f"(wall incl. start-up {wall:.0f} s)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--parts", default="throughput,oracle,mlflow")
    ap.add_argument("--order", default="1,2", help="worker counts in the order they run")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()
    out: dict = {"cpus": os.cpu_count()}
    parts = a.parts.split(",")
    if "oracle" in parts:
        oracle(out)
    if "mlflow" in parts:
        mlflow_rate(out)
    if "throughput" in parts:
        throughput(a.trials, out, tuple(int(w) for w in a.order.split(",")))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
