"""The SSRF guard (core/webhooks/ssrf.py) with a stubbed resolver: no test resolves a name or
connects anywhere. Deliveries through it to a real receiver: tests/api/test_webhooks.py."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.kernel.config import WebhookSettings
from core.webhooks.ssrf import UnsafeUrl, check_url

PUBLIC = "93.184.216.34"
DNS = {
    "hooks.example": [PUBLIC],
    "internal.example": ["10.0.0.1"],
    "mixed.example": [PUBLIC, "192.168.1.10"],
}


def _resolve(host: str, port: int) -> Sequence[str]:
    if host not in DNS:
        raise UnsafeUrl(f"test resolver: {host!r} is not in the table")
    return DNS[host]


RESOLVER = _resolve


LOOPBACK_OK = WebhookSettings(allow_http_loopback=True)
STRICT = WebhookSettings()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("https://unknown.example/hook", "not in the table"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://internal.example/hook", "private"),
        ("https://mixed.example/hook", "private"),
        ("https://10.1.2.3/", "private"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[2002:a9fe:a9fe::]/", "metadata"),  # 6to4 around 169.254.169.254
        ("https://[2002:a00:1::]/", "private"),
        ("https://[::1]/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://[fe80::1]/", "link-local"),
        ("http://hooks.example/hook", "must be https"),
        ("ftp://hooks.example/", "looks like"),
        ("https://user:pw@hooks.example/", "credentials"),
        ("https://hooks.example/a b", "spaces or control characters"),
    ],
)
def test_ssrf_refusals(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, STRICT, RESOLVER)


def test_ssrf_allowed_targets_connect_to_the_checked_address() -> None:
    target = check_url("https://hooks.example/in?x=1", STRICT, RESOLVER)
    assert (target.host, target.port, target.path, target.address) == (
        "hooks.example",
        443,
        "/in?x=1",
        PUBLIC,
    )
    local = check_url("http://127.0.0.1:9/hook", LOOPBACK_OK, RESOLVER)
    assert local.address == "127.0.0.1"
    # The loopback setting opens loopback only, never the private ranges or metadata.
    for url in ("https://169.254.169.254/", "https://internal.example/", "http://10.0.0.1/"):
        with pytest.raises(UnsafeUrl):
            check_url(url, LOOPBACK_OK, RESOLVER)
    allow = WebhookSettings(allowlist=("internal.example", "192.168.0.0/16"))
    assert check_url("https://internal.example/", allow, RESOLVER).address == "10.0.0.1"
    assert check_url("https://mixed.example/", allow, RESOLVER).address == PUBLIC
    with pytest.raises(UnsafeUrl, match="must be https"):
        check_url("http://internal.example/", allow, RESOLVER)
