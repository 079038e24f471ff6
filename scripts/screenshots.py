"""Screenshots of the built book, for a human to read it as a reader would.

python -m scripts.screenshots [PAGE ...]   # e.g. book/01_gradient_descent

Serves _build/html on 127.0.0.1, opens each page (all pages of _toc.yml by default) in
headless Chromium at laptop width (1280 px) and phone width (390 px), and saves each
whole page as numbered tiles of one screen height under _build/screenshots/.
Needs `make book` first, and Chromium (`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import sys
import tempfile
import threading

from PIL import Image

from scripts.book import ROOT, toc_entries

HTML_DIR = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "screenshots"
SIZES = {"laptop": (1280, 900, 1), "phone": (390, 844, 2)}  # width, height, pixel ratio


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # no log of each request
        pass


def serve():
    handler = functools.partial(QuietHandler, directory=HTML_DIR)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def chromium(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--proxy-server=http://127.0.0.1:9",  # no network: the book must render offline
    ]:
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def shoot(driver, url: str, name: str, size: str) -> list[str]:
    width, height, ratio = SIZES[size]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": ratio, "mobile": size == "phone"},
    )
    driver.get(url)
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    driver.execute_async_script(
        "const done = arguments[0];"
        "const ready = () => !window.MathJax || !MathJax.startup ? Promise.resolve()"
        "  : MathJax.startup.promise;"
        "ready().then(() => setTimeout(done, 500));"
    )
    full = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1},
        },
    )
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"])))
    tile = height * ratio
    saved = []
    for k, top in enumerate(range(0, image.height, tile), start=1):
        path = OUT / f"{name}-{size}-{k:02d}.png"
        image.crop((0, top, image.width, min(top + tile, image.height))).save(path)
        saved.append(str(path.relative_to(ROOT)))
    return saved


def main(argv: list[str]) -> int:
    pages = argv[1:] or toc_entries()
    OUT.mkdir(parents=True, exist_ok=True)
    server, site = serve()
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(profile)
        driver.set_script_timeout(30)
        try:
            for page in pages:
                name = page.replace("/", "_")
                for size in SIZES:
                    saved = shoot(driver, f"{site}{page}.html", name, size)
                    print(f"{page} ({size}): {len(saved)} tiles, {saved[0]} ...", flush=True)
        finally:
            driver.quit()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
