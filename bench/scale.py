"""Data at scale (issue 17): memory, decode speed, restart time and input-pipeline speed of a
search on folders of 1k-100k JPEGs, today's loader vs ``image_dataset_from_directory`` vs the
on-disk image store (``automl.data.store``, where this tree has it).

The folders are synthetic 400x300 JPEGs, 10 classes (``datasets.scale_folder``: random crops
of ten real photos scikit-image and scikit-learn ship, colour-jittered and noised; the class is
the photo), written under ``--root`` (default /tmp/automl-scale) as ``jpeg400x300-N``.
Each measurement is chosen by a flag, at the sizes ``--sizes`` names; every figure is
printed and appended as one JSON line to ``bench/out/scale.jsonl`` with the commit, the UTC
time and the load average (the machine may be shared: read figures with their load).

    python bench/scale.py --make --sizes 1k 10k 50k 100k        # build the folders (resumable)
    python bench/scale.py --decode --sizes 1k 10k               # first decode, images/s
    python bench/scale.py --search --sizes 1k 10k               # default search: RSS, start, result
    python bench/scale.py --second-start --sizes 1k 10k         # a second search's start
    python bench/scale.py --pipeline                            # make_dataset images/s, 96/224 px

``--decode`` runs each decoder in a fresh process (images/s and its peak RSS): today's
``load_folder`` (up to ``--loader-max`` images: it holds every image in RAM), Keras's
``image_dataset_from_directory`` iterated once, and the store's build where the tree has one.
The page cache is warmed first (every file read once), so the figures are decode, not disk.

``--search`` runs ``python -m automl search --data FOLDER`` (plus ``--search-args``) as a
subprocess in ``--workdir``/N (its mlruns/ and any store live there), samples the RSS of it
and of its child processes every 0.2 s (and their VmHWM, the kernel's peak), and reads from
its output the time to the first trial's start, the trials done, the test accuracy and the
wall time. ``--stop-after start|trial`` ends it once the first trial has started / finished
(to measure start-up and the first trial only).

Each search gets a new experiment name (``scale-DATE-TIME``) unless ``--search-args`` names
one, so a search in a workdir that has run one before starts anew instead of resuming it; a
store it builds stays in ``WORKDIR/N/mlruns/stores`` (give a new ``--workdir`` for a cold
start; delete the workdir when done).

``--second-start`` runs the same search again in the same workdir under a new experiment
name (so a store made by the first search is found) and stops it when its first trial
starts: the time a user waits on a folder the tool has seen before.

``--pipeline`` times ``automl.trial.make_dataset`` (shuffled, batch 32, ``--epochs`` epochs
after a warm-up one; the median epoch) over the ``--pipeline-n`` folder's images (default
10k: an epoch of 1k images lasts a few hundredths of a second, too short to time on a shared
machine) at 96 and 224 px: from in-memory arrays (today) and from the store where the tree
has one. The in-memory arm is today's path itself, ``from_tensor_slices((x, y))`` + a shuffle
buffer the size of the data (``make_dataset`` of an array now reads through indices too).
Only batches are produced (no model): the figure is the pipeline's ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (the repo on sys.path, quiet TensorFlow)
import datasets

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "scale.jsonl"
TREE = REPO  # the automl tree measured (--tree): this checkout unless told otherwise


def _use_tree(path) -> None:
    """Measure the automl package of ``path`` (here, in --decode's children and in searches)."""
    global TREE
    TREE = Path(path).resolve()
    os.environ["SCALE_TREE"] = str(TREE)
    sys.path.insert(0, str(TREE))


# --- bookkeeping ---------------------------------------------------------------------------
def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=TREE, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=TREE,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return (head + ("+dirty" if dirty else "")) if head else f"no git: {TREE}"
    except OSError:
        return "unknown"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def record(measure: str, text: str, **fields) -> None:
    """Print one figure and append it as a JSON line to bench/out/scale.jsonl."""
    print(f"[{measure}] {text} ({_load()})", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "measure": measure,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "tree": str(TREE),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        **fields,
    }
    with OUT.open("a") as f:
        f.write(json.dumps(line) + "\n")


def _size(text: str) -> int:
    text = text.lower()
    mult = 1000 if text.endswith("k") else 1
    return int(float(text.rstrip("k")) * mult)


def _folder(root: Path, n: int) -> Path:
    folder = root / f"jpeg400x300-{n}"
    files = sum(1 for _ in folder.glob("*/*.jpg")) if folder.is_dir() else 0
    if files < n:
        raise SystemExit(
            f"{folder} has {files} of {n} images; build it first: "
            f"nice -n 15 python bench/scale.py --make --sizes {n} --root {root}"
        )
    return folder


def _warm(folder: Path) -> None:
    """Read every file once, so a decode figure measures decoding, not the disk."""
    for p in folder.glob("*/*.jpg"):
        p.read_bytes()


# --- the store, where this tree has one -----------------------------------------------------
def _store_folder():
    """``automl.data.sources.store_folder`` (a folder through the image store: ``(view, y,
    names, skipped)``), or None on a tree without the store."""
    try:
        from automl.data.sources import store_folder
    except ImportError:
        return None
    return store_folder


NO_STORE = "store: not available on this tree (no automl.data.sources.store_folder)"


# --- --make --------------------------------------------------------------------------------
def make(root: Path, sizes: list[int], processes: int | None) -> None:
    for n in sorted(sizes):
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done, total, t0=t0, last=last):
            if time.perf_counter() - last[0] > 10 or done == total:
                last[0] = time.perf_counter()
                print(f"  {done}/{total} ({time.perf_counter() - t0:.0f} s)", flush=True)

        folder = datasets.scale_folder(root, n, processes=processes, progress=progress)
        du = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True).stdout
        size = int(du.split()[0]) if du else 0
        record(
            "make",
            f"{folder}: {n} images, {size / 2**30:.2f} GiB (du -sb of the folder; siblings may share "
            f"its files as hard links), {time.perf_counter() - t0:.0f} s",
            n=n,
            folder=str(folder),
            bytes=size,
            seconds=round(time.perf_counter() - t0, 1),
        )


