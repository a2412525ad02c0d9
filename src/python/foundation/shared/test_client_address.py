"""Who is calling: the socket peer, or what a trusted proxy says, read from the right."""

from __future__ import annotations

import ipaddress

import pytest

from foundation.shared.client_address import TrustedProxies, client_address, forwarded_proto

PROXIES = TrustedProxies([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])


def xff(*lines: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", line.encode()) for line in lines]


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    resolved = client_address("192.0.2.1", xff("1.2.3.4"), PROXIES)
    assert (resolved.address, resolved.chain, resolved.trusted_peer) == ("192.0.2.1", (), False)
    assert client_address("192.0.2.1", xff("1.2.3.4"), TrustedProxies()).address == "192.0.2.1"


def test_from_a_trusted_peer_the_chain_is_read_from_the_right_past_trusted_hops() -> None:
    resolved = client_address("10.0.0.1", xff("192.0.2.99, 198.51.100.1, 10.9.9.9"), PROXIES)
    assert resolved.address == "198.51.100.1"
    assert resolved.chain == ("192.0.2.99", "198.51.100.1", "10.9.9.9")


def test_every_forwarded_for_line_counts_in_order() -> None:
    # A proxy that adds its own line: the client's line first, the proxy's (the truth) last.
    resolved = client_address("10.0.0.1", xff("203.0.113.66", "198.51.100.7"), PROXIES)
    assert resolved.address == "198.51.100.7"
    assert resolved.chain == ("203.0.113.66", "198.51.100.7")
    lines = [
        (b"x-forwarded-for", b"192.0.2.5, 10.1.1.1"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"10.2.2.2"),
    ]
    assert client_address("10.0.0.1", lines, PROXIES).address == "192.0.2.5"


def test_a_trusted_peer_without_the_header_or_with_only_trusted_hops() -> None:
    assert client_address("10.0.0.1", [], PROXIES).address == "10.0.0.1"
    assert client_address("10.0.0.1", xff("10.5.5.5, 10.6.6.6"), PROXIES).address == "10.5.5.5"


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("198.51.100.1:5678", "198.51.100.1"),
        ("not-an-address", "unknown"),
        ("198.51.100.1; rm -rf", "unknown"),
    ],
)
def test_addresses_come_back_canonical_or_unknown(hop: str, address: str) -> None:
    assert client_address("10.0.0.1", xff(hop), PROXIES).address == address
    assert client_address("fd00::1", xff(hop), PROXIES).address == address


def test_an_ipv6_client_can_be_bucketed_by_its_network() -> None:
    address = client_address("fd00::1", xff("2001:db8:1:2:aaaa::1"), PROXIES).address
    assert str(ipaddress.ip_network(f"{address}/64", strict=False)) == "2001:db8:1:2::/64"


def test_no_peer_is_unknown_and_garbage_is_never_trusted() -> None:
    assert client_address(None, xff("1.2.3.4"), PROXIES).address == "unknown"
    assert "not-an-ip" not in PROXIES
    assert "10.1.2.3" in PROXIES and "11.0.0.1" not in PROXIES


def test_the_scheme_is_the_nearest_proxys() -> None:
    lines = [(b"x-forwarded-proto", b"http"), (b"x-forwarded-proto", b"https")]
    assert forwarded_proto(lines) == "https"
    assert forwarded_proto([(b"x-forwarded-proto", b"gopher")]) is None
