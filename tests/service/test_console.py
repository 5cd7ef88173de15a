"""Issue 27: the operator's console in a real browser (the system Chromium, driven by
Playwright), against a real ``gaitid serve`` with the shipped model.

Skipped with the reason when no Chromium or no Playwright is found, unless
``GAITID_REQUIRE_BROWSER=1`` (CI sets it in ``.ci/run``): then a missing browser fails.
With ``GAITID_SCREENSHOT_DIR`` set (``make screenshots``) the tests save the pictures the
README shows.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from gaitid.service.auth import Scope, create_key
from gaitid.service.config import SHIPPED_MODEL
from gaitid.service.console import CONTENT_SECURITY_POLICY
from gaitid.service.db.engine import Database
from tests.utils import clips
from tests.utils.live_server import cli_env, live_server
from tests.utils.uploads import encode_npz, encode_zip

# read at import: the service tests' autouse fixture clears GAITID_* before each test
REQUIRE_BROWSER = os.environ.get("GAITID_REQUIRE_BROWSER") == "1"
SCREENSHOT_DIR = os.environ.get("GAITID_SCREENSHOT_DIR")
CHROMIUM_NAMES = ("chromium", "chromium-browser")
#: Longest wait for the page, in milliseconds (an identify with the shipped model: ~0.2 s).
WAIT_MS = 20_000


def _chromium() -> str:
    """The system Chromium, or skip (fail when the browser tests are required)."""
    found = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    why = None
    if found is None:
        why = "no system Chromium (apt-get install chromium chromium-driver)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is not installed (pip install -e '.[dev]')"
    if why is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"GAITID_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    assert found is not None
    return found


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    db_url: str

    def admin(self) -> dict[str, str]:
        return {"X-API-Key": self.keys["admin"]}

    def key(self, name: str, scopes: set[Scope], galleries: set[str] | None = None) -> str:
        db = Database(self.db_url)
        try:
            with db.session(write=True) as session:
                return create_key(session, frozenset(scopes), name, frozenset(galleries or ())).key
        finally:
            db.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``gaitid serve`` with the shipped model (its DET picture beside it), and a key per scope."""
    _chromium()  # no server when there is no browser to point at it
    root = tmp_path_factory.mktemp("console")
    env = cli_env(root / "data", SHIPPED_MODEL, GAITID_MIN_FRAMES="8", GAITID_INTRA_OP_THREADS="1")
    with live_server(env, root / "serve.log", init=True) as server:
        site = Site(server.url, {}, f"sqlite:///{root / 'data' / 'gaitid.db'}")
        site.keys = {s.value: site.key(f"console-{s.value}", {s}) for s in Scope}
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """One browser tab on the console, with every request it made and every console line."""

    page: Any
    site: Site
    requests: list[str]
    messages: list[str]

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.site.url}/console")
        self.page.fill("#api-key", key)
        self.page.click("#use-key")
        self.page.wait_for_selector("#forget-key")

    def open(self, label: str) -> None:
        self.page.click(f"nav a:text-is('{label}')")
        self.page.wait_for_selector(f"body[data-ready^='#/{label.lower()}']")

    def upload(self, selector: str, name: str, data: bytes) -> None:
        self.page.set_input_files(
            selector, files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
        )

    def shot(self, name: str) -> None:
        """Save the page for the README (with ``GAITID_SCREENSHOT_DIR``), in 256 colours: the
        pictures stay small in the repository and the text sharp."""
        if not SCREENSHOT_DIR:
            return
        from PIL import Image

        path = Path(SCREENSHOT_DIR) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.open(io.BytesIO(self.page.screenshot(full_page=True))).convert("RGB")
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    tab = Tab(page, site, [], [])
    page.on("request", lambda request: tab.requests.append(request.url))
    page.on("console", lambda message: tab.messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: tab.messages.append(f"pageerror: {error}"))
    yield tab
    context.close()


def _walk(subject: int, condition: str, seed: int) -> np.ndarray:
    """A synthetic walker's camera masks (``training.synth``): the shipped model ranks another
    walk of the same subject first (scores ~0.8 against ~0.5 for the other subject)."""
    from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity

    config = SynthConfig(subjects=2, min_frames=30, max_frames=40)
    return render_walk(
        subject_identity(0, subject), condition, 90, np.random.default_rng(seed), config
    )


