"""The book: its table of contents, its executed notebooks, and the built HTML in a browser.

The browser tests build the whole book once per session as `make book` does, serve
`_build/html` on 127.0.0.1 and open the index and every page of `_toc.yml` in headless
Chromium, with every other host unreachable. Each page must load without console errors,
fetch nothing from the network, show its equations typeset by the bundled MathJax, show
its plots as loaded images, show no traceback that its notebook did not ask for, and link
only to local pages and anchors that exist.

Chromium and chromedriver come from the system (`apt-get install chromium chromium-driver`,
as `.ci/run` does). Without them the browser tests are skipped locally and fail on CI.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import nbformat
import pytest

from scripts.book import ROOT, resolve, toc_entries

HTML_DIR = ROOT / "_build" / "html"
SCREENSHOT = ROOT / "_build" / "screenshot-lecture.png"
LECTURE_FOR_SCREENSHOT = "book/01_gradient_descent"
WINDOW_SIZE = (1280, 1600)
MATHJAX_TIMEOUT_S = 20
IMAGE_TIMEOUT_S = 10

TRACEBACK = "Traceback (most recent call last)"
RAISES = "raises-exception"
# Cells with these tags are not rendered with their outputs, so their images do not count.
HIDDEN_OUTPUT_TAGS = {"remove-cell", "remove-output", "remove_cell", "remove_output"}
# Browsers ask every site for /favicon.ico; the book has none and does not link one.
IGNORED_PATHS = {"/favicon.ico"}
# Console errors that are known and harmless; delete an entry once the book avoids it.
KNOWN_CONSOLE_ERRORS = [
    # Sphinx 7 (which Jupyter Book 1 requires) writes each inline <script> of an extension
    # twice, so the second copy of sphinx-thebe's `const THEBE_JS_URL = ...` fails; the
    # first copy already did the work. Fixed in Sphinx 8.2 (sphinx-doc/sphinx#13402).
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------------------
# The sources: which files exist, which are in the table of contents, what they contain
# --------------------------------------------------------------------------------------


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


def test_every_toc_entry_exists():
    missing = [entry for entry in ENTRIES if resolve(entry) is None]
    assert not missing, f"_toc.yml lists files that do not exist (.ipynb or .md): {missing}"


def test_toc_lists_each_file_once():
    duplicates = sorted({entry for entry in ENTRIES if ENTRIES.count(entry) > 1})
    assert not duplicates, f"_toc.yml lists these more than once: {duplicates}"


def test_every_notebook_and_page_is_in_the_toc():
    listed = {resolve(entry) for entry in ENTRIES}
    sources = NOTEBOOKS + repository_files(".md", under=ROOT / "book")
    unlisted = [relative(path) for path in sources if path not in listed]
    assert not unlisted, f"not listed in _toc.yml (add them, or delete them): {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=relative)
def test_notebook_is_committed_executed(path):
    """Committed as `make execute` saves it: run once, top to bottom, without errors."""
    notebook = nbformat.read(path, as_version=4)
    code_cells = [
        cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()
    ]
    counts = [cell.execution_count for cell in code_cells]
    assert None not in counts, (
        f"{relative(path)} has code cells that were never run; "
        f"run `make execute NB={path.name}` and commit the result"
    )
    assert counts == list(range(1, len(counts) + 1)), (
        f"{relative(path)} was not run once from top to bottom in a fresh kernel "
        f"(execution counts {counts}); run `make execute NB={path.name}`"
    )
    for number, cell in enumerate(code_cells, start=1):
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if errors and RAISES not in cell.metadata.get("tags", []):
            error = errors[0]
            pytest.fail(
                f"code cell {number} of {relative(path)} raised {error.ename}: {error.evalue} "
                f"(tag the cell `{RAISES}` if the error is the point)"
            )


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


FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(\S*)")
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
MATH = re.compile(
    r"\$\$"  # display math
    r"|\$[^\s$][^$\n]*\$"  # inline math, as MyST's dollarmath reads it
    r"|\{math\}"  # the math role
    r"|\\begin\{(equation|align|gather|multline)"  # amsmath environments
)


def contains_math(markdown: str) -> bool:
    """Whether MyST markdown has math outside code blocks and inline code."""
    prose = []
    fence = None
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            if match.group(2).startswith("{math}"):
                return True
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)):
            fence = None
        elif fence is None:
            prose.append(INLINE_CODE.sub("", line))
    return MATH.search("\n".join(prose)) is not None


def output_text(output) -> str:
    if output.output_type == "error":
        text = "\n".join(output.traceback)
    elif output.output_type == "stream":
        text = output.text
    else:
        text = str(output.get("data", {}).get("text/plain", ""))
    return ANSI_ESCAPE.sub("", text)


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
                # myst-nb renders text/html in preference to a PNG of the same output
                if "image/png" in data and "text/html" not in data:
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


def facts_of(page: Page) -> SourceFacts:
    path = resolve(page.source)
    if path is None:
        pytest.fail(f"{page.source} is in _toc.yml but has no .ipynb or .md file")
    return source_facts(path)


# --------------------------------------------------------------------------------------
# The built book, without a browser: every resource it references is local
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the whole book like `make book` (all pages, so every warning is reported)."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", ".", "-W", "--keep-going", "--all"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    log = ANSI_ESCAPE.sub("", result.stdout + result.stderr)
    if result.returncode != 0 or "WARNING" in log:
        warnings = [line for line in log.splitlines() if "WARNING" in line]
        pytest.fail(
            f"`jupyter-book {' '.join(command[1:])}` failed (exit code {result.returncode}).\n"
            + ("Warnings:\n" + "\n".join(warnings) + "\n" if warnings else "")
            + "Build log (end):\n"
            + "\n".join(log.splitlines()[-120:])
        )
    return HTML_DIR


class ResourceLinks(HTMLParser):
    """Collect the URLs that make a browser fetch something when it renders a page."""

    FETCHING_RELS = {
        "stylesheet",
        "preload",
        "modulepreload",
        "prefetch",
        "preconnect",
        "dns-prefetch",
        "icon",
        "apple-touch-icon",
        "manifest",
    }

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
            self.urls.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            rels = set((attrs.get("rel") or "").lower().split())
            if rels & self.FETCHING_RELS:
                self.urls.append((f"link rel={attrs.get('rel')}", attrs["href"]))
        elif tag in {"img", "iframe", "source", "audio", "video", "embed"} and attrs.get("src"):
            self.urls.append((tag, attrs["src"]))


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"} or url.startswith("//")


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_references_only_local_resources(built_book, page):
    path = built_book / page.html
    assert path.is_file(), f"the build did not write {path.relative_to(ROOT)}"
    parser = ResourceLinks()
    parser.feed(path.read_text())

    remote = [f"<{tag}> {url}" for tag, url in parser.urls if is_remote(url)]
    assert not remote, f"{page.html} needs the network to render: {remote}"

    for src in parser.scripts:
        if "mathjax" in src.lower():
            local = (path.parent / urlsplit(src).path).resolve()
            assert local.is_relative_to(built_book / "_static" / "mathjax"), (
                f"{page.html} loads MathJax from {src}, not from _static/mathjax"
            )
            assert local.is_file(), f"{page.html} loads MathJax from {src}, which is missing"


# --------------------------------------------------------------------------------------
# The built book in headless Chromium
# --------------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # no log of each request on the terminal
        pass


@pytest.fixture(scope="session")
def site(built_book) -> str:
    """Serve _build/html on 127.0.0.1 like a real web site; yield its base URL."""
    handler = functools.partial(QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def find_program(*candidates: str) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser(site, tmp_path_factory):
    chromium = find_program("/usr/bin/chromium", "chromium", "chromium-browser")
    chromedriver = find_program("/usr/bin/chromedriver", "chromedriver")
    if chromium is None or chromedriver is None:
        message = (
            "headless Chromium is needed to test the built book: "
            "`apt-get install chromium chromium-driver` (Debian/Ubuntu), as .ci/run does"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        # No network but this machine: every other host goes through a proxy that does
        # not exist (loopback addresses always bypass the proxy), so a page that needs
        # the network cannot render, and the request shows up in the performance log.
        "--proxy-server=http://127.0.0.1:9",
    ]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})

    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        driver.set_window_size(*WINDOW_SIZE)
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(MATHJAX_TIMEOUT_S + 5)
        # Fetch every page and asset afresh, so each page proves it loads on its own.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        yield driver
    finally:
        driver.quit()


WAIT_FOR_MATHJAX = """
const limit_ms = arguments[0] * 1000;
const done = arguments[arguments.length - 1];
const started = Date.now();
(function poll() {
  const mathjax = window.MathJax;
  if (mathjax && mathjax.startup && mathjax.startup.promise) {
    mathjax.startup.promise.then(() => done("typeset"), (error) => done("error: " + error));
  } else if (Date.now() - started > limit_ms) {
    done("MathJax did not start");
  } else {
    setTimeout(poll, 50);
  }
})();
"""

COLLECT = """
const article = document.querySelector("article");
const scope = article || document.body;
const all = (selector) => Array.from(scope.querySelectorAll(selector));

