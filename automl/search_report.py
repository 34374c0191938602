"""What a search says about itself in MLflow: trial names and notes, and the search report.

- :func:`trial_name`: a trial run's name carries its number and the values that tell trials
  apart (``trial-002 scratch 16px lr 1.2e-3``);
- :func:`refresh`: after every trial (and once more when the search closes) each trial run's
  note (MLflow's ``mlflow.note.content``, shown above a run) says its configuration, best
  epoch and score in a sentence; the parent's note says the data, the space, the budget, the
  winner and the test score, with a link to MLflow's compare view; and the parent run gets
  ``search_report.html`` / ``search_report.png``: the best objective over trials and over
  wall-clock time, every trial's score by family, parameter importances, a
  parallel-coordinates plot, and the ensemble and refit outcome.

Importances are scikit-learn's permutation importance of a random forest fitted to the
finished trials (objective ~ searched hyperparameters), not a hand-rolled estimate.
Everything is read back from the runs themselves, so a resumed search or another process
refreshes the same report. A failing refresh is a warning, never a failed search.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from automl.task_outputs import lower_is_better
from automl.tracking import TAG_KIND, TAG_TRIAL, TASK_SCORES, Tracker, ranked

log = logging.getLogger("automl")

NOTE = "mlflow.note.content"  # the description MLflow shows above a run (markdown)
REPORT_HTML = "search_report.html"
REPORT_PNG = "search_report.png"
COMPARE_MAX = 20  # the compare view gets the best this-many finished trials
MIN_TRIALS_FOR_IMPORTANCE = 5
_HP_ORDER = ("family", "backbone", "image_size", "learning_rate")


# --- names -------------------------------------------------------------------------------------
def short_number(v: Any) -> str:
    """``0.0012345`` -> ``1.2e-3``; ``0.25`` -> ``0.25``; ints unchanged."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1:
        return str(int(v))
    if v != 0 and abs(v) < 0.01:
        mantissa, exponent = f"{v:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{v:.3g}"


def trial_label(trial_id: Any) -> str:
    """``"2"`` -> ``"trial-002"`` (zero-padded so names sort in trial order)."""
    s = str(trial_id)
    return f"trial-{int(s):03d}" if s.isdigit() else f"trial-{s}"


def trial_name(trial_id: Any, config: dict[str, Any], attempt: int = 1) -> str:
    """The run name of a trial: its number, family, backbone (pretrained), image size and
    learning rate, e.g. ``trial-002 scratch 16px lr 1.2e-3``."""
    parts = [trial_label(trial_id)]
    family = config.get("family")
    if family:
        parts.append(str(family))
    from automl.families.registry import uses

    if config.get("backbone") and uses(family, "backbone"):
        parts.append(str(config["backbone"]))
    if config.get("image_size"):
        parts.append(f"{int(config['image_size'])}px")
    lr = config.get("learning_rate", config.get("lr"))
    if isinstance(lr, (int, float)):
        parts.append(f"lr {short_number(float(lr))}")
    if attempt > 1:
        parts.append(f"(attempt {attempt})")
    return " ".join(parts)


# --- the trials, read back from MLflow ---------------------------------------------------------
def _parse(v: str) -> Any:
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def searched_names(parent_params: dict[str, str]) -> list[str]:
    """The searched hyperparameters' base names (``scratch.blocks`` -> ``blocks``), in order."""
    names: list[str] = []
    for name in (parent_params.get("searched") or "").split(","):
        base = name.strip().split(".")[-1]
        if base and base not in names:
            names.append(base)
    return sorted(names, key=lambda n: (_HP_ORDER.index(n) if n in _HP_ORDER else 99, n))


