"""Helpers for the book: list its notebooks, execute them, keep their Colab cell current.

python -m scripts.book list      # the notebooks in _toc.yml, in reading order
python -m scripts.book execute   # run each in a fresh kernel and save its outputs
python -m scripts.book colab     # (re)write each notebook's first cell from _config.yml

`execute` and `colab` take notebook names to work on only those, e.g.
`python -m scripts.book execute 01_gradient_descent.ipynb`.
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

# The first cell of every notebook: on Colab it installs minioptim from the repository
# that _config.yml names (the one place a fork changes); anywhere else it does nothing.
# The tag keeps it off the book's pages; Colab opens the .ipynb, where it runs first.
COLAB_TAG = "remove-cell"
COLAB_CELL = """\
# On Colab, install minioptim, the course's library; elsewhere, do nothing.
import sys

REPOSITORY = "{url}"
if "google.colab" in sys.modules:
    %pip install --quiet "minioptim @ git+{{REPOSITORY}}"\
"""


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


def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    """The repository the book is published from: `repository.url` in _config.yml."""
    return yaml.safe_load(config_path.read_text())["repository"]["url"]


def colab_cell_source(url: str | None = None) -> str:
    """The source of the Colab cell that every notebook starts with."""
    return COLAB_CELL.format(url=url or repository_url())


def is_colab_cell(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source


def set_colab_cell(notebook, source: str) -> bool:
    """Make the notebook's first cell the Colab cell; return whether anything changed."""
    first = notebook.cells[0] if notebook.cells else None
    if first is not None and is_colab_cell(first):
        changed = first.source != source or first.metadata.get("tags") != [COLAB_TAG]
        first.source = source
    else:
        first = nbformat.v4.new_code_cell(source)
        notebook.cells.insert(0, first)
        changed = True
    first.metadata["tags"] = [COLAB_TAG]
    return changed


def merge_streams(outputs: list) -> list:
    """Join consecutive outputs of one stream (stdout, stderr) into one, as Jupyter shows
    them: a cell that prints in several bursts is one box on the page, not several."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


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
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    nbformat.write(notebook, path)
    return seconds


def selected(names: list[str]) -> list[Path]:
    only = set(names)
    return [
        path
        for path in toc_notebooks()
        if not only or path.name in only or str(path.relative_to(ROOT)) in only
    ]


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "list"
    if command == "list":
        print("\n".join(str(p.relative_to(ROOT)) for p in toc_notebooks()))
    elif command == "execute":
        for path in selected(argv[2:]):
            seconds = execute(path)
            print(f"{path.relative_to(ROOT)}: {seconds:.1f} s", flush=True)
    elif command == "colab":
        source = colab_cell_source()
        for path in selected(argv[2:]):
            notebook = nbformat.read(path, as_version=4)
            if set_colab_cell(notebook, source):
                nbformat.write(notebook, path)
                print(f"{path.relative_to(ROOT)}: Colab cell written; re-execute it")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
