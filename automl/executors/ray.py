"""Up to N trials at once on Ray: a local runtime sized to this machine, or a cluster.

Each trial is one Ray task asking for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs
(fractions allowed); Ray places it. The data goes into Ray's object store once per search
(``ray.put``): the split indices, and the image store by its path; a node that cannot see
that path copies the store once into its own folder (``$AUTOML_NODE_CACHE``) from an actor
on the search's node; the embedding cache lives on each node's
disk. A task logs its epochs, scores and reports to MLflow over the tracking URI (a
tracking server: no shared disk) and sends its model file back to the search, which keeps
the top k. Ray never retries a task itself: a task whose worker process or node dies is one
failed trial, which the search's failure rules retry (or not), and the search goes on.
A Ray worker process runs up to ``trials_per_worker`` trials, then a new one takes over.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from automl.data.store import for_ray
from automl.errors import SearchError
from automl.executors import register_executor
from automl.executors.base import (
    Executor,
    JobFailure,
    JobResult,
    TrialJob,
    WorkerSetup,
    check_option,
)

log = logging.getLogger("automl")

INSTALL_HINT = 'pip install -e ".[distributed]"'


def require_ray(what: str) -> None:
    """Refuse (one line) when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise SearchError(f"{what} needs Ray, which is not installed; run: {INSTALL_HINT}")


def embedding_dir(setup: WorkerSetup, digest: str) -> Path:
    """This node's embedding cache folder for the search (local disk, shared by its workers)."""
    return Path(tempfile.gettempdir()) / "automl-embeddings" / f"{setup.experiment}-{digest[:16]}"


@register_executor("ray")
class RayExecutor(Executor):
    """Trials as Ray tasks; :attr:`slots` = ``workers`` in flight at once.

    Args:
        workers: trials at once.
        ray_address: the cluster to join (``HEAD:6379``); default ``$RAY_ADDRESS``, else a
            local runtime sized to this machine, stopped at the end.
        cpus_per_trial: CPUs each trial asks Ray for.
        gpus_per_trial: GPUs each trial asks Ray for (fractions allowed, e.g. 0.25).
        trials_per_worker: trials a Ray worker process runs before a new one takes over.
    """

    def __init__(
        self,
        workers: int = 2,
        ray_address: str | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        trials_per_worker: int = 10,
    ):
        for k, v in locals().items():
            if k != "self":
                check_option(k, v)
        self.workers, self.ray_address = workers, ray_address
        self.cpus_per_trial, self.gpus_per_trial = cpus_per_trial, gpus_per_trial
        self.trials_per_worker = trials_per_worker
        self.connected = False  # this executor called ray.init (and calls ray.shutdown)
        self.pending: dict[Future, Any] = {}  # future -> ObjectRef
        self.data_ref = self.task = None

    @property
    def slots(self) -> int:
        return self.workers

    def bind(self, setup: WorkerSetup, data) -> RayExecutor:
        """Refuses here (one line) when Ray is not installed."""
        workers, address = self.workers, self.ray_address
        require_ray(
            f"--workers {workers}"
            if workers > 1
            else f"--ray-address {address}"
            if address
            else "--executor ray"
        )
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus, self.gpus = self.cpus_per_trial, self.gpus_per_trial
        self.max_calls = max(1, int(self.trials_per_worker))
        return super().bind(setup, data)

    def start(self) -> dict[str, Any]:
        import ray

        if not ray.is_initialized():
            self._connect()
        total = ray.cluster_resources()
        self._check_resources(total)
        # Once per search, not once per trial: the indices, and each image store by its path
        # (a node that cannot see it copies it once from this node: automl.data.store).
        self.servers: list = []  # held here: an actor lives while a handle does

        def server_for(store):
            self.servers.append(_store_server(store))
            return self.servers[-1]

        self.data_ref = ray.put(for_ray(self.data, server_for))
        self.task = ray.remote(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=0,  # a lost trial is the search's to retry (its failure rules)
            max_calls=self.max_calls,
        )(_ray_trial)
        gpus = int(total.get("GPU", 0))
        use_gpu = gpus > 0 and self.gpus > 0
        return {
            "gpus": gpus,
            "mixed_precision": use_gpu and self.setup.mixed_precision,
            "jit_compile": "auto" if (use_gpu and self.setup.xla) else False,
            "ray_nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "ray_cpus": total.get("CPU", 0),
        }

    def _connect(self) -> None:
        """Join the cluster at :attr:`address`, or start a local runtime of our own."""
        import ray

        # Workers import automl as installed (no repository path is added); the plugin
        # modules (AUTOML_PLUGINS) and any PYTHONPATH of the driver travel with them.
        env = {k: os.environ[k] for k in ("PYTHONPATH", "AUTOML_PLUGINS") if os.environ.get(k)}
        kw: dict[str, Any] = dict(
            runtime_env={"env_vars": env},
            log_to_driver=False,
            configure_logging=False,
            ignore_reinit_error=True,
        )
        if self.address:
            try:
                ray.init(address=self.address, **kw)
            except Exception as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise SearchError(
                    f"could not join the Ray cluster at {self.address!r} ({first}); start it "
                    "with `ray start --head` or pass the --ray-address it printed"
                ) from None
        else:  # a local runtime sized to this machine, stopped at the end
            _kill_leftovers(self._pid_file())
            # address="local": a new runtime of our own, even when a cluster started by
            # someone else (`ray start`, another search's test) is up on this machine;
            # without it ray.init joins that cluster and refuses num_cpus.
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **kw)
            _record_runtime(self._pid_file())
        self.connected = True

    def _check_resources(self, total: dict[str, float]) -> None:
        need = self.slots * self.cpus
        if need > total.get("CPU", 0):
            log.warning(
                "%d workers x %s CPUs per trial > %s CPUs in the Ray cluster: some trials wait",
                self.slots,
                self.cpus,
                total.get("CPU", 0),
            )
        if self.gpus > 0 and total.get("GPU", 0) == 0:
            raise SearchError(
                f"--gpus-per-trial {self.gpus} but the Ray cluster has no GPU; "
                "pass --gpus-per-trial 0"
            )

    def submit(self, job: TrialJob) -> Future:
        weights = None
        if job.initial_weights:  # the parent's model file, for a worker on another machine
            weights = Path(job.initial_weights).read_bytes()
        ref = self.task.remote(
            self.setup.to_dict(), self.data_ref, job.to_dict(), weights, self.cpus
        )
        outer: Future = Future()
        self.pending[outer] = ref

        def done(inner: Future) -> None:
            self.pending.pop(outer, None)
            try:
                outer.set_result(inner.result())
            except Exception as e:  # the task's worker process or node died, or was cancelled
                outer.set_result(_lost(e))

        ref.future().add_done_callback(done)
        return outer

    def close(self, kill: bool = False) -> None:
        import ray

        if not ray.is_initialized():
            return
        for ref in list(self.pending.values()):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # finished meanwhile
                pass
        self.pending.clear()
        for server in getattr(self, "servers", []):
            try:
                ray.kill(server)
            except Exception:  # gone with its node
                pass
        self.servers = []
        if not kill:
            shutil.rmtree(embedding_dir(self.setup, self.data.digest()), ignore_errors=True)
        if self.connected:
            ray.shutdown()
            self.connected = False
            if not self.address:
                _kill_leftovers(self._pid_file())

    def _pid_file(self) -> Path | None:
        return Path(self.setup.project_dir) / "ray_local.json" if self.setup.project_dir else None


