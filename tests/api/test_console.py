"""The web console, in process (Starlette's TestClient over https, so the Secure cookies flow):
tenant isolation, CSRF, escaping of user content, the Content-Security-Policy, the sign-in
redirect, and the pages' own behaviour."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from core.identity import accounts, memberships
from core.kernel.config import Settings
from core.kernel.db.engine import sql, transaction
from core.kernel.ids import now_ms
from handlers.api import create_app
from handlers.console.routes import memories as memory_routes
from tests.oauth_fixtures import PASSWORD, auth_settings

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


class Forms(HTMLParser):
    """Every form of a page, with its method, action and fields; and anything inline that a
    strict CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.inline_scripts = 0
        self.style_attributes = 0
        self.event_handlers = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if any(name == "style" for name, _ in attrs):
            self.style_attributes += 1
        if any(name.startswith("on") for name, _ in attrs):
            self.event_handlers += 1
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if tag == "style":
            self.inline_scripts += 1
        if tag == "form":
            self.forms.append(
                {
                    "method": (a.get("method") or "get").lower(),
                    "action": a.get("action"),
                    "fields": {},
                }
            )
        if tag in ("input", "textarea", "select", "button") and self.forms and a.get("name"):
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")


def parse(page: str) -> Forms:
    found = Forms()
    found.feed(page)
    return found


class Person:
    """A browser session on the console: signs up through the console's own form."""

    def __init__(self, app: Any) -> None:
        self.http = TestClient(app, base_url="https://testserver", follow_redirects=False)
        self.email = f"console-{uuid.uuid4().hex[:10]}@example.org"
        page = self.http.get("/console/login")
        csrf = parse(page.text).forms[0]["fields"]["csrf_token"]
        reply = self.http.post(
            "/console/login",
            data={
                "csrf_token": csrf,
                "email": self.email,
                "password": PASSWORD,
                "action": "signup",
                "next": "",
            },
        )
        assert reply.status_code == 303, reply.text
        brains = self.http.get("/console/brains")
        found = re.search(r"/console/b/([0-9a-f-]+)/memories", brains.text)
        assert found is not None
        self.brain = found.group(1)
        self.csrf = parse(brains.text).forms[0]["fields"]["csrf_token"]

    @property
    def base(self) -> str:
        return f"/console/b/{self.brain}"

    def get(self, path: str) -> Any:
        return self.http.get(path)

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True, **kw: Any) -> Any:
        body = {"csrf_token": self.csrf, **data} if csrf else data
        return self.http.post(path, data=body, **kw)

    def add(self, content: str, **fields: str) -> str:
        reply = self.post(f"{self.base}/new", {"content": content, "type": "note", **fields})
        assert reply.status_code == 303, reply.text
        return str(reply.headers["location"].split("/m/")[1].split("?")[0])


@pytest.fixture
def app(settings: Settings) -> Any:
    fast = auth_settings(settings)
    # Watches may post to a receiver on loopback (no DNS needed for an IP literal).
    return create_app(fast.with_(webhooks=replace(fast.webhooks, allow_http_loopback=True)))


@pytest.fixture
def alice(app: Any) -> Person:
    return Person(app)


@pytest.fixture
def bob(app: Any) -> Person:
    return Person(app)


def test_not_signed_in_goes_to_sign_in(app: Any) -> None:
    anonymous = TestClient(app, base_url="https://testserver", follow_redirects=False)
    reply = anonymous.get("/console/b/some-brain/memories?q=tea")
    assert reply.status_code == 303
    assert reply.headers["location"] == (
        "/console/login?next=%2Fconsole%2Fb%2Fsome-brain%2Fmemories%3Fq%3Dtea"
    )
    assert anonymous.get("/console").headers["location"] == "/console/brains"
    assert anonymous.get("/console/brains").headers["location"].startswith("/console/login")
    posted = anonymous.post("/console/b/x/m/y/edit", data={"content": "z"})
    assert posted.status_code == 303 and posted.headers["location"] == "/console/login"
    # An API key is not a console session.
    reply = anonymous.get("/console/brains", headers={"authorization": "Bearer mnemo_x_y"})
    assert reply.status_code == 303


def test_sign_in_goes_back_only_to_console_paths(app: Any, alice: Person) -> None:
    for target, expected in (
        ("//evil.example/console/", "/console/brains"),
        ("https://evil.example/", "/console/brains"),
        ("/console/\\evil", "/console/brains"),
        (f"{alice.base}/users", f"{alice.base}/users"),
    ):
        person = TestClient(app, base_url="https://testserver", follow_redirects=False)
        page = person.get("/console/login")
        csrf = parse(page.text).forms[0]["fields"]["csrf_token"]
        reply = person.post(
            "/console/login",
            data={
                "csrf_token": csrf,
                "email": alice.email,
                "password": PASSWORD,
                "action": "login",
                "next": target,
            },
        )
        assert reply.status_code == 303 and reply.headers["location"] == expected


def test_wrong_password_is_a_page_not_a_session(app: Any, alice: Person) -> None:
    person = TestClient(app, base_url="https://testserver", follow_redirects=False)
    csrf = parse(person.get("/console/login").text).forms[0]["fields"]["csrf_token"]
    reply = person.post(
        "/console/login",
        data={"csrf_token": csrf, "email": alice.email, "password": "not the password"},
    )
    assert reply.status_code == 401
    assert "Wrong email or password." in reply.text
    assert "__Host-mnemo_access" not in reply.headers.get("set-cookie", "")


