"""Rate limit for the "SSL Error on ..." lines Tornado logs for every refused TLS handshake.

Tornado writes one WARNING line on its ``tornado.general`` logger per refused handshake; a scanner or a
misconfigured client retrying in a loop would fill the log. :class:`HandshakeLogFilter` (one per process,
installed on that logger by every :class:`~TornadoServices.Server.TornadoServer.TornadoServer` when it
starts) lets through at most ``limit`` such lines per ``interval`` seconds for each (peer address, reason)
pair, drops the others, and once the interval is over writes one summary line per pair that lost lines::

    12 similar TLS handshake refusals from 192.0.2.7 suppressed in the last 60 s (certificate verify failed: ...)

Only the log is limited: the server counters (``stats.handshakeFailures`` and the reasons of /metrics)
count every refusal. The reason is the label of those counters (:func:`handshakeFailureReason`).

Memory is bounded: a server tracks at most ``maxPeers`` pairs per interval; refusals of further pairs share
one last entry (address "other addresses"), limited and summarised like the others.

Several servers in one process (tests, or start() called for two servers) each keep their own limits and
counts: a record is attributed to the server whose event-loop thread logged it. The filter is added to the
logger once, whatever the number of servers, and removed when the last one stops. Records of threads that
run no server, and every other line of ``tornado.general``, pass unchanged.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from TornadoServices.Server.private.Metrics import handshakeFailureReason

__all__ = ["HandshakeLogLimit", "HandshakeLogFilter", "HandshakeLogHook", "installHandshakeLogLimit", "refusalKey", "LOGGER_NAME", "OTHER_ADDRESSES"]

#: the logger Tornado writes its handshake errors to
LOGGER_NAME = "tornado.general"
#: address of the shared entry used once ``maxPeers`` pairs are tracked
OTHER_ADDRESSES = "other addresses"
#: the format string of Tornado's line (tornado.iostream.SSLIOStream._do_ssl_handshake)
_TORNADO_FORMAT_PREFIX = "SSL Error on "
#: seconds between two summary passes of a running server
FLUSH_PERIOD = 1.0


def _seconds(value: float) -> str:
    return f"{round(value, 1):g}"


class HandshakeLogLimit:
    """Counting windows of one server: ``admit()`` per refusal line, ``flush()`` for the summaries due.

    ``limit`` lines per ``interval`` seconds per (address, reason); ``limit`` 0 lets everything through.
    ``clock`` is a monotonic clock in seconds (replaceable in tests). Not thread-safe: the filter locks.
    """

    def __init__(self, limit: int, interval: float, maxPeers: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 0:
            raise ValueError(f"the handshake log limit must be 0 (no limit) or more, not {limit}")
        if not interval > 0:
            raise ValueError(f"the handshake log interval must be positive, not {interval}")
        if maxPeers < 1:
            raise ValueError(f"the number of tracked handshake refusal sources must be positive, not {maxPeers}")
        self.limit = int(limit)
        self.interval = float(interval)
        self.maxPeers = int(maxPeers)
        self.clock = clock
        #: (address, reason) -> [window start, lines let through, lines dropped]
        self._windows: dict[tuple[str, str], list[Any]] = {}
        self._lastPurge = float("-inf")

    def __len__(self) -> int:
        return len(self._windows)

    def _summary(self, key: tuple[str, str], window: list[Any], now: float) -> str:
        address, reason = key
        return (
            f"{window[2]} similar TLS handshake refusals from {address} suppressed in the last "
            f"{_seconds(now - window[0])} s ({reason})"
        )

    def _expire(self, now: float, summaries: list[str]) -> None:
        """Forget the windows that are over, with a summary for each that dropped lines."""
        for key, window in list(self._windows.items()):
            if now - window[0] >= self.interval:
                del self._windows[key]
                if window[2]:
                    summaries.append(self._summary(key, window, now))
        self._lastPurge = now

    def admit(self, address: str, reason: str) -> tuple[bool, list[str]]:
        """(let this line through?, summary lines to write first)."""
        summaries: list[str] = []
        if self.limit == 0:
            return True, summaries
        now = self.clock()
        key = (address, reason)
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self.maxPeers:
            # Full: forget finished windows (at most once per second, not at every line of a flood) ...
            if now - self._lastPurge >= min(1.0, self.interval):
                self._expire(now, summaries)
            if len(self._windows) >= self.maxPeers:
                # ... and when that is not enough, this pair shares the last entry.
                key = (OTHER_ADDRESSES, f"any reason; more than {self.maxPeers} address/reason pairs")
                window = self._windows.get(key)
        if window is not None and now - window[0] >= self.interval:
            del self._windows[key]
            if window[2]:
                summaries.append(self._summary(key, window, now))
            window = None
        if window is None:
            window = self._windows[key] = [now, 0, 0]
        if window[1] < self.limit:
            window[1] += 1
            return True, summaries
        window[2] += 1
        return False, summaries

    def flush(self, final: bool = False) -> list[str]:
        """Summary lines of the windows that are over (all of them when ``final``, e.g. at shutdown)."""
        summaries: list[str] = []
        now = self.clock()
        if final:
            for key, window in self._windows.items():
                if window[2]:
                    summaries.append(self._summary(key, window, now))
            self._windows.clear()
        else:
            self._expire(now, summaries)
        return summaries


def refusalKey(record: logging.LogRecord) -> Optional[tuple[str, str]]:
    """(peer address, reason) when ``record`` is Tornado's refused-handshake line, else None."""
    msg = record.msg
    args = record.args
    if not (isinstance(msg, str) and msg.startswith(_TORNADO_FORMAT_PREFIX) and isinstance(args, tuple) and len(args) == 3):
        return None
    peer, error = args[1], args[2]
    address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    reason = handshakeFailureReason(error) if isinstance(error, BaseException) else str(error)[:80]
    return address[:100], reason


