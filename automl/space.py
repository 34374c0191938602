"""Search space: YAML schema, validation, and conversion to KerasTuner hyperparameters.

A space file looks like::

    name: default
    hyperparameters:
      backbone: {choice: [efficientnet_lite0]}
      image_size: {choice: [64, 96]}
      learning_rate: {min: 1.0e-4, max: 1.0e-2, sampling: log}
      dropout: {min: 0.0, max: 0.4}
      batch_size: 32                     # a bare value is fixed

Every key of ``hyperparameters`` must be one of ``HYPERPARAMETERS``; every value is
a fixed scalar, ``{choice: [...]}`` or a range ``{min, max[, step][, sampling]}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from automl.errors import SpaceError, quoted
from automl.families.base import HP
from automl.families.registry import (
    DEFAULT_FAMILY,
    HYPERPARAMETERS,
    OPT_IN_KEYS,
    default_of,
    family_keys,
    family_names,
    get_family,
    owners,
    shared_keys,
    uses,
)
from automl.metrics import objective_names

# HYPERPARAMETERS (name -> spec) holds every family's own hyperparameters (automl.families)
# and the shared ones; the family registry keeps it up to date as families register.


def split_name(name: str) -> tuple[str | None, str]:
    """``"scratch.blocks"`` -> ``("scratch", "blocks")``; ``"dropout"`` -> ``(None, "dropout")``."""
    fam, dot, base = name.partition(".")
    return (fam, base) if dot else (None, name)


_TOP_KEYS = {"name", "description", "objective", "hyperparameters", "seed_trials"}
_TEXT_LIMIT = {"name": 200, "description": 2000}  # characters
MAX_SPACE_BYTES = 256 * 1024  # a space file is a few hundred bytes; this refuses bombs


@dataclass(frozen=True)
class Param:
    """One searched or fixed hyperparameter."""

    name: str
    kind: str  # "fixed", "choice" or "range"
    value: Any = None
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    sampling: str = "linear"

    def to_dict(self) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return {"choice": list(self.values)}
        d: dict[str, Any] = {"min": self.low, "max": self.high}
        if self.step is not None:
            d["step"] = self.step
        if self.sampling != "linear":
            d["sampling"] = self.sampling
        return d


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space."""

    name: str
    params: dict[str, Param]
    description: str = ""
    objective: str = "val_accuracy"
    source: str = field(default="<dict>", compare=False)
    # Fixed configurations the first trials run, in order (e.g. one known-good per family).
    seed_trials: tuple = ()

    def to_dict(self) -> dict[str, Any]:
        """The space as YAML-ready data; ``parse_space`` of it gives the same space."""
        hps: dict[str, Any] = {}
        for k, p in self.params.items():
            fam, base = split_name(k)
            if fam is None:
                hps[k] = p.to_dict()
            else:
                hps.setdefault(fam, {})[base] = p.to_dict()
        out = {
            "name": self.name,
            "description": self.description,
            "objective": self.objective,
            "hyperparameters": hps,
        }
        if self.seed_trials:
            out["seed_trials"] = [dict(t) for t in self.seed_trials]
        return out

    @property
    def families(self) -> tuple[str, ...]:
        """The families this space can choose."""
        p = self.params["family"]
        return tuple(p.values) if p.kind == "choice" else (p.value,)

    def variants(self, name: str) -> list[Param]:
        """Every parameter of base name ``name`` (one per family where the families differ)."""
        return [p for k, p in self.params.items() if split_name(k)[1] == name]

    def values_of(self, name: str) -> list:
        """Every value ``name`` can take (ranges: their low end), across families."""
        out: list = []
        for p in self.variants(name):
            vals = (
                [p.value]
                if p.kind == "fixed"
                else list(p.values)
                if p.kind == "choice"
                else [p.low]
            )
            out += [v for v in vals if v not in out]
        return out

    def digest(self) -> str:
        """Stable hash of the space's content (used to detect a changed space on resume)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def searched(self) -> list[str]:
        """Names of the hyperparameters that take more than one value."""
        return [k for k, p in self.params.items() if p.kind != "fixed"]

    def to_keras_tuner(self):
        """The space as ``keras_tuner.HyperParameters`` (fixed values included)."""
        import contextlib

        import keras_tuner as kt

        hp = kt.HyperParameters()
        for name, p in self.params.items():
            fam, base = split_name(name)
            scope = (
                hp.conditional_scope("family", [fam]) if fam else contextlib.nullcontext()
            )  # a family's own hyperparameters are active only when it is chosen
            with scope:
                if p.kind == "fixed":
                    hp.Fixed(name, p.value)
                elif p.kind == "choice" and set(p.values) == {True, False}:
                    hp.Boolean(name, default=p.values[0])
                elif p.kind == "choice":
                    hp.Choice(name, list(p.values))
                elif HYPERPARAMETERS[base].kind == "int":
                    hp.Int(
                        name, int(p.low), int(p.high), step=int(p.step or 1), sampling=p.sampling
                    )
                else:
                    hp.Float(name, p.low, p.high, step=p.step, sampling=p.sampling)
        return hp

    def upper(self, name: str) -> Any:
        """The largest value ``name`` can take in this space (across families)."""
        return max(
            max(p.values) if p.kind == "choice" else p.high if p.kind == "range" else p.value
            for p in self.variants(name)
        )

    def max_epochs(self) -> int:
        """The most epochs a trial of this space can run (every phase, any of its families)."""
        return max(get_family(f).max_epochs(self.upper) for f in self.families)

    def defaults(self) -> dict[str, Any]:
        """One concrete configuration: fixed values, first choices, range lows."""
        out = {}
        for name, p in self.params.items():
            out[name] = (
                p.value if p.kind == "fixed" else p.values[0] if p.kind == "choice" else p.low
            )
        return out


def _err(key: str, value: Any, allowed: str) -> SpaceError:
    return SpaceError(f"search space: {key}={quoted(value)} is not allowed; {allowed}")


def _check_scalar(name: str, spec: HP, value: Any, where: str) -> Any:
    key = where
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise _err(key, value, "expected an integer")
        value = int(value)
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(key, value, "expected a number")
        value = float(value)
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise _err(key, value, "expected a string")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise _err(key, value, "expected true or false")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise _err(key, value, f"allowed range is [{spec.low:g}, {spec.high:g}]")
    if spec.allowed is not None and value not in spec.allowed:
        raise _err(key, value, f"choose one of: {', '.join(map(str, spec.allowed))}")
    if spec.check is not None:
        spec.check(value, key)
    return value


def _parse_param(name: str, raw: Any, where: str | None = None) -> Param:
    spec = HYPERPARAMETERS[name]
    where = where or f"hyperparameters.{name}"
    if not isinstance(raw, dict):
        return Param(name, "fixed", value=_check_scalar(name, spec, raw, where))
    keys = set(raw)
    if "choice" in keys:
        extra = keys - {"choice"}
        if extra:
            raise _err(
                f"{where}.{sorted(extra)[0]}", raw[sorted(extra)[0]], "a choice takes only 'choice'"
            )
        values = raw["choice"]
        if not isinstance(values, list) or not values:
            raise _err(f"{where}.choice", values, "expected a non-empty list")
        checked = tuple(_check_scalar(name, spec, v, f"{where}.choice") for v in values)
        if len(set(checked)) != len(checked):
            raise _err(f"{where}.choice", values, "values must be distinct")
        return Param(name, "choice", values=checked)
    unknown = keys - {"min", "max", "step", "sampling"}
    if unknown:
        k = sorted(unknown)[0]
        raise _err(f"{where}.{k}", raw[k], "a range takes min, max, step, sampling (or use choice)")
    if spec.kind not in ("int", "float"):
        raise _err(where, raw, "this hyperparameter takes a value or {choice: [...]}, not a range")
    if "min" not in keys or "max" not in keys:
        raise _err(where, raw, "a range needs both min and max")
    low = _check_scalar(name, spec, raw["min"], f"{where}.min")
    high = _check_scalar(name, spec, raw["max"], f"{where}.max")
    if low > high:
        raise SpaceError(
            f"search space: {where}: min={quoted(low)} is above max={quoted(high)}; "
            "swap them so that min <= max"
        )
    sampling = raw.get("sampling", "linear")
    if sampling not in ("linear", "log", "reverse_log"):
        raise _err(f"{where}.sampling", sampling, "choose one of: linear, log, reverse_log")
    if sampling != "linear" and low <= 0:
        raise _err(f"{where}.min", low, "log sampling needs min > 0")
    step = raw.get("step")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise _err(f"{where}.step", step, "step must be a positive number")
    return Param(name, "range", low=low, high=high, step=step, sampling=sampling)


def parse_space(raw: Any, source: str = "<dict>") -> SearchSpace:
    """Validate a space given as a dict (as loaded from YAML)."""
    if not isinstance(raw, dict):
        raise SpaceError(
            f"search space {source}: expected a mapping at the top, got {type(raw).__name__}"
        )
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise _err(k, raw[k], f"top-level keys are: {', '.join(sorted(_TOP_KEYS))}")
    hps = raw.get("hyperparameters") or {}
    if not isinstance(hps, dict):
        raise _err("hyperparameters", hps, "expected a mapping of name: value")
    unknown = set(hps) - set(HYPERPARAMETERS) - set(family_names())
    if unknown:
        k = sorted(unknown)[0]
        raise SpaceError(
            f"search space: unknown key hyperparameters.{quoted(k)[1:-1]} (value {quoted(hps[k])}); "
            f"known keys are: {', '.join([*HYPERPARAMETERS, *family_names()])}"
        )
    params = _parse_families(hps)
    for key in ("name", "description"):
        value = raw.get(key)
        if value is not None and not isinstance(value, (str, int, float)):
            raise _err(key, value, "expected a line of text")
        if len(str(value or "")) > _TEXT_LIMIT[key]:
            raise _err(key, value, f"write at most {_TEXT_LIMIT[key]} characters")
    objective = raw.get("objective", "val_accuracy")
    # Any task's objective here; whether it fits the data's task is checked once the data is
    # loaded (automl.tasks.Task.check_objective).
    allowed = objective_names()
    if objective not in allowed:
        raise _err("objective", objective, f"choose one of: {', '.join(allowed)}")
    return SearchSpace(
        name=str(raw.get("name") or Path(source).stem),
        description=str(raw.get("description") or ""),
        objective=objective,
        params=params,
        source=source,
        seed_trials=_parse_seeds(raw.get("seed_trials"), params),
    )


def _allows(p: Param, value: Any) -> bool:
    if p.kind == "fixed":
        return value == p.value
    if p.kind == "choice":
        return value in p.values
    return p.low <= value <= p.high


def _parse_seeds(raw: Any, params: dict[str, Param]) -> tuple:
    """Validate ``seed_trials``: a list of mappings, each value one the space allows."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _err("seed_trials", raw, "expected a list of mappings of name: value")
    fam_p = params["family"]
    fams = list(fam_p.values) if fam_p.kind == "choice" else [fam_p.value]
    out = []
    for i, seed in enumerate(raw):
        where = f"seed_trials[{i}]"
        if not isinstance(seed, dict):
            raise _err(where, seed, "expected a mapping of name: value")
        family = seed.get("family", fams[0])
        if family not in fams:
            raise _err(f"{where}.family", family, f"choose one of: {', '.join(fams)}")
        allowed = family_keys(family)
        checked = {}
        for k, v in seed.items():
            if k not in allowed:
                raise _err(
                    f"{where}.{k}",
                    v,
                    f"not a {family} hyperparameter; allowed: {', '.join(allowed)}",
                )
            v = _check_scalar(k, HYPERPARAMETERS[k], v, f"{where}.{k}")
            p = params.get(f"{family}.{k}") or params.get(k)
            if p is not None and not _allows(p, v):
                raise _err(f"{where}.{k}", v, f"the space allows {quoted(p.to_dict())}")
            checked[k] = v
        out.append(checked)
    return tuple(out)