def test_csp_is_strict_and_pages_have_no_inline_code(alice: Person) -> None:
    memory = alice.add("Alice likes green tea", user_id="alice", tags="drinks")
    paths = [
        "/console/brains",
        f"{alice.base}/memories",
        f"{alice.base}/memories?q=tea",
        f"{alice.base}/new",
        f"{alice.base}/m/{memory}",
        f"{alice.base}/users",
        f"{alice.base}/users/alice",
        f"{alice.base}/changelog",
        f"{alice.base}/conflicts",
        f"{alice.base}/m/{memory}/graph",
        f"{alice.base}/keys",
        f"{alice.base}/watches",
        f"{alice.base}/snapshots",
    ]
    for path in paths:
        reply = alice.get(path)
        assert reply.status_code == 200, path
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["cache-control"] == "no-store"
        found = parse(reply.text)
        assert found.inline_scripts == 0, path
        assert found.style_attributes == 0, path
        assert found.event_handlers == 0, path
        # Nothing fetched from elsewhere: every src and href is a path of ours.
        assert not re.search(r'(src|href|action)="(https?:)?//', reply.text), path
        for form in found.forms:
            if form["method"] == "post":
                assert form["fields"].get("csrf_token") == alice.csrf, (path, form)
    css = alice.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert alice.get("/console/static/../session.py").status_code == 404


def test_a_brain_is_404_for_a_member_of_another_brain_only(alice: Person, bob: Person) -> None:
    memory = alice.add("Alice's secret plan", user_id="alice")
    pages = [
        "",
        "/memories",
        "/memories?q=secret",
        "/new",
        f"/m/{memory}",
        f"/m/{memory}/graph",
        "/users",
        "/users/alice",
        "/changelog",
        "/conflicts",
        "/keys",
        "/watches",
        "/snapshots",
    ]
    for page in pages:
        assert alice.get(f"{alice.base}{page}").status_code in (200, 303), page
        reply = bob.get(f"{alice.base}{page}")
        assert reply.status_code == 404, page
        assert "secret" not in reply.text
    # Bob's own brain does not hold Alice's memory either.
    assert bob.get(f"{bob.base}/m/{memory}").status_code == 404
    # Writes with Bob's valid CSRF token are 404 too, and change nothing.
    for path, data in (
        (f"{alice.base}/m/{memory}/edit", {"content": "Bob was here"}),
        (f"{alice.base}/m/{memory}/state", {"to": "deleted"}),
        (f"{bob.base}/m/{memory}/state", {"to": "deleted"}),
        (f"{alice.base}/new", {"content": "Bob was here"}),
        (f"{alice.base}/keys", {"name": "bob"}),
        (f"{alice.base}/m/{memory}/links", {"other": memory, "relation": "related"}),
        (f"{alice.base}/conflicts/detect", {}),
        (f"{alice.base}/snapshots", {"label": "bob"}),
    ):
        assert bob.post(path, data).status_code == 404, path
    page = alice.get(f"{alice.base}/m/{memory}").text
    assert "Alice&#x27;s secret plan" in page and "Bob was here" not in page
    assert "badge deleted" not in page


def test_forms_without_their_csrf_token_are_refused(alice: Person, bob: Person) -> None:
    memory = alice.add("The original text")
    posts = [
        (f"{alice.base}/m/{memory}/edit", {"content": "changed"}),
        (f"{alice.base}/m/{memory}/state", {"to": "deleted"}),
        (f"{alice.base}/new", {"content": "new one"}),
        (f"{alice.base}/keys", {"name": "k"}),
        (f"{alice.base}/users/alice", {}),
        ("/console/brains", {"name": "another"}),
        (f"{alice.base}/m/{memory}/links", {"other": memory, "relation": "related"}),
        (f"{alice.base}/conflicts/detect", {}),
        (f"{alice.base}/watches", {"name": "w", "webhook_url": "http://127.0.0.1:9/h"}),
        (f"{alice.base}/snapshots", {"label": "s"}),
        ("/console/logout", {}),
    ]
    for path, data in posts:
        missing = alice.post(path, data, csrf=False)
        assert missing.status_code == 403, path
        assert "CSRF" in missing.text
        # Another session's token is no better than none.
        forged = alice.post(path, {**data, "csrf_token": bob.csrf}, csrf=False)
        assert forged.status_code == 403, path
        # Nor is the right token from another site.
        cross = alice.post(path, data, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403, path
    # A JSON body cannot carry the token either.
    assert alice.http.post(f"{alice.base}/new", json={"content": "x"}).status_code == 403
    page = alice.get(f"{alice.base}/m/{memory}").text
    assert "The original text" in page and "changed" not in page
    assert alice.get("/console/brains").status_code == 200  # still signed in
    # The sign-in form is protected too (its token is a double-submit cookie).
    fresh = TestClient(alice.http.app, base_url="https://testserver", follow_redirects=False)
    reply = fresh.post("/console/login", data={"email": alice.email, "password": PASSWORD})
    assert reply.status_code == 403


def test_every_console_post_route_checks_the_csrf_token(alice: Person) -> None:
    """Read from the route table, so a form added later is held to it too: without the token,
    every POST is a 403 before it looks anything up (ids here need not exist)."""
    from starlette.routing import Route

    from handlers.console.routes import console_routes

    names = {"brain": alice.brain, "id": "m1", "link": "l1", "user_id": "u1", "key": "k1"}
    names |= {"conflict": "c1", "watch": "w1", "snapshot": "s1"}
    posts = [
        r.path for r in console_routes() if isinstance(r, Route) and "POST" in (r.methods or ())
    ]
    assert len(posts) >= 20
    for template in posts:
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: names[m.group(1)], template)
        reply = alice.post(path, {"to": "deleted", "content": "x", "name": "x"}, csrf=False)
        assert reply.status_code == 403 and "CSRF" in reply.text, (template, reply.status_code)
    assert alice.get("/console/brains").status_code == 200  # the sign-out form did nothing


def test_user_content_is_shown_escaped(alice: Person) -> None:
    memory = alice.add(
        f"Remember {HOSTILE} this",
        title=HOSTILE,
        user_id='alice"><script>alert(2)</script>',
        tags=f"tag{HOSTILE}",
    )
    alice.post(
        f"{alice.base}/m/{memory}/edit",
        {"content": f"Now {HOSTILE}", "metadata": '{"note": "<b>bold</b>"}', "tags": "x"},
    )
    for path in (
        f"{alice.base}/m/{memory}",
        f"{alice.base}/memories",
        f"{alice.base}/memories?q=remember",
        f"{alice.base}/memories?q={HOSTILE}",
        f"{alice.base}/changelog",
        f"{alice.base}/users",
    ):
        page = alice.get(path).text
        assert "<script>alert" not in page, path
        assert "<img src=x" not in page and "<b>bold" not in page, path
        assert "onerror=alert(1)>" not in page.replace("onerror=alert(1)&gt;", ""), path
    page = alice.get(f"{alice.base}/m/{memory}").text
    assert ESCAPED in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


