"""Conflicts to review, watches (webhooks) and snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handlers.console.html import Html, h, join, time_tag, with_query
from handlers.console.templates.layout import badge, empty, error_box, hidden_csrf, list_table

CONFLICT_STATUSES = (
    ("needs_review", "To review"),
    ("resolved", "Resolved"),
    ("dismissed", "Dismissed"),
    ("superseded", "Superseded"),
    ("", "All"),
)


def _memory_box(base: str, label: str, m: Mapping[str, Any] | None) -> Html:
    if m is None:
        return h('<div class="content muted">{label}: no longer visible</div>', label=label)
    name = m.get("title") or m.get("key") or ""
    return h(
        '<div><h3>{label} {type} {state}</h3><div class="content">{name}{content}</div>'
        '<p class="meta muted">{user}{when} · <a href="{href}">open</a></p></div>',
        label=label,
        type=badge(m["type"]),
        state="" if m["state"] == "active" else badge(m["state"], m["state"]),
        name=h("<strong>{n}</strong>\n", n=name) if name else "",
        content=m["content"],
        user=h("user {u} · ", u=m["user_id"]) if m.get("user_id") else "",
        when=time_tag(m["created_at"]),
        href=f"{base}/m/{m['id']}",
    )


def _resolve_forms(base: str, c: Mapping[str, Any], csrf: str) -> Html:
    action = f"{base}/conflicts/{c['id']}/resolve"

    def keep(side: str, winner: str) -> Html:
        return h(
            '<form method="post" action="{action}" class="inline">{csrf}'
            '<input type="hidden" name="winner_id" value="{winner}">'
            '<input type="hidden" name="mode" value="{mode}">'
            '<button type="submit" class="primary">Keep {side}</button></form>',
            action=action,
            csrf=hidden_csrf(csrf),
            winner=winner,
            mode="archive",
            side=side,
        )

    dismiss = h(
        '<form method="post" action="{action}" class="inline">{csrf}'
        '<button type="submit">Not a conflict</button></form>',
        action=f"{base}/conflicts/{c['id']}/dismiss",
        csrf=hidden_csrf(csrf),
    )
    return h(
        '<div class="actions">{a} {b} {dismiss}</div>'
        '<p class="muted">Keeping one archives the other and links them with “supersedes”.</p>',
        a=keep("A", c["a_id"]),
        b=keep("B", c["b_id"]),
        dismiss=dismiss,
    )


def conflicts(
    base: str,
    rows: Sequence[Mapping[str, Any]],
    status: str,
    next_cursor: str | None,
    csrf: str,
    notice: Html,
    scanned: int | None = None,
) -> Html:
    tabs = join(
        (
            (
                h('<strong aria-current="true">{label}</strong>', label=label)
                if value == status
                else h(
                    '<a href="{href}">{label}</a>',
                    href=with_query(f"{base}/conflicts", {"status": value or "all"}),
                    label=label,
                )
            )
            for value, label in CONFLICT_STATUSES
        ),
        " · ",
    )

    def item(c: Mapping[str, Any]) -> Html:
        actions = (
            _resolve_forms(base, c, csrf)
            if c["status"] == "needs_review"
            else h(
                '<p class="muted">{status}{when}{note}</p>',
                status=c["status"].replace("_", " "),
                when=h(" {w}", w=time_tag(c["resolved_at"])) if c.get("resolved_at") else "",
                note=h(" · {n}", n=c["note"]) if c.get("note") else "",
            )
        )
        return h(
            '<li class="card conflict" id="c-{id}"><p><strong>{reason}</strong> {kind}</p>'
            '<div class="pair">{a}{b}</div>{actions}</li>',
            id=c["id"],
            reason=str(c["reason"]).replace("_", " ").capitalize(),
            kind=badge(c["kind"]),
            a=_memory_box(base, "A", c.get("a")),
            b=_memory_box(base, "B", c.get("b")),
            actions=actions,
        )

    if rows:
        listing = h('<ol class="cards">{items}</ol>', items=join(item(c) for c in rows))
    elif status == "needs_review":
        listing = empty("No conflicts to review. Memories that disagree show up here.")
    else:
        listing = empty("No conflicts here.")
    more = (
        h(
            '<nav class="paging"><a href="{href}" rel="next">Older →</a></nav>',
            href=with_query(
                f"{base}/conflicts", {"status": status or "all", "cursor": next_cursor}
            ),
        )
        if next_cursor
        else ""
    )
    checked = (
        h('<p class="notice" role="status">Checked {n} memories.</p>', n=scanned)
        if scanned is not None
        else ""
    )
    return h(
        '<div class="head"><h1>Conflicts</h1>'
        '<form method="post" action="{detect}" class="inline">{csrf}'
        '<button type="submit">Look for conflicts now</button></form></div>'
        '{notice}{checked}<p class="tabs">{tabs}</p>{listing}{more}',
        detect=f"{base}/conflicts/detect",
        csrf=hidden_csrf(csrf),
        notice=notice,
        checked=checked,
        tabs=tabs,
        listing=listing,
        more=more,
    )


def watches(
    base: str,
    rows: Sequence[Mapping[str, Any]],
    csrf: str,
    notice: Html,
    *,
    created: Mapping[str, Any] | None = None,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
) -> Html:
    v = values or {}
    shown: Html | str = ""
    if created is not None:
        shown = h(
            '<div class="secret" role="status"><p><strong>Watch {name} saved.</strong> Its '
            "signing secret is shown only once: deliveries carry an HMAC-SHA256 signature made "
            'with it.</p><p><code id="new-secret">{secret}</code> '
            '<button type="button" data-copy="new-secret">Copy</button></p></div>',
            name=created["name"],
            secret=created["secret"],
        )

    def row(w: Mapping[str, Any]) -> Html:
        types = w["event_types"]
        button = h(
            '<form method="post" action="{action}" class="inline">{csrf}'
            '<input type="hidden" name="active" value="{to}">'
            '<button type="submit">{label}</button></form>',
            action=f"{base}/watches/{w['id']}/active",
            csrf=hidden_csrf(csrf),
            to="0" if w["active"] else "1",
            label="Pause" if w["active"] else "Resume",
        )
        return h(
            "<tr><td>{name}{paused}</td><td><code>{url}</code></td><td>{types}</td>"
            "<td>{query}</td><td>{last}{error}</td><td>{pause} {test} {delete}</td></tr>",
            name=w["name"],
            paused="" if w["active"] else h(" {b}", b=badge("paused", "archived")),
            url=w["webhook_url"],
            types="every event" if types == "*" else ", ".join(types),
            query=w.get("query") or "",
            last=time_tag(w.get("last_triggered_at")),
            error=h('<br><span class="muted">{e}</span>', e=w["last_error"])
            if w.get("last_error")
            else "",
            pause=button,
            test=h(
                '<form method="post" action="{action}" class="inline">{csrf}'
                '<button type="submit">Send a test</button></form>',
                action=f"{base}/watches/{w['id']}/test",
                csrf=hidden_csrf(csrf),
            ),
            delete=h(
                '<form method="post" action="{action}" class="inline" '
                'data-confirm="Delete this watch?">{csrf}'
                '<button type="submit" class="danger">Delete</button></form>',
                action=f"{base}/watches/{w['id']}/delete",
                csrf=hidden_csrf(csrf),
            ),
        )

    listing = (
        list_table(
            ("Name", "Webhook", "Events", "Text filter", "Last sent", ""),
            join(row(w) for w in rows),
            table_id="watches",
        )
        if rows
        else empty("No watches yet. A watch sends changes in this brain to a webhook.")
    )
    return h(
        "<h1>Watches</h1>{notice}{shown}{error}{listing}"
        '<section aria-labelledby="new-watch-h"><h2 id="new-watch-h">New watch</h2>'
        '<form method="post" action="{action}" class="stack">{csrf}<div class="grid">'
        '<label>Name<input name="name" required maxlength="200" value="{name}"></label>'
        '<label>Webhook URL<input name="webhook_url" type="url" required maxlength="2048" '
        'placeholder="https://…" value="{url}"></label>'
        '<label>Events<input name="event_types" value="{types}" '
        'placeholder="* or memory.created, memory.updated"></label>'
        '<label>Only when the change mentions<input name="query" maxlength="500" '
        'value="{query}" placeholder="optional text"></label></div>'
        '<p><button type="submit" class="primary">Save watch</button></p></form></section>',
        notice=notice,
        shown=shown,
        error=error_box(error),
        listing=listing,
        action=f"{base}/watches",
        csrf=hidden_csrf(csrf),
        name=v.get("name", ""),
        url=v.get("webhook_url", ""),
        types=v.get("event_types", "*"),
        query=v.get("query", ""),
    )


def snapshots(
    base: str,
    rows: Sequence[Mapping[str, Any]],
    csrf: str,
    notice: Html,
    *,
    error: str | None = None,
    restored: Mapping[str, Any] | None = None,
) -> Html:
    def row(s: Mapping[str, Any]) -> Html:
        restore = h(
            '<form method="post" action="{action}" class="inline" data-confirm="{confirm}">'
            '{csrf}<label class="sr" for="mode-{id}">Mode</label>'
            '<select id="mode-{id}" name="mode"><option value="merge">merge</option>'
            '<option value="replace">replace</option></select> '
            '<button type="submit">Restore</button></form>',
            action=f"{base}/snapshots/{s['id']}/restore",
            confirm=f"Restore snapshot {s['label']}? Replace makes the brain exactly the "
            "snapshot; merge brings its records back and keeps later ones.",
            csrf=hidden_csrf(csrf),
            id=s["id"],
        )
        delete = h(
            '<form method="post" action="{action}" class="inline" '
            'data-confirm="Delete this snapshot for good?">{csrf}'
            '<button type="submit" class="danger">Delete</button></form>',
            action=f"{base}/snapshots/{s['id']}/delete",
            csrf=hidden_csrf(csrf),
        )
        return h(
            "<tr><td>{label}{note}</td><td>{when}</td><td>{memories} memories, {links} "
            "links{archived}</td><td>{size}</td><td>{restore} {delete}</td></tr>",
            label=s["label"],
            note=h('<br><span class="muted">{n}</span>', n=s["note"]) if s.get("note") else "",
            when=time_tag(s["created_at"]),
            memories=f"{s['memory_count']:,}",
            links=f"{s['link_count']:,}",
            archived=" (archived too)" if s["include_archived"] else "",
            size=_size(int(s["size_bytes"])),
            restore=restore,
            delete=delete,
        )

    done: Html | str = ""
    if restored is not None:
        report = restored.get("report", {})
        done = h(
            '<p class="notice" role="status">Restored “{label}” ({mode}): {imported} records '
            "brought back, {updated} updated, {skipped} skipped.</p>",
            label=restored["snapshot"]["label"],
            mode=restored["mode"],
            imported=report.get("imported", 0),
            updated=report.get("updated", 0),
            skipped=report.get("skipped", 0),
        )
    listing = (
        list_table(
            ("Label", "Taken", "Holds", "Size", ""),
            join(row(s) for s in rows),
            table_id="snapshots",
        )
        if rows
        else empty("No snapshots yet. Take one before a big change, to be able to go back.")
    )
    return h(
        "<h1>Snapshots</h1>{notice}{done}{error}{listing}"
        '<section aria-labelledby="new-snap-h"><h2 id="new-snap-h">Take a snapshot</h2>'
        '<form method="post" action="{action}" class="stack">{csrf}<div class="grid">'
        '<label>Label<input name="label" required maxlength="200"></label>'
        '<label>Note<input name="note" maxlength="2000" placeholder="optional"></label>'
        '<label class="check"><input type="checkbox" name="include_archived" value="1"> '
        "Archived and deleted memories too</label></div>"
        '<p><button type="submit" class="primary">Take snapshot</button></p></form></section>',
        notice=notice,
        done=done,
        error=error_box(error),
        listing=listing,
        action=f"{base}/snapshots",
        csrf=hidden_csrf(csrf),
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
