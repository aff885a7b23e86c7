"""``TornadoResponse``: an answer whose HTTP side (status, headers, cookies, redirect) an ``export_`` method shapes.

Tornado's ``RequestHandler`` methods are not thread-safe, and plain ``export_`` methods run in a worker thread.
A method returns ``TornadoResponse(payload)`` and calls the response-shaping methods of ``RequestHandler`` on it
(``set_header``, ``set_status``, ``redirect``...): each call is only recorded, with its arguments, and the server
replays the calls in order on the event loop, then writes ``payload`` exactly as it writes a value returned
directly (S_OK/S_ERROR as JSON, ``rawContent`` rules), unless a replayed call already ended the answer.

The class name and constructor (``payload``, ``status_code``) are DIRAC's. DIRAC records any public method of
``RequestHandler``; here only the methods that shape an answer can be recorded (:data:`RECORDABLE`): a name
outside that list raises AttributeError when it is called, in the method that records it, not later on the loop.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from tornado.web import RequestHandler

__all__ = ["TornadoResponse", "RECORDABLE", "ENDING", "ActionFailed", "replayActions"]

#: RequestHandler methods a TornadoResponse records (the ones that shape the answer of a request)
RECORDABLE = frozenset(
    (
        "set_status",
        "set_header",
        "add_header",
        "clear_header",
        "clear",
        "set_cookie",
        "clear_cookie",
        "clear_all_cookies",
        "write",
        "finish",
        "redirect",
        "send_error",
    )
)
#: recorded calls that end the answer: nothing may be recorded after one, and the payload is not written
ENDING = frozenset(("finish", "redirect", "send_error"))

_SIGNED_COOKIES = frozenset(("set_secure_cookie", "set_signed_cookie", "get_secure_cookie", "get_signed_cookie"))
_SIGNATURES = {name: inspect.signature(getattr(RequestHandler, name)) for name in RECORDABLE}


def _refusal(name: str) -> str:
    """Why ``name`` cannot be recorded (the text of the AttributeError)."""
    allowed = ", ".join(sorted(RECORDABLE))
    if name in _SIGNED_COOKIES:
        reason = "signed cookies need a cookie secret, which the server does not have"
    elif callable(getattr(RequestHandler, name, None)):
        reason = "it does not shape the answer (a Tornado hook, a getter or a helper that returns a value)"
    else:
        reason = "RequestHandler has no such method"
    return f"TornadoResponse cannot record {name}(): {reason}; recordable methods: {allowed}"


class ActionFailed(Exception):
    """A recorded call raised when it was replayed: ``action`` is its name, ``error`` the exception."""

    def __init__(self, action: str, error: Exception) -> None:
        super().__init__(f"{action}(): {type(error).__name__}: {error}")
        self.action = action
        self.error = error


class TornadoResponse:
    """A method's result with recorded ``RequestHandler`` calls, replayed by the server on the event loop.

    ``payload`` is written as if the method had returned it (``None`` is then an error, as for a method that
    returns ``None``), unless a recorded call ends the answer (``finish``, ``redirect``, ``send_error``).
    ``status_code``, when given, is set before the recorded calls. Every recording call returns the response,
    so that ``return TornadoResponse(S_OK()).set_header("X-A", "1")`` works::

        def export_moved(self):
            return TornadoResponse().redirect("https://elsewhere.example/Framework/Dummy")

        def export_created(self, name):
            response = TornadoResponse(S_OK(name), status_code=201)
            response.set_header("Location", f"/things/{name}")
            return response
    """

    __slots__ = ("payload", "status_code", "actions", "_ended")

    def __init__(self, payload: Any = None, status_code: Optional[int] = None) -> None:
        self.payload = payload
        self.status_code = status_code
        #: recorded calls, in order: ``(name, args, kwargs)``
        self.actions: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._ended: Optional[str] = None

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> "TornadoResponse":
        try:
            _SIGNATURES[name].bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"TornadoResponse.{name}(): {exc}") from None
        if self._ended is not None:
            raise RuntimeError(f"TornadoResponse cannot record {name}() after {self._ended}(), which ends the answer")
        if name in ENDING:
            self._ended = name
        self.actions.append((name, args, kwargs))
        return self

    def __getattr__(self, name: str) -> Any:  # only for names that are not recorders (see below)
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(_refusal(name))

    def __repr__(self) -> str:
        names = ", ".join(name for name, _, _ in self.actions)
        return f"<TornadoResponse status_code={self.status_code} actions=[{names}] payload={type(self.payload).__name__}>"

    @property
    def ended(self) -> bool:
        """True when a recorded call ends the answer (the payload will not be written)."""
        return self._ended is not None


def _recorder(name: str) -> Callable[..., TornadoResponse]:
    def record(self: TornadoResponse, *args: Any, **kwargs: Any) -> TornadoResponse:
        return self._record(name, args, kwargs)

    record.__name__ = record.__qualname__ = name
    record.__doc__ = f"Record ``RequestHandler.{name}{_SIGNATURES[name]}`` to be called on the event loop; returns the response."
    return record


for _name in sorted(RECORDABLE):
    setattr(TornadoResponse, _name, _recorder(_name))
del _name


def replayActions(response: TornadoResponse, handler: Any) -> None:
    """Set ``response.status_code`` (when given), then call the recorded methods on ``handler`` in order.

    Must run on the event loop. The first call that raises stops the replay with :class:`ActionFailed`.
    """
    if response.status_code:
        try:
            handler.set_status(response.status_code)
        except Exception as exc:
            raise ActionFailed("set_status", exc) from None
    for name, args, kwargs in response.actions:
        if name not in RECORDABLE:  # the list is public: never call a method that was not recorded through it
            raise ActionFailed(name, AttributeError(_refusal(name)))
        try:
            getattr(handler, name)(*args, **kwargs)
        except Exception as exc:
            raise ActionFailed(name, exc) from None