class Markup(HTMLParser):
    """What a page's markup really holds: tags, attribute names, and script sources."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.scripts: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}
        if tag == "script":
            self.scripts.append(dict(attrs).get("src"))


def test_hostile_names_everywhere_stay_text(alice: Person) -> None:
    """The same hostile text as every field a person or agent can name: brain, memory, user,
    tag, source, link label, key, watch and snapshot; no page grows a tag or attribute of it."""
    attr = '" autofocus onfocus="alert(3)" data-pwned="'
    hostile = f"{HOSTILE}{attr}<svg onload=alert(4)>"
    assert alice.post("/console/brains", {"name": hostile}).status_code == 303
    short = '"><svg onload=alert(5)>'  # tags are at most 64 characters
    first = alice.add(hostile, title=hostile, user_id=hostile, tags=short, key=hostile)
    second = alice.add(f"Second {hostile}", user_id=hostile)
    edited = alice.post(
        f"{alice.base}/m/{first}/edit",
        {"content": f"Edited {hostile}", "source": hostile, "metadata": "{}", "tags": short},
    )
    assert edited.status_code == 303
    linked = alice.post(
        f"{alice.base}/m/{first}/links", {"other": second, "relation": "related", "label": "l"}
    )
    assert linked.status_code == 303
    assert alice.post(f"{alice.base}/keys", {"name": hostile[:200]}).status_code == 201
    watch = alice.post(
        f"{alice.base}/watches", {"name": hostile[:200], "webhook_url": "http://127.0.0.1:9/h"}
    )
    assert watch.status_code == 201
    assert alice.post(f"{alice.base}/snapshots", {"label": hostile[:200]}).status_code == 303
    from urllib.parse import quote

    anonymous = TestClient(alice.http.app, base_url="https://testserver", follow_redirects=False)
    for path in (
        "/console/brains",
        f"{alice.base}/memories",
        f"{alice.base}/memories?q=Edited&user={quote(hostile)}&tag={quote(short)}",
        f"{alice.base}/memories?q={quote(hostile)}",
        f"{alice.base}/m/{first}",
        f"{alice.base}/m/{first}/graph",
        f"{alice.base}/users",
        f"{alice.base}/users/{quote(hostile, safe='')}",
        f"{alice.base}/changelog?type={quote(hostile)}",
        f"{alice.base}/keys",
        f"{alice.base}/watches",
        f"{alice.base}/snapshots",
        f"/console/login?next=/console/{quote(hostile)}",
    ):
        # The sign-in page as someone signed out sees it (a signed-in visitor is sent on).
        browser = anonymous if path.startswith("/console/login") else alice.http
        reply = browser.get(path)
        assert reply.status_code == 200, path
        found = Markup()
        found.feed(reply.text)
        assert "img" not in found.tags, path
        assert found.scripts == [found.scripts[0]] and found.scripts[0], path  # ours, by src
        assert not {a for a in found.attributes if a.startswith("on")}, path
        assert "data-pwned" not in found.attributes, path


def test_edit_adds_a_history_row_with_old_and_new(alice: Person) -> None:
    memory = alice.add("Alice drinks green tea", tags="drinks")
    reply = alice.post(
        f"{alice.base}/m/{memory}/edit",
        {
            "content": "Alice drinks black tea",
            "tags": "drinks",
            "importance": "0.9",
            "confidence": "0.7",
            "metadata": "{}",
            "title": "",
            "source": "",
        },
    )
    assert reply.status_code == 303 and reply.headers["location"].endswith("?done=saved")
    page = alice.get(reply.headers["location"]).text
    assert "Saved." in page
    rows = re.findall(r'<tr class="ev-(\w+)">(.*?)</tr>', page, re.S)
    assert [event for event, _ in rows] == ["update", "add"]
    update = rows[0][1]
    assert "Alice drinks green tea" in update and "Alice drinks black tea" in update
    assert "content, importance" in update  # only what changed
    # Nothing changed: no new row.
    same = alice.post(
        f"{alice.base}/m/{memory}/edit",
        {
            "content": "Alice drinks black tea",
            "tags": "drinks",
            "importance": "0.9",
            "confidence": "0.7",
            "metadata": "{}",
        },
    )
    assert same.headers["location"].endswith("?done=unchanged")
    # Bad input is shown on the form, with what was typed kept.
    bad = alice.post(f"{alice.base}/m/{memory}/edit", {"content": "x", "metadata": "[1]"})
    assert bad.status_code == 422 and "metadata must be a JSON object" in bad.text
    bad = alice.post(f"{alice.base}/m/{memory}/edit", {"content": "y", "importance": "7"})
    assert bad.status_code == 422 and "importance" in bad.text


def test_a_long_history_shows_only_its_newest_rows(alice: Person, engine: Engine) -> None:
    memory = alice.add("Mood: calm")
    with transaction(engine) as conn:
        conn.execute(
            sql(
                "INSERT INTO memory_history (id, brain_id, memory_id, event, old_memory, "
                "new_memory, is_deleted, created_at) "
                "VALUES (:id, :brain, :memory, 'UPDATE', :old, :new, 0, :at)"
            ),
            [
                {
                    "id": f"hist-{i:04d}",
                    "brain": alice.brain,
                    "memory": memory,
                    "old": f"Mood: step {i - 1}",
                    "new": f"Mood: step {i}",
                    "at": 4_000_000_000_000 + i,
                }
                for i in range(1, 301)
            ],
        )
    page = alice.get(f"{alice.base}/m/{memory}").text
    rows = re.findall(r'<tr class="ev-(\w+)">(.*?)</tr>', page, re.S)
    assert len(rows) == memory_routes.HISTORY_SHOWN
    assert "Mood: step 300" in rows[0][1] and "Mood: step 251" in rows[-1][1]
    assert 'After</span><div class="text">Mood: step 250<' not in page
    assert "newest 50 changes" in page


def test_nul_characters_are_a_400_page_not_a_server_error(alice: Person) -> None:
    # PostgreSQL refuses NUL in text: the console says what to fix before any SQL runs.
    memory = alice.add("A plain memory")
    for path in (
        f"{alice.base}/changelog?type=%00",
        f"{alice.base}/memories?user=a%00b",
        f"{alice.base}/memories?q=tea%00",
        f"{alice.base}/users?after=%00",
        f"{alice.base}/users/a%00b",
        f"{alice.base}/m/%00",
    ):
        reply = alice.get(path)
        assert reply.status_code == 400, path
        assert "NUL" in reply.text, path
    for path, data in (
        (f"{alice.base}/new", {"content": "bad\x00content"}),
        (f"{alice.base}/m/{memory}/edit", {"content": "edited\x00"}),
        (f"{alice.base}/keys", {"user_id": "\x00"}),
        ("/console/brains", {"name": "a\x00b"}),
    ):
        reply = alice.post(path, data)
        assert reply.status_code == 400, path
        assert "NUL" in reply.text, path
    assert alice.post(f"{alice.base}/keys", {"user_id": "\x00"}, csrf=False).status_code == 403
    page = alice.get(f"{alice.base}/m/{memory}").text
    assert "A plain memory" in page and "edited" not in page


def test_metadata_must_be_strict_json_and_numbers_not_nan(alice: Person) -> None:
    memory = alice.add("Numbers in metadata")
    for raw in ('{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'):
        reply = alice.post(f"{alice.base}/m/{memory}/edit", {"content": "x", "metadata": raw})
        assert reply.status_code == 422, raw
        assert "metadata is not valid JSON" in reply.text
    assert "NaN" not in alice.get(f"{alice.base}/m/{memory}").text
    # Nor is "nan" a number between 0 and 1 (it was skipped as "unchanged").
    reply = alice.post(f"{alice.base}/m/{memory}/edit", {"content": "x", "importance": "nan"})
    assert reply.status_code == 422 and "importance must be a number" in reply.text


def test_state_changes_and_restore(alice: Person) -> None:
    memory = alice.add("Something to archive")
    assert alice.post(f"{alice.base}/m/{memory}/state", {"to": "archived"}).status_code == 303
    page = alice.get(f"{alice.base}/m/{memory}").text
    assert "badge archived" in page
    listed = alice.get(f"{alice.base}/memories").text
    assert "Something to archive" not in listed
    assert "Something to archive" in alice.get(f"{alice.base}/memories?state=archived").text
    assert alice.post(f"{alice.base}/m/{memory}/state", {"to": "active"}).status_code == 303
    assert alice.post(f"{alice.base}/m/{memory}/state", {"to": "purged"}).status_code == 422


def test_search_uses_the_api_ranking_and_explains(alice: Person) -> None:
    alice.add("Alice prefers green tea in the morning", user_id="alice")
    alice.add("Bob drives a red car", user_id="bob")
    page = alice.get(f"{alice.base}/memories?q=green+tea").text
    assert "Alice prefers green tea" in page and "Bob drives" not in page
    assert "Why this score" in page and "Final score" in page
    assert "Bob drives" in alice.get(f"{alice.base}/memories?q=car&mode=lexical").text
    filtered = alice.get(f"{alice.base}/memories?q=tea&user=bob").text
    assert "Nothing matches this search" in filtered
    bad = alice.get(f"{alice.base}/memories?after=yesterday")
    assert bad.status_code == 422 and "Check the filters" in bad.text


def test_list_pages_and_filters(alice: Person) -> None:
    for i in range(27):
        alice.add(f"Memory number {i}", tags="bulk" if i % 2 else "other")
    first = alice.get(f"{alice.base}/memories").text
    assert "Memories (27)" in first and "Memory number 26" in first
    found = re.search(r'href="([^"]+)" rel="next"', first)
    assert found is not None
    second = alice.get(found.group(1).replace("&amp;", "&")).text
    assert "Memory number 0" in second and "Memory number 26" not in second
    tagged = alice.get(f"{alice.base}/memories?tag=bulk").text
    assert "Memories (13)" in tagged
    assert "No memories match these filters" in alice.get(f"{alice.base}/memories?type=fact").text


def test_empty_states(alice: Person) -> None:
    assert "This brain has no memories yet" in alice.get(f"{alice.base}/memories").text
    assert "No end users yet" in alice.get(f"{alice.base}/users").text
    assert "No API keys yet" in alice.get(f"{alice.base}/keys").text
    missing = alice.get(f"{alice.base}/m/01234567-89ab-7def-8123-456789abcdef")
    assert missing.status_code == 404 and "Not found" in missing.text


def test_keys_create_once_and_revoke(alice: Person) -> None:
    made = alice.post(f"{alice.base}/keys", {"name": "support bot", "read_only": "1"})
    assert made.status_code == 201
    secret = re.search(r'<code id="new-key">(mnemo_[^<]+)</code>', made.text)
    assert secret is not None
    key = secret.group(1)
    assert (
        alice.http.get("/v1/memories", headers={"authorization": f"Bearer {key}"}).status_code
        == 200
    )
    listing = alice.get(f"{alice.base}/keys").text
    assert key not in listing and "support bot" in listing and "read-only" in listing
    key_id = re.search(r"/keys/([0-9a-f-]+)/revoke", listing)
    assert key_id is not None
    revoked = alice.post(f"{alice.base}/keys/{key_id.group(1)}/revoke", {})
    assert revoked.status_code == 303
    assert (
        alice.http.get("/v1/memories", headers={"authorization": f"Bearer {key}"}).status_code
        == 401
    )
    again = alice.post(f"{alice.base}/keys/{key_id.group(1)}/revoke", {})
    assert again.status_code == 404


def test_members_do_not_manage_keys(alice: Person, bob: Person, engine: Engine) -> None:
    with transaction(engine) as conn:
        owner = accounts.find_by_email(conn, alice.email)
        assert owner is not None
        memberships.add_member(conn, owner.id, alice.brain, bob.email, "member")
    memory = alice.add("Shared note")
    page = bob.get(f"{alice.base}/memories").text
    assert "Shared note" in page and "API keys" not in page
    assert bob.get(f"{alice.base}/keys").status_code == 403
    assert bob.post(f"{alice.base}/keys", {"name": "x"}).status_code == 403
    # Members read and write memories.
    edited = bob.post(f"{alice.base}/m/{memory}/edit", {"content": "Shared note, edited"})
    assert edited.status_code == 303


def test_owner_pages_are_403_for_a_member_and_change_nothing(
    alice: Person, bob: Person, engine: Engine
) -> None:
    with transaction(engine) as conn:
        owner = accounts.find_by_email(conn, alice.email)
        assert owner is not None
        memberships.add_member(conn, owner.id, alice.brain, bob.email, "member")
    made = alice.post(f"{alice.base}/watches", {"name": "w", "webhook_url": "http://127.0.0.1:9/h"})
    assert made.status_code == 201
    watch = re.search(r"/watches/([0-9a-f-]+)/active", alice.get(f"{alice.base}/watches").text)
    assert alice.post(f"{alice.base}/snapshots", {"label": "mine"}).status_code == 303
    snap = re.search(r"/snapshots/([0-9a-f-]+)/restore", alice.get(f"{alice.base}/snapshots").text)
    assert alice.post(f"{alice.base}/keys", {"name": "k"}).status_code == 201
    key = re.search(r"/keys/([0-9a-f-]+)/revoke", alice.get(f"{alice.base}/keys").text)
    assert watch and snap and key
    a = alice.base
    # What bob tries to create is named so that no random token on the page can spell it.
    refused = "refused-member-write"
    for path in (f"{a}/keys", f"{a}/watches", f"{a}/snapshots"):
        assert bob.get(path).status_code == 403, path
    for path, data in (
        (f"{a}/keys/{key.group(1)}/revoke", {}),
        (f"{a}/watches", {"name": refused, "webhook_url": "http://127.0.0.1:9/b"}),
        (f"{a}/watches/{watch.group(1)}/active", {"active": "0"}),
        (f"{a}/watches/{watch.group(1)}/test", {}),
        (f"{a}/watches/{watch.group(1)}/delete", {}),
        (f"{a}/snapshots", {"label": refused}),
        (f"{a}/snapshots/{snap.group(1)}/restore", {"mode": "replace"}),
        (f"{a}/snapshots/{snap.group(1)}/delete", {}),
    ):
        assert bob.post(path, data).status_code == 403, path
    assert f"/keys/{key.group(1)}/revoke" in alice.get(f"{a}/keys").text
    watches = alice.get(f"{a}/watches").text
    assert f"/watches/{watch.group(1)}/delete" in watches and "paused" not in watches
    assert refused not in watches
    snapshots = alice.get(f"{a}/snapshots").text
    assert f"/snapshots/{snap.group(1)}/delete" in snapshots and refused not in snapshots


def test_users_and_summaries(alice: Person) -> None:
    alice.add("Alice loves hiking in the Alps", user_id="alice")
    alice.add("Alice works as a nurse", user_id="alice")
    page = alice.get(f"{alice.base}/users").text
    assert ">alice</a>" in page
    user = alice.get(f"{alice.base}/users/alice")
    assert user.status_code == 200 and "Summary" in user.text and "hiking" in user.text
    again = alice.post(f"{alice.base}/users/alice", {})
    assert again.status_code == 303 and again.headers["location"].endswith("regenerated")
    assert alice.get(f"{alice.base}/users/nobody").status_code == 404


def test_changelog_newest_first(alice: Person) -> None:
    alice.add("First memory")
    alice.add("Second memory")
    page = alice.get(f"{alice.base}/changelog").text
    assert page.index("Second memory") < page.index("First memory")
    only = alice.get(f"{alice.base}/changelog?type=memory.updated").text
    assert "No changes recorded of this type." in only


def test_sign_out_ends_the_session(alice: Person) -> None:
    reply = alice.post("/console/logout", {})
    assert reply.status_code == 303 and reply.headers["location"].endswith("signed_out")
    assert alice.get("/console/brains").status_code == 303


def test_new_brain(alice: Person) -> None:
    reply = alice.post("/console/brains", {"name": "Work <b>stuff</b>"})
    assert reply.status_code == 303
    page = alice.get("/console/brains").text
    assert "Work &lt;b&gt;stuff&lt;/b&gt;" in page
    assert alice.post("/console/brains", {"name": " "}).status_code == 422


def _link(person: Person, source: str, target: str, relation: str) -> None:
    reply = person.post(f"{person.base}/m/{source}/links", {"other": target, "relation": relation})
    assert reply.status_code == 303, reply.text


def test_links_both_ways_and_the_graph(alice: Person) -> None:
    paris = alice.add("Paris is in France")
    france = alice.add("France is in Europe")
    lyon = alice.add("Lyon is in France")
    europe = alice.add("Europe is a continent")
    _link(alice, paris, france, "supports")
    _link(alice, lyon, france, "example_of")
    _link(alice, france, europe, "related")
    page = alice.get(f"{alice.base}/m/{france}").text
    out = page.split("From this memory")[1].split("To this memory")[0]
    into = page.split("To this memory")[1].split("Add a link")[0]
    assert "Europe is a continent" in out and "Paris is in France" not in out
    assert "Paris is in France" in into and "Lyon is in France" in into
    graph = alice.get(f"{alice.base}/m/{france}/graph").text
    nodes = re.findall(r'<a class="node( center)?" href="([^"]+)" data-id="([^"]+)"', graph)
    assert {n[2] for n in nodes} == {paris, france, lyon, europe}
    assert [n[2] for n in nodes if n[0]] == [france]
    assert f'href="{alice.base}/m/{paris}/graph?radius=2"' in graph
    assert graph.count('<line class="r-') == 3 and 'class="r-example_of"' in graph
    one_hop = alice.get(f"{alice.base}/m/{paris}/graph?radius=1").text
    assert one_hop.count('<a class="node') == 2
    assert alice.get(f"{alice.base}/m/{paris}/graph?radius=9").status_code == 422
    alone = alice.add("Nothing links here")
    assert "has no links yet" in alice.get(f"{alice.base}/m/{alone}/graph").text
    # Remove a link.
    link_id = re.search(rf"/m/{france}/links/([0-9a-f-]+)/delete", page)
    assert link_id is not None
    # Posted from the page of a memory the link does not touch: not found, still there.
    elsewhere = alice.post(f"{alice.base}/m/{alone}/links/{link_id.group(1)}/delete", {})
    assert elsewhere.status_code == 404
    assert link_id.group(1) in alice.get(f"{alice.base}/m/{france}").text
    removed = alice.post(f"{alice.base}/m/{france}/links/{link_id.group(1)}/delete", {})
    assert removed.status_code == 303
    assert link_id.group(1) not in alice.get(f"{alice.base}/m/{france}").text
    # A link to a memory that is not there is refused with a message.
    bad = alice.post(f"{alice.base}/m/{paris}/links", {"other": "nope", "relation": "related"})
    assert bad.status_code == 404 and "The link was not added" in bad.text


def test_conflicts_review_and_resolve(alice: Person) -> None:
    assert "No conflicts to review" in alice.get(f"{alice.base}/conflicts").text
    first = alice.add("The office opens at 9")
    second = alice.add("The office opens at 10")
    _link(alice, first, second, "contradicts")
    found = alice.post(f"{alice.base}/conflicts/detect", {})
    assert found.status_code == 200 and "Checked" in found.text
    page = alice.get(f"{alice.base}/conflicts").text
    assert page.count('class="card conflict"') == 1
    assert "The office opens at 9" in page and "The office opens at 10" in page
    conflict = re.search(r"/conflicts/([0-9a-f-]+)/resolve", page)
    assert conflict is not None
    kept = alice.post(f"{alice.base}/conflicts/{conflict.group(1)}/resolve", {"winner_id": second})
    assert kept.status_code == 303 and kept.headers["location"].endswith("done=resolved")
    assert "No conflicts to review" in alice.get(f"{alice.base}/conflicts").text
    assert "badge archived" in alice.get(f"{alice.base}/m/{first}").text
    resolved = alice.get(f"{alice.base}/conflicts?status=resolved").text
    assert "resolved" in resolved and "The office opens at 9" in resolved
    again = alice.post(f"{alice.base}/conflicts/{conflict.group(1)}/resolve", {"winner_id": second})
    assert again.status_code == 409


def test_watches_for_owners(alice: Person) -> None:
    assert "No watches yet" in alice.get(f"{alice.base}/watches").text
    made = alice.post(
        f"{alice.base}/watches",
        {
            "name": "to <b>slack</b>",
            "webhook_url": "http://127.0.0.1:9/hook",
            "event_types": "memory.created, memory.updated",
        },
    )
    assert made.status_code == 201
    assert re.search(r'<code id="new-secret">[^<]{16,}</code>', made.text)
    assert "to &lt;b&gt;slack&lt;/b&gt;" in made.text
    listing = alice.get(f"{alice.base}/watches").text
    assert 'id="new-secret"' not in listing and "memory.created, memory.updated" in listing
    watch = re.search(r"/watches/([0-9a-f-]+)/active", listing)
    assert watch is not None
    paused = alice.post(f"{alice.base}/watches/{watch.group(1)}/active", {"active": "0"})
    assert paused.status_code == 303
    assert 'badge archived">paused' in alice.get(f"{alice.base}/watches").text
    assert alice.post(f"{alice.base}/watches/{watch.group(1)}/test", {}).status_code == 303
    assert alice.post(f"{alice.base}/watches/{watch.group(1)}/delete", {}).status_code == 303
    assert "No watches yet" in alice.get(f"{alice.base}/watches").text
    refused = alice.post(
        f"{alice.base}/watches", {"name": "x", "webhook_url": "http://10.0.0.1/hook"}
    )
    assert refused.status_code == 422 and 'class="error"' in refused.text


def test_snapshots_take_and_restore(alice: Person) -> None:
    assert "No snapshots yet" in alice.get(f"{alice.base}/snapshots").text
    kept = alice.add("Keep me")
    taken = alice.post(f"{alice.base}/snapshots", {"label": "before cleanup"})
    assert taken.status_code == 303
    alice.post(f"{alice.base}/m/{kept}/edit", {"content": "Changed after the snapshot"})
    page = alice.get(f"{alice.base}/snapshots").text
    assert "before cleanup" in page and "1 memories" in page
    snapshot = re.search(r"/snapshots/([0-9a-f-]+)/restore", page)
    assert snapshot is not None
    restored = alice.post(
        f"{alice.base}/snapshots/{snapshot.group(1)}/restore", {"mode": "replace"}
    )
    assert restored.status_code == 200 and "Restored “before cleanup” (replace)" in restored.text
    assert "Keep me" in alice.get(f"{alice.base}/m/{kept}").text
    deleted = alice.post(f"{alice.base}/snapshots/{snapshot.group(1)}/delete", {})
    assert deleted.status_code == 303
    assert "No snapshots yet" in alice.get(f"{alice.base}/snapshots").text


def test_another_brains_ids_posted_to_my_pages_are_404_and_change_nothing(
    alice: Person, bob: Person
) -> None:
    # Bob builds one of everything in his own brain.
    first = bob.add("Bob's office opens at 9")
    second = bob.add("Bob's office opens at 10")
    _link(bob, first, second, "contradicts")
    assert bob.post(f"{bob.base}/conflicts/detect", {}).status_code == 200
    conflicts = bob.get(f"{bob.base}/conflicts").text
    conflict = re.search(r"/conflicts/([0-9a-f-]+)/resolve", conflicts)
    bob_page = bob.get(f"{bob.base}/m/{first}").text
    link = re.search(rf"/m/{first}/links/([0-9a-f-]+)/delete", bob_page)
    assert bob.post(f"{bob.base}/keys", {"name": "bob key"}).status_code == 201
    key = re.search(r"/keys/([0-9a-f-]+)/revoke", bob.get(f"{bob.base}/keys").text)
    made = bob.post(f"{bob.base}/watches", {"name": "bob", "webhook_url": "http://127.0.0.1:9/h"})
    assert made.status_code == 201
    watch = re.search(r"/watches/([0-9a-f-]+)/active", bob.get(f"{bob.base}/watches").text)
    assert bob.post(f"{bob.base}/snapshots", {"label": "bob snap"}).status_code == 303
    snapshot = re.search(r"/snapshots/([0-9a-f-]+)/restore", bob.get(f"{bob.base}/snapshots").text)
    assert conflict and link and key and watch and snapshot
    mine = alice.add("Alice's own memory")
    a = alice.base
    for path, data in (
        (f"{a}/m/{first}/edit", {"content": "Alice was here"}),
        (f"{a}/m/{first}/state", {"to": "deleted"}),
        (f"{a}/m/{first}/links", {"other": mine, "relation": "related"}),
        (f"{a}/m/{mine}/links", {"other": first, "relation": "related"}),
        (f"{a}/m/{mine}/links", {"other": first, "relation": "related", "direction": "in"}),
        (f"{a}/m/{first}/links/{link.group(1)}/delete", {}),
        (f"{a}/m/{mine}/links/{link.group(1)}/delete", {}),
        (f"{a}/conflicts/{conflict.group(1)}/resolve", {"winner_id": second}),
        (f"{a}/conflicts/{conflict.group(1)}/dismiss", {}),
        (f"{a}/keys/{key.group(1)}/revoke", {}),
        (f"{a}/watches/{watch.group(1)}/active", {"active": "0"}),
        (f"{a}/watches/{watch.group(1)}/test", {}),
        (f"{a}/watches/{watch.group(1)}/delete", {}),
        (f"{a}/snapshots/{snapshot.group(1)}/restore", {"mode": "replace"}),
        (f"{a}/snapshots/{snapshot.group(1)}/delete", {}),
    ):
        reply = alice.post(path, data)
        assert reply.status_code == 404, (path, reply.status_code, reply.text[:300])
        assert "Bob" not in reply.text, path
    for path in (f"{a}/m/{first}", f"{a}/m/{first}/graph", f"{a}/users/{first}"):
        assert alice.get(path).status_code == 404, path
    # Bob's brain is as he left it.
    page = bob.get(f"{bob.base}/m/{first}").text
    assert "Bob&#x27;s office opens at 9" in page and "Alice" not in page
    assert "badge deleted" not in page and f"/links/{link.group(1)}/delete" in page
    assert 'class="card conflict"' in bob.get(f"{bob.base}/conflicts").text
    keys_page = bob.get(f"{bob.base}/keys").text
    assert f"/keys/{key.group(1)}/revoke" in keys_page
    watches_page = bob.get(f"{bob.base}/watches").text
    assert f"/watches/{watch.group(1)}/active" in watches_page and "paused" not in watches_page
    assert f"/snapshots/{snapshot.group(1)}/restore" in bob.get(f"{bob.base}/snapshots").text


# Every field the API lets an agent set, each with its own hostile text.
API_FIELDS = (
    "content",
    "title",
    "key",
    "source",
    "user_id",
    "agent_id",
    "run_id",
    "actor_id",
    "role",
    "metadata_key",
    "metadata_value",
    "tag",
    "label",
)


def _hostile(field: str) -> str:
    # No "/": the user id travels in URL paths, where an encoded slash would split it.
    return f"<script>alert('{field}')<img src=x onerror=alert(1) data-f={field}>"


def test_every_field_the_api_sets_is_escaped_on_every_console_page(alice: Person) -> None:
    """Agents write through the API, not the console's forms: hostile text in every field they
    can set (ids, actor and role on the history rows, metadata keys and values, link labels)
    must come out as text on every page of the console."""
    from starlette.routing import Route

    from handlers.console.routes import console_routes

    token = alice.http.post(
        "/auth/login", json={"email": alice.email, "password": PASSWORD}
    ).json()["access_token"]
    api = TestClient(
        alice.http.app,
        base_url="https://testserver",
        headers={"authorization": f"Bearer {token}"},
        cookies={},
    )
    h = {name: _hostile(name) for name in API_FIELDS}
    actor = {"actor_id": h["actor_id"], "role": h["role"]}
    body = {
        "type": "fact",
        "content": f"The office is in Lyon {h['content']}",
        "title": h["title"],
        "key": h["key"],
        "source": h["source"],
        "user_id": h["user_id"],
        "agent_id": h["agent_id"],
        "run_id": h["run_id"],
        "tags": ["<svg onload=alert(1)>"],
        "metadata": {h["metadata_key"]: h["metadata_value"], "nested": {"x": h["metadata_value"]}},
        **actor,
    }
    first = api.post("/v1/memories", json=body)
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]
    second = api.post(
        "/v1/memories",
        json={**body, "content": f"The office is in Paris {h['content']}", "type": "note"},
    )
    assert second.status_code == 201, second.text
    second_id = second.json()["id"]
    for step in (
        api.patch(f"/v1/memories/{first_id}", json={"importance": 0.9, **actor}),
        api.post(f"/v1/memories/{second_id}/archive", json=actor),
        api.post(f"/v1/memories/{second_id}/restore", json=actor),
        api.post(
            "/v1/links",
            json={"from_id": first_id, "to_id": second_id, "relation": "contradicts"}
            | {"label": h["label"], **actor},
        ),
        api.post(f"/v1/users/{quote(h['user_id'], safe='')}/summary/regenerate"),
        api.post("/v1/conflicts/detect", json={}),
    ):
        assert step.status_code < 300, step.text

    names = {"brain": alice.brain, "id": first_id, "user_id": quote(h["user_id"], safe="")}
    pages = sorted(
        {
            r.path
            for r in console_routes()
            if isinstance(r, Route) and "GET" in (r.methods or ()) and "static" not in r.path
        }
    )
    shown: dict[str, list[str]] = {name: [] for name in API_FIELDS}
    for template in pages:
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: names[m.group(1)], template)
        reply = alice.get(path)
        if reply.status_code in (302, 303):
            continue
        assert reply.status_code == 200, (path, reply.status_code)
        found = Markup()
        found.feed(reply.text)
        assert "img" not in found.tags, path  # (the graph page draws its own svg)
        assert found.scripts == [found.scripts[0]] and found.scripts[0], path  # ours, by src
        assert not {a for a in found.attributes if a.startswith("on")}, path
        assert "data-f" not in found.attributes, path
        for name in API_FIELDS:
            markers = (f"&lt;script&gt;alert(&#x27;{name}&#x27;)", f"&lt;script&gt;alert('{name}')")
            if name == "tag":
                markers = ("&lt;svg onload=alert(1)&gt;",)
            if any(marker in reply.text for marker in markers):
                shown[name].append(template)
    # Each field really reached a page, escaped, or the test would prove nothing about it. The
    # console shows no history row's role, so that one only has to stay out of the markup.
    assert {name for name, where in shown.items() if not where} == {"role"}, shown


def test_the_session_is_renewed_while_the_console_is_in_use(alice: Person, engine: Engine) -> None:
    """The refresh cookie never reaches /console (it is scoped to /auth): a page load near the
    end of the access token's life gets a new one, so the console does not sign out after an
    hour of use; left idle past the token's life, it does."""
    from core.identity import sessions

    old = alice.http.cookies.get(sessions.ACCESS_COOKIE)
    assert old

    def expire(token: str, in_ms: int) -> None:
        with transaction(engine) as conn:
            conn.execute(
                sql("UPDATE auth_tokens SET expires_at = :t WHERE token_hash = :h"),
                {"t": now_ms() + in_ms, "h": sessions.token_hash(token)},
            )

    # Early in the token's life nothing changes.
    page = alice.get(f"{alice.base}/memories")
    assert page.status_code == 200 and "set-cookie" not in page.headers
    # Minutes before it expires, a page load renews it.
    expire(old, 60_000)
    renewed = alice.get(f"{alice.base}/memories")
    assert renewed.status_code == 200
    assert sessions.ACCESS_COOKIE in renewed.headers["set-cookie"]
    new = alice.http.cookies.get(sessions.ACCESS_COOKIE)
    assert new and new != old
    # The old token then expires; the console goes on, and the renewed page's forms work.
    expire(old, -1)
    alice.csrf = parse(renewed.text).forms[0]["fields"]["csrf_token"]
    memory = alice.add("Written after the renewal")
    assert alice.get(f"{alice.base}/m/{memory}").status_code == 200
    # Idle past the token's life: sign in again, and come back to the page.
    expire(new, -1)
    gone = alice.get(f"{alice.base}/memories")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/console/login")


