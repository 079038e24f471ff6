"""The book's tests, in three kinds, each a pytest marker:

- ``static``: the sources (table of contents, notebooks, Markdown pages); seconds.
- ``html``: the built book, read as files; builds the whole book once (minutes).
- ``browser``: the built book served on 127.0.0.1 and opened in headless Chromium.

``pytest tests/book -m static`` runs the quick checks alone; ``pytest tests --ignore
tests/book`` runs the library's tests without building the book.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from booktools import ANSI_ESCAPE, HTML_DIR, ROOT, WINDOW_SIZE

MARKERS = {
    "static": "checks of the book's sources: table of contents, notebooks, pages",
    "html": "checks of the built book's HTML files (builds the book once)",
    "browser": "the built book opened in headless Chromium (builds the book once)",
}


def pytest_configure(config):
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


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
        driver.set_script_timeout(30)
        # Fetch every page and asset afresh, so each page proves it loads on its own.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        yield driver
    finally:
        driver.quit()
