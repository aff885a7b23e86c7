"""Answers shaped by handler code over real TLS: TornadoResponse (sync and async methods) and finish_<method>."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from TornadoServices.Core.Encoding import decode

from tests.conftest import RunningServer, loadCS, makeServerCFG, waitFor

HERE = Path(__file__).resolve().parent
SERVICE = "Test/Answers"

ADDITIONS = """
Systems
{
  Test
  {
    Services
    {
      Answers
      {
        Protocol = https
        HandlerPath = AnswerProbeHandler.py
      }
    }
  }
}
"""


def _loadCS(pki, port=None) -> None:
    from TornadoServices.ConfigurationSystem.Client.Config import gConfig

    loadCS(makeServerCFG(pki, urlsPort=port))
    result = gConfig.loadCFGFromString(ADDITIONS)
    assert result["OK"], result


@pytest.fixture(scope="module")
def answersServer(pki, _serverSession):
    from TornadoServices.Server.TornadoServer import TornadoServer

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    _loadCS(pki)
    server = TornadoServer(services=["Framework/Dummy", SERVICE], port=0, address="127.0.0.1")
    server.startInThread()
    handle = RunningServer(server, pki, "", "")
    yield handle
    server.stop()


@pytest.fixture
def answers(answersServer, pki):
    _loadCS(pki, answersServer.port)
    yield answersServer


def _post(server, method, *args, **kwargs):
    return server.post(method, *args, service=SERVICE, allow_redirects=False, **kwargs)


def _json(response) -> dict:
    return decode(response.text)[0]


def _accessLine(caplog, method: str) -> logging.LogRecord:
    def found():
        return next((r for r in list(caplog.records) if r.getMessage().startswith("Returning response") and f"{SERVICE}.{method} " in r.getMessage()), None)

    return waitFor(found, f"the access line of {method}")


def _ping(server) -> None:
    response = server.post("ping", service=SERVICE)
    assert response.status_code == 200 and _json(response)["OK"] is True


# --------------------------------------------------------------------------------------------------
# TornadoResponse
@pytest.mark.parametrize("method, status, origin", [("shapedSync", 202, "sync"), ("shapedAsync", 203, "async")])
def test_tornado_response_sets_header_and_status_on_an_ok_payload(answers, caplog, method, status, origin):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, method, True)
    assert response.status_code == status
    assert response.headers["X-Shaped"] == origin
    assert response.headers["Content-Type"] == "application/json"
    assert _json(response) == {"OK": True, "Value": {"from": origin}}
    record = _accessLine(caplog, method)
    assert record.status == status and f"{SERVICE}.{method} OK {status} " in record.getMessage()


@pytest.mark.parametrize("method, status", [("shapedSync", 202), ("shapedAsync", 203)])
def test_tornado_response_with_an_error_payload(answers, caplog, method, status):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, method, False)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    result = _json(response)
    assert result["OK"] is False and result["Message"] == "refused by the method"
    assert "CallStack" not in result
    record = _accessLine(caplog, method)
    assert f"{SERVICE}.{method} ERROR {status} " in record.getMessage() and record.getMessage().endswith("refused by the method")


def test_tornado_response_payload_loses_its_call_stack(answers):
    response = _post(answers, "withCallStack")
    assert response.status_code == 200 and response.headers["X-Shaped"] == "1"
    assert _json(response) == {"OK": False, "Message": "deep failure"}


def test_tornado_response_explicit_content_type_is_kept(answers):
    response = _post(answers, "ownType")
    assert response.headers["Content-Type"] == "application/x-dirac-test"
    assert _json(response) == {"OK": True, "Value": "typed"}


@pytest.mark.parametrize("method, status, location", [("redirectSync", 302, "https://elsewhere.example/Test/Answers"), ("redirectAsync", 301, "https://elsewhere.example/moved")])
def test_tornado_response_redirect(answers, caplog, method, status, location):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, method)
    assert response.status_code == status
    assert response.headers["Location"] == location
    assert response.content == b""
    record = _accessLine(caplog, method)
    assert record.status == status and f"{SERVICE}.{method} OK {status} " in record.getMessage()


def test_tornado_response_send_error_is_a_json_error(answers, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, "sendError")
    assert response.status_code == 418
    assert response.headers["Content-Type"] == "application/json"
    assert _json(response)["OK"] is False
    assert _accessLine(caplog, "sendError").status == 418


def test_failing_recorded_call_is_a_500_and_the_server_keeps_serving(answers, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, "badAction")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert "X-Before" not in response.headers  # nothing of the half-replayed answer goes out
    result = _json(response)
    assert result["OK"] is False and "set_header()" in result["Message"] and "Traceback" not in result["Message"]
    assert "CallStack" not in result
    record = _accessLine(caplog, "badAction")
    assert record.status == 500 and f"{SERVICE}.badAction ERROR 500 " in record.getMessage()
    failures = [r for r in caplog.records if "the recorded call set_header() failed" in r.getMessage() and r.levelno > logging.INFO]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR and failures[0].exc_info is None
    _ping(answers)


def test_recorded_writes_make_the_body(answers):
    response = _post(answers, "writeBody")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "hello world"


def test_recorded_writes_and_a_payload_are_refused(answers):
    response = _post(answers, "writeAndPayload")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert "one body only" in _json(response)["Message"]
    _ping(answers)


def test_unrecordable_call_fails_in_the_method(answers):
    response = _post(answers, "unrecordable")
    assert response.status_code == 500
    assert "TornadoResponse cannot record post()" in _json(response)["Message"]
    _ping(answers)


def test_tornado_response_raw_content(answers):
    response = _post(answers, "rawBytes", fields={"rawContent": "True"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Shaped"] == "raw"
    assert response.content == b"raw-bytes"


# --------------------------------------------------------------------------------------------------
# finish_<method>
def test_finisher_writes_its_own_answer(answers, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, "ownAnswer", "hello")
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "own:hello"
    record = _accessLine(caplog, "ownAnswer")
    assert record.status == 201 and f"{SERVICE}.ownAnswer OK 201 " in record.getMessage()


def test_finisher_that_does_not_finish_gets_the_default_answer(answers):
    response = _post(answers, "defaultAnswer")
    assert response.status_code == 200
    assert response.headers["X-Finisher"] == "ran"
    assert response.headers["Content-Type"] == "application/json"
    assert _json(response) == {"OK": True, "Value": "default"}


def test_finisher_that_writes_without_finishing_keeps_its_body(answers):
    response = _post(answers, "partialBody")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "partial"


def test_async_finisher_sees_a_stripped_result_and_may_replace_it(answers):
    response = _post(answers, "changedAnswer")
    assert response.status_code == 200
    assert _json(response) == {"OK": True, "Value": "was: with a stack"}


def test_failing_finisher_is_a_500_and_the_server_keeps_serving(answers, caplog):
    caplog.set_level(logging.INFO, logger="TornadoServices")
    response = _post(answers, "brokenFinisher")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert "X-Half" not in response.headers
    result = _json(response)
    assert result["OK"] is False and "finish_brokenFinisher failed: RuntimeError: finisher exploded" in result["Message"]
    assert _accessLine(caplog, "brokenFinisher").status == 500
    assert any("finish_brokenFinisher failed" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    _ping(answers)


@pytest.mark.parametrize("method", ["finish_x", "finish_notExported", "finish_ownAnswer"])
def test_finishers_are_not_rpc_methods(answers, method):
    response = _post(answers, method)
    assert response.status_code == 501
    assert _json(response)["OK"] is False


def test_finisher_runs_after_authorization_and_argument_checks(answers):
    response = _post(answers, "ownAnswer", cert=None)
    assert response.status_code == 401
    response = _post(answers, "ownAnswer")  # missing argument: refused before the method and its finisher
    assert response.status_code == 400
    response = _post(answers, "x")
    assert response.status_code == 200 and response.headers["X-Finisher"] == "x"
