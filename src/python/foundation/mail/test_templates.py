from __future__ import annotations

import pytest

from foundation.mail.templates import MailTemplate, html_of, text_of

TEMPLATE = MailTemplate(
    subject="Hello $name",
    text="Hi $name, open $link",
    html='<p>Hi $name, <a href="$link">open</a></p>',
)


def test_a_message_has_a_text_and_an_html_part() -> None:
    message = TEMPLATE.render(
        sender="Shop <no-reply@shop.test>",
        to="ada@example.com",
        values={"name": "Ada", "link": "https://x.test/a"},
    )
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Hello Ada"
    assert message.get_content_type() == "multipart/alternative"
    assert text_of(message).strip() == "Hi Ada, open https://x.test/a"
    assert '<a href="https://x.test/a">open</a>' in html_of(message)
    assert message["Message-ID"].endswith("@shop.test>")


def test_values_are_escaped_in_html_and_kept_in_text() -> None:
    name = '<script>alert("x")</script> & "Bob"'
    message = TEMPLATE.render(
        sender="a@b.test", to="c@d.test", values={"name": name, "link": 'x" onclick="y'}
    )
    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="x&quot; onclick=&quot;y"' in html
    assert name in text_of(message)


def test_a_missing_value_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(KeyError, match="link"):
        TEMPLATE.render(sender="a@b.test", to="c@d.test", values={"name": "Ada"})


def test_a_value_cannot_add_a_header() -> None:
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        TEMPLATE.render(
            sender="a@b.test", to="c@d.test", values={"name": "x\r\nBcc: victim@example.com", "link": "l"}
        )