# --- --decode ------------------------------------------------------------------------------
def _decode_child(method: str, folder: str, size: int) -> None:
    """Runs in a fresh process: decode ``folder`` at ``size`` one way; print a JSON line."""
    import resource

    def cpu() -> float:  # user + system seconds of this process and its waited-for children
        who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, who))

    # Imports (TensorFlow's above all) come before the clock starts: decoding is timed.
    if method == "loader":
        from automl.data.sources import load_folder

        t0, c0 = time.perf_counter(), cpu()
        x, y, _, skipped = load_folder(folder, store_size=size)
        n, extra = len(y), {"array_bytes": int(x.nbytes), "skipped": len(skipped)}
    elif method == "keras":
        from automl.progress import import_tensorflow_quietly

        import_tensorflow_quietly()
        import keras

        t0, c0 = time.perf_counter(), cpu()
        ds = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=64, shuffle=False, verbose=False
        )
        n = 0
        for xb, _ in ds:
            n += int(xb.shape[0])
        extra = {}
    elif method == "store":
        store_folder = _store_folder()
        cache = Path(os.environ["SCALE_CACHE_DIR"])
        t0, c0 = time.perf_counter(), cpu()
        _, y, _, skipped = store_folder(folder, size, cache)
        n, extra = len(y), {"skipped": len(skipped)}
    else:
        raise SystemExit(f"unknown decode method {method!r}")
    seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest of the processes it started and waited for (the store's decoders).
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    got = {"n": n, "seconds": seconds, "cpu_seconds": cpu_s, "peak_rss_mib": peak}
    got["peak_rss_children_mib"] = kids
    print("RESULT " + json.dumps({**got, **extra}), flush=True)


def decode(
    root: Path, sizes: list[int], size: int, loader_max: int, workdir: Path, repeats: int = 1
) -> None:
    for n in sizes:
        folder = _folder(root, n)
        _warm(folder)
        methods = ["loader"] if n <= loader_max else []
        methods.append("keras")
        if _store_folder() is None:
            print(NO_STORE, flush=True)
        else:
            methods.append("store")
        if n > loader_max:
            print(f"loader: skipped at {n} images (over --loader-max {loader_max})", flush=True)
        for method in methods * repeats:  # the methods alternate, repeat by repeat
            cache = workdir / f"decode-cache-{n}-{size}-{time.time_ns()}"
            # The tree first; what PYTHONPATH had after it (e.g. a package installed elsewhere).
            path = os.pathsep.join(p for p in (str(TREE), os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONPATH": path, "SCALE_CACHE_DIR": str(cache)}
            proc = subprocess.run(
                [sys.executable, __file__, "--_decode", method, str(folder), str(size)],
                capture_output=True,
                text=True,
                env=env,
            )
            shutil.rmtree(cache, ignore_errors=True)  # the store this run built, if any
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                print(f"[decode] {method} at {n}: failed (exit {proc.returncode}): {tail}")
                continue
            r = json.loads(line[0][7:])
            got = r.pop("n")
            rate = got / r["seconds"]
            record(
                "decode",
                f"{method} {got} images -> {size} px: {r['seconds']:.1f} s, {rate:.0f} images/s, "
                f"CPU {r['cpu_seconds'] / max(got, 1) * 1e3:.2f} ms/image, "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB"
                + (
                    f" (its largest child process: {r['peak_rss_children_mib']:.0f} MiB)"
                    if method == "store"
                    else ""
                ),
                method=method,
                n=got,
                folder_n=n,
                size=size,
                images_per_s=round(rate, 1),
                **r,
            )


# --- --search and --second-start ---------------------------------------------------------
def _hwm(pid: int) -> float:
    """The kernel's peak resident size of ``pid`` (VmHWM), MiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_search(folder: Path, workdir: Path, extra: list[str], stop_after: str, label: str):
    """One CLI search, sampled; returns a dict of what was measured."""
    import psutil

    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "automl", "search", "--data", str(folder), *extra]
    env = {**os.environ, "PYTHONPATH": str(TREE), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: stopped as one, by its id
    )
    events: dict[str, float] = {}
    lines: dict[str, list[str]] = {"out": [], "err": []}
    log = (workdir / f"{label}.log").open("w", buffering=1)  # line-buffered: tail -f it

    def read(stream, key):
        for line in stream:
            now = time.perf_counter() - t0
            lines[key].append(line)
            log.write(f"{now:8.1f} {key} {line}")
            if key == "err":
                if "search:" in line and "search" not in events:
                    events["search"] = now
                if re.search(r"trial \S+ started", line) and "trial_start" not in events:
                    events["trial_start"] = now
                if re.search(r"trial \S+ (done|failed)", line) and "trial_end" not in events:
                    events["trial_end"] = now

    readers = [
        threading.Thread(target=read, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=read, args=(proc.stderr, "err"), daemon=True),
    ]
    for r in readers:
        r.start()
    main = psutil.Process(proc.pid)
    peak_main = 0.0
    kids: dict[int, dict] = {}  # pid -> {cmd, created, rss, hwm, hwm_first_trial}
    stopped = False
    while proc.poll() is None:
        try:
            peak_main = max(peak_main, main.memory_info().rss / 2**20, _hwm(proc.pid))
            children = main.children(recursive=True)
        except psutil.Error:
            children = []
        for c in children:
            try:
                k = kids.setdefault(
                    c.pid,
                    {"cmd": " ".join(c.cmdline()[:4])[-80:], "created": c.create_time()},
                )
                k["rss"] = max(k.get("rss", 0.0), c.memory_info().rss / 2**20)
                k["hwm"] = max(k.get("hwm", 0.0), _hwm(c.pid))
                if "trial_end" not in events:
                    k["hwm_first_trial"] = k["hwm"]
            except psutil.Error:
                pass
        want = {"start": "trial_start", "trial": "trial_end"}.get(stop_after)
        if want and want in events and not stopped:
            os.killpg(proc.pid, signal.SIGTERM)
            stopped = True
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join(timeout=5)
    log.close()
    out, err = "".join(lines["out"]), "".join(lines["err"])
    m = re.search(r"best trial (\S+): val_accuracy=([\d.]+) test_accuracy=([\d.na]+)", out)
    # Trial workers are `python -m automl.executors.process`; the store's decoding processes
    # (multiprocessing's spawn_main) and the resource tracker are counted apart.
    helpers = [k for k in kids.values() if "multiprocessing" in k["cmd"]]
    workers = [k for k in kids.values() if "automl.executors" in k["cmd"]] or [
        k for k in kids.values() if k not in helpers and k.get("hwm", 0) > 100
    ]
    workers.sort(key=lambda k: k["created"])
    return {
        "rc": proc.returncode,
        "stopped": stopped,
        "wall_s": round(wall, 1),
        "search_line_s": events.get("search"),
        "first_trial_start_s": events.get("trial_start"),
        "first_trial_end_s": events.get("trial_end"),
        "peak_rss_search_mib": round(peak_main, 1),
        "workers": [
            {
                "cmd": k["cmd"],
                "peak_mib": round(k["hwm"] or k["rss"], 1),
                "peak_first_trial_mib": round(k.get("hwm_first_trial", 0.0), 1),
            }
            for k in workers
        ],
        "peak_rss_helpers_mib": round(max((k.get("hwm", 0.0) for k in helpers), default=0.0), 1),
        "trials_done": len(re.findall(r"trial \S+ done:", err)),
        "trials_failed": len(re.findall(r"trial \S+ failed:", err)),
        "best_trial": m.group(1) if m else None,
        "val_accuracy": float(m.group(2)) if m else None,
        "test_accuracy": float(m.group(3)) if m else None,
        "error": err.strip().splitlines()[-1] if proc.returncode and err.strip() else None,
    }


def _fmt(v, unit="s") -> str:
    return f"{v:.1f} {unit}" if isinstance(v, (int, float)) else "n/a"


def search(root, sizes, workdir, extra, stop_after) -> None:
    for n in sizes:
        folder = _folder(root, n)
        _warm(folder)
        args = list(extra)
        if "--experiment" not in args:  # a new search, not the resume of an earlier one here
            args += ["--experiment", f"scale-{time.strftime('%Y%m%d-%H%M%S')}"]
        r = run_search(folder, workdir / str(n), args, stop_after, f"search-{time.time_ns()}")
        w = r["workers"][0] if r["workers"] else {}
        record(
            "search",
            f"{n} images: first trial started at {_fmt(r['first_trial_start_s'])}; peak RSS "
            f"search process {r['peak_rss_search_mib']:.0f} MiB, first trial worker "
            f"{w.get('peak_first_trial_mib', 0):.0f} MiB during its first trial "
            f"({w.get('peak_mib', 0):.0f} MiB over its life), {len(r['workers'])} worker(s)"
            + (
                f", its decoding processes {r['peak_rss_helpers_mib']:.0f} MiB"
                if r["peak_rss_helpers_mib"]
                else ""
            )
            + "; "
            f"{r['trials_done']} trials done, test_accuracy {r['test_accuracy']}, "
            f"wall {r['wall_s']:.0f} s"
            + ("; stopped as asked" if r["stopped"] else "")
            + (f"; exit {r['rc']}: {r['error']}" if r["error"] and not r["stopped"] else ""),
            n=n,
            folder=str(folder),
            args=args,
            stop_after=stop_after,
            **r,
        )


_LISTING = """
import sys, time
from pathlib import Path
folder = Path(sys.argv[1])
try:
    from automl.data.store import files_key, list_folder
except ImportError:  # a tree without the store: a plain walk and stat
    import os
    t = time.perf_counter()
    n = sum(1 for d, _, fs in os.walk(folder) for f in fs if os.stat(os.path.join(d, f)))
    print(n, time.perf_counter() - t, 0.0)
else:
    t = time.perf_counter()
    entries, _ = list_folder(folder)
    listed = time.perf_counter() - t
    files_key(entries, 128, "folder")
    print(len(entries), listed, time.perf_counter() - t - listed)
"""


def _listing(folder: Path) -> tuple[int, float, float]:
    """(files, seconds to list and stat them, seconds to hash the store key), in a fresh
    process (page cache warm): the "listing the files" of the second start's goal."""
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    out = subprocess.run(
        [sys.executable, "-c", _LISTING, str(folder)], env=env, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def second_start(root, sizes, workdir, extra) -> None:
    for n in sizes:
        folder = _folder(root, n)
        _warm(folder)
        files, listed, keyed = _listing(folder)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        args = [*extra, "--experiment", f"scale-second-{stamp}"]
        r = run_search(folder, workdir / str(n), args, "start", f"second-{time.time_ns()}")
        stores = sorted(
            p for p in (workdir / str(n)).glob("mlruns/stores/*") if not p.name.startswith(".")
        )
        record(
            "second_start",
            f"{n} images, same workdir ({len(stores)} store(s) under its mlruns/stores): first "
            f"trial started at {_fmt(r['first_trial_start_s'])}, search line at "
            f"{_fmt(r['search_line_s'])}; peak RSS search process "
            f"{r['peak_rss_search_mib']:.0f} MiB; listing the {files} files (list + stat, "
            f"a fresh process) {listed:.2f} s, their store key {keyed:.2f} s: first trial "
            f"- listing = "
            + (
                f"{r['first_trial_start_s'] - listed - keyed:.1f} s (goal < 5 s)"
                if r["first_trial_start_s"] is not None
                else "n/a"
            ),
            n=n,
            folder=str(folder),
            args=args,
            stores=len(stores),
            listing_files=files,
            listing_s=round(listed, 3),
            store_key_s=round(keyed, 3),
            **r,
        )


# --- --pipeline ----------------------------------------------------------------------------
def _epochs(ds, epochs: int) -> list[tuple[int, float, float]]:
    """``(images, seconds, CPU seconds of this process: all its threads)`` per epoch."""
    out = []
    for _ in range(epochs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for xb, _ in ds:
            n += int(xb.shape[0])
        out.append((n, time.perf_counter() - t0, time.process_time() - c0))
    return out


def _reduced(ds, epochs: int) -> list[tuple[int, float, float]]:
    """As :func:`_epochs`, the batches consumed inside a ``tf.function`` (``Dataset.reduce``):
    no Python per batch, as a training step consumes them."""
    import numpy as np
    import tensorflow as tf

    count = tf.function(
        lambda: ds.reduce(np.int64(0), lambda s, b: s + tf.cast(tf.shape(b[0])[0], tf.int64))
    )
    out = []
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        n = int(count())
        out.append((n, time.perf_counter() - t0, time.process_time() - c0))
    return out


def _cpu_us(runs) -> float:
    """The median CPU time per image delivered, µs (the figure a shared machine disturbs
    least: wall-clock rates swing 2-4x with the other jobs' load)."""
    per = sorted(c / k * 1e6 for k, _, c in runs)
    return per[len(per) // 2]


def _median(runs) -> tuple[float, list[float]]:
    rates = sorted(k / s for k, s, _ in runs)
    return rates[len(rates) // 2], rates


def pipeline(root: Path, n: int, sizes: list[int], batch: int, epochs: int, workdir: Path):
    from automl.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from automl.data.sources import load_folder
    from automl.trial import make_dataset

    folder = _folder(root, n)
    store_folder = _store_folder()
    for size in sizes:
        x, y, _, _ = load_folder(folder, store_size=size)
        # The old in-memory path itself (make_dataset(array) now goes through indices too):
        memory = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(y))
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        store = None
        if store_folder is None:
            print(NO_STORE, flush=True)
        else:
            view, ys, _, _ = store_folder(folder, size, workdir / "pipeline-cache")
            store = make_dataset(view, ys, batch, shuffle=True)
        group = _read_group(batch, (size, size, 3))
        for how, timer in (("python", _epochs), ("tf.function", _reduced)):
            runs = timer(memory, epochs + 1)[1:]  # the first epoch builds the pipeline
            med, rates = _median(runs)
            cpu = _cpu_us(runs)
            consumed = "a Python loop" if how == "python" else "Dataset.reduce in a tf.function"
            record(
                "pipeline",
                f"from_tensor_slices of in-memory arrays, {len(y)} images at {size} px, batch "
                f"{batch}, shuffled, consumed by {consumed}: median {med:.0f} images/s over "
                f"{epochs} epochs ({', '.join(f'{r:.0f}' for r in rates)}), CPU {cpu:.1f} us/image",
                source="memory",
                consumed=how,
                n=len(y),
                size=size,
                batch=batch,
                images_per_s=round(med, 1),
                cpu_us_per_image=round(cpu, 2),
                epochs=[round(r, 1) for r in rates],
            )
            if store is None:
                continue
            runs = timer(store, epochs + 1)[1:]
            med_store, rates = _median(runs)
            cpu_store = _cpu_us(runs)
            record(
                "pipeline",
                f"from the store, {runs[0][0]} images at {size} px, batch {batch} ({group} per "
                f"read), shuffled, consumed by {consumed}: median {med_store:.0f} images/s "
                f"({', '.join(f'{r:.0f}' for r in rates)}; {med_store / med:.2f}x in-memory), "
                f"CPU {cpu_store:.1f} us/image (in-memory {cpu:.1f}: {cpu / cpu_store:.2f}x)",
                source="store",
                consumed=how,
                n=runs[0][0],
                size=size,
                batch=batch,
                batches_per_read=group,
                images_per_s=round(med_store, 1),
                ratio_to_memory=round(med_store / med, 3),
                cpu_us_per_image=round(cpu_store, 2),
                cpu_ratio_to_memory=round(cpu / cpu_store, 3),
                epochs=[round(r, 1) for r in rates],
            )
        del x, memory, store


def _read_group(batch: int, shape) -> int:
    try:
        from automl.trial import read_group
    except ImportError:  # a tree from before grouped reads
        return 1
    return read_group(batch, shape)


def fit(root: Path, n: int, sizes: list[int], batch: int, epochs: int, workdir: Path):
    """Training images/s, store against in-memory arrays: a randomly initialised
    MobileNetV3-Small trained whole (as phase 2 fine-tunes), ``epochs`` timed epochs after
    a warm-up one, over ``n`` images of the 10k folder picked at random (seed 0)."""
    from automl.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np
    import tensorflow as tf

    from automl.data.sources import load_folder
    from automl.trial import make_dataset

    folder = _folder(root, 10_000)
    store_folder = _store_folder()
    if store_folder is None:
        raise SystemExit(NO_STORE)

    def model(size):
        keras.utils.set_random_seed(0)
        inp = keras.Input((size, size, 3), dtype="uint8")
        base = keras.applications.MobileNetV3Small(
            input_shape=(size, size, 3), weights=None, include_top=False, pooling="avg"
        )
        out = keras.layers.Dense(10, activation="softmax")(base(keras.layers.Rescaling(1.0)(inp)))
        m = keras.Model(inp, out)
        m.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
        return m

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t0)

    for size in sizes:
        x, y, _, _ = load_folder(folder, store_size=size)
        view, ys, _, _ = store_folder(folder, size, workdir / "pipeline-cache")
        pick = np.sort(np.random.default_rng(0).choice(len(y), n, replace=False))
        arms = {
            "memory": tf.data.Dataset.from_tensor_slices((x[pick], y[pick]))
            .shuffle(n)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE),
            "store": make_dataset(view.take(pick), ys[pick], batch, shuffle=True),
        }
        del x
        rates = {}
        for name in ("memory", "store", "memory", "store"):  # alternating, twice
            clock = Clock()
            model(size).fit(arms[name], epochs=epochs + 1, verbose=0, callbacks=[clock])
            rates.setdefault(name, []).extend(n / t for t in clock.times[1:])
        med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
        record(
            "fit",
            f"training images/s, MobileNetV3-Small trained whole, {n} images at {size} px, batch "
            f"{batch}: in-memory {med['memory']:.0f}, store {med['store']:.0f} "
            f"({med['store'] / med['memory']:.2f}x); epochs: memory "
            f"{', '.join(f'{r:.0f}' for r in rates['memory'])}, store "
            f"{', '.join(f'{r:.0f}' for r in rates['store'])}",
            n=n,
            size=size,
            batch=batch,
            memory_images_per_s=round(med["memory"], 1),
            store_images_per_s=round(med["store"], 1),
            ratio_to_memory=round(med["store"] / med["memory"], 3),
        )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--_decode":
        _use_tree(os.environ.get("SCALE_TREE", REPO))
        _decode_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/automl-scale"))
    ap.add_argument("--tree", type=Path, default=REPO, help="the automl checkout to measure")
    ap.add_argument("--workdir", type=Path, default=None, help="default: ROOT/runs")
    ap.add_argument("--sizes", nargs="+", default=["1k", "10k"], help="e.g. 1k 10k 50k 100k")
    ap.add_argument("--make", action="store_true", help="build the folders (resumable)")
    ap.add_argument("--processes", type=int, default=None, help="--make's processes (all CPUs)")
    ap.add_argument("--decode", action="store_true", help="first decode, images/s")
    ap.add_argument("--store-size", type=int, default=128, help="decode size (CPU default 128)")
    ap.add_argument("--repeats", type=int, default=1, help="--decode's runs per method")
    ap.add_argument("--loader-max", type=int, default=20000, help="today's loader up to N images")
    ap.add_argument("--search", action="store_true", help="a default search per size")
    ap.add_argument("--stop-after", choices=("none", "start", "trial"), default="none")
    ap.add_argument("--second-start", action="store_true", help="a second search's start")
    ap.add_argument("--search-args", default="", help="more `automl search` arguments, one string")
    ap.add_argument("--pipeline", action="store_true", help="make_dataset images/s")
    ap.add_argument("--pipeline-n", default="10k", help="the folder --pipeline reads")
    ap.add_argument("--pipeline-sizes", type=int, nargs="+", default=[96, 224])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5, help="--pipeline's timed epochs")
    ap.add_argument("--fit", action="store_true", help="training images/s, store vs memory")
    ap.add_argument("--fit-n", type=int, default=1024, help="--fit's images")
    ap.add_argument("--fit-epochs", type=int, default=2, help="--fit's timed epochs per run")
    a = ap.parse_args()
    _use_tree(a.tree)
    sizes = [_size(s) for s in a.sizes]
    workdir = a.workdir or a.root / "runs"
    extra = a.search_args.split()
    print(f"automl at {TREE}, commit {_commit()}, {os.cpu_count()} CPUs, {_load()}", flush=True)
    if not (a.make or a.decode or a.search or a.second_start or a.pipeline or a.fit):
        ap.error("choose at least one of --make --decode --search --second-start --pipeline --fit")
    if a.make:
        make(a.root, sizes, a.processes)
    if a.decode:
        decode(a.root, sizes, a.store_size, a.loader_max, workdir, a.repeats)
    if a.search:
        search(a.root, sizes, workdir, extra, a.stop_after)
    if a.second_start:
        second_start(a.root, sizes, workdir, extra)
    if a.pipeline:
        pipeline(a.root, _size(a.pipeline_n), a.pipeline_sizes, a.batch, a.epochs, workdir)
    if a.fit:
        fit(a.root, a.fit_n, a.pipeline_sizes, a.batch, a.fit_epochs, workdir)


if __name__ == "__main__":
    main()
