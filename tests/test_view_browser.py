"""The operator's page in a real browser (headless Chromium driven by Selenium), fed live by a
real publisher through ``python -m edge.view``: camera tiles whose images change, identity cards
with crops, a journey over two cameras with a floor track, a merge that updates the cards, the
schema banner, "disconnected since", and the delay from publish to visible (p95 < 1 s); and a
recording of a real ``edge.run`` demo (``tests/data/demo_run.jsonl.gz``) replayed in the page.

A missing Chromium fails this test: CI installs it (``.ci/run``). ``VIEW_SCREENSHOT=docs/view.png``
saves the screenshot that README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time

import numpy as np
import pytest

from edge.view.feed import Feed
from edge.view.process import HEADLESS_CHROMIUM_FLAGS, ViewProcess


def find_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    if chromium is None or driver is None:
        pytest.fail(
            "headless Chromium and chromedriver are needed (apt-get install chromium chromium-driver; .ci/run does it)",
            pytrace=False,
        )
    return chromium, driver


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail('selenium is missing: pip install -e ".[dev]"', pytrace=False)
    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="view-chromium-")
    for flag in (*HEADLESS_CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(predicate, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


TILE_PIXELS = """
const img = document.querySelector(`.tile[data-camera="${arguments[0]}"] img`);
if (!img || !img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
return Array.from(g.getImageData(0, 0, c.width, 40).data.filter((_, i) => i % 4 === 0));
"""


def test_operator_page_shows_cameras_people_journeys_merges_and_keeps_up(browser):
    endpoint = "tcp://127.0.0.1:56441"
    feed = Feed(endpoint, rate=10, preview_fps=4, merge_every=0).start()
    view = ViewProcess("--events", endpoint)
    try:
        browser.get(view.url)
        # camera tiles: one per camera, images that load and change, boxes drawn over them
        wait(lambda: len(browser.find_elements("css selector", ".tile")) == 3, what="three camera tiles")
        first = wait(lambda: browser.execute_script(TILE_PIXELS, "cam1"), what="a loaded preview")
        changed = wait(
            lambda: (p := browser.execute_script(TILE_PIXELS, "cam1")) is not None and p != first and p,
            what="a new preview",
        )
        assert np.abs(np.asarray(changed, int) - np.asarray(first, int)).max() > 50  # the moving marker moved
        wait(
            lambda: browser.find_elements("css selector", '.tile[data-camera="cam2"] svg rect'), what="boxes on a tile"
        )
        label = wait(  # read in the page in one go: the tile's boxes are drawn anew with each preview
            lambda: browser.execute_script(
                "const t = document.querySelector('.tile[data-camera=\"cam2\"] svg text'); return t && t.textContent"
            ),
            what="a box's label",
        )
        assert re.fullmatch(r"#\d+", label)  # the person's global id (the local track id is in the box's tooltip)

        # identity cards with their crops loaded
        wait(lambda: len(browser.find_elements("css selector", ".card")) >= 6, what="identity cards")
        crops = wait(
            lambda: [
                c
                for c in browser.find_elements("css selector", ".card img")
                if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", c)
            ],
            what="crops in cards",
        )
        assert len(crops) >= 3

        # a card opens the person's journey: two cameras, in order, with crops and a floor track
        # clicked inside the page: a card re-rendered between finding and clicking it would be stale
        gid = int(
            browser.execute_script(
                "const c = document.querySelector(\".card[data-live='1']\"); c.click(); return c.dataset.gid"
            )
        )
        steps = wait(lambda: browser.find_elements("css selector", "#journey-steps li"), what="the journey")
        assert len({s.get_attribute("data-camera") for s in steps}) >= 2
        assert browser.find_element("id", "journey-title").text == f"#{gid}"
        assert browser.find_elements("css selector", "#journey-steps img")
        assert browser.find_element("id", "floor").is_displayed()
        assert browser.find_elements("css selector", "#floor polyline")

        # a merge updates both cards
        live = browser.execute_script(
            "return [...document.querySelectorAll(\".card[data-live='1']\")].slice(0, 2).map(c => +c.dataset.gid)"
        )
        into, source = sorted(live)
        assert not browser.find_elements("css selector", f".card[data-gid='{source}'] .merged-into")
        feed.publisher.publish(
            f"identity/{into}",
            {
                "event": "merged",
                "global_id": into,
                "from": source,
                "into": into,
                "cameras": ["cam1", "cam2", "cam3"],
                "last_seen": time.time(),
            },
        )
        note = wait(
            lambda: browser.find_elements("css selector", f".card[data-gid='{source}'] .merged-into"),
            what="the merged card",
        )
        assert note[0].text == f"merged into #{into}"
        wait(
            lambda: (
                f"#{source} merged into this" in browser.find_element("css selector", f".card[data-gid='{into}']").text
            ),
            what="the surviving card noting the merge",
        )

        # a camera that stops: its tile says since when
        feed.paused_cameras.add("cam3")
        badge = wait(
            lambda: browser.find_elements("css selector", '.tile[data-camera="cam3"] .down-badge'),
            what="the down badge",
        )
        assert re.fullmatch(r"down since \d\d:\d\d:\d\d", badge[0].text)
        assert not browser.find_elements("css selector", '.tile[data-camera="cam1"] .down-badge')

        # runtime stats on the page
        wait(lambda: len(browser.find_elements("css selector", "#latency tbody tr")) >= 6, what="latency table")

        # delay from publish to visible in the page, measured in the page
        time.sleep(3)
        latencies = browser.execute_script("return window.viewDebug.latencies")
        assert len(latencies) >= 20
        p95 = float(np.percentile(latencies, 95))
        print(
            f"publish -> visible: p50 {np.percentile(latencies, 50) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms over {len(latencies)} cards"
        )
        assert p95 < 1.0

        if os.environ.get("VIEW_SCREENSHOT"):
            browser.save_screenshot(os.environ["VIEW_SCREENSHOT"])

        # another schema version: a banner; the publisher going away: "disconnected since"
        feed.publisher.publish("identity/1", {"event": "new", "global_id": 1, "version": 99})
        banner = wait(
            lambda: (b := browser.find_element("id", "banner")).is_displayed() and b, what="the schema banner"
        )
        assert "version 99" in banner.text
        feed.close()
        wait(lambda: "disconnected since" in browser.find_element("id", "connection").text, what="disconnected since")
    finally:
        feed.close()
        view.close()


def test_a_recorded_run_replays_in_the_page(browser, tmp_path):
    import zmq

    from edge.wire.recording import RecordingWriter

    endpoint = "tcp://127.0.0.1:56442"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    record = tmp_path / "run.jsonl.gz"
    writer = RecordingWriter(record)
    feed = Feed(endpoint, rate=10, preview_fps=4, merge_every=3).start()
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            if sub.poll(100):
                writer.write(sub.recv_multipart(), time.time())
    finally:
        feed.close()
        writer.close()
        sub.close(0)
    view = ViewProcess("--replay", str(record), "--speed", "1")
    try:
        browser.get(view.url)
        wait(lambda: "replay" in browser.find_element("id", "connection").text, what="the replay badge")
        first = wait(lambda: browser.execute_script(TILE_PIXELS, "cam2"), what="a replayed preview")
        wait(
            lambda: (p := browser.execute_script(TILE_PIXELS, "cam2")) is not None and p != first,
            what="the next replayed preview",
        )
        wait(lambda: browser.find_elements("css selector", ".card .merged-into"), what="a replayed merge")
        wait(lambda: browser.find_elements("css selector", ".card:not(.merged) img"), what="a card with a crop")
        browser.execute_script("document.querySelector('.card:not(.merged) img').closest('.card').click()")
        steps = wait(lambda: browser.find_elements("css selector", "#journey-steps li"), what="the journey")
        assert len({s.get_attribute("data-camera") for s in steps}) >= 2
        wait(
            lambda: "replay finished" in browser.find_element("id", "connection").text,
            timeout=30,
            what="the end of the replay",
        )
    finally:
        view.close()


def test_a_real_demo_run_replays_in_the_page(browser):
    """``tests/data/demo_run.jsonl.gz`` is what ``edge.run`` published on the demo (how it was
    made: ``tests/data/README.md``): the page shows its camera previews changing, cards with the
    runtime's crops, a journey over two cameras and its merge."""
    from conftest import REPO

    view = ViewProcess("--replay", str(REPO / "tests" / "data" / "demo_run.jsonl.gz"), "--speed", "3")
    try:
        browser.get(view.url)
        first = wait(lambda: browser.execute_script(TILE_PIXELS, "cam1"), what="a preview of cam1")
        wait(
            lambda: (p := browser.execute_script(TILE_PIXELS, "cam1")) is not None and p != first,
            what="cam1's next preview",
        )
        assert {
            t.get_attribute("data-camera") for t in browser.find_elements("css selector", ".tile[data-camera]")
        } >= {"cam1", "cam2", "cam3"}
        wait(lambda: browser.find_elements("css selector", ".card .merged-into"), timeout=30, what="the run's merge")
        gids = wait(
            lambda: browser.execute_script(
                "return [...document.querySelectorAll('.card:not(.merged)')]"
                ".filter(c => c.querySelector('img')).map(c => c.dataset.gid)"
            ),
            what="cards with crops",
        )
        journeys = []
        for gid in gids[:8]:  # the cards re-render as events arrive: click by id, read the journey in one go
            browser.execute_script(
                'const c = document.querySelector(`.card[data-gid="${arguments[0]}"]`); if (c) c.click();', gid
            )
            cams = wait(
                lambda: browser.execute_script(
                    "const s = [...document.querySelectorAll('#journey-steps li')]; "
                    "return s.length ? s.map(li => li.dataset.camera) : null"
                ),
                what="a journey",
            )
            journeys.append(set(cams))
            if len(journeys[-1]) >= 2:
                break
        assert any(len(cams) >= 2 for cams in journeys), journeys
    finally:
        view.close()


def test_a_missing_browser_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    with pytest.raises(pytest.fail.Exception, match="headless Chromium and chromedriver are needed"):
        find_browser()
