"""Sign-in, the brain picker, users and their summaries, the changelog, and API keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handlers.console.html import Html, h, join, preview, seg, time_tag, with_query
from handlers.console.templates.layout import badge, empty, error_box, hidden_csrf, list_table


def sign_in(
    csrf: str, next_path: str, *, error: str | None, email: str, signup_enabled: bool
) -> Html:
    signup = (
        Html('<button type="submit" name="action" value="signup">Create account</button>')
        if signup_enabled
        else ""
    )
    return h(
        '<div class="narrow"><h1>Sign in to Mnemo</h1>{error}'
        '<form method="post" action="/console/login" class="stack">{csrf}'
        '<input type="hidden" name="next" value="{next}">'
        '<label for="email">Email</label>'
        '<input id="email" name="email" type="email" autocomplete="username" required '
        'value="{email}" autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required minlength="10">'
        '<p class="muted">New here? Choose a password of 10 characters or more and create an '
        "account.</p>"
        '<p class="buttons"><button type="submit" class="primary" name="action" value="login">'
        "Sign in</button> {signup}</p></form></div>",
        error=error_box(error),
        csrf=hidden_csrf(csrf),
        next=next_path,
        email=email,
        signup=signup,
    )


def brains(
    rows: Sequence[Mapping[str, Any]], csrf: str, notice: Html, error: str | None = None
) -> Html:
    if rows:
        listing = h(
            '<ul class="brains">{items}</ul>',
            items=join(
                h(
                    '<li><a href="{href}">{name}</a> {role} <span class="muted">{slug}</span></li>',
                    href=f"/console/b/{b['id']}/memories",
                    name=b["name"],
                    role=badge(b["role"]),
                    slug=b["slug"],
                )
                for b in rows
            ),
        )
    else:
        listing = empty("You are not a member of any brain yet. Create one below.")
    return h(
        "<h1>Your brains</h1>{notice}{error}{listing}"
        '<section aria-labelledby="new-brain"><h2 id="new-brain">New brain</h2>'
        '<form method="post" action="/console/brains" class="row">{csrf}'
        '<label class="sr" for="brain-name">Name</label>'
        '<input id="brain-name" name="name" required maxlength="200" placeholder="Name">'
        '<button type="submit">Create</button></form></section>',
        notice=notice,
        error=error_box(error),
        listing=listing,
        csrf=hidden_csrf(csrf),
    )


def users(base: str, rows: Sequence[Mapping[str, Any]], next_after: str | None) -> Html:
    if not rows:
        return h(
            "<h1>Users</h1>{e}",
            e=empty("No end users yet. A user appears when a memory is saved with a user_id."),
        )
    body = join(
        h(
            '<tr><td><a href="{href}">{user}</a></td><td>{count}</td><td>{summary}</td>'
            "<td>{when}</td></tr>",
            href=f"{base}/users/{seg(u['user_id'])}",
            user=u["user_id"],
            count=f"{u['memories']:,}",
            summary=preview(u["summary"], 200) if u.get("summary") else _none("not made yet"),
            when=time_tag(u.get("summarized_at")),
        )
        for u in rows
    )
    more = (
        h(
            '<nav class="paging"><a href="{href}" rel="next">Next page →</a></nav>',
            href=with_query(f"{base}/users", {"after": next_after}),
        )
        if next_after
        else ""
    )
    return h(
        "<h1>Users</h1>{table}{more}",
        table=list_table(("User", "Memories", "Summary", "Summarised"), body),
        more=more,
    )


def _none(text: str) -> Html:
    return h('<span class="muted">{t}</span>', t=text)


def user(
    base: str,
    user_id: str,
    summary: Mapping[str, Any],
    recent: Sequence[Mapping[str, Any]],
    csrf: str,
    notice: Html,
    card: Any,
) -> Html:
    text = summary.get("summary")
    shown = (
        h('<div class="content">{t}</div>', t=text)
        if text
        else empty("No summary yet: this user has no active memories to summarise.")
    )
    listing = (
        h('<ol class="cards">{c}</ol>', c=join(card(base, m) for m in recent))
        if recent
        else empty("No active memories.")
    )
    return h(
        '<p class="crumbs"><a href="{users}">Users</a> /</p><h1>{user}</h1>{notice}'
        '<section aria-labelledby="sum-h"><h2 id="sum-h">Summary</h2>{shown}'
        '<p class="muted">{source} · made {when} · {fresh} new memories since</p>'
        '<form method="post" action="{regen}" class="inline">{csrf}'
        '<button type="submit">Make it again now</button></form></section>'
        '<section aria-labelledby="rec-h"><h2 id="rec-h">Recent memories</h2>{listing}'
        '<p><a href="{all}">All memories of {user}</a></p></section>',
        users=f"{base}/users",
        user=user_id,
        notice=notice,
        shown=shown,
        source=summary.get("source") or "no summary",
        when=time_tag(summary.get("summarized_at")),
        fresh=summary.get("new_memories", 0),
        regen=f"{base}/users/{seg(user_id)}",
        csrf=hidden_csrf(csrf),
        listing=listing,
        all=with_query(f"{base}/memories", {"user": user_id}),
    )


def changelog(
    base: str,
    entries: Sequence[Mapping[str, Any]],
    event_type: str,
    cursor: str,
    next_cursor: str | None,
) -> Html:
    def entity(e: Mapping[str, Any]) -> Html | str:
        if e["entity_type"] == "memory":
            return h('<a href="{href}">memory</a>', href=f"{base}/m/{e['entity_id']}")
        return str(e["entity_type"])

    if entries:
        listing = list_table(
            ("When", "Event", "What", "On", "By"),
            join(
                h(
                    "<tr><td>{when}</td><td>{event}</td><td>{summary}</td><td>{entity}</td>"
                    "<td>{actor}</td></tr>",
                    when=time_tag(e["created_at"]),
                    event=badge(e["event_type"]),
                    summary=e["summary"],
                    entity=entity(e),
                    actor=e.get("actor_id") or "",
                )
                for e in entries
            ),
        )
    else:
        listing = empty("No changes recorded" + (" of this type." if event_type else " yet."))
    paging = []
    if cursor:
        paging.append(
            h(
                '<a href="{href}">Newest</a>',
                href=with_query(f"{base}/changelog", {"type": event_type}),
            )
        )
    if next_cursor:
        paging.append(
            h(
                '<a href="{href}" rel="next">Older →</a>',
                href=with_query(f"{base}/changelog", {"type": event_type, "cursor": next_cursor}),
            )
        )
    return h(
        "<h1>Changelog</h1>"
        '<form method="get" action="{action}" class="row">'
        '<label for="etype">Event type</label>'
        '<input id="etype" name="type" value="{etype}" placeholder="e.g. memory.updated">'
        '<button type="submit">Filter</button></form>{listing}'
        '<nav class="paging" aria-label="Pages">{paging}</nav>',
        action=f"{base}/changelog",
        etype=event_type,
        listing=listing,
        paging=join(paging, " "),
    )


def keys(
    base: str,
    rows: Sequence[Mapping[str, Any]],
    csrf: str,
    notice: Html,
    *,
    created: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> Html:
    shown: Html | str = ""
    if created is not None:
        shown = h(
            '<div class="secret" role="status"><p><strong>New key {name}</strong>: copy it now, '
            "it is shown only once.</p>"
            '<p><code id="new-key">{key}</code> '
            '<button type="button" data-copy="new-key">Copy</button></p></div>',
            name=created.get("name") or "",
            key=created["key"],
        )

    def row(k: Mapping[str, Any]) -> Html:
        if k.get("revoked_at"):
            action: Html = h('<span class="muted">revoked {w}</span>', w=time_tag(k["revoked_at"]))
        else:
            action = h(
                '<form method="post" action="{action}" class="inline" data-confirm="{confirm}">'
                '{csrf}<button type="submit" class="danger">Revoke</button></form>',
                action=f"{base}/keys/{k['id']}/revoke",
                confirm=f"Revoke key {k.get('name') or k['prefix']}? Its clients stop working.",
                csrf=hidden_csrf(csrf),
            )
        scope = []
        if k.get("user_id"):
            scope.append(f"user {k['user_id']}")
        scope.append("read-only" if k["read_only"] else "read and write")
        return h(
            "<tr><td>{name}</td><td><code>{prefix}…</code></td><td>{scope}</td>"
            "<td>{created}</td><td>{used}</td><td>{action}</td></tr>",
            name=k.get("name") or _none("unnamed"),
            prefix=k["prefix"],
            scope=", ".join(scope),
            created=time_tag(k["created_at"]),
            used=time_tag(k.get("last_used_at")),
            action=action,
        )

    listing = (
        list_table(
            ("Name", "Starts with", "Scope", "Created", "Last used", ""),
            join(row(k) for k in rows),
            table_id="keys",
        )
        if rows
        else empty("No API keys yet. Create one for each agent or app that uses this brain.")
    )
    return h(
        "<h1>API keys</h1>{notice}{shown}{error}{listing}"
        '<section aria-labelledby="new-key-h"><h2 id="new-key-h">New key</h2>'
        '<form method="post" action="{action}" class="stack">{csrf}<div class="grid">'
        '<label>Name<input name="name" maxlength="200" placeholder="e.g. support bot"></label>'
        '<label>Only for user<input name="user_id" maxlength="256" placeholder="any user">'
        "</label>"
        '<label class="check"><input type="checkbox" name="read_only" value="1"> Read-only'
        "</label></div>"
        '<p><button type="submit" class="primary">Create key</button></p></form></section>',
        notice=notice,
        shown=shown,
        error=error_box(error),
        listing=listing,
        action=f"{base}/keys",
        csrf=hidden_csrf(csrf),
    )
