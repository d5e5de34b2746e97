"""The address rate limits and sign-in throttling count: the load balancer's entry of an
X-Forwarded-For list, and an IPv6 host's /64."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from handlers.routes.auth import client_ip


def _request(host: str | None) -> Request:
    scope = {"type": "http", "headers": [], "client": None if host is None else (host, 0)}
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "counted"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # An ALB event: the caller wrote the first entries, the load balancer the last.
        ("1.2.3.4, 203.0.113.7", "203.0.113.7"),
        ("9.9.9.9, 8.8.8.8,203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1, 2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_the_counted_source(peer: str | None, counted: str) -> None:
    assert client_ip(_request(peer)) == counted


def test_spoofed_prefixes_share_one_source() -> None:
    sources = {client_ip(_request(f"10.0.0.{i}, 203.0.113.7")) for i in range(50)}
    assert sources == {"203.0.113.7"}
