"""Body read timeouts for every request of a server with one periodic sweep instead of one timer per request.

Tornado's own ``body_timeout`` wraps every body read in a timeout future, a cost paid by every request even
when the body arrived with the headers. Here a request registers a deadline when it starts waiting for its body
(a dictionary insertion) and removes it when the body is complete; a periodic callback closes the connections
of requests whose deadline has passed (slow-body clients).
"""
from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["BodyDeadlines", "closeAfterAnswer"]


def closeAfterAnswer(request: Any) -> None:
    """The answer to ``request`` goes out before its body was read (or while it may still be arriving).

    The connection cannot carry another request then (the unread body would be parsed as the next one),
    and Tornado closes it after the answer, without telling the client. Close it explicitly instead, which
    also makes Tornado send ``Connection: close``: a client that pooled the connection would otherwise send
    its next call into a closing socket and could not know whether the server ran it.
    """
    connection = request.connection
    if hasattr(connection, "_disconnect_on_finish"):  # tornado's HTTP1Connection
        connection._disconnect_on_finish = True


class BodyDeadlines:
    """Deadlines of requests still receiving their body (touched on the event loop thread only)."""

    def __init__(self) -> None:
        self._deadlines: dict[Any, float] = {}

    def watch(self, request: Any, timeout: float) -> None:
        """Expect the body of ``request`` within ``timeout`` seconds (a falsy timeout means no limit)."""
        if timeout:
            self._deadlines[request] = time.monotonic() + timeout

    def done(self, request: Any) -> None:
        """The body of ``request`` is complete (or will never come): forget it."""
        self._deadlines.pop(request, None)

    def __len__(self) -> int:
        return len(self._deadlines)

    def sweep(self, onExpired: Callable[[Any], None]) -> int:
        """Call ``onExpired(request)`` for each overdue request, forgetting it; return how many expired."""
        if not self._deadlines:
            return 0
        now = time.monotonic()
        expired = [request for request, deadline in self._deadlines.items() if deadline <= now]
        for request in expired:
            del self._deadlines[request]
            onExpired(request)
        return len(expired)