def _record_runtime(pid_file: Path | None) -> None:
    """Write the local runtime's processes down: if this process is SIGKILLed, most die with
    it, and the next run of the search (its resume) ends those that did not."""
    import json

    import psutil

    if pid_file is None:
        return
    procs = psutil.Process().children(recursive=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps([[p.pid, p.create_time()] for p in procs]))


def _kill_leftovers(pid_file: Path | None) -> None:
    import json

    import psutil

    if pid_file is None or not pid_file.exists():
        return
    try:
        recorded = json.loads(pid_file.read_text())
    except ValueError:
        recorded = []
    procs = []
    for pid, created in recorded:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 1e-3:  # the same process, not a reused pid
                p.kill()
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    psutil.wait_procs(procs, timeout=10)
    if procs:
        log.info("ended %d processes left by an earlier local Ray runtime", len(procs))
    pid_file.unlink(missing_ok=True)


def _lost(e: BaseException) -> JobFailure:
    """The failure a Ray error stands for: a lost worker or node is retried like a crash."""
    import ray.exceptions as rex

    name = type(e).__name__
    first = (str(e).strip().splitlines() or [name])[0][:200]
    if isinstance(e, rex.OutOfMemoryError):
        return JobFailure("out of memory (Ray killed the trial's worker)", str(e), final=True)
    if isinstance(e, rex.TaskCancelledError):
        return JobFailure("cancelled (the search stopped)", str(e))
    if isinstance(e, rex.NodeDiedError | rex.WorkerCrashedError | rex.ObjectLostError):
        return JobFailure(f"Ray worker or node lost ({name}): {first}", str(e))
    return JobFailure(f"Ray error ({name}): {first}", str(e))


def _store_server(store):
    """A :class:`StoreServer` actor pinned to this node (where the store is)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from automl.data.store import StoreServer

    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(num_cpus=0)(StoreServer)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        .remote(str(store.path))
    )


# ------------------------------------------------------------------ inside a Ray worker

_CONTEXT: dict[str, Any] = {}  # per worker process and search: built on its first trial


def _ray_trial(setup: dict, data, job: dict, weights: bytes | None, cpus: float):
    """One trial in a Ray worker process: returns a JobResult or a JobFailure."""
    import json

    import ray

    setup_ = WorkerSetup(**setup)
    key = json.dumps(setup, sort_keys=True) + data.digest()
    if _CONTEXT.get("key") != key:
        threads = str(max(1, int(cpus)))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
        logging.basicConfig(level=setup_.log_level, format="%(asctime)s %(message)s")
        for noisy in ("absl", "tensorflow", "mlflow", "alembic", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no "generated new fontManager"
        from automl.accelerator import setup_accelerator
        from automl.executors.runner import build_context

        try:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except (ImportError, RuntimeError):  # another backend, or already initialised
            pass
        setup_accelerator(setup_.mixed_precision, setup_.xla)
        if setup_.embedding_cache:
            setup_.embedding_dir = str(embedding_dir(setup_, data.digest()))
        ctx = build_context(setup_, data, checkpoints=False)
        node = ray.get_runtime_context().get_node_id()
        ctx.where = {
            "automl.node": f"{socket.gethostname()} ({node[:12]})",
            "automl.node_ip": ray.util.get_node_ip_address(),
        }
        _CONTEXT.update(key=key, ctx=ctx)
    from automl.executors.runner import run_job

    ctx = _CONTEXT["ctx"]
    ctx.data = data
    ctx.where["automl.gpu_ids"] = ",".join(str(g) for g in ray.get_gpu_ids()) or "none"
    trial_job = TrialJob(**job)
    with tempfile.TemporaryDirectory(prefix="automl-parent-") as tmp:
        if weights is not None:
            trial_job.initial_weights = str(Path(tmp) / "parent.keras")
            Path(trial_job.initial_weights).write_bytes(weights)
        out = run_job(trial_job, ctx)
    if isinstance(out, JobResult):
        out.model = None  # the model file travels instead
    return out
