"""Test/Answers: methods that shape their own answers with TornadoResponse and finish_<method>.

Loaded by test_server_handler_answers.py with ``HandlerPath = AnswerProbeHandler.py`` (that test puts this
directory on ``sys.path``).
"""
from __future__ import annotations

from typing import Any

from TornadoServices import S_ERROR, S_OK
from TornadoServices.Server.TornadoResponse import TornadoResponse
from TornadoServices.Server.TornadoService import TornadoService


class AnswerProbeHandler(TornadoService):
    DEFAULT_AUTHORIZATION = ["authenticated"]

    # ----------------------------------------------------------------------------------------------
    # TornadoResponse
    def export_shapedSync(self, ok: bool) -> TornadoResponse:
        """Plain method (worker thread): a header and a status on an S_OK or S_ERROR payload."""
        payload = S_OK({"from": "sync"}) if ok else S_ERROR("refused by the method")
        response = TornadoResponse(payload)
        response.set_header("X-Shaped", "sync")
        return response.set_status(202)

    async def export_shapedAsync(self, ok: bool) -> TornadoResponse:
        """Coroutine: the same, with DIRAC's status_code argument."""
        payload = S_OK({"from": "async"}) if ok else S_ERROR("refused by the method")
        return TornadoResponse(payload, status_code=203).set_header("X-Shaped", "async")

    def export_ownType(self) -> TornadoResponse:
        """An explicit Content-Type is kept for the JSON payload."""
        return TornadoResponse(S_OK("typed")).set_header("Content-Type", "application/x-dirac-test")

    def export_withCallStack(self) -> TornadoResponse:
        """An S_ERROR payload with a CallStack: stripped as for a returned value."""
        return TornadoResponse({"OK": False, "Message": "deep failure", "CallStack": ["secret frame"]}).set_header("X-Shaped", "1")

    def export_redirectSync(self) -> TornadoResponse:
        return TornadoResponse().redirect("https://elsewhere.example/Test/Answers")

    async def export_redirectAsync(self) -> TornadoResponse:
        return TornadoResponse(S_OK("ignored")).redirect("https://elsewhere.example/moved", status=301)

    def export_badAction(self) -> TornadoResponse:
        """set_header with a value Tornado refuses (a control character): fails when replayed."""
        return TornadoResponse(S_OK("never sent")).set_header("X-Before", "1").set_header("X-Bad", "a\nb")

    def export_sendError(self) -> TornadoResponse:
        return TornadoResponse(S_OK("never sent")).send_error(418)

    def export_rawBytes(self) -> TornadoResponse:
        """With rawContent: the payload's bytes are streamed, with the header set."""
        return TornadoResponse(b"raw-bytes").set_header("X-Shaped", "raw")

    def export_writeBody(self) -> TornadoResponse:
        """Recorded write() calls: the body is the method's, with its own type."""
        return TornadoResponse().set_header("Content-Type", "text/plain").write("hello ").write("world")

    def export_writeAndPayload(self) -> TornadoResponse:
        """A recorded write() and a payload: two bodies, refused when replayed."""
        return TornadoResponse(S_OK("payload")).write("body")

    def export_unrecordable(self) -> Any:
        """Records a Tornado hook: refused when recorded, so the method itself fails (500)."""
        return TornadoResponse(S_OK()).post()

    # ----------------------------------------------------------------------------------------------
    # finish_<method>
    def export_ownAnswer(self, text: str) -> dict[str, Any]:
        return S_OK(text)

    def finish_ownAnswer(self) -> None:
        """Writes the answer itself from self.result."""
        self.set_status(201)
        self.set_header("Content-Type", "text/plain")
        self.finish(f"own:{self.result['Value']}")

    async def export_defaultAnswer(self) -> dict[str, Any]:
        return S_OK("default")

    def finish_defaultAnswer(self) -> None:
        """Only a header: the server writes the result."""
        self.set_header("X-Finisher", "ran")

    def export_changedAnswer(self) -> dict[str, Any]:
        return S_ERROR("with a stack")

    async def finish_changedAnswer(self) -> None:
        """Async finisher: sees the result without CallStack and replaces it."""
        assert "CallStack" not in self.result
        self.result = S_OK(f"was: {self.result['Message']}")

    def export_brokenFinisher(self) -> dict[str, Any]:
        return S_OK("never sent")

    def finish_brokenFinisher(self) -> None:
        self.set_header("X-Half", "done")
        raise RuntimeError("finisher exploded")

    def export_partialBody(self) -> dict[str, Any]:
        return S_OK("not written")

    def finish_partialBody(self) -> None:
        """Writes a body without finishing: the server only finishes it."""
        self.set_header("Content-Type", "text/plain")
        self.write("partial")

    def finish_notExported(self) -> None:
        """A finish_ without an export_: not an RPC method."""
        self.finish("must never be reached")

    def export_x(self) -> dict[str, Any]:
        return S_OK("x")

    def finish_x(self) -> None:
        self.set_header("X-Finisher", "x")
