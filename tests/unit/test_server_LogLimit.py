"""Rate limit of Tornado's refused-handshake lines (TornadoServices.Server.private.LogLimit), with a fake clock."""
from __future__ import annotations

import logging
import ssl
import threading

import pytest

from TornadoServices.Server.private import LogLimit
from TornadoServices.Server.private.LogLimit import (
    OTHER_ADDRESSES,
    HandshakeLogFilter,
    HandshakeLogLimit,
    installHandshakeLogLimit,
    refusalKey,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sslError(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason.upper().replace(' ', '_')}] {reason} (_ssl.c:1006)")
    error.reason = reason.upper().replace(" ", "_")
    return error


def tornadoRecord(peer: object, error: object, thread: int | None = None) -> logging.LogRecord:
    """The record tornado.iostream writes for a refused handshake."""
    record = logging.makeLogRecord(
        {"name": "tornado.general", "levelno": logging.WARNING, "levelname": "WARNING", "msg": "SSL Error on %s %s: %s", "args": (7, peer, error)}
    )
    record.thread = threading.get_ident() if thread is None else thread
    return record


def test_limit_then_summary_when_the_interval_ends():
    clock = FakeClock()
    limits = HandshakeLogLimit(3, 60.0, 100, clock=clock)
    decisions = [limits.admit("192.0.2.7", "wrong version number") for _ in range(10)]
    assert [allowed for allowed, _ in decisions] == [True] * 3 + [False] * 7
    assert all(summaries == [] for _, summaries in decisions)
    clock.now += 59.9
    assert limits.flush() == []  # interval not over yet
    clock.now += 0.1
    assert limits.flush() == ["7 similar TLS handshake refusals from 192.0.2.7 suppressed in the last 60 s (wrong version number)"]
    assert len(limits) == 0  # finished windows are forgotten
    assert limits.admit("192.0.2.7", "wrong version number") == (True, [])


def test_no_summary_when_nothing_was_dropped():
    clock = FakeClock()
    limits = HandshakeLogLimit(3, 10.0, 100, clock=clock)
    for _ in range(3):
        assert limits.admit("192.0.2.7", "r")[0]
    clock.now += 10
    assert limits.flush() == []
    assert len(limits) == 0


def test_summary_written_by_the_next_line_of_the_same_pair():
    clock = FakeClock()
    limits = HandshakeLogLimit(1, 10.0, 100, clock=clock)
    limits.admit("192.0.2.7", "r")
    limits.admit("192.0.2.7", "r")
    clock.now += 25
    allowed, summaries = limits.admit("192.0.2.7", "r")
    assert allowed
    assert summaries == ["1 similar TLS handshake refusals from 192.0.2.7 suppressed in the last 25 s (r)"]


def test_pairs_are_limited_separately():
    clock = FakeClock()
    limits = HandshakeLogLimit(2, 60.0, 100, clock=clock)
    for key in (("192.0.2.7", "a"), ("192.0.2.7", "b"), ("192.0.2.8", "a")):
        assert [limits.admit(*key)[0] for _ in range(3)] == [True, True, False]
    clock.now += 60
    assert sorted(limits.flush()) == sorted(
        f"1 similar TLS handshake refusals from {address} suppressed in the last 60 s ({reason})"
        for address, reason in (("192.0.2.7", "a"), ("192.0.2.7", "b"), ("192.0.2.8", "a"))
    )


def test_key_table_is_capped_under_many_addresses():
    clock = FakeClock()
    limits = HandshakeLogLimit(2, 60.0, 50, clock=clock)
    allowed = sum(limits.admit(f"10.0.{index // 256}.{index % 256}", "r")[0] for index in range(10000))
    assert len(limits) <= 51  # 50 pairs plus the shared entry
    assert allowed == 50 + 2  # one line per tracked pair, then the shared entry's limit
    clock.now += 60
    summaries = limits.flush()
    assert len(summaries) == 1 and summaries[0].startswith(f"{10000 - 52} similar TLS handshake refusals from {OTHER_ADDRESSES} ")
    assert len(limits) == 0
    assert limits.admit("10.9.9.9", "r") == (True, [])  # the table works again after the interval


