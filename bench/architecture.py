"""Shape of the code: the figures issue 19 ("one place for each idea") is measured by.

Prints the lines of automl/, its functions of 100+ and 60-99 lines, the places that compare a
model family's name, and the modules that import mlflow.

    python bench/architecture.py [PACKAGE_DIR]      # default: automl
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FAMILY_NAMES = {"pretrained", "scratch"}


def _names_a_family(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in FAMILY_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_family(e) for e in node.elts)
    return False


def measure(root: Path) -> dict:
    lines, long100, long60, mlflow, compares = 0, [], [], set(), []
    for path in sorted(root.rglob("*.py")):
        src = path.read_text()
        lines += src.count("\n")
        for node in ast.walk(ast.parse(src)):
            where = f"{path}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n >= 60:
                    (long100 if n >= 100 else long60).append((n, f"{where} {node.name}"))
            elif isinstance(node, ast.Import):
                if any(a.name.split(".")[0] == "mlflow" for a in node.names):
                    mlflow.add(str(path))
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] == "mlflow":
                    mlflow.add(str(path))
            elif isinstance(node, ast.Compare):
                if any(_names_a_family(x) for x in [node.left, *node.comparators]):
                    compares.append(f"{where} {ast.unparse(node)[:70]}")
    return {
        "lines": lines,
        "functions of 100+ lines": sorted(long100, reverse=True),
        "functions of 60-99 lines": sorted(long60, reverse=True),
        "family-name compares": compares,
        "modules importing mlflow": sorted(mlflow),
    }


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "automl")
    for name, value in measure(root).items():
        if isinstance(value, int):
            print(f"{name}: {value:,}")
            continue
        print(f"{name}: {len(value)}")
        for item in value:
            print("   ", *item) if isinstance(item, tuple) else print("   ", item)


if __name__ == "__main__":
    main()
