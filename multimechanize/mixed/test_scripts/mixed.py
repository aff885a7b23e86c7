"""Virtual user of the mixed project: sync, async, refused and error-returning calls, each timed."""
import sys
import time

from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.LoadTest.clientEnvironment import initializeClientEnvironment

initializeClientEnvironment(__file__)

SERVICE = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else "Framework/Dummy"


class Transaction:
    """One call of each kind per transaction; failed expectations raise, which counts as an error."""

    def __init__(self):
        self.client = RPCClientSelector(SERVICE)
        self.custom_timers = {}

    def _timed(self, timer, method, *args):
        start = time.perf_counter()
        result = getattr(self.client, method)(*args)
        self.custom_timers[timer] = time.perf_counter() - start
        return result

    def run(self):
        self.custom_timers.clear()
        result = self._timed("Sync_add", "add", 2, 3)
        assert result["OK"] and result["Value"] == 5, f"add(2, 3): {result}"

        message = f"virtual user {self.process_num}-{self.thread_num}"
        result = self._timed("Async_asyncEcho", "asyncEcho", message)
        assert result["OK"] and result["Value"] == message, f"asyncEcho: {result}"

        result = self._timed("Refused_hostOnly", "hostOnly")
        assert not result["OK"], "hostOnly() was allowed to a user: it must be refused (auth group:hosts)"

        result = self._timed("Error_fail", "fail", "expected failure")
        assert not result["OK"], "fail() returned S_OK instead of S_ERROR"
        assert "expected failure" in result["Message"], f"fail(): unexpected message {result['Message']!r}"