def test_full_table_frees_finished_windows_for_new_pairs():
    clock = FakeClock()
    limits = HandshakeLogLimit(1, 10.0, 2, clock=clock)
    limits.admit("a", "r")
    limits.admit("a", "r")  # dropped
    limits.admit("b", "r")
    clock.now += 10
    allowed, summaries = limits.admit("c", "r")
    assert allowed and summaries == ["1 similar TLS handshake refusals from a suppressed in the last 10 s (r)"]
    assert len(limits) == 1


def test_final_flush_reports_windows_still_open():
    clock = FakeClock()
    limits = HandshakeLogLimit(1, 60.0, 10, clock=clock)
    limits.admit("a", "r")
    limits.admit("a", "r")
    clock.now += 5
    assert limits.flush(final=True) == ["1 similar TLS handshake refusals from a suppressed in the last 5 s (r)"]
    assert len(limits) == 0


@pytest.mark.parametrize("limit, interval, peers", [(-1, 60, 10), (1, 0, 10), (1, -5, 10), (1, 60, 0)])
def test_bad_limits_are_refused(limit, interval, peers):
    with pytest.raises(ValueError):
        HandshakeLogLimit(limit, interval, peers)


def test_zero_means_no_limit():
    limits = HandshakeLogLimit(0, 60.0, 1, clock=FakeClock())
    assert all(limits.admit(str(index), "r") == (True, []) for index in range(100))
    assert len(limits) == 0


def test_refusal_key_of_tornado_records():
    assert refusalKey(tornadoRecord(("192.0.2.7", 50000), sslError("wrong version number"))) == ("192.0.2.7", "wrong_version_number")
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "certificate has expired"
    assert refusalKey(tornadoRecord(("::1", 1, 0, 0), verify)) == ("::1", "certificate verify failed: certificate has expired")
    assert refusalKey(tornadoRecord("(not connected)", sslError("http request")))[0] == "(not connected)"
    other = logging.makeLogRecord({"msg": "Uncaught exception %s", "args": ("x",)})
    assert refusalKey(other) is None


def test_filter_applies_the_limits_of_the_logging_thread():
    written: list[str] = []
    clock = FakeClock()
    logFilter = HandshakeLogFilter(log=written.append)
    owner = object()
    logFilter.register(owner, HandshakeLogLimit(2, 60.0, 10, clock=clock))
    record = lambda: tornadoRecord(("192.0.2.7", 1), sslError("no shared cipher"))
    assert [logFilter.filter(record()) for _ in range(5)] == [True, True, False, False, False]
    # another thread (no server of its own) is not limited, nor are other lines
    assert logFilter.filter(tornadoRecord(("192.0.2.7", 1), sslError("no shared cipher"), thread=-1))
    assert logFilter.filter(logging.makeLogRecord({"msg": "something else", "args": ()}))
    clock.now += 60
    logFilter.flush(owner)
    assert written == ["3 similar TLS handshake refusals from 192.0.2.7 suppressed in the last 60 s (no_shared_cipher)"]
    assert logFilter.unregister(owner) is not None
    assert logFilter.empty
    assert logFilter.filter(record())


def test_install_is_idempotent_and_removed_with_the_last_server(monkeypatch):
    # a logger and registry of its own: servers of other tests may be running in this process
    monkeypatch.setattr(LogLimit, "LOGGER_NAME", "tests.unit.LogLimit")
    monkeypatch.setattr(LogLimit, "_filter", None)
    monkeypatch.setattr(LogLimit.HandshakeLogHook, "_startFlusher", lambda self: None)  # no event loop here
    logger = logging.getLogger(LogLimit.LOGGER_NAME)
    before = list(logger.filters)
    first, second = object(), object()
    hookA = installHandshakeLogLimit(first, 5, 60.0, 10)
    hookA2 = installHandshakeLogLimit(first, 3, 60.0, 10)  # same owner again: replaces
    hookB = installHandshakeLogLimit(second, 4, 60.0, 10)
    added = [f for f in logger.filters if f not in before]
    assert len(added) == 1 and isinstance(added[0], HandshakeLogFilter)
    hookA.remove()
    hookA2.remove()
    assert added[0] in logger.filters  # the second server still runs
    hookB.remove()
    hookB.remove()  # idempotent
    assert logger.filters == before
    assert installHandshakeLogLimit(first, 0, 60.0, 10).limits is None  # 0: no filter at all
    assert logger.filters == before