def trial_records(tracker: Tracker, parent_id: str):
    """One row per trial run of the search (all attempts, oldest first): ``trial``,
    ``run_id``, ``name``, ``status``, ``start``/``end`` (seconds), the scores at the best
    epoch (``val_accuracy``...), ``best_epoch``, ``epochs_run``, ``note`` and the params."""
    import pandas as pd

    rows = []
    for r in tracker.trial_runs(parent_id):
        if r.data.tags.get(TAG_KIND) != "trial":
            continue
        m = r.data.metrics
        rows.append(
            {
                **{k: _parse(v) for k, v in r.data.params.items()},
                "trial": r.data.tags.get(TAG_TRIAL, ""),
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "start": r.info.start_time / 1000,
                "end": r.info.end_time / 1000 if r.info.end_time else None,
                **{k: m.get(f"best_{k}") for k in ("val_accuracy", "val_loss", "accuracy", "loss")},
                # a multi-label or regression trial's objectives (val_mae, val_macro_f1...)
                **{k: m[f"best_{k}"] for k in TASK_SCORES if f"best_{k}" in m},
                "best_epoch": m.get("best_epoch"),
                "epochs_run": m.get("epochs_run"),
                "note": r.data.tags.get(NOTE, ""),
                "reason": r.data.tags.get("automl.failure_reason", ""),
            }
        )
    columns = ["trial", "run_id", "name", "status", "start", "end", "val_accuracy", "val_loss"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def finished(records, objective: str):
    """The finished trials that have a score, best first."""
    if records.empty or objective not in records.columns:
        return records.iloc[0:0]
    done = records[records["status"].eq("FINISHED") & records[objective].notna()]
    return done.iloc[ranked(done, objective)]


def best_run_ids(records, objective: str, k: int | None = None) -> tuple[list[str], int]:
    """The run ids of the best ``k`` (default :data:`COMPARE_MAX`) finished trials, best
    first, and how many finished."""
    done = finished(records, objective)
    return list(done["run_id"][: k or COMPARE_MAX]), len(done)


# --- importances -------------------------------------------------------------------------------
def _encode(values) -> np.ndarray:
    """A column as numbers for a tree: numbers as they are (log10 of positive spans over a
    decade), anything else as category codes; missing (another family's key) as -1."""
    vals = list(values)
    present = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and present:
        arr = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
        pos = arr[~np.isnan(arr)]
        if (pos > 0).all() and pos.max() / pos.min() > 10:
            arr = np.log10(arr)
        return np.where(np.isnan(arr), np.nanmin(arr) - 1 if len(pos) else -1, arr)
    cats = sorted({str(v) for v in present})
    return np.array([cats.index(str(v)) if v in present else -1 for v in vals], dtype=float)


def _varying(records, features: list[str]) -> list[str]:
    return [f for f in features if f in records.columns and records[f].map(str).nunique() > 1]


def importances(records, features: list[str], objective: str, seed: int = 0) -> dict[str, float]:
    """How much each searched hyperparameter decides the objective, as shares summing to 1
    (highest first): permutation importance (scikit-learn) of a random forest fitted to the
    finished trials. Empty with fewer than 5 finished trials or nothing that varies."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    done = records[records["status"].eq("FINISHED") & records[objective].notna()]
    used = _varying(done, features)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or not used:
        return {}
    x = np.column_stack([_encode(done[f]) for f in used])
    y = done[objective].to_numpy(dtype=float)
    if np.ptp(y) == 0:
        return {f: 0.0 for f in used}
    forest = RandomForestRegressor(n_estimators=60, min_samples_leaf=2, random_state=seed)
    forest.fit(x, y)
    got = permutation_importance(forest, x, y, n_repeats=8, random_state=seed)
    raw = np.clip(got.importances_mean, 0, None)
    total = raw.sum()
    shares = raw / total if total > 0 else raw
    return dict(sorted(zip(used, map(float, shares)), key=lambda kv: -kv[1]))


# --- notes -------------------------------------------------------------------------------------
def _config_text(row, features: list[str]) -> str:
    shown = [f for f in ("family", "backbone", *features) if f in row and _present(row[f])]
    shown = list(dict.fromkeys(shown))
    return ", ".join(f"{f} {short_number(row[f])}" for f in shown)


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def trial_note(row, features: list[str], objective: str) -> str:
    """One sentence: configuration, best epoch and score (or why it failed)."""
    head = f"**{trial_label(row['trial'])}**: {_config_text(row, features)}."
    if row["status"] == "FINISHED" and _present(row.get(objective)):
        other = "val_loss" if objective != "val_loss" else "val_accuracy"
        epoch = row.get("best_epoch")
        at = f" at epoch {int(epoch) + 1}" if _present(epoch) else ""  # 0-based
        of = f" of {int(row['epochs_run'])}" if at and _present(row.get("epochs_run")) else ""
        took = f" in {row['end'] - row['start']:.0f} s" if _present(row.get("end")) else ""
        extra = f" ({other} {row[other]:.4f})" if _present(row.get(other)) else ""
        return f"{head} Best {objective} **{row[objective]:.4f}**{extra}{at}{of}{took}."
    if row["status"] == "RUNNING":
        return f"{head} Running."
    return f"{head} {row['status'].capitalize()}: {row.get('reason') or 'no score'}."


def _task_test(metrics: dict, objective: str) -> tuple[str, float] | None:
    """``(name, value)`` of a multi-label or regression search's test score on its objective."""
    key = f"test_{objective.removeprefix('val_')}"
    if objective in TASK_SCORES and key in metrics:
        return key.removeprefix("test_"), metrics[key]
    return None


def parent_note(
    parent, records, features: list[str], objective: str, compare: str, total_finished: int
) -> str:
    """The search in a paragraph: data, space, budget, progress or winner, test score, links."""
    tags, metrics = parent.data.tags, parent.data.metrics
    failed = int(records["status"].isin(["FAILED", "KILLED"]).sum()) if len(records) else 0
    lines = [f"**Search** on {_data_and_space(parent.data.params, features)}."]
    done = finished(records, objective)
    status = (
        "finished"
        if parent.info.status == "FINISHED"
        or "test_accuracy" in metrics
        or _task_test(metrics, objective)
        else "running"
    )
    progress = f"{len(done)} trial(s) finished, {failed} failed or stopped; search {status}."
    if len(done):
        best = done.iloc[0]
        progress += f" Best so far: **{best['name']}**, {objective} {best[objective]:.4f}."
    test = _task_test(metrics, objective)
    if test and "test_accuracy" not in metrics:  # a multi-label or regression search
        winner = tags.get("automl.best_trial_id", "?")
        progress = (
            f"{len(done)} trial(s) finished, {failed} failed or stopped. **Winner**: "
            f"{_winner_name(records, tags) or winner}, {objective} "
            f"{metrics.get(f'best_{objective}', float('nan')):.4f}; **test {test[0]} "
            f"{test[1]:.4f}** (val-to-test gap {metrics.get('val_test_gap', 0):+.4f})."
        )
    if "test_accuracy" in metrics:
        winner = tags.get("automl.best_trial_id", "?")
        progress = (
            f"{len(done)} trial(s) finished, {failed} failed or stopped. **Winner**: "
            f"{_winner_name(records, tags) or winner}, val_accuracy "
            f"{metrics.get('best_val_accuracy', float('nan')):.4f}; **test accuracy "
            f"{metrics['test_accuracy']:.4f}** (val-to-test gap {metrics.get('val_test_gap', 0):+.4f})."
        )
    lines.append(progress)
    outcome = [
        f"{what}: {tags[tag]}"
        for what, tag in (("Ensemble", "automl.ensemble"), ("Refit", "automl.refit"))
        if tag in tags
    ]
    if outcome:
        lines.append("; ".join(outcome) + ".")
    if compare:
        lines.append(
            f"[Compare the {'best ' if total_finished > COMPARE_MAX else ''}"
            f"{min(total_finished, COMPARE_MAX)} finished trials side by side]({compare}) · "
            f"what mattered: artifact `{REPORT_HTML}`."
        )
    return "\n\n".join(lines)


def _data_and_space(p: dict, features: list[str]) -> str:
    """The search's data and space in one sentence (from the parent run's params)."""
    data = (
        f"data `{p.get('data_name') or p.get('data_source', '?')}` ({p.get('n_train', '?')} train / "
        f"{p.get('n_val', '?')} validation / {p.get('n_test', '?')} test images, "
        f"{p.get('num_classes', '?')} classes)"
    )
    budget = p.get("time_budget_minutes")
    budget_text = (
        f"{budget} min time budget" if budget not in (None, "None", "") else "no time budget"
    )
    space = (
        f"space `{p.get('space_name', '?')}` searching {', '.join(features) or 'nothing'} with the "
        f"{p.get('tuner', '?')} tuner, up to {p.get('max_trials', '?')} trials, {budget_text}"
    )
    return f"{data}; {space}"


def _winner_name(records, tags) -> str:
    rid = tags.get("automl.best_run_id")
    hit = records[records["run_id"].eq(rid)] if len(records) and rid else []
    if len(hit):
        return str(hit.iloc[0]["name"])
    if tags.get("automl.best_trial_id") == "refit":
        return "the refit of the best trial"
    return ""


# --- the report --------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _axis_values(col) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """A column scaled to [0, 1] for a parallel-coordinates axis, and its tick labels."""
    enc = _encode(col)
    vals = list(col)
    numeric = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if _present(v)
    )
    lo, hi = float(enc.min()), float(enc.max())
    scaled = (enc - lo) / (hi - lo) if hi > lo else np.full(len(enc), 0.5)
    if numeric:
        raw = [float(v) for v in vals if _present(v)]
        ticks = (
            [(0.0, short_number(min(raw))), (1.0, short_number(max(raw)))]
            if hi > lo
            else [(0.5, short_number(raw[0]))]
        )
    else:
        cats = sorted({str(v) for v in vals if _present(v)})
        ticks = [((i - lo) / (hi - lo) if hi > lo else 0.5, c) for i, c in enumerate(cats)]
    return scaled, ticks


