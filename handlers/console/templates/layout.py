"""The page shell: head, header with the brain's navigation, messages, and the response headers
every console page carries (a strict Content-Security-Policy: scripts and styles only from
our own files, no inline code, no framing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.responses import HTMLResponse, RedirectResponse

from handlers.console.assets import asset_url
from handlers.console.html import Html, esc, h, join

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "require-trusted-types-for 'script'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Messages after a redirect are named by code in the URL, never carried as text, so a link
# cannot make the console say something it did not.
NOTICES = {
    "saved": "Saved.",
    "unchanged": "Nothing changed: the memory is as it was.",
    "created": "Memory saved.",
    "archived": "Memory archived.",
    "restored": "Memory restored.",
    "deleted": "Memory deleted. It can be restored from its page.",
    "revoked": "Key revoked: requests with it are refused from now on.",
    "resolved": "Conflict resolved: the memory you kept supersedes the other.",
    "dismissed": "Dismissed: this pair will not be flagged again.",
    "regenerated": "Summary made again.",
    "brain": "Brain created.",
    "linked": "Link added.",
    "unlinked": "Link removed.",
    "watch": "Watch saved.",
    "watch_deleted": "Watch deleted.",
    "watch_tested": "Test delivery queued.",
    "snapshot": "Snapshot taken.",
    "snapshot_restored": "Snapshot restored.",
    "snapshot_deleted": "Snapshot deleted.",
    "signed_out": "You are signed out.",
    "quarantined": "Held for review: it reads as an instruction or boilerplate, not a memory.",
    "approved": "Approved: the write was saved as a memory.",
    "rejected": "Rejected: the write will not become a memory.",
}


@dataclass(frozen=True)
class Nav:
    """What the header shows for a signed-in visitor inside a brain."""

    email: str
    csrf: str
    brain_id: str | None = None
    brain_name: str | None = None
    role: str | None = None
    section: str = ""
    sections: Sequence[tuple[str, str]] = ()  # (key, label) shown to this visitor


MEMBER_SECTIONS = (
    ("memories", "Memories"),
    ("conflicts", "Conflicts"),
    ("quarantine", "Quarantine"),
    ("health", "Health"),
    ("users", "Users"),
    ("changelog", "Changelog"),
)
OWNER_SECTIONS = (("keys", "API keys"), ("watches", "Watches"), ("snapshots", "Snapshots"))


def _header(nav: Nav | None) -> Html:
    if nav is None:
        return h('<header class="top"><a class="brand" href="/console">Mnemo</a></header>')
    links = Html("")
    brain = Html("")
    if nav.brain_id is not None:
        base = f"/console/b/{nav.brain_id}"
        links = join(
            h(
                '<a href="{href}"{current}>{label}</a>',
                href=f"{base}/{key}",
                current=Html(' aria-current="page"') if key == nav.section else "",
                label=label,
            )
            for key, label in nav.sections
        )
        brain = h(
            '<span class="brain">{name} <span class="badge">{role}</span> '
            '<a href="/console/brains">switch</a></span>',
            name=nav.brain_name,
            role=nav.role,
        )
    return h(
        '<header class="top"><a class="brand" href="/console">Mnemo</a>{brain}'
        '<span class="who">{email} <form method="post" action="/console/logout" class="inline">'
        '<input type="hidden" name="csrf_token" value="{csrf}">'
        '<button type="submit" class="link">Sign out</button></form></span></header>'
        '<nav class="sections" aria-label="Brain">{links}</nav>',
        brain=brain,
        email=nav.email,
        csrf=nav.csrf,
        links=links,
    )


def notice(code: str | None) -> Html:
    text = NOTICES.get(code or "")
    if text is None:
        return Html("")
    return h('<p class="notice" role="status">{text}</p>', text=text)


def error_box(message: str | None) -> Html:
    if not message:
        return Html("")
    return h('<div class="error" role="alert">{message}</div>', message=message)


def document(title: str, body: Html, nav: Nav | None = None) -> str:
    return str(
        h(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="referrer" content="same-origin">'
            "<title>{title} · Mnemo</title>"
            '<link rel="icon" href="{icon}" type="image/svg+xml">'
            '<link rel="stylesheet" href="{css}">'
            '<script src="{js}" defer></script></head><body>'
            '<a class="skip" href="#main">Skip to content</a>{header}'
            '<main id="main" tabindex="-1">{body}</main></body></html>',
            title=title,
            icon=asset_url("favicon.svg"),
            css=asset_url("console.css"),
            js=asset_url("console.js"),
            header=_header(nav),
            body=body,
        )
    )


def respond(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=HEADERS)


def see_other(location: str) -> RedirectResponse:
    """After a form post: the browser follows with a GET, so a reload never posts again."""
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


_STATUS_TITLES = {
    400: "That request could not be read",
    403: "Not allowed",
    404: "Not found",
    409: "That clashes with what is there",
    413: "Too large",
    422: "Please check what you entered",
    429: "Too many attempts",
}


def error_page(status: int, message: str, nav: Nav | None = None) -> str:
    title = _STATUS_TITLES.get(status, "Something went wrong")
    body = h(
        '<h1>{title}</h1>{box}<p><a href="/console/brains">Back to your brains</a></p>',
        title=title,
        box=error_box(message),
    )
    return document(title, body, nav)


def empty(message: str, action: Html | None = None) -> Html:
    return h(
        '<div class="empty"><p>{message}</p>{action}</div>', message=message, action=action or ""
    )


def list_table(headers: Sequence[str], rows: Html, *, table_id: str | None = None) -> Html:
    """A listing: one column per header (blank for a column of buttons), scrollable on a phone."""
    return h(
        '<div class="scroll"><table class="list"{id}><thead><tr>{heads}</tr></thead>'
        "<tbody>{rows}</tbody></table></div>",
        id=h(' id="{i}"', i=table_id) if table_id else "",
        heads=join(h('<th scope="col">{t}</th>', t=t) for t in headers),
        rows=rows,
    )


def hidden_csrf(csrf: str) -> Html:
    return h('<input type="hidden" name="csrf_token" value="{csrf}">', csrf=csrf)


def badge(text: str, kind: str = "") -> Html:
    return h('<span class="badge {kind}">{text}</span>', kind=kind, text=text)


__all__ = ["Html", "esc"]
