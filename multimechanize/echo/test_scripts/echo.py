"""Virtual user of the echo project: echo three payload sizes, timing each with a custom timer."""
import string
import sys
import time

from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.LoadTest.clientEnvironment import initializeClientEnvironment

initializeClientEnvironment(__file__)

SERVICE = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else "Framework/Dummy"


def _payload(size):
    """A printable string of exactly ``size`` characters (one byte each on the wire)."""
    alphabet = string.ascii_letters + string.digits
    return (alphabet * (size // len(alphabet) + 1))[:size]


#: Custom timer name -> payload echoed.
PAYLOADS = {
    "Echo_100B": _payload(100),
    "Echo_10KB": _payload(10 * 1024),
    "Echo_1MB": _payload(1024 * 1024),
}


class Transaction:
    """One echo of each payload per transaction."""

    def __init__(self):
        self.client = RPCClientSelector(SERVICE)
        self.custom_timers = {}

    def run(self):
        self.custom_timers.clear()
        for name, payload in PAYLOADS.items():
            start = time.perf_counter()
            result = self.client.echo(payload)
            self.custom_timers[name] = time.perf_counter() - start
            assert result["OK"], f"{name}: {result.get('Message')}"
            assert result["Value"] == payload, f"{name}: the echoed payload differs from the one sent"