def report_figure(
    records, features: list[str], objective: str, imp: dict[str, float], started: float
):
    """Five panels: best objective over trials and over wall clock, score by family,
    importances, and a parallel-coordinates plot of the finished trials."""
    plt = _plt()
    fig = plt.figure(figsize=(13, 9.5))
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1, 1.25])
    lower = lower_is_better(objective)
    done = records[records["status"].eq("FINISHED") & records[objective].notna()].copy()
    done["_order"] = done["trial"].map(lambda t: int(t) if str(t).isdigit() else 10**6)
    done = done.sort_values(["_order", "start"])
    acc = np.minimum.accumulate if lower else np.maximum.accumulate
    scores = done[objective].to_numpy(dtype=float)
    _by_trial_panel(fig.add_subplot(grid[0, 0]), scores, acc, objective)
    _by_time_panel(fig.add_subplot(grid[0, 1]), done, acc, objective, started)
    _by_family_panel(fig.add_subplot(grid[1, 0]), done, objective)
    _importance_panel(fig.add_subplot(grid[1, 1]), imp, objective, len(done))
    ax = fig.add_subplot(grid[2, :])
    axes_names = _varying(done, features)[:8]
    if len(done) and axes_names:
        _parallel_panel(ax, plt, done, axes_names, scores, objective)
    else:
        _empty(ax, "no finished trial with a searched hyperparameter yet")
    ax.set_title("parallel coordinates: each line a finished trial (best in bold)")
    fig.suptitle(f"search report: {len(done)} finished trial(s), objective {objective}")
    fig.subplots_adjust(left=0.07, right=0.97, top=0.93, bottom=0.06, hspace=0.45, wspace=0.3)
    return fig  # fixed margins: tight_layout would cost most of a refresh


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_xticks([])
    ax.set_yticks([])


