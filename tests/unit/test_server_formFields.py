"""Form fields and args of a call: the fast paths give what the general ones give."""
from __future__ import annotations

from urllib.parse import parse_qsl, unquote

import pytest

from TornadoServices.Core.Encoding import decode
from TornadoServices.Server.TornadoService import TornadoService, _parseUrlencoded, _unquote


@pytest.mark.parametrize("text", ["%5B%5D", "%5b%5d", "%5B%5D%20", "%5B1%5D", "%5B%22%C3%A9%22%5D", "abc", "%"])
def test_unquote_matches_urllib(text):
    assert _unquote(text) == unquote(text, errors="strict")


@pytest.mark.parametrize(
    "body",
    [
        "method=ping&args=%5B%5D&clientVO=unknown&clientSetup=None",
        "method=echo&args=%5b%5d",
        "method=echo&args=%5B%22a+b%22%2C+1%5D&extraCredentials=",
        "args=%5B%5D&args=%5B1%5D",
    ],
)
def test_parse_urlencoded_matches_parse_qsl(body):
    assert _parseUrlencoded(body) == {name: value.strip() for name, value in parse_qsl(body, keep_blank_values=True)}


def test_no_arguments_give_a_new_list_each_time():
    first = TornadoService._decodeArgs("[]")
    second = TornadoService._decodeArgs("[]")
    assert first == [] == decode("[]")[0] and first is not second  # callers may append to it
    assert TornadoService._decodeArgs(None) == [] and TornadoService._decodeArgs("") == []
    assert TornadoService._decodeArgs("[1, [2]]") == [1, [2]]
    assert TornadoService._decodeArgs(" [ ] ") == []
