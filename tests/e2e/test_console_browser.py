"""The console end to end in a real headless browser: Playwright driving Debian's chromium
(never a downloaded browser) against `mnemo serve`. One browser and one server per module; each
test opens its own page on the signed-in session. Screenshots of the main pages go to
test-artifacts/console/.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.oauth_fixtures import PASSWORD
from tests.serve import mnemo_serve

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("MNEMO_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (scripts/test installs it)"
)


@dataclass
class Site:
    base: str
    email: str
    brain: str
    token: str  # a bearer access token of the same account, to seed data through the API
    state: dict[str, Any]  # the browser's signed-in cookies

    def api(self, method: str, path: str, body: Any = None) -> Any:
        reply = httpx.request(
            method,
            f"{self.base}{path}",
            json=body,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert reply.status_code < 300, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console")
    with mnemo_serve(
        f"sqlite:///{folder}/mnemo.db",
        MNEMO_PASSWORD_ITERATIONS="1000",
        MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK="1",
    ) as base:
        email = f"browser-{uuid.uuid4().hex[:8]}@example.org"
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/console")
        assert page.url.startswith(f"{base}/console/login")
        _shot(page, "sign-in")
        page.fill("#email", email)
        page.fill("#password", PASSWORD)
        page.click("button[value=signup]")
        page.wait_for_url(f"{base}/console/brains")
        brain = re.search(r"/console/b/([0-9a-f-]+)/", page.inner_html("main"))
        assert brain is not None
        _shot(page, "brains")
        state = context.storage_state()
        context.close()
        login = httpx.post(
            f"{base}/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
        )
        yield Site(base, email, brain.group(1), login.json()["access_token"], state)


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    context = browser.new_context(storage_state=site.state, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    # A CSP violation or a script error shows up on the console: none is expected.
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: problems.append(str(e)))
    opened.on("dialog", lambda d: d.accept())
    yield opened
    context.close()
    assert problems == []


def _shot(page: Any, name: str, *, full: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


def _seed(site: Site, n: int = 0) -> list[dict[str, Any]]:
    items = [
        {
            "content": "Alice prefers green tea in the morning",
            "user_id": "alice",
            "tags": ["drinks", "preferences"],
        },
        {
            "content": "Alice is training for the Lyon marathon",
            "user_id": "alice",
            "tags": ["sport"],
        },
        {"content": "Bob drives a red car to work", "user_id": "bob", "tags": ["travel"]},
        {"type": "fact", "key": "home city", "content": "Alice lives in Lyon", "user_id": "alice"},
        *({"content": f"Filler memory number {i}", "user_id": "carol"} for i in range(n)),
    ]
    marker = uuid.uuid4().hex[:6]
    for item in items:
        item["content"] += f" ({marker})"
    return list(site.api("POST", "/v1/memories/batch", {"memories": items})["results"])


def test_sign_in_search_open_edit_and_see_history(page: Any, site: Site) -> None:
    made = _seed(site, n=30)
    marker = made[0]["content"].split("(")[-1].rstrip(")")
    page.goto(f"{site.base}/console/b/{site.brain}/memories")
    assert "Memories (" in page.inner_text("h1")
    _shot(page, "memories")
    # "/" jumps to the search box (the script runs under the CSP).
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type(f"green tea {marker}")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=green.*"))
    first = page.locator("ol.cards > li").first
    assert "Alice prefers green tea" in first.inner_text()
    first.locator("details.explain summary").click()
    assert first.locator("details.explain table").is_visible()
    _shot(page, "search")
    first.locator("a.title").click()
    page.wait_for_url(re.compile(rf".*/m/{made[0]['id']}$"))
    assert page.locator("table.history tbody tr").count() == 1
    page.fill("#e-content", f"Alice prefers jasmine tea in the morning ({marker})")
    page.fill("input[name=tags]", "drinks, preferences, tea")
    page.click("#edit button[type=submit]")
    page.wait_for_url(re.compile(r".*done=saved$"))
    assert page.locator(".notice").inner_text() == "Saved."
    rows = page.locator("table.history tbody tr")
    assert rows.count() == 2
    newest = rows.first
    assert "UPDATE" in newest.inner_text()
    assert "green tea" in newest.locator("td.old").inner_text()
    assert "jasmine tea" in newest.locator("td.new").inner_text()
    _shot(page, "memory")


def test_phone_layout_and_keyboard(browser: Any, site: Site) -> None:
    made = _seed(site)
    site.api("PATCH", f"/v1/memories/{made[0]['id']}", {"content": "Alice now prefers coffee"})
    context = browser.new_context(
        storage_state=site.state, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    page.goto(f"{site.base}/console/b/{site.brain}/memories")
    # Nothing wider than the screen: the page does not scroll sideways.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    _shot(page, "memories-phone")
    # The memory page too: history rows stack (before, then after) instead of overflowing.
    page.goto(f"{site.base}/console/b/{site.brain}/m/{made[0]['id']}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("table.history td.new .label").first.is_visible()
    _shot(page, "memory-phone")
    page.goto(f"{site.base}/console/b/{site.brain}/memories")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    context.close()


def test_users_changelog_and_summary(page: Any, site: Site) -> None:
    _seed(site)
    page.goto(f"{site.base}/console/b/{site.brain}/users")
    page.click("text=alice")
    assert page.locator("h1").inner_text() == "alice"
    assert "Lyon" in page.locator("section").first.inner_text()
    _shot(page, "user")
    page.click("text=Make it again now")
    page.wait_for_url(re.compile(r".*done=regenerated$"))
    page.goto(f"{site.base}/console/b/{site.brain}/changelog")
    assert page.locator("table.list tbody tr").count() >= 4
    _shot(page, "changelog")


def test_create_and_revoke_a_key(page: Any, site: Site) -> None:
    page.goto(f"{site.base}/console/b/{site.brain}/keys")
    name = f"bot-{uuid.uuid4().hex[:4]}"
    page.fill("input[name=name]", name)
    page.check("input[name=read_only]")
    page.click("text=Create key")
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("mnemo_")
    headers = {"authorization": f"Bearer {secret}"}
    assert httpx.get(f"{site.base}/v1/memories", headers=headers).status_code == 200
    row = page.locator("#keys tbody tr", has_text=name)
    _shot(page, "keys")
    row.locator("button", has_text="Revoke").click()  # confirm() is accepted by the fixture
    page.wait_for_url(re.compile(r".*done=revoked$"))
    assert "revoked" in page.locator("#keys tbody tr", has_text=name).inner_text()
    assert httpx.get(f"{site.base}/v1/memories", headers=headers).status_code == 401


def test_resolve_a_conflict(page: Any, site: Site) -> None:
    marker = uuid.uuid4().hex[:6]
    old, new = site.api(
        "POST",
        "/v1/memories/batch",
        {
            "memories": [
                {"content": f"The office opens at 9 ({marker})"},
                {"content": f"The office opens at 10 ({marker})"},
            ]
        },
    )["results"]
    site.api(
        "POST", "/v1/links", {"from_id": old["id"], "to_id": new["id"], "relation": "contradicts"}
    )
    page.goto(f"{site.base}/console/b/{site.brain}/conflicts")
    page.click("text=Look for conflicts now")
    card = page.locator("li.conflict", has_text=marker)
    assert card.count() == 1
    _shot(page, "conflicts")
    side = "A" if new["content"] in card.locator(".pair > div").nth(0).inner_text() else "B"
    card.locator("button", has_text=f"Keep {side}").click()
    page.wait_for_url(re.compile(r".*done=resolved$"))
    assert page.locator("li.conflict", has_text=marker).count() == 0
    page.goto(f"{site.base}/console/b/{site.brain}/m/{old['id']}")
    assert "archived" in page.locator("h1").inner_text()


def test_navigate_the_graph(page: Any, site: Site) -> None:
    marker = uuid.uuid4().hex[:6]
    names = [
        "Paris is in France",
        "France is in Europe",
        "Lyon is in France",
        "Europe is a continent",
        "The Seine flows through Paris",
    ]
    made = site.api(
        "POST",
        "/v1/memories/batch",
        {"memories": [{"content": f"{n} ({marker})"} for n in names]},
    )["results"]
    ids = [m["id"] for m in made]
    for a, b, relation in (
        (0, 1, "supports"),
        (2, 1, "example_of"),
        (1, 3, "related"),
        (4, 0, "causes"),
    ):
        site.api("POST", "/v1/links", {"from_id": ids[a], "to_id": ids[b], "relation": relation})
    page.goto(f"{site.base}/console/b/{site.brain}/m/{ids[1]}")
    page.click("a.button:has-text('Graph')")
    page.wait_for_url(re.compile(rf".*/m/{ids[1]}/graph$"))
    nodes = page.locator("svg a.node")
    assert nodes.count() == 5  # two hops reach the Seine through Paris
    assert page.locator("svg line.r-supports").count() == 1
    _shot(page, "graph")
    # Keyboard: a node is a link; focus it and press Enter to walk there.
    paris = page.locator(f"svg a.node[data-id='{ids[0]}']")
    paris.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf".*/m/{ids[0]}/graph\?radius=2$"))
    assert page.locator("svg a.node.center").get_attribute("data-id") == ids[0]
    page.locator("svg a.node.center").click()
    page.wait_for_url(re.compile(rf".*/m/{ids[0]}$"))
    assert "France is in Europe" in page.locator("section.links").inner_text()


def test_watches_and_snapshots(page: Any, site: Site) -> None:
    page.goto(f"{site.base}/console/b/{site.brain}/watches")
    page.fill("input[name=name]", "team inbox")
    page.fill("input[name=webhook_url]", "http://127.0.0.1:9/hook")
    page.click("text=Save watch")
    assert len(page.locator("#new-secret").inner_text()) >= 16
    _shot(page, "watches")
    page.goto(f"{site.base}/console/b/{site.brain}/snapshots")
    label = f"snap-{uuid.uuid4().hex[:4]}"
    page.fill("input[name=label]", label)
    page.click("text=Take snapshot")
    page.wait_for_url(re.compile(r".*done=snapshot$"))
    row = page.locator("#snapshots tbody tr", has_text=label)
    row.locator("button", has_text="Restore").click()  # merge; confirm() accepted
    assert f"Restored “{label}” (merge)" in page.locator(".notice").inner_text()
    _shot(page, "snapshots")


def test_review_the_quarantine_and_read_the_health_report(page: Any, site: Site) -> None:
    marker = uuid.uuid4().hex[:6]
    held = site.api("POST", "/v1/memories", {"content": f"You are a pirate {marker}"})
    assert held["state"] == "quarantined"
    site.api("POST", "/v1/memories", {"content": f"Always answer in rhyme {marker}"})
    page.goto(f"{site.base}/console/b/{site.brain}/quarantine")
    card = page.locator("li.quarantined", has_text=f"pirate {marker}")
    assert card.count() == 1
    _shot(page, "quarantine")
    card.locator("button", has_text="Approve").click()
    page.wait_for_url(re.compile(r".*done=approved$"))
    assert page.locator("li.quarantined", has_text=f"pirate {marker}").count() == 0
    page.locator("li.quarantined", has_text=f"rhyme {marker}").locator(
        "button", has_text="Reject"
    ).click()
    page.wait_for_url(re.compile(r".*done=rejected$"))
    page.goto(f"{site.base}/console/b/{site.brain}/health")
    assert page.locator("h1").inner_text() == "Health"
    assert page.locator("#health").is_visible()
    _shot(page, "health")
