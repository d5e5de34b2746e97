"""A memory's links on its page, and its neighbourhood as an SVG drawn on the server: the memory
in the middle, each further hop on a wider ring, children placed next to their parents, edges
coloured by relation, every node a link to its own neighbourhood."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from handlers.console.html import Html, h, join, preview
from handlers.console.templates.layout import badge, empty, hidden_csrf

MAX_NODES = 60
RELATIONS = ("related", "supports", "contradicts", "supersedes", "causes", "example_of")
_SIZE = 800
_NODE_R = 16
_CENTRE_R = 24


def _name(memory: Mapping[str, Any], limit: int = 60) -> str:
    return str(memory.get("title") or memory.get("key") or preview(memory["content"], limit))


def _relation_options() -> Html:
    return join(
        h('<option value="{r}">{label}</option>', r=r, label=r.replace("_", " ")) for r in RELATIONS
    )


def links_section(
    base: str, memory: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], csrf: str
) -> Html:
    def item(link: Mapping[str, Any]) -> Html:
        other = link["memory"]
        title = other.get("title") or other.get("key") or other["preview"]
        label = h(' <span class="muted">“{l}”</span>', l=link["label"]) if link.get("label") else ""
        origin = "" if link["origin"] == "manual" else badge(link["origin"])
        return h(
            '<li><span class="rel r-{rel}">{relation}</span> <a href="{href}">{title}</a>'
            "{label} {origin} {state}"
            '<form method="post" action="{remove}" class="inline" data-confirm="Remove this '
            'link?">{csrf}<button type="submit" class="link">remove</button></form></li>',
            rel=link["relation"],
            relation=link["relation"].replace("_", " "),
            href=f"{base}/m/{other['id']}",
            title=title,
            label=label,
            origin=origin,
            state="" if other["state"] == "active" else badge(other["state"], other["state"]),
            remove=f"{base}/m/{memory['id']}/links/{link['id']}/delete",
            csrf=hidden_csrf(csrf),
        )

    outgoing = [r for r in rows if r["direction"] == "out"]
    incoming = [r for r in rows if r["direction"] == "in"]

    def listing(items: list[Mapping[str, Any]], none: str) -> Html:
        if not items:
            return h('<p class="muted">{none}</p>', none=none)
        return h("<ul>{items}</ul>", items=join(item(r) for r in items))

    return h(
        '<section class="links" aria-labelledby="links-h"><h2 id="links-h">Links</h2>'
        '<div class="pair"><div><h3>From this memory</h3>{out}</div>'
        "<div><h3>To this memory</h3>{into}</div></div>"
        "<details><summary>Add a link</summary>"
        '<form method="post" action="{action}" class="stack">{csrf}<div class="grid">'
        '<label>Direction<select name="direction"><option value="out">from this memory'
        '</option><option value="in">to this memory</option></select></label>'
        '<label>Relation<select name="relation">{relations}</select></label>'
        '<label>Other memory id<input name="other" required placeholder="its id, from its page">'
        "</label>"
        '<label>Label<input name="label" maxlength="256" placeholder="optional"></label></div>'
        '<p><button type="submit">Add link</button></p></form></details></section>',
        out=listing(outgoing, "No links from this memory."),
        into=listing(incoming, "No links to this memory."),
        action=f"{base}/m/{memory['id']}/links",
        csrf=hidden_csrf(csrf),
        relations=_relation_options(),
    )


def _layout(
    centre: str, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[float, float]]:
    depth = {n["id"]: int(n["depth"]) for n in nodes}
    deepest = max(depth.values(), default=0) or 1
    ring = (_SIZE / 2 - 70) / deepest
    mid = _SIZE / 2
    angle: dict[str, float] = {centre: 0.0}
    place = {centre: (mid, mid)}
    for level in range(1, deepest + 1):
        members = [n["id"] for n in nodes if depth[n["id"]] == level]
        if not members:
            continue

        def parent_angle(node: str, level: int = level) -> float:
            for e in edges:
                other = e["to_id"] if e["from_id"] == node else e["from_id"]
                if node in (e["from_id"], e["to_id"]) and depth.get(other) == level - 1:
                    return angle.get(other, 0.0)
            return 0.0

        # Ordered by their parent's angle, spread evenly: children sit near their parents.
        members.sort(key=lambda n: (parent_angle(n), n))
        offset = parent_angle(members[0]) if level > 1 else -math.pi / 2
        for i, node in enumerate(members):
            a = offset + 2 * math.pi * i / len(members)
            angle[node] = a
            radius = ring * level
            place[node] = (mid + radius * math.cos(a), mid + radius * math.sin(a))
    return place


def svg(base: str, found: Mapping[str, Any], radius: int) -> Html:
    nodes = found["nodes"]
    edges = found["edges"]
    centre = found["seeds"][0] if found["seeds"] else nodes[0]["id"]
    place = _layout(centre, nodes, edges)
    markers = join(
        h(
            '<marker id="arrow-{r}" class="r-{r}" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            '<path d="M0,0 L10,5 L0,10 z"></path></marker>',
            r=r,
        )
        for r in RELATIONS
    )
    lines = []
    for e in edges:
        if e["from_id"] not in place or e["to_id"] not in place:
            continue
        (x1, y1), (x2, y2) = place[e["from_id"]], place[e["to_id"]]
        length = math.hypot(x2 - x1, y2 - y1) or 1.0
        start = _CENTRE_R if e["from_id"] == centre else _NODE_R
        end = (_CENTRE_R if e["to_id"] == centre else _NODE_R) + 3
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        lines.append(
            h(
                '<line class="r-{r}" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" '
                'marker-end="url(#arrow-{r})"><title>{r}</title></line>',
                r=e["relation"],
                x1=f"{x1 + ux * start:.1f}",
                y1=f"{y1 + uy * start:.1f}",
                x2=f"{x2 - ux * end:.1f}",
                y2=f"{y2 - uy * end:.1f}",
            )
        )
    circles = []
    for n in nodes:
        x, y = place[n["id"]]
        is_centre = n["id"] == centre
        href = f"{base}/m/{n['id']}" if is_centre else f"{base}/m/{n['id']}/graph?radius={radius}"
        circles.append(
            h(
                '<a class="node{cls}" href="{href}" data-id="{id}"><title>{full}</title>'
                '<circle cx="{x}" cy="{y}" r="{r}"></circle>'
                '<text x="{x}" y="{ty}" text-anchor="middle">{label}</text></a>',
                cls=" center" if is_centre else "",
                href=href,
                id=n["id"],
                full=_name(n, 200),
                x=f"{x:.1f}",
                y=f"{y:.1f}",
                r=_CENTRE_R if is_centre else _NODE_R,
                ty=f"{y + (_CENTRE_R if is_centre else _NODE_R) + 14:.1f}",
                label=_name(n, 24),
            )
        )
    xs = [x for x, _ in place.values()]
    ys = [y for _, y in place.values()]
    # Cropped to the drawing, with room for the labels under the nodes.
    left, top = min(xs) - 110, min(ys) - 40
    width, height = max(xs) - min(xs) + 220, max(ys) - min(ys) + 90
    return h(
        '<div class="graph"><svg viewBox="{box}" role="group" '
        'aria-label="Graph of the memory and its neighbours"><defs>{markers}</defs>'
        "<g>{lines}</g><g>{circles}</g></svg></div>",
        box=f"{left:.0f} {top:.0f} {width:.0f} {height:.0f}",
        markers=markers,
        lines=join(lines),
        circles=join(circles),
    )


def graph_page(base: str, memory_id: str, found: Mapping[str, Any], radius: int) -> Html:
    nodes = found["nodes"]
    centre = next((n for n in nodes if n["id"] == memory_id), nodes[0] if nodes else None)
    legend = join(
        h('<li class="r-{r}">{label}</li>', r=r, label=r.replace("_", " ")) for r in RELATIONS
    )
    graph_path = f"{base}/m/{memory_id}/graph"
    radius_links = join(
        (
            (
                h('<strong aria-current="true">{r} hops</strong>', r=r)
                if r == radius
                else h('<a href="{href}">{r} hops</a>', href=f"{graph_path}?radius={r}", r=r)
            )
            for r in (1, 2, 3)
        ),
        " · ",
    )
    if len(nodes) <= 1:
        drawing = empty(
            "This memory has no links yet. Add one from its page, or let agents link memories "
            "through the API.",
            h('<a href="{href}">Back to the memory</a>', href=f"{base}/m/{memory_id}"),
        )
    else:
        drawing = svg(base, found, radius)
    by_id = {n["id"]: n for n in nodes}
    edge_rows = join(
        h(
            '<li><a href="{fh}">{f}</a> <span class="rel r-{r}">{rel}</span> '
            '<a href="{th}">{t}</a></li>',
            fh=f"{base}/m/{e['from_id']}",
            f=_name(by_id[e["from_id"]], 50),
            r=e["relation"],
            rel=e["relation"].replace("_", " "),
            th=f"{base}/m/{e['to_id']}",
            t=_name(by_id[e["to_id"]], 50),
        )
        for e in found["edges"]
        if e["from_id"] in by_id and e["to_id"] in by_id
    )
    truncated = (
        h('<p class="muted">Showing the nearest {n} memories; there are more.</p>', n=len(nodes))
        if found.get("truncated")
        else ""
    )
    return h(
        '<p class="crumbs"><a href="{list}">Memories</a> / <a href="{mem}">{name}</a> /</p>'
        "<h1>Graph: {name}</h1>"
        '<p>{radius_links}</p><ul class="legend" aria-label="Relations">{legend}</ul>'
        "{drawing}{truncated}"
        "<details><summary>Links in this view, as a list</summary><ul>{edges}</ul></details>",
        list=f"{base}/memories",
        mem=f"{base}/m/{memory_id}",
        name=_name(centre, 70) if centre else memory_id,
        radius_links=radius_links,
        legend=legend,
        drawing=drawing,
        truncated=truncated,
        edges=edge_rows,
    )
