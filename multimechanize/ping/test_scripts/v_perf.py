"""Virtual user of the ping project: one ``ping()`` per transaction, the service from ``sys.argv[2]``."""
import sys

from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.LoadTest.clientEnvironment import initializeClientEnvironment

initializeClientEnvironment(__file__)

#: ``multimech-run multimechanize/ping System/Service`` pings another service.
SERVICE = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else "Framework/Dummy"


class Transaction:
    """Created once per virtual user; run() is timed by multimech-run."""

    def __init__(self):
        self.client = RPCClientSelector(SERVICE)
        self.custom_timers = {}

    def run(self):
        result = self.client.ping()
        assert result["OK"], f"ping {SERVICE}: {result.get('Message')}"
