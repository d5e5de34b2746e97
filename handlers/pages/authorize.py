"""The OAuth authorization page: log in or sign up, pick a brain, consent.

Every value that reaches the page is escaped with `esc`, including ones we generated: the client
name and redirect URI come from an unauthenticated registration and are hostile until proven
otherwise. The page has no script at all, and its Content-Security-Policy says so.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import HTMLResponse

from core.identity.oauth.clients import redirect_display

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f5f5f4;
color:#1c1917;margin:0;display:flex;justify-content:center;padding:3rem 1rem}
main{background:#fff;border:1px solid #e7e5e4;border-radius:12px;padding:2rem;max-width:26rem;
width:100%;box-shadow:0 1px 3px rgba(0,0,0,.06)}
h1{font-size:1.3rem;margin:0 0 1rem}
p{margin:.5rem 0}
.client{background:#fafaf9;border:1px solid #e7e5e4;border-radius:8px;padding:.75rem 1rem;
margin:1rem 0;word-break:break-word}
.muted{color:#78716c;font-size:.875rem}
.error{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:8px;
padding:.75rem 1rem;margin:1rem 0}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;
padding:.55rem .7rem;border:1px solid #d6d3d1;border-radius:6px;font:inherit}
fieldset{border:1px solid #e7e5e4;border-radius:8px;margin:1rem 0;padding:.5rem 1rem}
fieldset label{font-weight:400;margin:.4rem 0}
.buttons{display:flex;gap:.75rem;margin-top:1.25rem}
button{flex:1;padding:.6rem 1rem;border-radius:6px;border:1px solid #1c1917;font:inherit;
cursor:pointer;background:#fff}
button.primary{background:#1c1917;color:#fff}
ul{margin:.25rem 0;padding-left:1.25rem}
button.link{border:0;padding:0;background:none;text-decoration:underline;flex:none}
"""

SCOPE_TEXT = {
    "memories:read": "read the memories in the brain you pick",
    "memories:write": "save, change and delete memories in that brain",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _hidden(params: Mapping[str, str], csrf: str) -> str:
    fields = [f'<input type=hidden name=csrf_token value="{esc(csrf)}">']
    fields += [f'<input type=hidden name="{esc(k)}" value="{esc(v)}">' for k, v in params.items()]
    return "".join(fields)


def _client_box(client_name: str, client_id: str, redirect_uri: str) -> str:
    host = redirect_display(redirect_uri)
    return (
        f"<div class=client><strong>{esc(client_name)}</strong> wants access to your Mnemo "
        f"memories.<br><span class=muted>You will be sent back to <strong>{esc(host)}</strong>"
        f". Client id {esc(client_id)}; the name is chosen by the application itself.</span>"
        "</div>"
    )


def _error_box(message: str | None) -> str:
    return "" if not message else f"<div class=error role=alert>{esc(message)}</div>"


def login_page(
    *,
    client_name: str,
    client_id: str,
    redirect_uri: str,
    params: Mapping[str, str],
    csrf: str,
    error: str | None = None,
    email: str = "",
    signup_enabled: bool = True,
) -> str:
    signup = (
        "<button type=submit name=action value=signup>Create account</button>"
        if signup_enabled
        else ""
    )
    body = (
        "<h1>Sign in to Mnemo</h1>"
        + _client_box(client_name, client_id, redirect_uri)
        + _error_box(error)
        + '<form method=post action="">'
        + _hidden(params, csrf)
        + "<label for=email>Email</label>"
        + "<input id=email name=email type=email autocomplete=username required "
        + f'value="{esc(email)}">'
        + "<label for=password>Password</label>"
        + "<input id=password name=password type=password autocomplete=current-password "
        + "required minlength=10>"
        + "<p class=muted>New here? Choose a password of 10 characters or more and create an "
        + "account.</p>"
        + "<div class=buttons><button class=primary type=submit name=action value=login>"
        + f"Log in</button>{signup}</div></form>"
    )
    return _page("Sign in to Mnemo", body)


def consent_page(
    *,
    client_name: str,
    client_id: str,
    redirect_uri: str,
    params: Mapping[str, str],
    csrf: str,
    email: str,
    brains: Sequence[Mapping[str, Any]],
    scope: str,
    error: str | None = None,
) -> str:
    choices = "".join(
        f'<label><input type=radio name=brain_id value="{esc(b["id"])}"'
        f"{' checked' if i == 0 else ''}> {esc(b['name'])} "
        f"<span class=muted>({esc(b['role'])})</span></label>"
        for i, b in enumerate(brains)
    )
    new_brain = (
        "<label for=new_brain_name>Or a new brain</label>"
        "<input id=new_brain_name name=new_brain_name type=text maxlength=200 "
        'placeholder="Name of a new brain">'
    )
    grants = "".join(f"<li>{esc(SCOPE_TEXT.get(s, s))}</li>" for s in scope.split())
    body = (
        f"<h1>Allow {esc(client_name)}?</h1>"
        + _client_box(client_name, client_id, redirect_uri)
        + _error_box(error)
        + f"<p>Signed in as <strong>{esc(email)}</strong>.</p>"
        + '<form method=post action="">'
        + _hidden(params, csrf)
        + "<fieldset><legend>Brain</legend>"
        + choices
        + new_brain
        + "</fieldset>"
        + f"<p>It will be able to:</p><ul>{grants}</ul>"
        + "<div class=buttons><button class=primary type=submit name=action value=approve>"
        + "Allow</button><button type=submit name=action value=deny>Deny</button></div>"
        + "<p class=muted><button class=link type=submit name=action value=switch_account "
        + "formnovalidate>Use another account</button></p></form>"
    )
    return _page(f"Allow {client_name}?", body)


def error_page(message: str) -> str:
    body = (
        "<h1>Cannot continue</h1>"
        + _error_box(message)
        + "<p class=muted>Go back to the application and start the sign-in again.</p>"
    )
    return _page("Cannot continue", body)


def respond(content: str, status: int = 200, *, redirect_origin: str | None = None) -> HTMLResponse:
    """The page with headers that keep it from being framed, cached, scripted or leaking the
    URL (which holds the OAuth request) to other sites through a Referer."""
    form_action = "'self'" + (f" {redirect_origin}" if redirect_origin else "")
    return HTMLResponse(
        content,
        status_code=status,
        headers={
            # form-action also governs the redirect that follows the form post, so the
            # client's origin is allowed there.
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
                f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            # same-origin rather than no-referrer: browsers then send a real Origin on our own form
            # posts (no-referrer makes it "null"), which the CSRF check compares.
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )
