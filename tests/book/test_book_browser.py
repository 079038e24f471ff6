"""The built book in headless Chromium.

The whole book is built once per session as `make book` does, `_build/html` is served on
127.0.0.1 and the index and every page of `_toc.yml` are opened in headless Chromium,
with every other host unreachable. Each page must load without console errors, fetch
nothing from the network, show its equations typeset by the bundled MathJax, show its
plots as loaded images, show no traceback that its notebook did not ask for, link only to
local pages and anchors that exist, keep its code blocks and equations inside the column
on a laptop, and not scroll sideways on a phone.

Chromium and chromedriver come from the system (`apt-get install chromium chromium-driver`,
as `.ci/run` does). Without them the browser tests are skipped locally and fail on CI.
"""

from __future__ import annotations

import json
import re
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest
from booktools import (
    CONTENT_PAGE_IDS,
    CONTENT_PAGES,
    ENTRIES,
    PAGE_IDS,
    PAGES,
    PHONE_SIZE,
    RAISES,
    ROOT,
    TRACEBACK,
    WINDOW_SIZE,
    Page,
    facts_of,
)

from scripts.book import resolve

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "_build" / "screenshots"
LECTURE_FOR_SCREENSHOT = "book/01_gradient_descent"
MATHJAX_TIMEOUT_S = 20
IMAGE_TIMEOUT_S = 10
# Browsers ask every site for /favicon.ico; the book has none and does not link one.
IGNORED_PATHS = {"/favicon.ico"}
# Tables still wider than a phone's column, by page, each named by its first cell: they
# hide columns behind a sideways scroll. Fix the table, then delete its entry (the test
# fails while an entry is out of date).
KNOWN_WIDE_TABLES: dict[str, list[str]] = {}

# Console errors that are known and harmless; delete an entry once the book avoids it.
KNOWN_CONSOLE_ERRORS = [
    # Sphinx 7 (which Jupyter Book 1 requires) writes each inline <script> of an extension
    # twice, so the second copy of sphinx-thebe's `const THEBE_JS_URL = ...` fails; the
    # first copy already did the work. Fixed in Sphinx 8.2 (sphinx-doc/sphinx#13402).
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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

# What does not fit: code blocks that scroll sideways, display equations wider than the
# column, and how wide the whole page is against the window.
MEASURE_WIDTHS = """
const article = document.querySelector("article") || document.body;
const text = (e) => e.textContent.trim().split("\\n")[0].slice(0, 50);
const wide_code = Array.from(article.querySelectorAll("pre"))
  .filter((e) => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
  .filter((e) => !e.closest(".output.traceback, .output_error, .cell_output .error"))
  .map((e) => `${e.scrollWidth} > ${e.clientWidth} px: ${text(e)}`);
const wide_math = Array.from(article.querySelectorAll("mjx-container[display='true']"))
  .filter((e) => {
    const math = e.querySelector("mjx-math");
    return math && math.getBoundingClientRect().width > e.getBoundingClientRect().width + 1;
  })
  .map((e) => (e.getAttribute("aria-label") || text(e)).slice(0, 60));
// A table wider than its box hides columns behind a sideways scroll (the theme wraps
// tables in a scrolling box, so the page itself stays narrow).
const wide_tables = Array.from(article.querySelectorAll("table"))
  .filter((t) => t.getBoundingClientRect().width > t.parentElement.clientWidth + 1)
  .map((t) => `${Math.round(t.getBoundingClientRect().width)} > `
              + `${t.parentElement.clientWidth} px: ${text(t)}`);
const wide_images = Array.from(article.querySelectorAll("img"))
  .filter((i) => i.getBoundingClientRect().right > window.innerWidth + 1)
  .map((i) => i.getAttribute("src"));
// A figure squeezed to the screen's width but not to its height is distorted.
const distorted = Array.from(article.querySelectorAll("img"))
  .filter((i) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)
  .filter((i) => {
    const box = i.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return false;
    const shown = box.width / box.height, natural = i.naturalWidth / i.naturalHeight;
    return Math.abs(shown / natural - 1) > 0.02;
  })
  .map((i) => i.getAttribute("src"));
return {
  wide_code: wide_code,
  wide_math: wide_math,
  wide_tables: wide_tables,
  wide_images: wide_images,
  distorted_images: distorted,
  page_width: document.documentElement.scrollWidth,
  window_width: window.innerWidth,
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
    # from MEASURE_WIDTHS, at the laptop's window size
    widths: dict = field(default_factory=dict, repr=False)


def is_local(url: str, site: str) -> bool:
    return url.startswith(site)


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"} or url.startswith("//")


def network_events(driver) -> list[tuple[str, dict]]:
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        events.append((message["method"], message.get("params", {})))
    return events


def load(driver, site: str, page: Page, visit: PageVisit | None = None) -> str:
    """Open a page, wait for MathJax and the images; return how MathJax ended."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(urljoin(site, page.html))
    if page.html == "index.html":  # the index forwards to the first page of the book
        target = urljoin(site, f"{page.source}.html")
        try:
            WebDriverWait(driver, 10).until(lambda d: d.current_url == target)
        except TimeoutException:
            pass  # test_page_loads reports where the browser ended up
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )

    mathjax = "not loaded"
    scripts = driver.execute_script(
        "return Array.from(document.scripts).map((s) => s.src).filter((s) => /mathjax/i.test(s))"
    )
    remote_mathjax = [src for src in scripts if not is_local(src, site)]
    if remote_mathjax:  # it cannot load with the network blocked: no use waiting for it
        mathjax = f"MathJax is not served by the book but by {remote_mathjax}"
    elif scripts:
        try:
            mathjax = driver.execute_async_script(WAIT_FOR_MATHJAX, MATHJAX_TIMEOUT_S)
        except TimeoutException:
            mathjax = f"MathJax did not finish within {MATHJAX_TIMEOUT_S} s"

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
    return mathjax