def _parse_families(hps: dict[str, Any]) -> dict[str, Param]:
    """Flat params; a family's own keys get a ``family.`` prefix where the space has several."""
    fam_param = _parse_param("family", hps.get("family", DEFAULT_FAMILY))
    fams = list(fam_param.values) if fam_param.kind == "choice" else [fam_param.value]
    sections = _family_sections(hps, fams)
    _check_owners(hps, fams, fam_param)
    params: dict[str, Param] = {"family": fam_param}
    multi = len(fams) > 1
    shared = shared_keys()
    for name in HYPERPARAMETERS:
        if name == "family":
            continue
        if (
            name in OPT_IN_KEYS
            and name not in hps
            and not any(name in s for s in sections.values())
        ):
            continue  # absent unless asked for: each hyperparameter takes one random draw
        users = [f for f in fams if uses(f, name)]
        if not users:
            continue
        per = {f: _family_param(hps, sections, f, name) for f in users}
        own = name not in shared or any(name in sections.get(f, {}) for f in users)
        if not multi or not own:
            params[name] = per[users[0]]
        else:
            for f in users:
                params[f"{f}.{name}"] = per[f]
    return params


def _family_sections(hps: dict[str, Any], fams: list[str]) -> dict[str, dict[str, Any]]:
    """The space's per-family sections (``pretrained: {...}``), each key checked."""
    sections: dict[str, dict[str, Any]] = {}
    for f in family_names():
        if f not in hps:
            continue
        sec = hps[f]
        if f not in fams:
            raise _err(
                f"hyperparameters.{f}",
                sec,
                f"the space does not choose family {quoted(f)}; add it to hyperparameters.family "
                "or remove the section",
            )
        if not isinstance(sec, dict):
            raise _err(f"hyperparameters.{f}", sec, "expected a mapping of name: value")
        allowed = set(family_keys(f)) - {"family"}
        for k in sec:
            if k not in allowed:
                raise _err(
                    f"hyperparameters.{f}.{k}",
                    sec[k],
                    f"not a {f} hyperparameter; allowed: {', '.join(sorted(allowed))}",
                )
        sections[f] = sec
    return sections


