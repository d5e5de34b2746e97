"""Where a webhook may go: the SSRF guard.

A URL is allowed when it is https and its host resolves only to public addresses. Refused:
private, loopback, link-local (which holds the cloud metadata endpoints, 169.254.169.254 and
fd00:ec2::254 too), unspecified, multicast and reserved addresses, IPv4 written inside IPv6, and
every address of a host that resolves to at least one of those. `allow_http_loopback` lets
http:// and loopback through (a receiver on 127.0.0.1 in development); `allowlist` names hosts
or networks that may be private.

The check runs when a watch is saved and again before every send, and the sender connects to
the very address checked here (core/webhooks/deliver.py), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot point a delivery at the inside.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.kernel.config import WebhookSettings
from core.kernel.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (tests pass a stub: no test resolves or connects
# to a real private address).
Resolver = Callable[[str, int], Sequence[str]]

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud's metadata service
}
_MAX_URL = 2048
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"the webhook host {host!r} does not resolve: {exc}") from None
    return [str(info[4][0]) for info in infos]


class UnsafeUrl(InvalidInput):
    code = "unsafe_webhook_url"


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    address: str


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(allowlist: Sequence[str]) -> tuple[list[Network], set[str]]:
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in allowlist:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return networks, hosts


def refusal(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why `address` is off limits, or None when a webhook may go there."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped, allow_loopback=allow_loopback)
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        # 6to4 (2002::/16) carries an IPv4 address that a relay may deliver to.
        return refusal(address.sixtofour, allow_loopback=False)
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def check_url(url: str, settings: WebhookSettings, resolver: Resolver = system_resolver) -> Target:
    """The target `url` may be sent to, or UnsafeUrl saying why not."""
    if len(url) > _MAX_URL:
        raise UnsafeUrl(f"a webhook URL is at most {_MAX_URL} characters")
    if _UNSENDABLE.search(url.strip()):
        # http.client refuses them in the request line: every delivery would fail.
        raise UnsafeUrl(
            "a webhook URL may not hold spaces or control characters: percent-encode them",
            details={"field": "webhook_url"},
        )
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"the webhook URL is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http") or not host:
        raise UnsafeUrl("a webhook URL looks like https://host/path")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("a webhook URL may not carry credentials; the signature authenticates")
    port = port or (443 if scheme == "https" else 80)
    networks, hosts = _networks(settings.allowlist)
    host_allowed = host in hosts
    loopback_ok = settings.allow_http_loopback
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        _check_host_name(host)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port)]
    if not addresses:
        raise UnsafeUrl(f"the webhook host {host!r} does not resolve")
    for address in addresses:
        if host_allowed or any(address in net for net in networks):
            continue
        why = refusal(address, allow_loopback=loopback_ok)
        if why is not None:
            raise UnsafeUrl(
                f"the webhook host {host!r} resolves to {address}, {why}; webhooks go to "
                "public addresses (or hosts and networks in MNEMO_WEBHOOK_ALLOWLIST)",
                details={"field": "webhook_url"},
            )
    if scheme == "http":
        plain_ok = loopback_ok and all(_loopback(a) for a in addresses)
        if not plain_ok:
            raise UnsafeUrl(
                "webhook URLs must be https (http only to loopback with "
                "MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK)",
                details={"field": "webhook_url"},
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, scheme, host, port, path, str(addresses[0]))


def _check_host_name(host: str) -> None:
    """RFC 1035's sizes: a label of 1 to 63 octets, a name of at most 253. Past them the
    resolver's IDNA step raises UnicodeError rather than answering."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(0 < len(lb) <= 63 for lb in labels):
        raise UnsafeUrl(
            f"the webhook host {host[:80]!r} is not a valid host name: labels of 1 to 63 "
            "characters, at most 253 in all",
            details={"field": "webhook_url"},
        )


def _loopback(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