def _by_trial_panel(ax, scores, acc, objective: str) -> None:
    if len(scores):
        x = np.arange(1, len(scores) + 1)
        ax.plot(x, scores, "o", alpha=0.5, label="trial")
        ax.step(x, acc(scores), where="post", label="best so far")
        ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="finished trial (in order)", ylabel=objective, title="best objective by trial")
    ax.grid(alpha=0.3)


def _by_time_panel(ax, done, acc, objective: str, started: float) -> None:
    if len(done):
        by_time = done.sort_values("end")
        minutes = (by_time["end"].to_numpy(dtype=float) - started) / 60
        s = by_time[objective].to_numpy(dtype=float)
        ax.plot(minutes, s, "o", alpha=0.5, label="trial end")
        ax.step(minutes, acc(s), where="post", label="best so far")
        ax.legend(fontsize=8)
    ax.set(
        xlabel="minutes since the search started",
        ylabel=objective,
        title="best objective by wall clock",
    )
    ax.grid(alpha=0.3)


def _by_family_panel(ax, done, objective: str) -> None:
    fam = (
        done["family"].fillna("?").map(str)
        if "family" in done.columns
        else done["trial"].map(lambda _: "pretrained")
    )
    families = sorted(set(fam))
    rng = np.random.default_rng(0)
    for i, f in enumerate(families):
        ys = done.loc[fam.eq(f), objective].to_numpy(dtype=float)
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(ys)), ys, alpha=0.7, label=f)
    ax.set_xticks(range(len(families)), families)
    ax.set_xlim(-0.6, len(families) - 0.4)
    ax.set(ylabel=objective, title="every trial's score by family")
    ax.grid(alpha=0.3)