def _check_owners(hps: dict[str, Any], fams: list[str], fam_param: Param) -> None:
    """A top-level key that belongs to families the space does not choose is an error."""
    for k in hps:
        mine = owners(k)
        if mine and not set(mine) & set(fams):
            raise _err(
                f"hyperparameters.{k}",
                hps[k],
                f"it belongs to family {mine[0]}, which the space does not choose "
                f"(family: {quoted(fam_param.to_dict())})",
            )


def _lowest(p: Param) -> Any:
    return p.value if p.kind == "fixed" else min(p.values) if p.kind == "choice" else p.low


def _family_param(hps: dict[str, Any], sections: dict[str, dict], f: str, name: str) -> Param:
    """Family ``f``'s ``name``: from its section, else the top level, else its default."""
    if name in sections.get(f, {}):
        where = f"hyperparameters.{f}.{name}"
        p = _parse_param(name, sections[f][name], where)
    elif name in hps:
        where = f"hyperparameters.{name}"
        p = _parse_param(name, hps[name])
    else:
        return Param(name, "fixed", value=default_of(f, name))
    problem = get_family(f).space_problem(name, _lowest(p))
    if problem:
        raise _err(where, p.to_dict(), problem)
    return p


# The built-in spaces ship inside the package (``automl/spaces/*.yaml``, package data);
# the repository's top-level ``search_spaces/`` is a symlink to that folder, one copy of each.
BUILTIN_SPACES = resources.files("automl") / "spaces"