def _enrol(tab: Tab, identity: str, gallery: str, upload: tuple[str, bytes]) -> None:
    """Through the page: choose the walk, look at the preview strip, then enrol it."""
    page = tab.page
    tab.open("Enrol")
    tab.upload("#f-file", *upload)
    page.fill("#f-identity", identity)
    page.fill("#f-gallery", gallery)
    page.fill("#f-view", "090")
    page.click("#preview-button")
    page.wait_for_selector("#strip")
    assert int(page.inner_text("#frames-used")) >= 8
    tab.shot("enrol-preview")
    page.click("#enrol-button")
    page.wait_for_selector(f"#enrolled:has-text('{identity}')")


def test_enrol_identify_verify_erase_through_the_page(tab: Tab) -> None:
    page, gallery = tab.page, "lobby"
    tab.sign_in(tab.site.keys["admin"])
    _enrol(tab, "alice", gallery, ("alice-1.npz", encode_npz(_walk(0, "nm-01", 1))))
    _enrol(tab, "bob", gallery, ("bob-1.npz", encode_npz(_walk(1, "nm-01", 2))))

    tab.open("Identify")
    page.fill("#f-gallery", gallery)
    tab.upload("#f-file", "probe.zip", encode_zip(_walk(0, "nm-02", 3)))  # a third walk
    page.click("#identify-button")
    page.wait_for_selector("#matches li")
    assert page.locator("#matches li .name").all_inner_texts() == ["alice", "bob"]
    scores = [float(s) for s in page.locator("#matches li .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.7
    assert page.inner_text("#decision") == "match"
    assert "model" in page.inner_text("#result")  # the threshold's source
    assert page.inner_text("#frames-used") != "0"
    tab.shot("identify")

    tab.open("Verify")
    page.fill("#f-identity", "alice")
    page.fill("#f-gallery", gallery)
    tab.upload("#f-file", "probe.zip", encode_zip(_walk(0, "nm-02", 3)))
    page.click("#verify-button")
    page.wait_for_selector("#decision")
    assert float(page.inner_text("#matches .score")) == scores[0]
    assert page.inner_text("#decision") == "match"

    tab.open("Galleries")
    page.click(f"#galleries a:text-is('{gallery}')")
    page.wait_for_selector("#identities tr[data-identity='alice']")
    page.fill("#search", "ALI")
    page.wait_for_selector("#identities tbody[data-query='ALI']")
    assert page.locator("#identities tbody tr").count() == 1
    page.click("#identities a:text-is('alice')")
    page.wait_for_selector("#erase-identity")
    page.click("#erase-identity")
    assert "alice" in page.inner_text("#confirm-text")
    assert "its only template" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector("#identities tr[data-identity='bob']")
    assert page.locator("#identities tr[data-identity='alice']").count() == 0
    found = httpx.get(
        f"{tab.site.url}/identities", params={"gallery": gallery}, headers=tab.site.admin()
    ).json()
    assert [item["name"] for item in found["items"]] == ["bob"]
    assert not [m for m in tab.messages if "error" in m.lower()], tab.messages


def test_a_bound_key_sees_only_its_galleries(tab: Tab) -> None:
    site, page = tab.site, tab.page
    for gallery, person in (("north", "nora"), ("south", "sam")):
        r = httpx.post(
            f"{site.url}/enroll",
            headers=site.admin(),
            files={"file": ("w.npz", encode_npz(_walk(1, "nm-03", 10 + len(person))))},
            data={"identity": person, "gallery": gallery},
            timeout=60,
        )
        assert r.status_code == 201, r.text
    key = site.key("north-desk", {Scope.ENROLL, Scope.IDENTIFY}, {"north"})
    tab.sign_in(key)
    page.wait_for_selector("#galleries")
    rows = page.locator("#galleries tbody tr")
    assert [rows.nth(i).get_attribute("data-gallery") for i in range(rows.count())] == ["north"]
    nav = page.locator("nav a").all_inner_texts()
    assert nav == ["Galleries", "Enrol", "Identify", "Verify", "Model", "Health"]
    assert page.locator("#create-gallery-card, .erase-gallery").count() == 0
    page.click("#galleries a:text-is('north')")
    page.click("#identities a:text-is('nora')")
    page.wait_for_selector("#templates")
    assert page.locator("#erase-identity, .erase-template").count() == 0
    tab.open("Enrol")
    assert page.locator("#f-gallery option").all_inner_texts() == ["north"]
    # an identify-only key: no galleries, no enrolment
    page.click("#forget-key")
    page.wait_for_selector("#api-key")
    assert page.evaluate("sessionStorage.length") == 0
    tab.sign_in(site.key("gate", {Scope.IDENTIFY}, {"south"}))
    page.wait_for_selector("#identify-form")
    assert page.locator("nav a").all_inner_texts() == ["Identify", "Verify", "Model", "Health"]
    # the API's own error message reaches the operator
    tab.upload("#f-file", "notes.txt", b"not a walk")
    page.click("#identify-button")
    notice = page.wait_for_selector("#notice:has-text('422 invalid_upload')")
    assert notice is not None and "unrecognised upload format" in notice.inner_text()


def test_no_request_leaves_the_origin_and_the_policy_holds(tab: Tab) -> None:
    site, page = tab.site, tab.page
    first = page.goto(f"{site.url}/console")
    assert first is not None
    assert first.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert first.headers["x-content-type-options"] == "nosniff"
    tab.sign_in(site.keys["admin"])
    clip = clips.encode_mp4(clips.crossing_clip(seed=1).frames)  # footage: segmented first
    _enrol(tab, "carol", "east", ("door.mp4", clip))
    assert page.inner_text("#input-report").startswith("video")
    tab.open("Identify")
    page.fill("#f-gallery", "east")
    tab.upload("#f-file", "probe.npz", encode_npz(_walk(0, "nm-05", 5)))
    page.click("#preview-button")
    page.wait_for_selector("#strip")
    page.click("#identify-button")
    page.wait_for_selector("#decision")
    tab.open("Model")
    page.wait_for_selector("#det-picture")
    page.wait_for_function("document.querySelector('#det-picture').naturalWidth > 0")
    tab.shot("model")
    tab.open("Health")
    page.wait_for_selector("#stats")
    tab.open("Galleries")
    tab.shot("galleries")
    page.click("tr[data-gallery='east'] .erase-gallery")
    assert "east" in page.inner_text("#confirm-text")
    assert "1 identity and 1 template" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector("#notice:has-text('Gallery east erased')")
    assert page.locator("tr[data-gallery='east']").count() == 0
    # the key never leaves sessionStorage: not in a cookie, the URL or localStorage
    assert page.evaluate("sessionStorage.getItem('gaitid.apiKey')") == site.keys["admin"]
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert site.keys["admin"] not in page.url
    # an inline script cannot run (no 'unsafe-inline'), and says so on the console
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.injected = 1'; document.body.append(s); }"
    )
    assert page.evaluate("window.injected") is None
    blocked = [m for m in tab.messages if "Content Security Policy" in m]
    assert len(blocked) == 1 and "inline script" in blocked[0], tab.messages
    origin = urlsplit(site.url)
    outside = [
        url
        for url in tab.requests
        if not url.startswith(("data:", "blob:"))
        and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
    ]
    assert len(tab.requests) > 15 and not outside, outside


def test_a_clip_of_several_people_through_the_page(tab: Tab) -> None:
    """Issue 26's clips: the preview lists the people, the operator picks whose walk to enrol,
    and identify with every person ranks each on their own."""
    page, gallery = tab.page, "crossing"
    red, blue = (200, 70, 60), (60, 80, 200)
    walkers = [
        clips.Walker(clips.walker_masks(70, seed=1), 0.1, 0.9, person_height=0.5, ground=0.92,
                     colour=red),
        clips.Walker(clips.walker_masks(60, seed=2), 0.9, 0.2, start=5, person_height=0.4,
                     ground=0.8, colour=blue),
    ]  # fmt: skip
    clip = clips.encode_mp4(clips.people_clip(walkers, 75, height=240, width=320).frames)
    tab.sign_in(tab.site.keys["admin"])
    tab.open("Enrol")
    tab.upload("#f-file", "two.mp4", clip)
    page.fill("#f-identity", "dana")
    page.fill("#f-gallery", gallery)
    page.click("#preview-button")
    page.wait_for_selector("#tracks")
    assert page.inner_text("#people-seen") == "2"
    page.click(".pick-track[data-track='2']")
    page.wait_for_selector("#person:text-is('2')")
    assert page.input_value("#f-track") == "2"
    page.click("#enrol-button")
    page.wait_for_selector("#enrolled:has-text('dana')")

    tab.open("Identify")
    tab.upload("#f-file", "two.mp4", clip)
    page.fill("#f-gallery", gallery)
    page.select_option("#f-people", "all")
    page.click("#identify-button")
    page.wait_for_selector("#matches-2 li")
    assert page.locator("#matches-2 li .name").first.inner_text() == "dana"
    assert float(page.locator("#matches-2 li .score").first.inner_text()) > 0.99
    assert page.inner_text("#decision-2") == "match"
    assert page.locator("#person-1").count() == 1
