"""The ``time`` field of the built-in ping: the current UTC second, made once per second of wall time."""
from __future__ import annotations

import datetime
import random
import time

from TornadoServices.Server import TornadoService as module


def _expected(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def test_utc_second_is_the_naive_utc_time_truncated_to_the_second():
    generator = random.Random(7)
    for now in [0.0, 0.999999, 1.0, 951782400.5, 1700000000.25, time.time()] + [generator.uniform(0, 4e9) for _ in range(2000)]:
        value = module._utcSecond(now)
        assert type(value) is datetime.datetime and value.tzinfo is None and value.microsecond == 0
        assert value == _expected(now), now


def test_utc_second_is_reused_only_within_the_same_second():
    first = module._utcSecond(1700000000.1)
    assert module._utcSecond(1700000000.9) is first  # same second: the cached value
    later = module._utcSecond(1700000001.0)
    assert later == first + datetime.timedelta(seconds=1)
    assert module._utcSecond(1700000000.5) == first  # going back (clock step) gives the right second again
