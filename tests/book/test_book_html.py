"""The built book as files: what each page needs to render, and its launch buttons."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from booktools import CONTENT_PAGE_IDS, CONTENT_PAGES, PAGE_IDS, PAGES, ROOT

from scripts.book import repository_url, resolve

pytestmark = pytest.mark.html


class ResourceLinks(HTMLParser):
    """Collect the URLs that make a browser fetch something when it renders a page, and
    the links (<a href>) it shows."""

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
        self.links: list[str] = []

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
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"} or url.startswith("//")


def parse(path: Path) -> ResourceLinks:
    assert path.is_file(), f"the build did not write {path.relative_to(ROOT)}"
    parser = ResourceLinks()
    parser.feed(path.read_text())
    return parser


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_references_only_local_resources(built_book, page):
    path = built_book / page.html
    parser = parse(path)

    remote = [f"<{tag}> {url}" for tag, url in parser.urls if is_remote(url)]
    assert not remote, f"{page.html} needs the network to render: {remote}"

    for src in parser.scripts:
        if "mathjax" in src.lower():
            local = (path.parent / urlsplit(src).path).resolve()
            assert local.is_relative_to(built_book / "_static" / "mathjax"), (
                f"{page.html} loads MathJax from {src}, not from _static/mathjax"
            )
            assert local.is_file(), f"{page.html} loads MathJax from {src}, which is missing"


@pytest.mark.parametrize("page", CONTENT_PAGES, ids=CONTENT_PAGE_IDS)
def test_page_shows_no_local_path(built_book, page):
    text = (built_book / page.html).read_text()
    for local in (str(ROOT), "site-packages", "/.venv/"):
        assert local not in text, f"{page.html} shows the local path {local!r}"


NOTEBOOK_PAGES = [p for p in CONTENT_PAGES if (s := resolve(p.source)) and s.suffix == ".ipynb"]


@pytest.mark.parametrize("page", NOTEBOOK_PAGES, ids=[p.name for p in NOTEBOOK_PAGES])
def test_notebook_page_launches_on_colab_and_binder(built_book, page):
    """The launch buttons open this notebook from the repository of _config.yml."""
    owner_and_name = urlsplit(repository_url()).path.strip("/")
    notebook = f"{page.source}.ipynb"
    links = parse(built_book / page.html).links
    colab = f"https://colab.research.google.com/github/{owner_and_name}/blob/main/{notebook}"
    assert colab in links, f"{page.html} has no Colab button for {colab}"
    binder = [
        link
        for link in links
        if link.startswith(f"https://mybinder.org/v2/gh/{owner_and_name}/main")
        and re.search(re.escape(notebook) + "$", link)
    ]
    assert binder, f"{page.html} has no Binder button for {notebook}"
    repository = [link for link in links if link.rstrip("/") == repository_url()]
    assert repository, f"{page.html} has no repository button"
