"""Background load of the mixed project: one ``ping()`` per transaction."""
import sys

from TornadoServices.Client.RPCClientSelector import RPCClientSelector
from TornadoServices.LoadTest.clientEnvironment import initializeClientEnvironment

initializeClientEnvironment(__file__)

SERVICE = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else "Framework/Dummy"


class Transaction:
    """Created once per virtual user."""

    def __init__(self):
        self.client = RPCClientSelector(SERVICE)
        self.custom_timers = {}

    def run(self):
        result = self.client.ping()
        assert result["OK"], f"ping {SERVICE}: {result.get('Message')}"
