"""Graceful shutdown: tell long-lived responses (SSE streams) that the server is stopping.

On SIGTERM uvicorn stops accepting connections and then waits for every open response to
finish before it runs the lifespan shutdown, so the app hears nothing until the waiting is
over, and an event stream of a job that is still running never finishes on its own: the
process stayed alive (refusing new connections) until it was killed. The signal is the first
moment the app can learn of the shutdown, so `Draining` chains a handler in front of the
server's own: it sets a flag that open streams check between polls and end on (with a
`retry:` hint, so clients reconnect to another replica), then lets the server proceed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | None


class Draining:
    """Set once the process has been asked to stop; read by streams and /readyz."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, Handler] = {}

    def is_set(self) -> bool:
        return self._event.is_set()

    def begin(self) -> None:
        self._event.set()

    def install(self) -> None:
        """Chain `begin` in front of the current SIGTERM/SIGINT handlers (the server's).

        Called from the lifespan startup, after uvicorn installed its handlers. Signals can
        only be handled in the main thread; elsewhere (a TestClient's portal thread) the app
        relies on `begin` being called by whoever stops it."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        """Put the server's handlers back (lifespan shutdown), if ours are still in place."""
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.is_set():
            logger.info("shutting down: open event streams end with a reconnect hint")
        self.begin()
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # No server handler (a bare asyncio runner): behave as if we were never here.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
