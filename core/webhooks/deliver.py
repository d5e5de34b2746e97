"""One webhook POST, to the address the SSRF guard checked.

urllib would resolve the host again at connect time (a second DNS answer, the rebinding gap),
so the request goes through http.client with the socket opened to the checked address, while
the Host header and TLS (SNI and certificate check) still use the URL's host name. Redirects
are not followed: a 3xx is a failed attempt, since following it would leave the checked host.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass

from core.webhooks.ssrf import Target

_USER_AGENT = "Mnemo-Webhooks/1"
# What of a receiver's answer is kept in the delivery log.
_KEEP_BYTES = 512


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None
    error: str | None


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI and the certificate check against `server_name`."""

    def __init__(
        self, address: str, port: int, server_name: str, timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(address, port, timeout=timeout, context=tls)
        self._server_name = server_name
        self._tls = tls

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        # The handshake as a whole is bounded by the timeout (the ssl module's own deadline).
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._server_name)


_tls_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


class _Attempt:
    """What the attempt and its deadline share: whichever comes first wins, under the lock, so
    an answer read in full is never cut afterwards (and marked failed: it would be sent twice),
    nor a socket shut down once the attempt has closed it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished = False
        self.expired = False

    def cut(self, connection: http.client.HTTPConnection) -> None:
        """Past the deadline: shutting the socket down wakes a read blocked on it (closing it
        from another thread would not)."""
        with self.lock:
            if self.finished:
                return
            self.expired = True
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.lock:
            self.finished = True


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Outcome:
    """One attempt, at most 2 x `timeout` in all. The socket timeout bounds each wait for
    data, not the attempt: a receiver trickling a byte at a time would hold the worker past
    its claim's lease (outbox sizes batches to 2 x timeout per attempt), and another drainer
    would send the same delivery again."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(
            target.address, target.port, target.host, timeout, _tls()
        )
    else:
        connection = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if ":" not in target.host else f"[{target.host}]"
    all_headers = {
        "Host": host if target.port == default_port else f"{host}:{target.port}",
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        **headers,
    }
    attempt = _Attempt()
    deadline = threading.Timer(2 * timeout, attempt.cut, (connection,))
    deadline.daemon = True
    deadline.start()
    failed = None
    try:
        connection.request("POST", target.path, body=body, headers=all_headers)
        response = connection.getresponse()
        answer = response.read(_KEEP_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        failed = f"{type(exc).__name__}: {exc}"[:_KEEP_BYTES]
    finally:
        attempt.finish()
        deadline.cancel()
        connection.close()
    if attempt.expired:
        # Even an answer that parsed: the cut can end headers or a body early, like an EOF.
        return Outcome(False, None, f"DeadlineExceeded: no full answer in {2 * timeout:g} s")
    if failed is not None:
        return Outcome(False, None, failed)
    if 200 <= response.status < 300:
        return Outcome(True, response.status, None)
    detail = answer.decode("utf-8", "replace").strip()
    return Outcome(False, response.status, f"HTTP {response.status}: {detail}"[:_KEEP_BYTES])
