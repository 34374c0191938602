"""Trials side by side: MLflow compare-view links for one search, and one leaderboard across
the searches of several experiments.

A search's link opens MLflow's compare view (``#/compare-runs``) on its best finished trials,
at most :data:`automl.search_report.COMPARE_MAX` of them (the number is stated wherever the
link is printed); :func:`leaderboard_across` ranks the best trials of the latest search of
each experiment on one table, with a link that compares those runs.
"""

from __future__ import annotations

import logging

from automl.errors import TrackingError
from automl.search_report import COMPARE_MAX, best_run_ids, trial_records
from automl.tracking import Tracker, compare_link, ranked

log = logging.getLogger("automl")


def search_compare_link(
    tracker: Tracker, parent_id: str, base: str, objective: str | None = None
) -> tuple[str, int, int]:
    """(link, trials in it, finished trials) for the search of parent run ``parent_id``;
    the link is "" while no trial has finished."""
    if objective is None:
        objective = tracker.run_params(parent_id).get("objective", "val_accuracy")
    ids, total = best_run_ids(trial_records(tracker, parent_id), objective)
    return (compare_link(ids, [tracker.experiment_id], base) if ids else ""), len(ids), total


def describe(link: str, shown: int, total: int) -> str:
    """``compare the 3 finished trials: LINK`` (``the best 20 of 41`` when there are more)."""
    if not link:
        return "compare the trials: none has finished yet"
    what = f"the best {shown} of {total}" if total > shown else f"the {shown}"
    return f"compare {what} finished trials: {link}"


def experiment_ids(uri: str, names: list[str] | None) -> dict[str, str]:
    """Experiment name -> id for ``names`` (None: every active experiment holding an automl
    search); an unknown name is a :class:`TrackingError` naming it and the known ones."""
    from automl.tracking import experiments, holds_search

    known = experiments(uri)
    if names is None:
        return {n: i for n, i in known.items() if holds_search(uri, i)}
    missing = [n for n in names if n not in known]
    if missing:
        from automl.errors import quoted

        have = ", ".join(sorted(known)[:10]) + (", ..." if len(known) > 10 else "") or "none"
        raise TrackingError(
            f"experiment {quoted(missing[0])} is not in {quoted(uri)} (experiments there: {have}); "
            "pass one of them to --experiment, or --all"
        )
    return {n: known[n] for n in dict.fromkeys(names)}


def leaderboard_across(
    uri: str,
    names: list[str] | None,
    base: str,
    per_search: int | None = None,
):
    """The best trials of the latest search of each experiment on one table, best first.

    ``names``: experiment names (None: every experiment with a search). Returns
    ``(board, link)``: a DataFrame with an ``experiment`` column before the leaderboard's
    columns (finished trials only, at most ``per_search`` of each search), and the compare
    link of its runs. Searches whose objectives differ are ranked by ``val_accuracy``.
    """
    import pandas as pd

    from automl.ensemble import ENSEMBLE_ID
    from automl.refit import REFIT_ID

    ids = experiment_ids(uri, names)
    boards, objectives = [], set()
    for name, exp_id in ids.items():
        tracker = Tracker(uri, name)
        parent = tracker.latest_search()
        if parent is None:
            raise TrackingError(
                f"experiment {name!r} holds no automl search; run `automl search --experiment "
                f"{name}` first, or leave it out"
            )
        objective = parent.data.params.get("objective", "val_accuracy")
        objectives.add(objective)
        board = tracker.leaderboard(parent.info.run_id, objective)
        if board.empty:
            continue
        board = board[board["status"].eq("FINISHED") & board[objective].notna()]
        board = board[~board["trial"].isin([ENSEMBLE_ID, REFIT_ID])].head(per_search or COMPARE_MAX)
        boards.append(board.assign(experiment=name, experiment_id=exp_id))
    if not boards:
        return pd.DataFrame(), ""
    objective = objectives.pop() if len(objectives) == 1 else "val_accuracy"
    if objectives:
        log.info("the searches have different objectives: ranked by val_accuracy")
    board = pd.concat(boards, ignore_index=True)
    board = board.iloc[ranked(board, objective)].reset_index(drop=True)
    board = board[["experiment", *[c for c in board.columns if c != "experiment"]]]
    shown = board.head(COMPARE_MAX)
    link = compare_link(list(shown["run_id"]), list(dict.fromkeys(shown["experiment_id"])), base)
    return board.drop(columns=["experiment_id"]), link
