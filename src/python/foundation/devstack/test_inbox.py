from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from foundation.devstack.inbox import create_inbox_app
from foundation.devstack.mail_catcher import MailCatcher
from foundation.mail.sender import SmtpSender
from foundation.mail.settings import SmtpTarget
from foundation.mail.templates import MailTemplate

TEMPLATE = MailTemplate(subject="$subject", text="Open $link", html="$markup")


async def send(catcher: MailCatcher, subject: str, markup: str = "<p>hi</p>") -> None:
    message = TEMPLATE.render(
        sender="no-reply@shop.test",
        to="ada@example.com",
        values={"subject": subject, "link": "http://x.test/#token=abc", "markup": markup},
    )
    # The template escapes values in the HTML part; this message's HTML is hostile on purpose.
    message.get_body(preferencelist=("html",)).set_content(markup, subtype="html")  # type: ignore[union-attr]
    await SmtpSender(SmtpTarget(host="127.0.0.1", port=catcher.port, implicit_tls=False), timeout=5).send(
        message
    )


@pytest.fixture()
async def inbox(tmp_path: Path) -> AsyncIterator[tuple[MailCatcher, httpx.AsyncClient]]:
    with MailCatcher(tmp_path / "mail") as catcher:
        transport = httpx.ASGITransport(app=create_inbox_app(tmp_path / "mail"))
        async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
            yield catcher, client


async def test_caught_mail_is_kept_as_eml_files_and_listed_newest_first(
    inbox: tuple[MailCatcher, httpx.AsyncClient], tmp_path: Path
) -> None:
    catcher, client = inbox
    await send(catcher, "First")
    await send(catcher, "Second")
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2
    page = await client.get("/")
    assert page.status_code == 200
    assert page.text.index("Second") < page.text.index("First")
    assert "ada@example.com" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_message_is_shown_escaped_with_its_html_sandboxed(
    inbox: tuple[MailCatcher, httpx.AsyncClient], tmp_path: Path
) -> None:
    catcher, client = inbox
    await send(catcher, "<b>bold</b> subject", markup='<script>alert(1)</script><a href="x">link</a>')
    (name,) = (p.name for p in (tmp_path / "mail").glob("*.eml"))
    page = await client.get(f"/{name}")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<b>bold</b>" not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt; subject" in page.text
    assert "<iframe sandbox srcdoc=" in page.text and "&lt;script&gt;" in page.text
    assert "http://x.test/#token=abc" in page.text


@pytest.mark.parametrize("name", ["nope.eml", "..%2Fsecret.eml", ".hidden.eml", "x.txt"])
async def test_an_unknown_or_outside_name_is_404(
    inbox: tuple[MailCatcher, httpx.AsyncClient], name: str
) -> None:
    _, client = inbox
    assert (await client.get(f"/{name}")).status_code == 404


async def test_an_empty_inbox_says_where_mail_will_land(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=create_inbox_app(tmp_path / "none-yet"))
    async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
        page = await client.get("/")
    assert "No mail yet" in page.text