def _importance_panel(ax, imp: dict[str, float], objective: str, finished: int) -> None:
    if imp:
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:green")
        ax.set(xlabel=f"share of the {objective} explained (permutation importance)")
    else:
        _empty(
            ax,
            f"importances need {MIN_TRIALS_FOR_IMPORTANCE} finished trials\n"
            f"({finished} so far) and a searched hyperparameter",
        )
    ax.set_title("what mattered: hyperparameter importance")


def _parallel_panel(ax, plt, done, axes_names: list[str], obj, objective: str) -> None:
    """One line per finished trial across its searched values and its score (best in bold)."""
    lower = lower_is_better(objective)
    cols = [_axis_values(done[f]) for f in axes_names]
    span = np.ptp(obj)
    obj_scaled = (obj - obj.min()) / span if span > 0 else np.full(len(obj), 0.5)
    data = np.column_stack([c[0] for c in cols] + [obj_scaled])
    cmap = plt.get_cmap("viridis_r" if lower else "viridis")
    best_i = int(np.argmin(obj) if lower else np.argmax(obj))
    xs = np.arange(data.shape[1])
    for i in np.argsort(obj if not lower else -obj):
        ax.plot(
            xs,
            data[i],
            color=cmap(obj_scaled[i]),
            alpha=0.9 if i == best_i else 0.55,
            lw=3 if i == best_i else 1.2,
        )
    for j, (_, ticks) in enumerate(cols):
        ax.axvline(j, color="0.4", lw=0.8)
        for y, label in ticks:
            ax.text(j + 0.02, y, label, fontsize=7, va="center")
    j = len(cols)
    ax.axvline(j, color="0.4", lw=0.8)
    for y, v in ((0.0, obj.min()), (1.0, obj.max())):
        ax.text(j + 0.02, y, f"{v:.4f}", fontsize=7, va="center")
    ax.set_xticks(xs, [*axes_names, objective])
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(xs) - 0.6)


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=72)
    finally:
        plt.close(fig)
    return buf.getvalue()


def _markdown_html(text: str) -> str:
    """The notes' few markdown marks (bold, code, links, paragraphs) as HTML."""
    import re

    out = []
    for para in text.split("\n\n"):
        h = html.escape(para, quote=False)
        h = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", h)
        h = re.sub(r"`(.+?)`", r"<code>\1</code>", h)
        h = re.sub(r"\[(.+?)\]\((\S+?)\)", r'<a href="\2" target="_top">\1</a>', h)
        out.append(f"<p>{h}</p>")
    return "".join(out)


