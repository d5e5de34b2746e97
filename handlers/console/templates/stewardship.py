"""The write gate's quarantine to review, and the brain's health report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from handlers.console.html import Html, h, join, time_tag, with_query
from handlers.console.templates.layout import badge, empty, hidden_csrf, list_table

QUARANTINE_STATUSES = (
    ("pending", "To review"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("all", "All"),
)


def quarantine(
    base: str,
    rows: Sequence[Mapping[str, Any]],
    status: str,
    next_cursor: str | None,
    csrf: str,
    notice: Html,
) -> Html:
    tabs = join(
        (
            h('<strong aria-current="true">{label}</strong>', label=label)
            if value == status
            else h(
                '<a href="{href}">{label}</a>',
                href=with_query(f"{base}/quarantine", {"status": value}),
                label=label,
            )
        )
        for value, label in QUARANTINE_STATUSES
    )

    def item(q: Mapping[str, Any]) -> Html:
        if q["status"] == "pending":
            actions = h(
                '<form method="post" action="{approve}" class="inline">{csrf}'
                '<button type="submit">Approve</button></form> '
                '<form method="post" action="{reject}" class="inline">{csrf}'
                '<button type="submit" class="danger">Reject</button></form>',
                approve=f"{base}/quarantine/{q['id']}/approve",
                reject=f"{base}/quarantine/{q['id']}/reject",
                csrf=hidden_csrf(csrf),
            )
        else:
            actions = h(
                '<p class="muted">{status} {when}{memory}</p>',
                status=q["status"],
                when=time_tag(q["decided_at"]) if q.get("decided_at") else "",
                memory=h(' · <a href="{href}">memory</a>', href=f"{base}/m/{q['memory_id']}")
                if q.get("memory_id")
                else "",
            )
        return h(
            '<li class="card quarantined" id="q-{id}"><p>{reason} {user}</p>'
            '<div class="content">{content}</div><p class="muted">{why} · {when}</p>'
            "{actions}</li>",
            id=q["id"],
            reason=badge(str(q["reason"]).replace("_", " "), "warn"),
            user=h("for <strong>{u}</strong>", u=q["user_id"]) if q.get("user_id") else "",
            content=q["content"],
            why=q["explanation"],
            when=time_tag(q["created_at"]),
            actions=actions,
        )

    if rows:
        listing = h('<ol class="cards">{items}</ol>', items=join(item(q) for q in rows))
    elif status == "pending":
        listing = empty(
            "Nothing to review. Writes the gate holds back (restated instructions, "
            "boilerplate) show up here."
        )
    else:
        listing = empty("Nothing here.")
    more = (
        h(
            '<nav class="paging"><a href="{href}" rel="next">Older →</a></nav>',
            href=with_query(f"{base}/quarantine", {"status": status, "cursor": next_cursor}),
        )
        if next_cursor
        else ""
    )
    return h(
        '<div class="head"><h1>Quarantine</h1></div>{notice}<p class="tabs">{tabs}</p>'
        "{listing}{more}",
        notice=notice,
        tabs=tabs,
        listing=listing,
        more=more,
    )


def _figure(label: str, value: object, note: str = "") -> Html:
    return h(
        '<tr><th scope="row">{label}</th><td class="num">{value}</td><td class="muted">{note}'
        "</td></tr>",
        label=label,
        value=value,
        note=note,
    )


def health(base: str, report: Mapping[str, Any], user_id: str | None) -> Html:
    memories = report["memories"]
    dupes = report["near_duplicates"]
    junk = report["junk"]
    never = report["never_retrieved"]
    figures = join(
        [
            _figure("Active memories", memories["active"]),
            _figure("Archived / deleted", f"{memories['archived']} / {memories['deleted']}"),
            _figure("Quarantined, to review", report["quarantined"]),
            _figure("Open conflicts", report["open_conflicts"]),
            _figure("Stale facts", report["stale_facts"], "superseded, yet still active"),
            _figure(
                "Never retrieved",
                never["active"],
                f"{never['older_than_7_days']} older than 7 days",
            ),
            _figure("Orphan links", report["orphan_links"], "to a deleted memory or across owners"),
            _figure(
                "Near-duplicate clusters",
                dupes["clusters"],
                f"{dupes['memories_in_clusters']} memories, in the newest {dupes['sample']}",
            ),
            _figure(
                "Junk ratio (estimate)",
                f"{junk['ratio_estimate']:.1%}",
                f"{junk['instructions_or_boilerplate']} instructions or boilerplate, "
                f"{junk['redundant_copies']} redundant copies in {junk['sample']}",
            ),
        ]
    )
    ages = join(
        h('<tr><td>{bucket}</td><td class="num">{n}</td></tr>', bucket=k.replace("_", " "), n=v)
        for k, v in report["age_histogram"].items()
    )
    clusters = join(
        h(
            "<li>{n} copies: <em>{preview}</em> {user} {links}</li>",
            n=len(c["ids"]),
            preview=c["preview"],
            user=h("({u})", u=c["user_id"]) if c.get("user_id") else "",
            links=join(
                (h('<a href="{href}">{i}</a>', href=f"{base}/m/{i}", i=i[-6:]) for i in c["ids"]),
                " ",
            ),
        )
        for c in dupes["largest"]
    )
    return h(
        '<div class="head"><h1>Health{of}</h1>'
        '<form method="get" action="{action}" class="inline"><label>User '
        '<input name="user_id" value="{user}"></label> <button type="submit">Show</button>'
        "</form></div>"
        '<table class="list" id="health">{figures}</table>'
        "<h2>Near-duplicate clusters</h2>{clusters}"
        '<h2>Ages of active memories</h2>{ages}<p class="muted">Generated {when}.</p>',
        of=h(" of {u}", u=user_id) if user_id else "",
        action=f"{base}/health",
        user=user_id or "",
        figures=figures,
        clusters=h("<ul>{c}</ul>", c=clusters) if dupes["largest"] else empty("None found."),
        ages=list_table(["Age", "Memories"], ages),
        when=time_tag(report["generated_at"]),
    )