def open_page(driver, site: str, page: Page) -> PageVisit:
    """Load a page, let MathJax typeset and the images load, and record what happened."""
    visit = PageVisit(requested=urljoin(site, page.html))
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get_log("performance")
    visit.mathjax = load(driver, site, page)

    seen_in_page = driver.execute_script(COLLECT)
    visit.requests += seen_in_page.pop("resources")
    for name, value in seen_in_page.items():
        setattr(visit, name, value)
    visit.widths = driver.execute_script(MEASURE_WIDTHS)

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


class Phone:
    """The browser pretending to be a phone: a narrow, touch, high-density screen."""

    def __init__(self, driver):
        self.driver = driver

    def __enter__(self):
        width, height = PHONE_SIZE
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 3, "mobile": True},
        )
        return self.driver

    def __exit__(self, *exc):
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture(scope="session")
def phone_widths(browser, site):
    """phone_widths(page) -> MEASURE_WIDTHS of the page on a phone, once per page."""
    measured: dict[Page, dict] = {}

    def measure(page: Page) -> dict:
        if page not in measured:
            with Phone(browser) as driver:
                load(driver, site, page)
                measured[page] = driver.execute_script(MEASURE_WIDTHS)
        return measured[page]

    return measure


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


@pytest.mark.parametrize("page", CONTENT_PAGES, ids=CONTENT_PAGE_IDS)
def test_code_and_equations_fit_the_column(visit, page):
    """On a laptop nothing scrolls sideways: no code block, output or display equation
    is wider than the column (tests/book/test_book_static.py checks the sources), and
    no figure is stretched."""
    widths = visit(page).widths
    assert not widths["wide_code"], (
        f"{page.html}: code blocks wider than the column at {WINDOW_SIZE[0]} px:\n"
        + "\n".join(widths["wide_code"])
    )
    assert not widths["wide_math"], (
        f"{page.html}: equations wider than the column: {widths['wide_math']}"
    )
    assert not widths["distorted_images"], (
        f"{page.html}: images shown with another aspect ratio than they have: "
        f"{widths['distorted_images']}"
    )


@pytest.mark.parametrize("page", CONTENT_PAGES, ids=CONTENT_PAGE_IDS)
def test_page_fits_a_phone(phone_widths, page):
    """On a phone, a wide code block may scroll inside its box, but the page itself must
    not scroll sideways, no table hides columns behind a scroll, and every figure fits
    the screen."""
    widths = phone_widths(page)
    assert widths["page_width"] <= widths["window_width"], (
        f"{page.html} is {widths['page_width']} px wide on a "
        f"{widths['window_width']} px phone screen"
    )
    wide_tables = [table.split(" px: ", 1)[1] for table in widths["wide_tables"]]
    assert wide_tables == KNOWN_WIDE_TABLES.get(page.html, []), (
        f"{page.html}: tables wider than a phone's column: {widths['wide_tables']} "
        f"(known: {KNOWN_WIDE_TABLES.get(page.html, [])})"
    )
    assert not widths["wide_images"], f"{page.html}: images wider than a phone: {widths}"
    assert not widths["distorted_images"], (
        f"{page.html}: images shown with another aspect ratio than they have on a phone "
        f"(a width shrunk to the screen, a height kept): {widths['distorted_images']}"
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
    entry = entry or (notebooks[0] if notebooks else ENTRIES[0])
    return Page(entry, f"{entry}.html", entry)


def check_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # from the IHDR chunk
    assert width > 0 and height > 0 and len(data) > 1000, f"{path} is empty"


def test_screenshots_of_a_lecture(browser, site):
    """Save what a reader sees at the top of a lecture, on a laptop and on a phone, for a
    human to look at (`python -m scripts.screenshots` takes them of every page)."""
    page = screenshot_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    laptop, phone = SCREENSHOTS / "lecture-laptop.png", SCREENSHOTS / "lecture-phone.png"
    load(browser, site, page)
    laptop.unlink(missing_ok=True)
    assert browser.save_screenshot(str(laptop)), "Chromium could not take a screenshot"
    check_png(laptop)
    with Phone(browser) as driver:
        load(driver, site, page)
        phone.unlink(missing_ok=True)
        assert driver.save_screenshot(str(phone)), "Chromium could not take a screenshot"
    check_png(phone)