def report_html(parent, records, features, objective, imp, png: bytes, note: str) -> str:
    """The report page: the figure inline, importances, the outcome, and the best trials."""
    esc = html.escape
    done = finished(records, objective)
    tags = parent.data.tags
    rows = "".join(
        f"<tr><td>{esc(str(r['name']))}</td><td>{r[objective]:.4f}</td>"
        f"<td>{'' if not _present(r.get('best_epoch')) else int(r['best_epoch']) + 1}</td>"
        f"<td>{esc(_config_text(r, features))}</td></tr>"
        for _, r in done.head(COMPARE_MAX).iterrows()
    )
    imp_rows = "".join(f"<tr><td>{esc(k)}</td><td>{v:.2f}</td></tr>" for k, v in imp.items())
    outcome = (
        "".join(
            f"<li><b>{k}</b>: {esc(tags[t])}</li>"
            for k, t in (("ensemble", "automl.ensemble"), ("refit", "automl.refit"))
            if t in tags
        )
        or "<li>no ensemble or refit yet</li>"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>search report</title>
<style>body{{font-family:sans-serif;margin:16px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}img{{max-width:100%}}</style></head>
<body><h2>Search report</h2>{_markdown_html(note)}
<p>updated {time.strftime("%Y-%m-%d %H:%M:%S")}</p>
<img alt="search report" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h3>What mattered (permutation importance of a random forest on {objective})</h3>
<table><tr><th>hyperparameter</th><th>share</th></tr>{imp_rows or "<tr><td colspan=2>not enough finished trials yet</td></tr>"}</table>
<h3>Ensemble and refit</h3><ul>{outcome}</ul>
<h3>Best trials</h3><table><tr><th>run</th><th>{objective}</th><th>best epoch</th><th>configuration</th></tr>{rows}</table>
</body></html>"""


def refresh(tracker: Tracker, parent_id: str, ui_base: str | None = None) -> dict[str, Any]:
    """Bring the trial notes, the parent's note and the search report up to date.

    Returns what was written (``compare``: the compare link, ``importances``). Never raises:
    a report is not worth a search; a failure is a warning.
    """
    t0 = time.perf_counter()
    try:
        return _refresh(tracker, parent_id, ui_base)
    except Exception as e:  # noqa: BLE001 - reports must not fail a search
        log.warning("search report not updated: %s: %s", type(e).__name__, str(e)[:200])
        return {}
    finally:
        log.debug("search report refreshed in %.2fs", time.perf_counter() - t0)


def _refresh(tracker: Tracker, parent_id: str, ui_base: str | None) -> dict[str, Any]:
    from automl.tracking import compare_link
    from automl.tracking import ui_base as default_base

    parent = tracker.get_run(parent_id)
    objective = parent.data.params.get("objective", "val_accuracy")
    features = searched_names(parent.data.params)
    records = trial_records(tracker, parent_id)
    for _, row in records.iterrows():
        if row["status"] == "RUNNING":
            continue
        text = trial_note(row, features, objective)
        if text != row["note"]:
            tracker.set_tags(row["run_id"], {NOTE: text})
    ids, total = best_run_ids(records, objective)
    base = ui_base or default_base(tracker.uri)
    compare = compare_link(ids, [tracker.experiment_id], base) if ids else ""
    note = parent_note(parent, records, features, objective, compare, total)
    imp = importances(records, features, objective) if len(records) else {}
    png = _png(report_figure(records, features, objective, imp, parent.info.start_time / 1000))
    page = report_html(parent, records, features, objective, imp, png, note)
    tracker.log_text(parent_id, page, REPORT_HTML)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REPORT_PNG
        path.write_bytes(png)
        tracker.log_artifact(parent_id, path)
    tracker.set_tags(parent_id, {NOTE: note})
    return {"compare": compare, "importances": imp, "finished": total}
