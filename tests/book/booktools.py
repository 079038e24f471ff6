"""What the book's tests share: where things are, and what each source must show."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from scripts.book import ROOT, resolve, toc_entries

HTML_DIR = ROOT / "_build" / "html"
WINDOW_SIZE = (1280, 1600)  # a laptop's browser window
PHONE_SIZE = (390, 844)  # a phone held upright (CSS pixels)

# The width of a code block on the page at WINDOW_SIZE, in characters: longer lines
# scroll sideways (measured in Chromium: the column holds about 80 characters).
CODE_WIDTH = 79

TRACEBACK = "Traceback (most recent call last)"
RAISES = "raises-exception"
# Cells with these tags are not rendered with their outputs, so their images do not count.
HIDDEN_OUTPUT_TAGS = {"remove-cell", "remove-output", "remove_cell", "remove_output"}
HIDDEN_CELL_TAGS = {"remove-cell", "remove_cell"}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def repository_files(suffix: str, under: Path = ROOT) -> list[Path]:
    """Files ending in `suffix` below `under`, outside hidden folders (.venv, .git,
    .ipynb_checkpoints, ...) and the build output."""
    found = []
    for folder, subfolders, files in os.walk(under):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        subfolders[:] = [name for name in subfolders if name != "_build"]
        found += [Path(folder, name) for name in files if name.endswith(suffix)]
    return sorted(found)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


ENTRIES = toc_entries()
ROOT_ENTRY = ENTRIES[0]
NOTEBOOKS = repository_files(".ipynb")
MARKDOWN_PAGES = repository_files(".md", under=ROOT / "book")
TOC_NOTEBOOKS = [p for e in ENTRIES if (p := resolve(e)) is not None and p.suffix == ".ipynb"]


def output_text(output) -> str:
    """The text an output shows on the page (images and HTML excluded)."""
    if output.output_type == "error":
        text = "\n".join(output.traceback)
    elif output.output_type == "stream":
        text = output.text
    else:
        text = str(output.get("data", {}).get("text/plain", ""))
    return ANSI_ESCAPE.sub("", text)


@dataclass
class SourceFacts:
    """What the built page of one source file must show."""

    has_math: bool = False
    # image outputs of the notebook, each of which must appear as an <img>
    images: int = 0
    # error outputs and stderr streams of cells tagged raises-exception
    allowed_tracebacks: int = 0
    allowed_stderr: int = 0
    # how often "Traceback (most recent call last)" may appear in the text: written by the
    # author, or printed by a raises-exception cell
    allowed_traceback_text: int = 0


FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\S*)")
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
MATH = re.compile(
    r"\$\$"  # display math
    r"|\$[^\s$][^$\n]*\$"  # inline math, as MyST's dollarmath reads it
    r"|\{math\}"  # the math role
    r"|\\begin\{(equation|align|gather|multline)"  # amsmath environments
)
# Directives whose body is MyST markdown again: its math is math, its code blocks code.
MARKDOWN_DIRECTIVES = re.compile(
    r"\{(admonition|dropdown|note|tip|hint|warning|important|seealso|topic)\}"
)

CODE_DIRECTIVES = {"{code-block}", "{code}", "{code-cell}", "{sourcecode}"}


@dataclass
class Markdown:
    """MyST markdown taken apart: prose, the lines of each code block, math blocks."""

    prose: list[str]
    code: list[list[str]]
    math_blocks: int


def split_markdown(markdown: str) -> Markdown:
    parts = Markdown(prose=[], code=[], math_blocks=0)
    directives: list[str] = []  # fences of the open directives whose body is markdown
    fence, block = None, []  # the open code block
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if fence is not None:  # inside a code (or math) block
            closes = match and match.group(1)[0] == fence[0] and not match.group(2)
            if closes and len(match.group(1)) >= len(fence):
                if block is not None:
                    parts.code.append(block)
                fence = None
            elif block is not None:
                block.append(line)
            continue
        if match is None:
            parts.prose.append(INLINE_CODE.sub("", line))
            continue
        marks, info = match.groups()
        if not info and directives and marks[0] == directives[-1][0]:
            directives.pop()  # the end of a directive
        elif marks[0] == ":" or MARKDOWN_DIRECTIVES.match(info):
            directives.append(marks)
        elif info.startswith("{math}"):
            parts.math_blocks += 1
            fence, block = marks, None
        elif info.startswith("{") and info not in CODE_DIRECTIVES:
            fence, block = marks, None  # another directive (autodoc, eval-rst): not code
        else:
            fence, block = marks, []  # ```python, ```{code-block} python, plain ```
    return parts


def code_blocks(markdown: str) -> list[list[str]]:
    """The lines of each fenced code block of MyST markdown (```python, ```{code-block})."""
    return split_markdown(markdown).code


def contains_math(markdown: str) -> bool:
    """Whether MyST markdown has math outside code blocks and inline code."""
    parts = split_markdown(markdown)
    return parts.math_blocks > 0 or MATH.search("\n".join(parts.prose)) is not None


def source_facts(path: Path) -> SourceFacts:
    if path.suffix == ".md":
        text = path.read_text()
        return SourceFacts(
            has_math=contains_math(text), allowed_traceback_text=text.count(TRACEBACK)
        )

    facts = SourceFacts()
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    facts.has_math = contains_math(markdown)
    facts.allowed_traceback_text = markdown.count(TRACEBACK)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if not tags & HIDDEN_OUTPUT_TAGS:
            for output in cell.outputs:
                data = output.get("data", {})
                # myst-nb renders text/html in preference to an image of the same output
                if any(kind in data for kind in IMAGE_TYPES) and "text/html" not in data:
                    facts.images += 1
        if RAISES in tags:
            for output in cell.outputs:
                facts.allowed_tracebacks += output.output_type == "error"
                facts.allowed_stderr += output.get("name") == "stderr"
                facts.allowed_traceback_text += output_text(output).count(TRACEBACK)
    return facts


@dataclass(frozen=True)
class Page:
    """One page to open: `name` for test ids, `html` below _build/html, `source` entry."""

    name: str
    html: str
    source: str


PAGES = [Page("index", "index.html", ROOT_ENTRY)] + [
    Page(entry, f"{entry}.html", entry) for entry in ENTRIES
]
PAGE_IDS = [page.name for page in PAGES]
CONTENT_PAGES = PAGES[1:]  # without the index, which forwards to the first page
CONTENT_PAGE_IDS = PAGE_IDS[1:]


def facts_of(page: Page) -> SourceFacts:
    path = resolve(page.source)
    if path is None:
        pytest.fail(f"{page.source} is in _toc.yml but has no .ipynb or .md file")
    return source_facts(path)
