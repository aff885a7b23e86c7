"""TornadoResponse: what may be recorded, when it is refused, and the replay on a handler."""
from __future__ import annotations

import pytest

from TornadoServices.Core.ReturnValues import S_OK
from TornadoServices.Server.private.Dispatcher import buildMethodTable
from TornadoServices.Server.TornadoResponse import ENDING, RECORDABLE, ActionFailed, TornadoResponse, replayActions
from TornadoServices.Server.TornadoService import TornadoService


class FakeHandler:
    """Records the calls it receives; ``set_header`` refuses a value with a newline, as Tornado does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if name == "set_header" and "\n" in str(args[1]):
                raise ValueError("Unsafe header value")
            self.calls.append((name, args, kwargs))

        return call


def test_calls_are_recorded_in_order_and_chain():
    response = TornadoResponse(S_OK(1))
    assert response.set_header("X-A", "1") is response
    response.add_header("X-A", "2").set_cookie("c", "v", path="/").clear_header("X-B")
    assert [name for name, _, _ in response.actions] == ["set_header", "add_header", "set_cookie", "clear_header"]
    assert response.actions[2] == ("set_cookie", ("c", "v"), {"path": "/"})
    assert response.payload == S_OK(1) and not response.ended


def test_replay_sets_the_status_first_then_the_calls():
    response = TornadoResponse(None, status_code=201).set_header("X-A", "1").redirect("https://x.example/")
    handler = FakeHandler()
    replayActions(response, handler)
    assert handler.calls == [("set_status", (201,), {}), ("set_header", ("X-A", "1"), {}), ("redirect", ("https://x.example/",), {})]


def test_replay_stops_at_the_first_failing_call():
    response = TornadoResponse().set_header("X-A", "1").set_header("X-B", "a\nb").set_header("X-C", "3")
    handler = FakeHandler()
    with pytest.raises(ActionFailed) as info:
        replayActions(response, handler)
    assert info.value.action == "set_header" and isinstance(info.value.error, ValueError)
    assert [args[0] for _, args, _ in handler.calls] == ["X-A"]


@pytest.mark.parametrize("name", ["post", "prepare", "on_finish", "flush", "render", "get_argument", "detach", "write_error", "nonsense"])
def test_other_names_are_refused_when_recorded(name):
    response = TornadoResponse()
    with pytest.raises(AttributeError, match=rf"TornadoResponse cannot record {name}\(\).*recordable methods: add_header"):
        getattr(response, name)
    assert response.actions == []


def test_signed_cookies_are_refused_with_the_reason():
    with pytest.raises(AttributeError, match="cookie secret"):
        TornadoResponse().set_secure_cookie("a", "b")


def test_wrong_arguments_are_refused_when_recorded():
    with pytest.raises(TypeError, match=r"TornadoResponse.set_header\(\)"):
        TornadoResponse().set_header("only-a-name")
    with pytest.raises(TypeError):
        TornadoResponse().redirect("https://x.example/", nonsense=True)


@pytest.mark.parametrize("ending", sorted(ENDING))
def test_nothing_is_recorded_after_a_call_that_ends_the_answer(ending):
    response = TornadoResponse()
    getattr(response, ending)(*(("https://x.example/",) if ending == "redirect" else (500,) if ending == "send_error" else ()))
    assert response.ended
    with pytest.raises(RuntimeError, match=f"after {ending}"):
        response.set_header("X-A", "1")


def test_a_tampered_action_list_is_refused_at_replay():
    response = TornadoResponse()
    response.actions.append(("post", (), {}))
    with pytest.raises(ActionFailed) as info:
        replayActions(response, FakeHandler())
    assert isinstance(info.value.error, AttributeError)


def test_every_recordable_name_is_a_request_handler_method():
    from tornado.web import RequestHandler

    assert all(callable(getattr(RequestHandler, name)) for name in RECORDABLE)
    assert ENDING <= RECORDABLE


class Finishing(TornadoService):
    def export_a(self):
        return S_OK()

    def finish_a(self):
        pass

    def export_b(self):
        return S_OK()

    finish_b = "not callable"

    def finish_orphan(self):
        pass


def test_method_table_resolves_finishers_once():
    table = buildMethodTable(Finishing)
    assert table["a"].finisher is Finishing.finish_a
    assert table["b"].finisher is None
    assert table["ping"].finisher is None
    assert "orphan" not in table and "finish_orphan" not in table and "finish_a" not in table