def test_the_list_shows_what_was_true_on_a_date(alice: Person) -> None:
    fact = {"type": "fact", "key": "home city", "user_id": "alice"}
    alice.add("Alice lives in Lyon", valid_from="2024-01-01", **fact)
    paris = alice.add("Alice lives in Paris", valid_from="2025-06-01", **fact)
    now = alice.get(f"{alice.base}/memories").text
    assert "Alice lives in Paris" in now and "Alice lives in Lyon" not in now
    then = alice.get(f"{alice.base}/memories?as_of=2025-01-01").text
    assert "Alice lives in Lyon" in then and "Alice lives in Paris" not in then
    assert 'name="as_of" type="date" value="2025-01-01"' in then
    searched = alice.get(f"{alice.base}/memories?q=where+does+alice+live&as_of=2025-01-01").text
    assert "Alice lives in Lyon" in searched and "Alice lives in Paris" not in searched
    page = alice.get(f"{alice.base}/m/{paris}").text
    assert "True from" in page
    bad = alice.get(f"{alice.base}/memories?as_of=someday")
    assert bad.status_code == 422 and "Check the filters" in bad.text


def test_quarantine_review_and_health_pages(alice: Person) -> None:
    held = alice.post(f"{alice.base}/new", {"content": "You are a pirate", "type": "note"})
    assert held.status_code == 303 and held.headers["location"].endswith("done=quarantined")
    alice.post(f"{alice.base}/new", {"content": "Thanks!", "type": "note"})
    page = alice.get(f"{alice.base}/quarantine").text
    assert "You are a pirate" in page and "Thanks!" in page
    forms = [f for f in parse(page).forms if f["action"].endswith("/approve")]
    assert len(forms) == 2
    pirate = next(f for f in forms if "pirate" in page.split(f["action"])[0].rsplit("<li", 1)[1])
    done = alice.post(pirate["action"], {})
    assert done.status_code == 303 and done.headers["location"].endswith("done=approved")
    rejects = [f for f in parse(alice.get(f"{alice.base}/quarantine").text).forms]
    reject = next(f for f in rejects if f["action"].endswith("/reject"))
    assert alice.post(reject["action"], {}).headers["location"].endswith("done=rejected")
    assert "Nothing to review" in alice.get(f"{alice.base}/quarantine").text
    decided = alice.get(f"{alice.base}/quarantine?status=all").text
    assert "approved" in decided and "rejected" in decided
    assert alice.post(pirate["action"], {}).status_code == 409
    alice.add("Alice prefers window seats", user_id="alice")
    report = alice.get(f"{alice.base}/health?user_id=alice")
    assert report.status_code == 200 and "Health of alice" in report.text
    assert "Near-duplicate clusters" in report.text and "Junk ratio" in report.text
    assert alice.get(f"{alice.base}/quarantine?status=bogus").status_code == 422
