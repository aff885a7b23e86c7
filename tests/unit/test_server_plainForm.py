"""TornadoService._plainForm: which requests have their checks run while Tornado creates the handler."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders

from TornadoServices.Server.TornadoService import TornadoService

_LIMIT = 1000
_RUNTIME = SimpleNamespace(settings=SimpleNamespace(maxBodySize=_LIMIT))


def _reference(headers: HTTPHeaders):
    """The rule, written with HTTPHeaders' public accessors."""
    length = headers.get("Content-Length")
    plain = (
        length is not None
        and length.isdigit()
        and int(length) <= _LIMIT
        and "Transfer-Encoding" not in headers
        and "Content-Encoding" not in headers
        and "X-Consumed-Content-Encoding" not in headers
        and not headers.get("Content-Type", "").startswith("application/octet-stream")
    )
    return (headers.get("Content-Type", ""), length) if plain else None


_FORM = ("Content-Type", "application/x-www-form-urlencoded")
CASES = [
    [_FORM, ("Content-Length", "62")],
    [("content-length", "62"), ("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
    [("Content-Length", "62")],  # no Content-Type
    [_FORM, ("Content-Length", str(_LIMIT))],
    [_FORM, ("Content-Length", str(_LIMIT + 1))],
    [_FORM],  # no length
    [_FORM, ("Content-Length", "-1")],
    [_FORM, ("Content-Length", "6e1")],
    [_FORM, ("Content-Length", "62"), ("Content-Length", "62")],  # repeated: combined "62,62"
    [_FORM, ("Content-Length", "62"), ("Transfer-Encoding", "chunked")],
    [_FORM, ("Content-Length", "62"), ("Content-Encoding", "gzip")],
    [_FORM, ("Content-Length", "62"), ("X-Consumed-Content-Encoding", "gzip")],
    [("Content-Type", "application/octet-stream"), ("Content-Length", "62")],
    [("Content-Type", "multipart/form-data; boundary=x"), ("Content-Length", "62")],
    [("Content-Type", "a"), ("Content-Type", "b"), ("Content-Length", "62")],  # repeated: combined "a,b"
]


@pytest.mark.parametrize("lines", CASES)
def test_plain_form_matches_the_rule(lines):
    headers = HTTPHeaders()
    for name, value in lines:
        headers.add(name, value)
    handler = SimpleNamespace(request=SimpleNamespace(headers=headers))
    assert TornadoService._plainForm(handler, _RUNTIME) == _reference(headers)
