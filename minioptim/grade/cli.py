"""The command line: ``python -m minioptim.grade assignment1 my_optimizers.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .assignments import ASSIGNMENTS
from .grading import grade
from .report import GradingFailed


def load_file(path: str | Path) -> ModuleType:
    """Run a Python file as a module (with its folder on ``sys.path``, as a script)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


USAGE = """\
usage: python -m minioptim.grade ASSIGNMENT FILE

Grade the optimizer classes defined in FILE (a .py file) for ASSIGNMENT, one of
{names}. Exit status: 0 if every check passes, 1 if one fails."""


def main(argv: list[str] | None = None) -> int:
    """``python -m minioptim.grade assignment1 my_optimizers.py``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ASSIGNMENTS:
        print(USAGE.format(names=", ".join(ASSIGNMENTS)), file=sys.stderr)
        return 2
    assignment, path = argv
    try:
        module = load_file(path)
    except Exception as error:
        print(f"could not load {path}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    try:
        grade(assignment, module)
    except GradingFailed:
        return 1
    return 0
