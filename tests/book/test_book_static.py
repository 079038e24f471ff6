"""The book's sources: table of contents, notebooks and pages, without building anything."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml
from booktools import (
    CODE_WIDTH,
    ENTRIES,
    HIDDEN_CELL_TAGS,
    MARKDOWN_PAGES,
    NOTEBOOKS,
    RAISES,
    ROOT,
    TOC_NOTEBOOKS,
    code_blocks,
    output_text,
    relative,
)

from scripts.book import COLAB_TAG, colab_cell_source, repository_url, resolve

pytestmark = pytest.mark.static

# Lines allowed to be wider than CODE_WIDTH, as (file, the line's first characters).
# Add one only when no shorter form exists, and say why.
WIDE_LINES: set[tuple[str, str]] = set()

# What gives away the machine a notebook ran on: its absolute paths.
LOCAL_PATH = re.compile(
    "|".join(
        [
            re.escape(str(ROOT)),
            re.escape(str(Path.home()) + "/"),
            r"site-packages",
            r"dist-packages",
            r"/work/",
            r"/root/",
            r"/home/[\w.-]+/",
            r"/Users/[\w.-]+/",
            r"[A-Z]:\\\\Users\\\\",
            r"\.venv/",
        ]
    )
)


def load(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_toc_entry_exists():
    missing = [entry for entry in ENTRIES if resolve(entry) is None]
    assert not missing, f"_toc.yml lists files that do not exist (.ipynb or .md): {missing}"


def test_toc_lists_each_file_once():
    duplicates = sorted({entry for entry in ENTRIES if ENTRIES.count(entry) > 1})
    assert not duplicates, f"_toc.yml lists these more than once: {duplicates}"


def test_every_notebook_and_page_is_in_the_toc():
    listed = {resolve(entry) for entry in ENTRIES}
    unlisted = [relative(path) for path in NOTEBOOKS + MARKDOWN_PAGES if path not in listed]
    assert not unlisted, f"not listed in _toc.yml (add them, or delete them): {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=relative)
def test_notebook_is_committed_executed(path):
    """Committed as `make execute` saves it: run once, top to bottom, without errors."""
    cells = [cell for cell in code_cells(load(path)) if cell.source.strip()]
    counts = [cell.execution_count for cell in cells]
    assert None not in counts, (
        f"{relative(path)} has code cells that were never run; "
        f"run `make execute NB={path.name}` and commit the result"
    )
    assert counts == list(range(1, len(counts) + 1)), (
        f"{relative(path)} was not run once from top to bottom in a fresh kernel "
        f"(execution counts {counts}); run `make execute NB={path.name}`"
    )
    for number, cell in enumerate(cells, start=1):
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if errors and RAISES not in cell.metadata.get("tags", []):
            error = errors[0]
            pytest.fail(
                f"code cell {number} of {relative(path)} raised {error.ename}: {error.evalue} "
                f"(tag the cell `{RAISES}` if the error is the point)"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=relative)
def test_no_output_shows_a_local_path(path):
    """An output that names the machine it ran on (a traceback into .venv/.../torch, a
    file path) is noise for every reader, and differs on every machine."""
    found = []
    for number, cell in enumerate(code_cells(load(path)), start=1):
        for output in cell.outputs:
            texts = [output_text(output)]
            texts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                for match in LOCAL_PATH.finditer(text):
                    line = text[: match.end()].rsplit("\n", 1)[-1]
                    found.append(f"cell {number}: ...{line[-70:]}")
    assert not found, (
        f"{relative(path)} shows local paths in its outputs (print a short message "
        "instead of a traceback, or a relative path): " + "; ".join(found[:5])
    )


def wide_lines(name: str, lines: list[str], where: str) -> list[str]:
    return [
        f"{where}: {len(line)} characters: {line[:40]}..."
        for line in lines
        if len(line) > CODE_WIDTH and (name, line[:40]) not in WIDE_LINES
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=relative)
def test_code_and_outputs_fit_the_page(path):
    """A code block holds CODE_WIDTH characters on a laptop; longer lines scroll sideways,
    and on a page of a book nobody scrolls. Format notebook code for it
    (`ruff format --line-length 79`), and print shorter lines."""
    wide = []
    for number, cell in enumerate(load(path).cells, start=1):
        if set(cell.metadata.get("tags", [])) & HIDDEN_CELL_TAGS:
            continue  # not on the page
        if cell.cell_type == "markdown":
            for block in code_blocks(cell.source):
                wide += wide_lines(path.name, block, f"cell {number} (code block)")
            continue
        if cell.cell_type != "code":
            continue
        wide += wide_lines(path.name, cell.source.splitlines(), f"cell {number}")
        for output in cell.outputs:
            if output.output_type == "error" or "text/html" in output.get("data", {}):
                continue  # a traceback wraps on the page; HTML is laid out by the browser
            lines = output_text(output).splitlines()
            wide += wide_lines(path.name, lines, f"cell {number} (output)")
    assert not wide, f"{relative(path)} has lines wider than the page:\n" + "\n".join(wide)


@pytest.mark.parametrize("path", MARKDOWN_PAGES, ids=relative)
def test_code_blocks_of_pages_fit_the_page(path):
    wide = []
    for block in code_blocks(path.read_text()):
        wide += wide_lines(path.name, block, "code block")
    assert not wide, f"{relative(path)} has lines wider than the page:\n" + "\n".join(wide)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=relative)
def test_nbval_markers_are_tags_not_comments(path):
    """nbval reads the tags `nbval-ignore-output`, `nbval-skip`, ...; a `# NBVAL_...`
    comment does the same but shows on the page."""
    marked = [
        number
        for number, cell in enumerate(code_cells(load(path)), start=1)
        if re.search(r"^\s*#\s*NBVAL_", cell.source, flags=re.MULTILINE)
    ]
    assert not marked, (
        f"{relative(path)}: code cells {marked} carry a `# NBVAL_...` comment; "
        "give them the tag instead (e.g. `nbval-ignore-output`)"
    )


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=relative)
def test_notebook_starts_with_the_colab_cell(path):
    """On Colab a notebook must install minioptim first; from the repository that
    _config.yml names, so that a fork changes one setting (`python -m scripts.book colab`)."""
    first = load(path).cells[0]
    assert first.cell_type == "code" and first.source == colab_cell_source(), (
        f"{relative(path)} does not start with the Colab cell for {repository_url()}; "
        f"run `python -m scripts.book colab {path.name}` and re-execute it"
    )
    assert COLAB_TAG in first.metadata.get("tags", []), (
        f"{relative(path)}: the Colab cell needs the tag {COLAB_TAG!r}"
    )
    assert not first.outputs, f"{relative(path)}: the Colab cell printed something locally"


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=relative)
def test_lecture_ends_with_references(path):
    headings = [
        line.strip()
        for cell in load(path).cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("#")
    ]
    assert headings and headings[-1].lstrip("# ") == "References", (
        f"{relative(path)} should end with a `## References` section (papers, docs), "
        f"not with {headings[-1] if headings else 'no heading'!r}"
    )


def test_launch_buttons_and_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    buttons = config.get("launch_buttons", {})
    assert "binder_url" not in buttons, "Jupyter Book 1 calls the Binder key `binderhub_url`"
    assert buttons.get("binderhub_url") and buttons.get("colab_url")
    url = config["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    assert "your-org" not in url and "example" not in url, f"placeholder repository: {url}"