class HandshakeLogFilter(logging.Filter):
    """The filter on ``tornado.general``: each refused-handshake record goes to its server's limits."""

    def __init__(self, log: Optional[Callable[[str], None]] = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: event-loop thread ident -> [(owner, limits)], the last registered first in line
        self._byThread: dict[int, list[tuple[Any, HandshakeLogLimit]]] = {}
        self._log = log or logging.getLogger(LOGGER_NAME).warning

    def register(self, owner: Any, limits: HandshakeLogLimit, thread: Optional[int] = None) -> None:
        """Apply ``limits`` to the records logged by ``thread`` (default: the calling thread)."""
        ident = threading.get_ident() if thread is None else thread
        with self._lock:
            self._removeLocked(owner)
            self._byThread.setdefault(ident, []).append((owner, limits))

    def unregister(self, owner: Any) -> Optional[HandshakeLogLimit]:
        """Stop limiting for ``owner``; return its limits (for a last flush), None if it was not registered."""
        with self._lock:
            return self._removeLocked(owner)

    def _removeLocked(self, owner: Any) -> Optional[HandshakeLogLimit]:
        for ident, entries in list(self._byThread.items()):
            for index, (registered, limits) in enumerate(entries):
                if registered is owner:
                    del entries[index]
                    if not entries:
                        del self._byThread[ident]
                    return limits
        return None

    @property
    def empty(self) -> bool:
        with self._lock:
            return not self._byThread

    def _write(self, summaries: list[str]) -> None:
        for line in summaries:
            self._log(line)

    def flush(self, owner: Any, final: bool = False) -> None:
        """Write the summaries due for ``owner``'s server."""
        with self._lock:
            summaries: list[str] = []
            for entries in self._byThread.values():
                for registered, limits in entries:
                    if registered is owner:
                        summaries = limits.flush(final)
        self._write(summaries)

    def filter(self, record: logging.LogRecord) -> bool:
        key = refusalKey(record)
        if key is None:
            return True
        with self._lock:
            entries = self._byThread.get(record.thread) if record.thread is not None else None
            if not entries:
                return True
            allowed, summaries = entries[-1][1].admit(*key)
        self._write(summaries)  # outside the lock: the summaries go through this filter too
        return allowed


_registryLock = threading.Lock()
_filter: Optional[HandshakeLogFilter] = None


class HandshakeLogHook:
    """What a server holds while its handshake lines are limited; :meth:`remove` when it stops (idempotent)."""

    def __init__(self, owner: Any, limits: Optional[HandshakeLogLimit]) -> None:
        self.owner = owner
        self.limits = limits
        self._flusher: Any = None

    def _startFlusher(self) -> None:
        from tornado.ioloop import PeriodicCallback

        period = min(FLUSH_PERIOD, self.limits.interval / 2) if self.limits is not None else FLUSH_PERIOD
        self._flusher = PeriodicCallback(self.flush, period * 1000.0)
        self._flusher.start()

    def flush(self) -> None:
        """Write the summaries of the intervals that are over."""
        current = _filter
        if current is not None:
            current.flush(self.owner)

    def remove(self) -> None:
        """Write the pending summaries, stop limiting; the filter leaves the logger with the last server."""
        global _filter
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        with _registryLock:
            current = _filter
            if current is None:
                return
            current.flush(self.owner, final=True)
            current.unregister(self.owner)
            if current.empty:
                logging.getLogger(LOGGER_NAME).removeFilter(current)
                _filter = None


def installHandshakeLogLimit(owner: Any, limit: int, interval: float, maxPeers: int) -> HandshakeLogHook:
    """Limit the refused-handshake lines logged by the calling thread (a server's event loop) for ``owner``.

    Call on the server's event-loop thread, from the loop (a periodic callback writes the summaries).
    ``limit`` 0 leaves the lines unlimited. Installing again for the same owner replaces its limits.
    """
    global _filter
    limits = HandshakeLogLimit(limit, interval, maxPeers) if limit > 0 else None
    hook = HandshakeLogHook(owner, limits)
    logger = logging.getLogger(LOGGER_NAME)
    with _registryLock:
        if limits is not None:
            if _filter is None:
                _filter = HandshakeLogFilter()
            _filter.register(owner, limits)  # replaces a previous registration of owner
            if _filter not in logger.filters:
                logger.addFilter(_filter)
        elif _filter is not None:
            _filter.unregister(owner)
            if _filter.empty:
                logger.removeFilter(_filter)
                _filter = None
    if limits is not None:
        hook._startFlusher()
    return hook
