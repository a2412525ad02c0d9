"""The dev stack's mail, end to end: with SMTP_URL unset the stack runs a catcher, and a
password reset asked for through the gateway shows up in the dev inbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from foundation.devstack.inbox import create_inbox_app
from foundation.devstack.paths import package_source_dir
from tests import test_devstack
from tests.test_devstack import RunningStack, start

# The stack tests' fixtures, under the names the test asks for.
stack_env = test_devstack.stack_env
stopped_at_end = test_devstack.stopped_at_end
workdir = test_devstack.workdir


def test_a_reset_mail_asked_for_through_the_gateway_shows_in_the_dev_inbox(
    stack_env: dict[str, str], workdir: Path, stopped_at_end: list[RunningStack]
) -> None:
    stack_env.pop("SMTP_URL", None)
    data = workdir / "data"
    stack = start(
        stack_env, "--no-reload", "--data-dir", str(data), pythonpath=package_source_dir(), cwd=workdir
    )
    stopped_at_end.append(stack)
    stack.wait_for("stack ready")
    assert stack.url_of("mail").startswith("smtp://127.0.0.1:")
    email = f"inbox-{time.time_ns()}@example.com"
    with httpx.Client(base_url=stack.url_of("gateway"), timeout=10) as client:
        password = "correct horse battery staple"
        registered = client.post("/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        assert client.post("/auth/password/forgot", json={"email": email}).status_code == 202

    deadline = time.monotonic() + 30

    def arrived() -> bool:
        return any(
            "Reset your password" in p.read_text(errors="replace") for p in (data / "mail").glob("*.eml")
        )

    while not arrived():
        assert time.monotonic() < deadline, stack.lines[-40:]
        time.sleep(0.1)

    transport = httpx.ASGITransport(app=create_inbox_app(data / "mail"))

    async def read_inbox() -> tuple[str, str]:
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as inbox:
            listing = (await inbox.get("/")).text
            name = next(p.name for p in sorted((data / "mail").glob("*.eml")) if "Reset" in p.read_text())
            return listing, (await inbox.get(f"/{name}")).text

    listing, message = asyncio.run(read_inbox())
    assert "Reset your password" in listing and "Confirm your email address" in listing
    assert email in listing
    assert "reset-password#token=" in message
    assert stack.terminate() < 10
