"""The package's import graph: no module imports in a circle, none takes another's private names.

Every ``import`` statement in automl/ counts, also those inside functions (a lazy import
still ties the two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "automl"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported automl module, names taken from it) for each import in ``path``."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "automl"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "automl":
                continue
            names = [a.name for a in node.names]
            # `from automl import cli` imports the module automl.cli
            subs = [n for n in names if f"{base}.{n}" in modules]
            if subs:
                out += [(f"{base}.{n}", []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                out.append((base, rest))
    return out


def _graph():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        for target, names in _imports(name, path, modules):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target == name:
                continue
            graph[name].add(target)
            private += [f"{name} imports {target}.{n}" for n in names if n.startswith("_")]
    return graph, private


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_module_imports_in_a_circle():
    graph, _ = _graph()
    assert "automl.search.loop" in graph and "automl.executors.base" in graph
    # A package that re-exports its parts (automl -> automl.search -> ...) is not a cycle as
    # long as none of the parts imports the package back.
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    _, private = _graph()
    assert private == []


def test_the_loop_talks_to_the_executor_interface_only():
    graph, _ = _graph()
    loop = graph["automl.search.loop"]
    assert not {
        m for m in loop if m.startswith("automl.executors.") and m != "automl.executors.base"
    }
    assert "automl.trial" not in loop and "automl.model" not in loop  # no Keras in the loop
    tree = ast.parse((PKG / "search" / "loop.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("keras", "keras_tuner", "tensorflow")}
    for m in graph:  # an executor never imports the search
        if m.startswith("automl.executors"):
            assert not {t for t in graph[m] if t.startswith("automl.search")}, m


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
