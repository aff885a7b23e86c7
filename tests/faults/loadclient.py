"""A load-generating client process for the fault tests and the soak run.

``python tests/faults/loadclient.py --urls URL[,URL...] --threads N --prefix P --out FILE --stop FILE``

Each thread calls ``Faults/Probe.record(<prefix>-<thread>-<n>, delay)`` (or, with ``--mix``, also ``pid``
and ``echo`` calls and a sleeping call now and then) through :class:`TornadoClient` with the given URL list
(its failover order), until the stop file exists or ``--calls`` calls per thread are done. One JSON line per
call goes to ``--out``: call id, outcome, errno, message, start and end (monotonic seconds).
Credentials come from ``X509_USER_PROXY`` / ``X509_CERT_DIR``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefix", default="call")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--calls", type=int, default=0, help="calls per thread (0 = until the stop file exists)")
    parser.add_argument("--mix", action="store_true", help="mix record, pid, echo and sleeping calls")
    args = parser.parse_args()

    from TornadoServices.Client.TornadoClient import TornadoClient

    lock = threading.Lock()
    out = open(args.out, "a", buffering=1)

    def run(index: int) -> None:
        number = 0
        rng = random.Random(index)
        while not os.path.exists(args.stop) and (not args.calls or number < args.calls):
            callId = f"{args.prefix}-{index}-{number}"
            number += 1
            client = TornadoClient(args.urls, timeout=args.timeout)
            started = time.monotonic()
            choice = rng.random() if args.mix else 0.0
            if choice < 0.6:
                method, result = "record", client.record(callId, args.delay)
            elif choice < 0.8:
                method, result = "pid", client.pid()
            elif choice < 0.98:
                method, result = "echo", client.echo({"id": callId, "payload": "x" * rng.randint(10, 20000)})
            else:
                method, result = "record", client.record(callId, 1.0)
            line = {
                "callId": callId,
                "method": method,
                "ok": bool(result.get("OK")),
                "errno": result.get("Errno", 0),
                "message": result.get("Message", ""),
                "started": started,
                "ended": time.monotonic(),
            }
            with lock:
                out.write(json.dumps(line) + "\n")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.close()


if __name__ == "__main__":
    main()
