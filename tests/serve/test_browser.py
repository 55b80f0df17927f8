"""`vifi serve` in a real browser: headless Chromium from Debian's packages driven by Playwright. Type a class's
text on the demo index, that class's thumbnails come first; click one, the video plays from the hit's start
(fetched with Range requests). With VIFI_UPDATE_SCREENSHOT=1 it also rewrites the screenshot README shows (docs/images/serve.png)."""

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.serve.conftest import vifi_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# README's picture: rewritten only on request (VIFI_UPDATE_SCREENSHOT=1), so a test run leaves the checkout clean.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "serve.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium: `apt-get install -y chromium` "
                                                            "(.ci/run does it) for the browser test"),
]


class Server:
    """uvicorn with the serve app on a free local port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def demo_index(trained_demo, demo_data, tmp_path_factory):
    index = tmp_path_factory.mktemp("browse") / "demo.index"
    # 1-second windows of the 3-second demo videos: hits are moments, most starting inside their video
    vifi_cli("index", demo_data["root"], "--checkpoint", trained_demo, "--out", index, "--workers", "0",
             "--window", "1")
    return index


def test_search_page_in_chromium(demo_index, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    from vifi.data.demo import class_names
    from vifi.search.query import Searcher
    from vifi.serve.app import create_app

    query = class_names()[2]
    folder = "/" + query.removeprefix("a ").replace(" ", "_") + "/"  # the demo's folder of that class
    searcher = Searcher(demo_index, device="cpu")
    expected = searcher.search([query], top_k=10)
    with Server(create_app(searcher)) as url, playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        video_statuses = []
        page.on("response", lambda r: video_statuses.append(r.status) if "/api/videos/" in r.url else None)
        page.goto(url + "/")
        page.fill("#q", query)
        page.press("#q", "Enter")
        page.wait_for_selector("figure.hit")
        hits = page.eval_on_selector_all("figure.hit", "fs => fs.map(f => [f.dataset.path, +f.dataset.start])")
        assert [p for p, _ in hits] == list(expected.path)  # the page shows the server's ranking
        first = [p for p, _ in hits[:3]]
        assert all(folder in p for p in first), first  # the right class's thumbnails first
        page.wait_for_function("[...document.querySelectorAll('figure.hit img')].slice(0, 6)"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        target = next(i for i, (_, start) in enumerate(hits) if start > 0)  # a moment inside its video
        page.evaluate("p => p.addEventListener('seeked', () => { window.seekedAt = p.currentTime; }, {once: true})",
                      page.query_selector("#player"))
        page.click(f"figure.hit >> nth={target}")
        page.wait_for_function("window.seekedAt !== undefined")
        # the page put the video at the hit's start, then plays it from there
        assert page.evaluate("window.seekedAt") == pytest.approx(hits[target][1], abs=0.05)
        page.wait_for_function("document.getElementById('player').readyState >= 2")
        assert page.evaluate("document.getElementById('player').src").endswith(
            f"/api/videos/{searcher_id(searcher, hits[target][0])}")
        assert 206 in video_statuses  # Chromium fetched the video with Range requests
        page.wait_for_timeout(300)
        shot = page.screenshot()
        browser.close()
    from PIL import Image

    # a 256-colour palette keeps the flat page and shapes as they are at a third of the size (the repository keeps it)
    screenshot = DOCS_SCREENSHOT if os.environ.get("VIFI_UPDATE_SCREENSHOT") == "1" else tmp_path / "serve.png"
    Image.open(io.BytesIO(shot)).convert("RGB").quantize(256).save(screenshot, optimize=True)
    assert screenshot.stat().st_size < 150_000


def searcher_id(searcher, path: str) -> int:
    return sorted(searcher.paths()).index(path)