def builtin_spaces() -> list[str]:
    """Names of the spaces that ship with automl (``default``, ``gpu``)."""
    return sorted(
        p.name[: -len(".yaml")] for p in BUILTIN_SPACES.iterdir() if p.name.endswith(".yaml")
    )


def load_space(space: str | Path | dict | SearchSpace | None = None) -> SearchSpace:
    """Load and validate a space: a YAML path, a built-in name, a dict, or a SearchSpace.

    A built-in name (``default``, ``gpu``) always means the built-in space, even where a
    file or folder of that name exists; ``./default`` or ``default.yaml`` means the file.
    """
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return parse_space(space)
    path = _space_path("default" if space is None else space)
    return parse_space(_read_yaml(path, _read_text(path)), source=str(path))


def _space_path(space: str | Path) -> Path:
    """The file a space name or path means; an error where there is none."""
    path = Path(space)
    if isinstance(space, str) and space in builtin_spaces():
        path = Path(str(BUILTIN_SPACES / f"{space}.yaml"))
    elif not path.exists() and not path.suffix:
        candidate = BUILTIN_SPACES / f"{space}.yaml"
        if candidate.is_file():
            path = candidate
    if not path.exists():
        raise SpaceError(
            f"search space file {quoted(str(space))} does not exist; pass a YAML file or a built-in "
            f"name ({', '.join(builtin_spaces())})"
        )
    if path.is_dir():
        raise SpaceError(
            f"search space {quoted(str(space))} is a folder; pass a YAML file or a built-in name "
            f"({', '.join(builtin_spaces())})"
        )
    return path


def _read_text(path: Path) -> str:
    """The space file's text: UTF-8, at most MAX_SPACE_BYTES."""
    try:
        size = path.stat().st_size
        if size > MAX_SPACE_BYTES:
            raise SpaceError(
                f"search space {quoted(str(path))} is {size} bytes, over the {MAX_SPACE_BYTES} "
                "byte limit of a space file; pass the space's YAML (a few hundred bytes)"
            )
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpaceError(
            f"search space {quoted(str(path))} is not UTF-8 text (byte {e.object[e.start]:#04x} "
            f"at position {e.start}); save it as UTF-8 YAML"
        ) from None
    except OSError as e:
        raise SpaceError(
            f"search space {quoted(str(path))} cannot be read ({e.strerror}); pass a readable "
            "YAML file"
        ) from None


def _read_yaml(path: Path, text: str) -> Any:
    """The YAML document of ``text`` (safe, without aliases); one-line errors."""
    loader = _NoAliasLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except ValueError as e:  # e.g. an integer of 100,000 digits (Python's int limit)
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise SpaceError(
            f"search space {quoted(str(path))} holds a value that cannot be read "
            f"({quoted(detail)[1:-1]}); fix the value"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = f" ({e.problem})" if getattr(e, "problem", None) else ""
        raise SpaceError(
            f"search space {quoted(str(path))} is not valid YAML{where}{problem}: fix the syntax"
        ) from None
    finally:
        loader.dispose()


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``): a space needs none, and a few of them nested expand
    285 bytes into gigabytes (the "billion laughs" bomb)."""

    source = "<string>"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpaceError(
                f"search space {quoted(self.source)} uses a YAML alias "
                f"(*{quoted(event.anchor)[1:-1]} at line {event.start_mark.line + 1}), which a "
                "space file may not (a few nested aliases expand to gigabytes); write the "
                "values out in full"
            )
        return super().compose_node(parent, index)
