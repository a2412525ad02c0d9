"""The dev inbox: the messages the stack's mail catcher kept (``<data dir>/mail/*.eml``), as
two small pages served beside the database studio (``/inbox/``: the list, newest first;
``/inbox/<name>``: one message).

Everything a message holds is shown escaped: its headers and text part as text, its HTML
part inside a sandboxed frame (``sandbox`` without ``allow-scripts``, under a policy that
loads nothing from anywhere), so a message cannot run code in the page or fetch anything.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from foundation.devstack.mail_catcher import parse
from foundation.mail.templates import html_of, text_of

NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*\.eml$")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .6em;"
    "border-bottom:1px solid #ddd}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}"
    "iframe{width:100%;height:28em;border:1px solid #ddd}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=HEADERS)


def messages(folder: Path) -> list[Path]:
    """The kept messages, newest first (their names start with the time they arrived)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if NAME.match(p.name) and p.is_file()), reverse=True)


def create_inbox_app(folder: Path) -> Starlette:
    async def listing(_: Request) -> Response:
        rows = []
        for path in messages(folder):
            message = parse(path.read_bytes())
            cells = [str(message["Date"] or ""), str(message["To"] or ""), str(message["Subject"] or "")]
            subject = html.escape(cells[2] or "(no subject)")
            link = f"<a href='{html.escape(path.name, quote=True)}'>{subject}</a>"
            rows.append(
                f"<tr><td>{html.escape(cells[0])}</td><td>{html.escape(cells[1])}</td><td>{link}</td></tr>"
            )
        table = (
            "<table><tr><th>date</th><th>to</th><th>subject</th></tr>" + "".join(rows) + "</table>"
            if rows
            else f"<p>No mail yet. Messages auth-service sends land in {html.escape(str(folder))}.</p>"
        )
        return _page("Dev inbox", f"<h1>Dev inbox</h1><p>{len(rows)} message(s), newest first.</p>{table}")

    async def show(request: Request) -> Response:
        name = request.path_params["name"]
        path = folder / name
        if not NAME.match(name) or not path.is_file():
            return _page(
                "Not found", "<h1>No such message</h1><p><a href='./'>Back to the inbox</a></p>", 404
            )
        message = parse(path.read_bytes())
        headers = "".join(
            f"<tr><th>{field}</th><td>{html.escape(str(message[field] or ''))}</td></tr>"
            for field in ("Date", "From", "To", "Subject")
        )
        rich = html_of(message)
        frame = (
            f'<h2>HTML part</h2><iframe sandbox srcdoc="{html.escape(rich, quote=True)}"></iframe>'
            if rich
            else ""
        )
        body = (
            f"<p><a href='./'>Back to the inbox</a></p><table>{headers}</table>"
            f"<h2>Text part</h2><pre>{html.escape(text_of(message))}</pre>{frame}"
        )
        return _page(str(message["Subject"] or name), body)

    return Starlette(routes=[Route("/", listing), Route("/{name}", show)])
