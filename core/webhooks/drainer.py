"""`mnemo serve`'s background drainer: a thread that drains the outbox when a commit wrote
deliveries (the outbox notifier wakes it) and when a retry comes due."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from core.events import outbox
from core.kernel.config import WebhookSettings
from core.kernel.ids import now_ms
from core.webhooks import outbox as deliveries
from core.webhooks.ssrf import Resolver, system_resolver

log = logging.getLogger("mnemo.webhooks")


class BackgroundDrainer:
    def __init__(
        self,
        engine: Callable[[], Engine],
        settings: WebhookSettings,
        *,
        resolver: Resolver = system_resolver,
        idle_seconds: float = 30.0,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._resolver = resolver
        self._idle = idle_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mnemo-drainer", daemon=True)

    def start(self) -> None:
        outbox.set_notifier(self.wake)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        outbox.set_notifier(None)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        wait = 0.0  # drain once at start: what an earlier process left
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                engine = self._engine()
                deliveries.drain(engine, self._settings, resolver=self._resolver)
                due = deliveries.next_due(engine)
            except Exception:
                log.exception("webhook drain failed; trying again shortly")
                due = None
            wait = self._idle
            if due is not None:
                wait = min(self._idle, max(0.05, (due - now_ms()) / 1000))