// The text a reader sees outside code: raw TeX would show up here if MathJax failed.
const prose = [];
const walker = document.createTreeWalker(scope, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.parentElement.closest("pre, code, script, style, mjx-container, .highlight")) {
    prose.push(node.textContent);
  }
}

return {
  title: document.title,
  url: location.href,
  has_article: article !== null,
  prose: prose.join("\\n"),
  text: scope.textContent,
  mathjax_scripts: Array.from(document.scripts).map((s) => s.src).filter((s) => /mathjax/i.test(s)),
  math_elements: all(".math").length,
  untypeset: all(".math").filter((e) => !e.querySelector("mjx-container")).length,
  typeset: all("mjx-container").length,
  math_errors: all("mjx-merror").map((e) => e.textContent),
  images: all("img").map((i) => ({src: i.getAttribute("src"), url: i.currentSrc || i.src,
                                   complete: i.complete, width: i.naturalWidth})),
  tracebacks: all(".output.traceback, .output_error").length,
  stderr: all(".output.stderr").length,
  links: Array.from(document.querySelectorAll("a[href]")).map(
    (a) => ({href: a.getAttribute("href"), url: a.href})),
  ids: Array.from(document.querySelectorAll("[id]")).map((e) => e.id).concat(
    Array.from(document.querySelectorAll("a[name]")).map((a) => a.name)),
  resources: performance.getEntriesByType("resource").map((r) => r.name),
};
"""


@dataclass
class PageVisit:
    """What the browser saw when it opened one page (the long fields stay out of repr)."""

    requested: str
    # from the network and the console
    document_statuses: dict[str, int] = field(default_factory=dict, repr=False)
    requests: list[str] = field(default_factory=list, repr=False)
    failed_local: list[str] = field(default_factory=list, repr=False)
    console_errors: list[str] = field(default_factory=list, repr=False)
    mathjax: str = "not loaded"
    # from the page, as COLLECT returns it
    url: str = ""
    title: str = field(default="", repr=False)
    has_article: bool = field(default=False, repr=False)
    prose: str = field(default="", repr=False)
    text: str = field(default="", repr=False)
    mathjax_scripts: list[str] = field(default_factory=list, repr=False)
    math_elements: int = field(default=0, repr=False)
    untypeset: int = field(default=0, repr=False)
    typeset: int = field(default=0, repr=False)
    math_errors: list[str] = field(default_factory=list, repr=False)
    images: list[dict] = field(default_factory=list, repr=False)
    tracebacks: int = field(default=0, repr=False)
    stderr: int = field(default=0, repr=False)
    links: list[dict] = field(default_factory=list, repr=False)
    ids: list[str] = field(default_factory=list, repr=False)


def is_local(url: str, site: str) -> bool:
    return url.startswith(site)


def network_events(driver) -> list[tuple[str, dict]]:
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        events.append((message["method"], message.get("params", {})))
    return events


def open_page(driver, site: str, page: Page) -> PageVisit:
    """Load a page, let MathJax typeset and the images load, and record what happened."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    visit = PageVisit(requested=urljoin(site, page.html))
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get_log("performance")

    driver.get(visit.requested)
    if page.html == "index.html":  # the index forwards to the first page of the book
        target = urljoin(site, f"{page.source}.html")
        try:
            WebDriverWait(driver, 10).until(lambda d: d.current_url == target)
        except TimeoutException:
            pass  # test_page_loads reports where the browser ended up
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )

    mathjax_scripts = driver.execute_script(
        "return Array.from(document.scripts).map((s) => s.src).filter((s) => /mathjax/i.test(s))"
    )
    remote_mathjax = [src for src in mathjax_scripts if not is_local(src, site)]
    if remote_mathjax:  # it cannot load with the network blocked: no use waiting for it
        visit.mathjax = f"MathJax is not served by the book but by {remote_mathjax}"
    elif mathjax_scripts:
        try:
            visit.mathjax = driver.execute_async_script(WAIT_FOR_MATHJAX, MATHJAX_TIMEOUT_S)
        except TimeoutException:
            visit.mathjax = f"MathJax did not finish within {MATHJAX_TIMEOUT_S} s"

    # Images may load lazily: load them all now, and wait until each has loaded or failed.
    driver.execute_script(
        "document.querySelectorAll('img').forEach((i) => { i.loading = 'eager'; })"
    )
    try:
        WebDriverWait(driver, IMAGE_TIMEOUT_S).until(
            lambda d: d.execute_script(
                "return Array.from(document.images).every((i) => i.complete)"
            )
        )
    except TimeoutException:
        pass  # test_plots_are_visible_images reports the incomplete ones

    seen_in_page = driver.execute_script(COLLECT)
    visit.requests += seen_in_page.pop("resources")
    for name, value in seen_in_page.items():
        setattr(visit, name, value)

    urls_by_id = {}
    for method, params in network_events(driver):
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls_by_id[params["requestId"]] = url
            visit.requests.append(url)
        elif method == "Network.responseReceived":
            response = params["response"]
            url, status = response["url"], response["status"]
            if params.get("type") == "Document":
                visit.document_statuses[url] = status
            if is_local(url, site) and status >= 400 and urlsplit(url).path not in IGNORED_PATHS:
                visit.failed_local.append(f"{url}: HTTP {status}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = urls_by_id.get(params["requestId"], "?")
            if is_local(url, site):
                visit.failed_local.append(f"{url}: {params.get('errorText')}")

    for entry in driver.get_log("browser"):
        message = entry["message"]
        if entry["level"] != "SEVERE" or any(path in message for path in IGNORED_PATHS):
            continue
        if not any(known.search(message) for known in KNOWN_CONSOLE_ERRORS):
            visit.console_errors.append(message)
    return visit


@pytest.fixture(scope="session")
def visit(browser, site):
    """visit(page) -> PageVisit, opening each page once per session."""
    visits: dict[Page, PageVisit] = {}

    def visit_page(page: Page) -> PageVisit:
        if page not in visits:
            visits[page] = open_page(browser, site, page)
        return visits[page]

    return visit_page


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_loads(visit, site, page):
    seen = visit(page)
    expected = urljoin(site, f"{page.source}.html")
    assert seen.url == expected, f"opening {page.html} ended on {seen.url}, not {expected}"
    assert seen.title.strip(), f"{page.html} has no title"
    assert seen.has_article, f"{page.html} has no <article>: not a page of the book"
    assert seen.requested in seen.document_statuses, f"no response for {seen.requested}"
    failed = {url: status for url, status in seen.document_statuses.items() if status != 200}
    assert not failed, f"opening {page.html} answered {failed}"
    assert not seen.failed_local, f"{page.html} could not load: {seen.failed_local}"
    assert not seen.console_errors, f"{page.html} logged errors: {seen.console_errors}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_renders_without_network(visit, site, page):
    seen = visit(page)
    remote = sorted({url for url in seen.requests if not is_local(url, site) and is_remote(url)})
    assert not remote, f"{page.html} asked the network for {remote}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_equations_are_typeset(visit, page):
    seen = visit(page)
    if facts_of(page).has_math:
        assert seen.mathjax_scripts, f"{page.source} has math but {page.html} loads no MathJax"
        assert seen.typeset > 0, (
            f"{page.source} has math but MathJax typeset nothing on {page.html} ({seen.mathjax})"
        )
    if seen.math_elements or seen.mathjax_scripts:
        assert seen.mathjax == "typeset", f"{page.html}: {seen.mathjax}"
        assert seen.untypeset == 0, (
            f"{page.html}: {seen.untypeset} of {seen.math_elements} equations not typeset"
        )
    assert not seen.math_errors, f"{page.html}: MathJax could not typeset {seen.math_errors}"
    for raw in ("$$", "\\[", "\\("):
        if raw in seen.prose:
            where = seen.prose.index(raw)
            context = " ".join(seen.prose[max(0, where - 60) : where + 60].split())
            pytest.fail(f"{page.html} shows raw TeX ({raw}) outside code: ...{context}...")


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_plots_are_visible_images(visit, page):
    images = visit(page).images
    broken = [image["src"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"{page.html} shows broken images: {broken}"
    expected = facts_of(page).images
    plots = [image for image in images if "/_images/" in image["url"]]
    shown = len(plots)
    assert shown >= expected, (
        f"{page.source} has {expected} image outputs but {page.html} shows {shown}"
    )


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_shows_no_unexpected_errors(visit, page):
    seen = visit(page)
    facts = facts_of(page)
    assert seen.tracebacks <= facts.allowed_tracebacks, (
        f"{page.html} shows {seen.tracebacks} error outputs; only cells tagged "
        f"`{RAISES}` may fail ({facts.allowed_tracebacks} error outputs in {page.source})"
    )
    assert seen.stderr <= facts.allowed_stderr, (
        f"{page.html} shows {seen.stderr} outputs on stderr (warnings?); fix their cause"
    )
    shown = seen.text.count(TRACEBACK)
    assert shown <= facts.allowed_traceback_text, (
        f"{page.html} shows {shown} Python tracebacks, {page.source} accounts for "
        f"{facts.allowed_traceback_text}"
    )


class LinkChecker:
    """Fetch each local URL once; remember its HTTP status and the ids in its HTML."""

    def __init__(self):
        self.statuses: dict[str, int] = {}
        self.ids: dict[str, set[str]] = {}

    def fetch(self, url: str) -> int:
        if url not in self.statuses:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = response.read().decode("utf-8", errors="replace")
                    self.statuses[url] = response.status
            except urllib.error.HTTPError as error:
                self.statuses[url] = error.code
                body = ""
            found = re.findall(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", body)
            self.ids[url] = set(found)
        return self.statuses[url]


@pytest.fixture(scope="session")
def link_checker() -> LinkChecker:
    return LinkChecker()


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_internal_links_resolve(visit, site, link_checker, page):
    seen = visit(page)
    here = urldefrag(seen.url)[0]
    broken = []
    for link in seen.links:
        href, url = link["href"], link["url"]
        if not is_local(url, site):
            continue  # mailto:, javascript:, and external sites such as the launch buttons
        target, fragment = urldefrag(url)
        anchor = unquote(fragment)
        if target == here:
            if anchor and anchor not in seen.ids:
                broken.append(f"{href} (no element with id {anchor!r} on this page)")
            continue
        status = link_checker.fetch(target)
        if status != 200:
            broken.append(f"{href} (HTTP {status})")
        elif anchor and anchor not in link_checker.ids[target]:
            broken.append(f"{href} (no element with id {anchor!r} there)")
    assert not broken, f"{page.html} has broken links: {broken}"


def screenshot_page() -> Page:
    notebooks = [e for e in ENTRIES if (p := resolve(e)) is not None and p.suffix == ".ipynb"]
    entry = LECTURE_FOR_SCREENSHOT if LECTURE_FOR_SCREENSHOT in ENTRIES else None
    entry = entry or (notebooks[0] if notebooks else ROOT_ENTRY)
    return Page(entry, f"{entry}.html", entry)


def test_screenshot_of_a_lecture(browser, site):
    """Save what a reader sees at the top of a lecture, for a human to look at."""
    page = screenshot_page()
    open_page(browser, site, page)
    SCREENSHOT.unlink(missing_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT)), "Chromium could not take a screenshot"

    data = SCREENSHOT.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{SCREENSHOT} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # from the IHDR chunk
    assert width > 0 and height > 0 and len(data) > 1000, f"{SCREENSHOT} is empty"
