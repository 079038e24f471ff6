"""Helpers for the book: list its notebooks and execute them.

python -m scripts.book list      # the notebooks in _toc.yml, in reading order
python -m scripts.book execute   # run each in a fresh kernel and save its outputs
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600


def toc_entries(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every `file:` (and the root) of the table of contents, in reading order, without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    entries = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                entries.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", []))
    return entries


def resolve(entry: str) -> Path | None:
    """The file an entry of _toc.yml points at (entries omit the suffix), or None."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{entry}{suffix}"
        if path.exists():
            return path
    return None


def toc_notebooks() -> list[Path]:
    paths = (resolve(entry) for entry in toc_entries())
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


def execute(path: Path) -> float:
    """Run a notebook top to bottom in a fresh kernel, save it in place, return seconds."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # drop timestamps an earlier run may have recorded
        cell.metadata.pop("execution", None)
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps: re-running changes only what changed
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "list"
    if command == "list":
        print("\n".join(str(p.relative_to(ROOT)) for p in toc_notebooks()))
    elif command == "execute":
        only = set(argv[2:])
        for path in toc_notebooks():
            if only and path.name not in only and str(path.relative_to(ROOT)) not in only:
                continue
            seconds = execute(path)
            print(f"{path.relative_to(ROOT)}: {seconds:.1f} s", flush=True)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
